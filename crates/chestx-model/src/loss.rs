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
                let (bp, bn) = wcel_betas(&t);
                let pos: Tensor = -(logits.log_sigmoid()) * &t;
                let neg: Tensor = -((-logits).log_sigmoid()) * (1.0 - &t);
                let weighted: Tensor = pos * bp + neg * bn;
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

/// β_P and β_N of one batch. A batch with no positive (or no negative) label has no term to weight
/// there: its β is 0 instead of infinite, and the other β is 1.
pub fn wcel_betas(targets: &Tensor) -> (f64, f64) {
    let total = targets.numel() as f64;
    let p = targets.sum(Kind::Double).double_value(&[]);
    let n = total - p;
    let bp = if p > 0.0 { total / p } else { 0.0 };
    let bn = if n > 0.0 { total / n } else { 0.0 };
    (bp, bn)
}
