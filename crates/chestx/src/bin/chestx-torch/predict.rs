//! `chestx predict`: findings, boxes and overlays for new images.

use anyhow::{bail, Result};
use chestx_cli::output::progress;
use chestx_image::Gray;
use chestx_infer::predict::{predict_image, write_json, ImagePrediction};
use chestx_infer::{Classifier, Run, Thresholds};
use chestx_model::parse_device;
use clap::Args;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct PredictArgs {
    /// PNG/JPEG/DICOM files or folders of them.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long)]
    run: PathBuf,
    #[arg(short, long)]
    output: PathBuf,
    /// Operating thresholds: the `thresholds.json` that `chestx eval` writes beside its report
    /// (Youden's J on the validation split), or one probability for every finding (e.g. 0.5).
    #[arg(long)]
    thresholds: String,
    /// Checkpoint (default: RUN/best.safetensors).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    device: String,
    /// Exit 0 even when inputs were skipped (each is still named, with its reason).
    #[arg(long)]
    allow_skips: bool,
    #[command(flatten)]
    boxes: crate::eval::BoxArgs,
}

pub fn run_predict(a: PredictArgs) -> Result<ExitCode> {
    let device = parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let run = Run::open(&a.run, device)?;
    let ckpt = run.checkpoint_or_best(a.checkpoint.as_deref());
    let (_vs, net) = run.load_model(&ckpt)?;
    let thresholds = thresholds(&a.thresholds, net.classes())?;
    let localizer = a.boxes.localizer()?;
    localizer
        .heat_options(&net)
        .stages(&net)
        .map_err(anyhow::Error::msg)?;
    let found = chestx_data::ingest::find_sources(&a.inputs);
    let files = found.files();
    if files.is_empty() {
        bail!("no input images");
    }
    std::fs::create_dir_all(&a.output)?;
    let names = output_names(&files);
    let pb = progress(files.len() as u64, "predicting", 20);
    let mut failed: Vec<&Path> = Vec::new();
    let skipped = found.skipped();
    for (f, why) in &skipped {
        eprintln!("error: {}: {why}", f.display());
        failed.push(f);
    }
    for (f, name) in files.iter().zip(&names) {
        pb.inc(1);
        let one = || -> Result<()> {
            let img = Gray::open(f)?;
            let (pred, heat) = predict_image(
                &net,
                device,
                &img,
                &f.display().to_string(),
                &thresholds,
                &localizer,
            )?;
            write_json(&a.output.join(format!("{name}.json")), &pred)?;
            write_overlay(
                &img,
                &pred,
                &heat,
                &a.output.join(format!("{name}_overlay.png")),
            )
        };
        if let Err(e) = one() {
            pb.println(format!("error: {}: {e:#}", f.display()));
            failed.push(f);
        }
    }
    pb.finish_and_clear();
    eprintln!(
        "{} of {} images predicted, {} failed -> {}",
        files.len() + skipped.len() - failed.len(),
        files.len() + skipped.len(),
        failed.len(),
        a.output.display()
    );
    for f in &failed {
        eprintln!("  failed: {}", f.display());
    }
    Ok(chestx_cli::output::batch_status(
        failed.len(),
        a.allow_skips,
    ))
}

/// `--thresholds`: a number for every class, or a file written by `chestx eval`.
fn thresholds(arg: &str, classes: &[String]) -> Result<Thresholds> {
    match arg.parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(Thresholds::fixed(classes, p)),
        Ok(p) => bail!("--thresholds {p}: a probability is between 0 and 1"),
        Err(_) => Ok(Thresholds::read(Path::new(arg), classes)?),
    }
}

/// The heatmap of the most probable finding, with the boxes of every positive one.
fn write_overlay(
    img: &Gray,
    pred: &ImagePrediction,
    heat: &[chestx_eval::boxes::Heatmap],
    path: &Path,
) -> Result<()> {
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
    let o = chestx_eval::overlay::render_overlay(img, heat.get(top), &[], &boxes, 0.45);
    chestx_eval::overlay::save_overlay(&o, path).map_err(anyhow::Error::msg)
}

/// One output name per input: the file's stem, or — where two inputs share a stem (`a/x.png`,
/// `b/x.png`, `a/x.dcm`) — its whole path with separators as `_`, so no output overwrites another.
fn output_names(files: &[PathBuf]) -> Vec<String> {
    let stem = |f: &PathBuf| {
        f.file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy().into_owned())
    };
    let mut count: HashMap<String, usize> = HashMap::new();
    for f in files {
        *count.entry(stem(f)).or_default() += 1;
    }
    files
        .iter()
        .map(|f| {
            let s = stem(f);
            if count[&s] == 1 {
                return s;
            }
            let whole = f.to_string_lossy();
            whole
                .trim_start_matches(['/', '.'])
                .replace(['/', '\\', ':'], "_")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_sharing_a_stem_get_distinct_output_names() {
        let files: Vec<PathBuf> = ["a/x.png", "b/x.png", "a/x.dcm", "c/y.png"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let names = output_names(&files);
        assert_eq!(names, ["a_x.png", "b_x.png", "a_x.dcm", "y"]);
    }
}
