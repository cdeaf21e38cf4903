//! Global pooling of the transition map to one value per channel.

use serde::{Deserialize, Serialize};
use tch::Tensor;

/// How an S×S map becomes one value per channel.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Pooling {
    Avg,
    Max,
    /// Log-sum-exp with sharpness `r`: near average for small r, near max for large r.
    Lse {
        r: f64,
    },
}

impl Pooling {
    /// `[B, D, S, S]` → `[B, D]`.
    pub fn apply(&self, x: &Tensor) -> Tensor {
        let flat = x.flatten(2, -1);
        match *self {
            Pooling::Avg => flat.mean_dim(-1, false, None),
            Pooling::Max => flat.amax(-1, false),
            Pooling::Lse { r } => lse(&flat, r),
        }
    }
}

/// x* + (1/r)·log(mean(exp(r·(x − x*)))) over the last dimension, x* the maximum: the exponent is
/// never positive, so it cannot overflow whatever r and the activations.
pub fn lse(flat: &Tensor, r: f64) -> Tensor {
    let xmax = flat.amax(-1, true).detach();
    let mean = ((flat - &xmax) * r).exp().mean_dim(-1, false, None);
    xmax.squeeze_dim(-1) + mean.log() / r
}
