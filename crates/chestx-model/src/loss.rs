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
    /// Mean loss of `logits` `[B, C]` against 0/1 `targets` `[B, C]`. A NaN target is an unknown
    /// label (a CheXpert-layout cell left out): it adds nothing to the loss, the mean or W-CEL's
    /// counts, so its gradient is zero.
    pub fn compute(&self, logits: &Tensor, targets: &Tensor) -> Tensor {
        let t = targets.to_kind(Kind::Float);
        let known = t.isnan().logical_not().to_kind(Kind::Float);
        let t = t.nan_to_num(0.0, None, None);
        let count = known.sum(Kind::Float).detach();
        let mean = |per_label: Tensor| (per_label * &known).sum(Kind::Float) / count.clamp_min(1.0);
        match *self {
            Loss::Bce => mean(logits.binary_cross_entropy_with_logits::<Tensor>(
                &t,
                None,
                None,
                Reduction::None,
            )),
            Loss::Wcel => {
                // β computed on the device (no host round trip per step); a count of zero gives
                // β = 0 where its term is empty anyway.
                let p = (&t * &known).sum(Kind::Float).detach();
                let n = &count - &p;
                let beta = |c: &Tensor| {
                    c.clamp_min(1.0).reciprocal() * &count * c.gt(0.0).to_kind(Kind::Float)
                };
                let (bp, bn) = (beta(&p), beta(&n));
                let pos: Tensor = -(logits.log_sigmoid()) * &t * bp;
                let neg: Tensor = -((-logits).log_sigmoid()) * (1.0 - &t) * bn;
                mean(pos + neg)
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
                mean(one_minus.pow_tensor_scalar(gamma) * ce)
            }
        }
    }
}

/// β_P and β_N of one batch (the values [`Loss::Wcel`] computes on the device), over its known
/// (non-NaN) labels. A batch with no positive (or no negative) label has no term to weight
/// there: its β is 0 instead of infinite, and the other β is 1.
pub fn wcel_betas(targets: &Tensor) -> (f64, f64) {
    let known = targets.isnan().logical_not();
    let total = known.sum(Kind::Double).double_value(&[]);
    let p = targets
        .nan_to_num(0.0, None, None)
        .sum(Kind::Double)
        .double_value(&[]);
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

    #[test]
    fn unknown_labels_are_left_out_of_every_loss() {
        // Row 2 of the masked batch is the known part; its loss must equal that row alone, and the
        // unknown entries get no gradient.
        let logits = Tensor::from_slice(&[0.7f32, -0.4, 1.5, 0.3, -2.0, 0.9])
            .view([2, 3])
            .set_requires_grad(true);
        let nan = f32::NAN;
        let masked = Tensor::from_slice(&[nan, 1.0f32, nan, 0.0, 1.0, 0.0]).view([2, 3]);
        let known_logits = Tensor::from_slice(&[-0.4f32, 0.3, -2.0, 0.9]);
        let known_t = Tensor::from_slice(&[1.0f32, 0.0, 1.0, 0.0]);
        for loss in [Loss::Wcel, Loss::Bce, Loss::Focal { gamma: 2.0 }] {
            let got = loss.compute(&logits, &masked);
            let want = loss
                .compute(&known_logits.view([1, 4]), &known_t.view([1, 4]))
                .double_value(&[]);
            assert!((got.double_value(&[]) - want).abs() < 1e-6, "{loss:?}");
            let g = Tensor::run_backward(&[&got], &[&logits], false, false).remove(0);
            let g: Vec<f32> = Vec::try_from(g.flatten(0, -1)).unwrap();
            assert_eq!(
                (g[0], g[2]),
                (0.0, 0.0),
                "{loss:?}: unknown labels must get no gradient"
            );
            assert!(g[1] != 0.0 && g[3] != 0.0 && g[4] != 0.0 && g[5] != 0.0);
        }
        // β over the known labels: 2 positives, 2 negatives of 4.
        assert_eq!(wcel_betas(&masked), (2.0, 2.0));
        // A batch with nothing known is a finite zero.
        let none = Tensor::full([2, 3], f64::NAN, (Kind::Float, tch::Device::Cpu));
        assert_eq!(Loss::Wcel.compute(&logits, &none).double_value(&[]), 0.0);
    }
}
