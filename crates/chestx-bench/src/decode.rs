//! `chestx-bench decode`: decode + resize (→512 and →224) + ImageNet-normalize the NIH originals,
//! next to PIL + torchvision doing the same work with the same number of threads.

use anyhow::{bail, Context, Result};
use chestx_image::Raster;
use clap::Args;
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

#[derive(Args)]
pub struct DecodeBenchArgs {
    /// Folder of PNGs (default: $CHESTX_DATA/nih/images).
    #[arg(long)]
    images: Option<PathBuf>,
    /// Passes over the files.
    #[arg(long, default_value_t = 3)]
    passes: usize,
    /// Worker threads on both sides.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Python with pillow, torch and torchvision.
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    #[arg(long, default_value = "benches/decode_pil.py")]
    script: PathBuf,
}

fn work(path: &Path, buf512: &mut [f32], buf224: &mut [f32]) -> Result<f32> {
    // As the training loader reads films: 8-bit PNGs resampled in 8 bits, like PIL's.
    let film = Raster::open(path)?;
    film.resample(film.full(), 512, 512)
        .write_chw_imagenet(buf512);
    film.resample(film.full(), 224, 224)
        .write_chw_imagenet(buf224);
    Ok(buf512[0] + buf224[0])
}

pub fn run(a: DecodeBenchArgs) -> Result<ExitCode> {
    let dir = a
        .images
        .clone()
        .unwrap_or_else(|| crate::data_dir().join("nih/images"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no PNGs in {}", dir.display());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(a.workers)
        .build()?;
    let run_pass = || -> Result<f32> {
        pool.install(|| {
            files
                .par_iter()
                .map_init(
                    || (vec![0f32; 3 * 512 * 512], vec![0f32; 3 * 224 * 224]),
                    |(b5, b2), f| work(f, b5, b2),
                )
                .sum::<Result<f32>>()
        })
    };
    println!(
        "bench decode: {} PNGs from {}, decode + resize to 512 and 224 + normalize, {} passes, {} workers",
        files.len(),
        dir.display(),
        a.passes,
        a.workers
    );
    let _ = std::hint::black_box(run_pass()?); // warm-up (page cache, allocator)
    let t = Instant::now();
    for _ in 0..a.passes {
        std::hint::black_box(run_pass()?);
    }
    let ours = (a.passes * files.len()) as f64 / t.elapsed().as_secs_f64();
    let v = crate::python_reference(
        &a.python,
        &a.script,
        &[
            "--images".into(),
            dir.display().to_string(),
            "--passes".into(),
            a.passes.to_string(),
            "--threads".into(),
            a.workers.to_string(),
        ],
    )?;
    let py = v["images_per_s"].as_f64().unwrap_or(f64::NAN);
    println!(
        "{:<22} {:>12} {:>16} {:>8}",
        "", "chestx", "PIL+torchvision", "ratio"
    );
    println!(
        "{:<22} {:>12.1} {:>16.1} {:>7.2}x   (goal ≥ 2x: {})",
        "images/s",
        ours,
        py,
        ours / py,
        if ours >= 2.0 * py { "met" } else { "NOT met" }
    );
    Ok(ExitCode::SUCCESS)
}
