//! `chestx predict`: findings, boxes and overlays for new images.

use anyhow::{bail, Result};
use chestx_cli::output::progress;
use chestx_cli::shards::{self, ShardArgs};
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
    /// Default: RUN/thresholds.json, which an imported model's folder holds (its source's
    /// operating points).
    #[arg(long)]
    thresholds: Option<String>,
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
    #[command(flatten)]
    shard: ShardArgs,
}

pub fn run_predict(a: PredictArgs) -> Result<ExitCode> {
    let device = parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let shard = a.shard.resolve()?;
    let run = Run::open(&a.run, device)?;
    let ckpt = run.checkpoint_or_best(a.checkpoint.as_deref());
    let (_vs, net) = run.load_model(&ckpt)?;
    let mut thresholds = thresholds(a.thresholds.as_deref(), &a.run, net.classes())?;
    thresholds.untrained = run.untrained_classes();
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
    let sharded = match shard {
        Some(s) => {
            let settings = [
                "predict".to_string(),
                format!("checkpoint={}", ckpt.display()),
                format!("thresholds={}", thresholds.source),
                format!("boxes={}", localizer.describe(&net)),
            ];
            let job = ShardedPredict::new(&a, &ckpt, s, &settings)?;
            if let Some(m) = &job.finished {
                return Ok(shards::status(m, a.allow_skips));
            }
            Some(job)
        }
        None => None,
    };
    let block = shard.map_or(0..files.len(), |s| s.block(files.len()));
    // Shard 0 answers for what the walk passed over; every shard sees the same.
    let skipped = if shard.is_some_and(|s| s.index != 0) {
        Vec::new()
    } else {
        found.skipped()
    };
    for (f, why) in &skipped {
        eprintln!("error: {}: {why}", f.display());
    }
    let job = Job {
        net: &net,
        device,
        thresholds: &thresholds,
        localizer: &localizer,
        output: &a.output,
    };
    let names = output_names(&files);
    let done = job.predict_all(&files[block.clone()], &names[block.clone()], block.start);
    let failed = done.failed.len() + skipped.len();
    eprintln!(
        "{} of {} images predicted, {failed} failed -> {}",
        done.rows.len(),
        block.len() + skipped.len(),
        a.output.display()
    );
    for (f, _) in &skipped {
        eprintln!("  failed: {}", f.display());
    }
    for &k in &done.failed {
        eprintln!("  failed: {}", files[k as usize].display());
    }
    match sharded {
        None => {
            write_table(&a.output.join("predictions.csv"), net.classes(), &done.rows)?;
            Ok(chestx_cli::output::batch_status(failed, a.allow_skips))
        }
        Some(job) => {
            let m = job.finish(net.classes(), &files, done, skipped.len())?;
            Ok(shards::status(&m, a.allow_skips))
        }
    }
}

/// What predicting needs, shared by every image.
struct Job<'a> {
    net: &'a chestx_model::ChestNet,
    device: tch::Device,
    thresholds: &'a Thresholds,
    localizer: &'a chestx_infer::heat::Localizer,
    output: &'a Path,
}

/// The rows of `predictions.csv` written, and the images that failed by position in the sorted
/// input list.
struct Done {
    rows: Vec<ImagePrediction>,
    failed: Vec<u64>,
}

impl Job<'_> {
    fn predict_all(&self, files: &[PathBuf], names: &[String], first: usize) -> Done {
        let pb = progress(files.len() as u64, "predicting", 20);
        let mut done = Done {
            rows: Vec::new(),
            failed: Vec::new(),
        };
        for (k, (f, name)) in files.iter().zip(names).enumerate() {
            pb.inc(1);
            match self.predict_one(f, name) {
                Ok(mut pred) => {
                    pred.image = name.clone();
                    done.rows.push(pred);
                }
                Err(e) => {
                    pb.println(format!("error: {}: {e:#}", f.display()));
                    done.failed.push((first + k) as u64);
                }
            }
        }
        pb.finish_and_clear();
        done
    }

    /// One image: its JSON and overlay written; its prediction returned for the table (with the
    /// source path in `image`, which the caller replaces by the output name).
    fn predict_one(&self, f: &Path, name: &str) -> Result<ImagePrediction> {
        // The model's chain decodes the film as its source did (torchxrayvision: DICOM stored
        // values, no window); the overlay shows the film as a viewer would.
        let prep = self.net.config.preprocess;
        let img = prep.open(f)?;
        let shown = match prep.reads_dicom_as_stored() {
            true => Some(Gray::open(f)?),
            false => None,
        };
        let (pred, heat) = predict_image(
            self.net,
            self.device,
            &img,
            &f.display().to_string(),
            self.thresholds,
            self.localizer,
        )?;
        write_json(&self.output.join(format!("{name}.json")), &pred)?;
        write_overlay(
            shown.as_ref().unwrap_or(&img),
            &pred,
            &heat,
            &self.output.join(format!("{name}_overlay.png")),
        )?;
        Ok(pred)
    }
}

/// `predictions.csv`: one row per image predicted (its output name, size, each finding's
/// probability, the positive findings), in input order.
fn write_table(path: &Path, classes: &[String], rows: &[ImagePrediction]) -> Result<()> {
    chestx_cli::output::write_atomic(path, |w| {
        let mut csv = csv::Writer::from_writer(w);
        let mut header = vec!["name".to_string(), "width".into(), "height".into()];
        header.extend(classes.iter().cloned());
        header.push("positive".into());
        csv.write_record(&header)?;
        for p in rows {
            let mut row = vec![p.image.clone(), p.width.to_string(), p.height.to_string()];
            row.extend(p.findings.iter().map(|f| f.probability.to_string()));
            let positive: Vec<&str> = p
                .findings
                .iter()
                .filter(|f| f.positive)
                .map(|f| f.finding.as_str())
                .collect();
            row.push(positive.join("|"));
            csv.write_record(&row)?;
        }
        csv.flush()?;
        Ok(())
    })
}

/// One shard of a prediction: its images' JSON and overlays in the output folder as usual, its
/// table and manifest in `OUT/shards/`.
struct ShardedPredict {
    shard: chestx_core::shard::Shard,
    table: shards::Output,
    manifest: PathBuf,
    settings: String,
    finished: Option<shards::Manifest>,
}

impl ShardedPredict {
    fn new(
        a: &PredictArgs,
        checkpoint: &Path,
        shard: chestx_core::shard::Shard,
        settings: &[String],
    ) -> Result<ShardedPredict> {
        let out = &a.output;
        let mut inputs = a.inputs.clone();
        inputs.push(checkpoint.to_path_buf());
        let inputs = &inputs;
        let dir = out.join("shards");
        std::fs::create_dir_all(&dir)?;
        let mut table = shards::Output::new("predictions", &shard, &dir.join("predictions.csv"))?;
        table.merged_file = std::path::absolute(out.join("predictions.csv"))?;
        let manifest = shards::manifest_path(&table.shard_file);
        let settings = shards::settings_fingerprint(settings, inputs);
        let finished = shards::finished(&manifest, &settings)?;
        Ok(ShardedPredict {
            shard,
            table,
            manifest,
            settings,
            finished,
        })
    }

    fn finish(
        self,
        classes: &[String],
        files: &[PathBuf],
        done: Done,
        skipped: usize,
    ) -> Result<shards::Manifest> {
        write_table(&self.table.shard_file, classes, &done.rows)?;
        let mut input = chestx_core::shard::Fingerprint::default();
        files
            .iter()
            .for_each(|f| input.add(&f.display().to_string()));
        let m = shards::Manifest {
            job: shards::Job::Predict,
            shard: self.shard,
            settings: self.settings,
            input: input.hex(),
            records: files.len() as u64,
            assigned: self.shard.block(files.len()).len() as u64,
            written: done.rows.len() as u64,
            failed: done.failed,
            failed_unassigned: skipped as u64,
            outputs: vec![self.table],
        };
        shards::write_manifest(&self.manifest, &m)?;
        Ok(m)
    }
}

/// `--thresholds`: a number for every class, or a file written by `chestx eval`; without it the
/// run folder's own `thresholds.json` (an imported model's source operating points).
fn thresholds(arg: Option<&str>, run: &Path, classes: &[String]) -> Result<Thresholds> {
    let own = run.join("thresholds.json");
    let arg = match arg {
        Some(a) => a,
        None if own.is_file() => return Ok(Thresholds::read(&own, classes)?),
        None => bail!(
            "--thresholds is needed: {} holds no thresholds.json (give the one `chestx eval` wrote, or a probability such as 0.5)",
            run.display()
        ),
    };
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
