//! `chestx predict`: findings, boxes and overlays for new images.

use crate::output::progress;
use anyhow::{bail, Result};
use chestx_image::Gray;
use chestx_model::parse_device;
use chestx_train::predict::{load_thresholds, predict_image, write_json};
use chestx_train::Run;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct PredictArgs {
    /// PNG/JPEG files or folders of them.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long)]
    run: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    /// Checkpoint (default: RUN/best.safetensors).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    device: String,
    #[command(flatten)]
    boxes: crate::eval::BoxArgs,
}

pub fn run_predict(a: PredictArgs) -> Result<ExitCode> {
    let device = parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let run = Run::open(&a.run, device)?;
    let ckpt = run.checkpoint_or_best(a.checkpoint.as_deref());
    let (_vs, net) = run.load_model(&ckpt)?;
    let thresholds = load_thresholds(&a.run, net.config.classes.len());
    let localizer = a.boxes.localizer()?;
    localizer
        .heat_options(&net)
        .stages(&net)
        .map_err(anyhow::Error::msg)?;
    let files = chestx_data::ingest::find_sources(&a.inputs);
    if files.is_empty() {
        bail!("no input images");
    }
    std::fs::create_dir_all(&a.output)?;
    let pb = progress(files.len() as u64, "predicting", 20);
    let (mut ok, mut failed) = (0, 0);
    for f in &files {
        pb.inc(1);
        let img = Gray::open(f).map_err(|e| e.to_string());
        let img = match img {
            Ok(i) => i,
            Err(e) => {
                pb.println(format!("error: {e}"));
                failed += 1;
                continue;
            }
        };
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into());
        let (pred, heat) = predict_image(
            &net,
            device,
            &img,
            &f.display().to_string(),
            &thresholds,
            &localizer,
        )?;
        write_json(&a.output.join(format!("{stem}.json")), &pred)?;
        // Overlay: the heatmap of the most probable finding, with the boxes of every positive one.
        let top = (0..pred.findings.len())
            .max_by(|&i, &j| {
                pred.findings[i]
                    .probability
                    .total_cmp(&pred.findings[j].probability)
            })
            .unwrap_or(0);
        let boxes: Vec<_> = pred
            .findings
            .iter()
            .flat_map(|f| f.boxes.iter().copied())
            .collect();
        let o = chestx_eval::overlay::render_overlay(&img, heat.get(top), &[], &boxes, 0.45);
        chestx_eval::overlay::save_overlay(&o, &a.output.join(format!("{stem}_overlay.png")))
            .map_err(anyhow::Error::msg)?;
        ok += 1;
    }
    pb.finish_and_clear();
    eprintln!(
        "{ok} images predicted, {failed} failed -> {}",
        a.output.display()
    );
    Ok(if failed > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
