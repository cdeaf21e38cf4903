//! Multi-label losses on logits: the paper's weighted cross-entropy (W-CEL), plain BCE and focal loss.
//! All take logits and use log-sigmoid forms, so saturated outputs stay finite.

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Loss {
    /// W-CEL: β_P = (|P|+|N|)/|P| on positive labels and β_N = (|P|+|N|)/|N| on negative ones,
    /// counted over the batch's label matrix.
    Wcel,
    Bce,
    Focal {
        gamma: f64,
    },
}

impl Loss {
    /// Mean loss of `logits` `[B, C]` against 0/1 `targets` `[B, C]`.
    pub fn compute(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        let t = targets.to_kind(Kind::Float);
        match *self {
            Loss::Bce => {
                logits.binary_cross_entropy_with_logits::<Tensor>(&t, None, None, Reduction::Mean)
            }
            Loss::Wcel => {
                // β computed on the device (no host round trip per step); a count of zero gives
                // β = 0 where its term is empty anyway.
                let total = t.numel() as f64;
                let p = t.sum(Kind::Float).detach();
                let n = (-&p) + total;
                let beta = |count: &Tensor| {
                    count.clamp_min(1.0).reciprocal() * total * count.gt(0.0).to_kind(Kind::Float)
                };
                let (bp, bn) = (beta(&p), beta(&n));
                let pos: Tensor = -(logits.log_sigmoid()) * &t * bp;
                let neg: Tensor = -((-logits).log_sigmoid()) * (1.0 - &t) * bn;
                let weighted: Tensor = pos + neg;
                weighted.mean(Kind::Float)
            }
            Loss::Focal { gamma } => {
                let p = logits.sigmoid();
                let pt: Tensor = &p * &t + (1.0 - &p) * (1.0 - &t);
                let ce = logits.binary_cross_entropy_with_logits::<Tensor>(
                    &t,
                    None,
                    None,
                    Reduction::None,
                );
                let one_minus: Tensor = 1.0 - pt;
                let modulating = one_minus.pow_tensor_scalar(gamma);
                (modulating * ce).mean(Kind::Float)
            }
        }
    }
}

/// β_P and β_N of one batch (the values [`Loss::Wcel`] computes on the device). A batch with no positive (or no negative) label has no term to weight
/// there: its β is 0 instead of infinite, and the other β is 1.
pub fn wcel_betas(targets: &Tensor) -> (f64, f64) {
    let total = targets.numel() as f64;
    let p = targets.sum(Kind::Double).double_value(&[]);
    let n = total - p;
    let bp = if p > 0.0 { total / p } else { 0.0 };
    let bn = if n > 0.0 { total / n } else { 0.0 };
    (bp, bn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wcel_matches_its_formula_worked_by_hand() {
        // 2×2 labels with one positive: β_P = 4/1, β_N = 4/3.
        let logits = Tensor::from_slice(&[0.3f32, -1.2, 2.0, 0.1]).view([2, 2]);
        let t = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 0.0]).view([2, 2]);
        assert_eq!(wcel_betas(&t), (4.0, 4.0 / 3.0));
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let want = (4.0 * -(sig(0.3)).ln()
            + 4.0 / 3.0
                * (-(1.0 - sig(-1.2)).ln() - (1.0 - sig(2.0)).ln() - (1.0 - sig(0.1)).ln()))
            / 4.0;
        let got = Loss::Wcel.compute(&logits, &t).double_value(&[]);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
    }

    #[test]
    fn wcel_guards_batches_without_positives() {
        let logits = Tensor::from_slice(&[0.3f32, -1.2]).view([1, 2]);
        let t = Tensor::zeros([1, 2], (Kind::Float, tch::Device::Cpu));
        let v = Loss::Wcel.compute(&logits, &t).double_value(&[]);
        assert!(v.is_finite() && v > 0.0);
        assert_eq!(wcel_betas(&t), (0.0, 1.0));
        // Extreme logits stay finite (log-sigmoid form).
        let big = Tensor::from_slice(&[80.0f32, -80.0]).view([1, 2]);
        let t = Tensor::from_slice(&[0.0f32, 1.0]).view([1, 2]);
        assert!(Loss::Wcel.compute(&big, &t).double_value(&[]).is_finite());
        assert!(Loss::Focal { gamma: 2.0 }
            .compute(&big, &t)
            .double_value(&[])
            .is_finite());
    }
}
