//! The ChestX-ray8 network on libtorch (through tch): ImageNet backbones with their classifier
//! removed, the paper's transition layer, global pooling (average, max, log-sum-exp), prediction
//! layer, losses (W-CEL, BCE, focal), class activation maps, and weight import.
//!
//! This and the training crate are the only ones that link libtorch; everything upstream (labels,
//! images, datasets) and downstream (AUC, boxes) is pure Rust.

pub mod backbone;
pub mod import;
mod kernels;
pub mod layout;
pub mod loss;
pub mod net;
pub mod pool;
pub mod published;

pub use backbone::Arch;
pub use kernels::GradBuffers;
pub use loss::Loss;
pub use net::{ChestNet, Forward, ModelConfig};
pub use pool::Pooling;

/// `cpu`, `cuda` or `auto` (CUDA when available).
pub fn parse_device(s: &str) -> Result<tch::Device, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "cpu" => Ok(tch::Device::Cpu),
        "cuda" | "gpu" => {
            if tch::Cuda::is_available() {
                Ok(tch::Device::Cuda(0))
            } else {
                Err("--device cuda: no CUDA device is visible to libtorch".into())
            }
        }
        "auto" => Ok(tch::Device::cuda_if_available()),
        other => Err(format!("unknown device {other:?} (cpu, cuda or auto)")),
    }
}

/// The fresh gradient of `loss` for each of `params` by autograd (undefined where it does not
/// reach), for a network other than [`ChestNet`]'s training step or a check against it.
pub fn gradients(loss: &tch::Tensor, params: &[&tch::Tensor]) -> Vec<tch::Tensor> {
    kernels::gradients(loss, params, &[], &mut GradBuffers::default())
}
