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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lse_lies_between_mean_and_max_and_is_stable() {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 10.0]).view([1, 1, 2, 2]);
        let avg = Pooling::Avg.apply(&x).double_value(&[0, 0]);
        let max = Pooling::Max.apply(&x).double_value(&[0, 0]);
        assert_eq!((avg, max), (4.0, 10.0));
        let mut last = avg;
        for r in [0.01, 1.0, 10.0, 100.0] {
            let v = Pooling::Lse { r }.apply(&x).double_value(&[0, 0]);
            assert!(v >= last - 1e-6 && v <= max + 1e-6, "r={r}: {v}");
            last = v;
        }
        // r → 0 approaches the mean, r → ∞ the max; huge activations do not overflow.
        assert!((Pooling::Lse { r: 1e-4 }.apply(&x).double_value(&[0, 0]) - avg).abs() < 1e-2);
        let huge = Tensor::from_slice(&[1000.0f32, 1001.0]).view([1, 1, 1, 2]);
        let v = Pooling::Lse { r: 50.0 }.apply(&huge).double_value(&[0, 0]);
        assert!(v.is_finite() && (v - 1001.0).abs() < 0.1);
    }
}
