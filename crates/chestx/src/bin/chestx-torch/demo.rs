//! `chestx demo`: the phantom study ([`chestx_study`]) in minutes on a CPU, with progress bars.

use crate::train::{Bars, PoolArg};
use anyhow::Result;
use chestx_model::parse_device;
use chestx_study::StudyOptions;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct DemoArgs {
    /// Real radiographs to implant lesions into (PNG/JPEG); procedural chests without it.
    #[arg(long)]
    backgrounds: Option<PathBuf>,
    #[arg(short, long, default_value = "chestx-demo")]
    output: PathBuf,
    /// Phantom images to generate.
    #[arg(long, default_value_t = 3500)]
    n: usize,
    /// Training epochs of the full study. Six keep the whole demo under 20 minutes on 2 cores
    /// (18.3 min measured); twelve gave seed 0's effusion maps more time to cover the fluid.
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    /// A smaller, faster run (CI and a first try): 3000 images at 192 px, 12 epochs.
    #[arg(long)]
    quick: bool,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value = "auto")]
    device: String,
    /// Global pooling of the demo network (LSE, its default, localizes best across seeds).
    #[arg(long, value_enum, default_value_t = PoolArg::Lse)]
    pool: PoolArg,
    /// LSE sharpness r.
    #[arg(long, default_value_t = 10.0)]
    lse_r: f64,
}

pub fn run_demo(a: DemoArgs) -> Result<ExitCode> {
    let opts = StudyOptions {
        backgrounds: a.backgrounds,
        output: a.output,
        n: a.n,
        epochs: a.epochs,
        quick: a.quick,
        seed: a.seed,
        device: parse_device(&a.device).map_err(anyhow::Error::msg)?,
        pooling: a.pool.pooling(a.lse_r),
    };
    let study = chestx_study::run(&opts, &Bars::new(), &|step| eprintln!("{step}"))?;
    println!("{}", study.report);
    eprintln!(
        "demo finished in {:.1} min; report: {}",
        study.minutes,
        study.report_path.display()
    );
    Ok(ExitCode::SUCCESS)
}
