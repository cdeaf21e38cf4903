//! `chestx import-weights`: released backbone weights → a safetensors file for `train --init`.

use anyhow::Result;
use chestx_model::{import, Arch, ModelConfig};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct ImportArgs {
    /// A .pth/.pt (any torch.save container) or .safetensors state dict.
    input: PathBuf,
    #[arg(long)]
    arch: String,
    /// Output safetensors with torchvision backbone names (usable as `chestx train --init`).
    #[arg(short, long)]
    output: PathBuf,
}

pub fn run_import(a: ImportArgs) -> Result<ExitCode> {
    let arch: Arch = a.arch.parse().map_err(anyhow::Error::msg)?;
    let tensors = import::read_tensors(&a.input)?;
    // Check against a real model: names and shapes must fit the backbone.
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let _net = chestx_model::ChestNet::new(&vs.root(), ModelConfig::new(arch, vec!["x".into()]));
    let report = import::load_backbone(&vs, arch, &tensors, &a.input)?;
    let mut out: Vec<(String, tch::Tensor)> = vs
        .variables()
        .into_iter()
        .filter_map(|(k, t)| k.strip_prefix("backbone.").map(|k| (k.to_string(), t)))
        .collect();
    out.sort_by(|x, y| x.0.cmp(&y.0));
    let refs: Vec<(&str, &tch::Tensor)> = out.iter().map(|(k, t)| (k.as_str(), t)).collect();
    chestx_core::io::write_atomic_with(&a.output, |tmp| {
        tch::Tensor::write_safetensors(&refs, tmp).map_err(std::io::Error::other)
    })
    .map_err(|e| anyhow::anyhow!("cannot write {e}"))?;
    eprintln!(
        "{arch}: {} tensors imported, {} backbone tensors missing, {} file tensors unused, {} shape mismatches -> {}",
        report.loaded,
        report.missing.len(),
        report.unused.len(),
        report.shape_mismatch.len(),
        a.output.display()
    );
    for (k, f, m) in &report.shape_mismatch {
        eprintln!("  shape mismatch: {k}: file {f:?}, model {m:?}");
    }
    for k in report.missing.iter().take(10) {
        eprintln!("  missing: {k}");
    }
    Ok(
        if report.missing.is_empty() && report.shape_mismatch.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    )
}
