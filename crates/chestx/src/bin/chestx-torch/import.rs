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

#[derive(Args)]
pub struct ImportModelArgs {
    /// The published state dict: .pth/.pt (any torch.save container of tensors) or .safetensors.
    input: PathBuf,
    /// Whose conventions the file follows: torchxrayvision or chexnet.
    #[arg(long = "from")]
    source: String,
    /// torchxrayvision weight set the file holds (e.g. densenet121-res224-all): which of the 18
    /// outputs it was trained on, and its input side. Without it all 18 count as trained.
    #[arg(long)]
    weights: Option<String>,
    /// The model folder to write (created; refused if it already holds a model).
    #[arg(short, long)]
    output: PathBuf,
}

/// The file's operating points (`op_threshs`), or 0.5 for every class when it has none; the
/// untrained classes listed (never positive). With where they came from, in words.
fn operating_points(
    imported: &chestx_model::published::Imported,
    input: &std::path::Path,
) -> (chestx_infer::Thresholds, &'static str) {
    let classes = &imported.config.classes;
    let (values, origin) = match &imported.op_threshs {
        Some(t) => (
            t.iter()
                .map(|v| if v.is_nan() { 1.0 } else { *v })
                .collect(),
            "the file's op_threshs (operating points)",
        ),
        None => (
            vec![0.5; classes.len()],
            "none in the file: 0.5 for every class (pick them with `chestx eval`)",
        ),
    };
    let thresholds = chestx_infer::Thresholds {
        classes: classes.clone(),
        values,
        source: format!(
            "{:?} import of {}: {origin}",
            imported.source,
            input.display()
        ),
        untrained: imported.untrained.clone(),
    };
    (thresholds, origin)
}

/// Where an imported model came from, written as `MODEL/source.json`.
#[derive(serde::Serialize)]
struct Provenance<'a> {
    source: chestx_model::published::Source,
    file: String,
    sha256: String,
    weight_set: Option<&'a str>,
    arch: String,
    classes: &'a [String],
    untrained: &'a [String],
    operating_thresholds: &'a str,
    preprocessing: String,
    imported_by: String,
}

pub fn run_import_model(a: ImportModelArgs) -> Result<ExitCode> {
    use chestx_infer::{Checkpoint, Run, RunState, TrainConfig};
    let source: chestx_model::published::Source = a.source.parse().map_err(anyhow::Error::msg)?;
    if Run::config_path(&a.output).exists() {
        anyhow::bail!(
            "{} already holds a model (config.json): choose another folder",
            a.output.display()
        );
    }
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let (_net, imported) =
        chestx_model::published::import(&vs, &a.input, source, a.weights.as_deref())?;
    let m = &imported.config;
    let classes = &m.classes;
    let (thresholds, origin) = operating_points(&imported, &a.input);
    let config = TrainConfig {
        model: m.clone(),
        loss: chestx_model::Loss::Bce,
        dataset: PathBuf::new(),
        batch_size: 16,
        epochs: 0,
        lr: 0.0,
        weight_decay: 0.0,
        seed: 0,
        augment: false,
        val_fraction: 0.1,
        init: Some(a.input.clone()),
        checkpoint_every: 0,
        cosine: false,
        labels: Default::default(),
    };
    let state = RunState {
        finished: true,
        ..Default::default()
    };
    std::fs::create_dir_all(&a.output)?;
    let bytes = std::fs::read(&a.input)?;
    let provenance = Provenance {
        source,
        file: a.input.display().to_string(),
        sha256: sha256_hex(&bytes),
        weight_set: a.weights.as_deref(),
        arch: m.arch.to_string(),
        classes,
        untrained: &imported.untrained,
        operating_thresholds: origin,
        preprocessing: m.preprocess.describe(m.input_size as u32),
        imported_by: format!("chestx {}", env!("CARGO_PKG_VERSION")),
    };
    Checkpoint::write_weights(&a.output.join("best.safetensors"), &vs, &state)?;
    thresholds.write(&a.output.join("thresholds.json"))?;
    chestx_core::io::write_atomic(
        &a.output.join("source.json"),
        &serde_json::to_vec_pretty(&provenance)?,
    )?;
    // config.json last: its presence is what makes the folder a model.
    chestx_core::io::write_atomic(
        &Run::config_path(&a.output),
        &serde_json::to_vec_pretty(&config)?,
    )?;
    eprintln!(
        "{} {} ({} classes, {} untrained; input {}x{}, {} channel(s)): {} tensors -> {}",
        a.source,
        m.arch,
        classes.len(),
        imported.untrained.len(),
        m.input_size,
        m.input_size,
        m.in_channels,
        imported.report.loaded + 2,
        a.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
