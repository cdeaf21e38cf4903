//! `chestx synth`: a phantom dataset in the NIH layout.

use anyhow::{Context, Result};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct SynthArgs {
    /// Folder of real radiographs (PNG/JPEG) to implant into; procedural chests without it.
    #[arg(long)]
    backgrounds: Option<PathBuf>,
    #[arg(short, long)]
    output: PathBuf,
    #[arg(long, default_value_t = 1000)]
    n: usize,
    #[arg(long, default_value_t = 256)]
    size: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Procedural backgrounds to draw when no folder is given.
    #[arg(long, default_value_t = 200)]
    procedural: usize,
}

pub fn run_synth(a: SynthArgs) -> Result<ExitCode> {
    let bg = match &a.backgrounds {
        Some(d) => chestx_synth::Backgrounds::from_dir(d)
            .with_context(|| format!("cannot list {}", d.display()))?,
        None => chestx_synth::Backgrounds::Procedural(a.procedural),
    };
    let cfg = chestx_synth::SynthConfig {
        n: a.n,
        size: a.size,
        seed: a.seed,
        ..Default::default()
    };
    let pb = crate::output::progress(a.n as u64, "synth", 200);
    let s = chestx_synth::write_dataset(&bg, &a.output, &cfg, &|| pb.inc(1))?;
    pb.finish_and_clear();
    eprintln!(
        "{} images ({} clean; Nodule {}, Mass {}, Effusion {}; {} boxes), {} train/val and {} test -> {}",
        s.images,
        s.clean,
        s.per_class[0],
        s.per_class[1],
        s.per_class[2],
        s.boxes,
        s.train_images,
        s.test_images,
        a.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
