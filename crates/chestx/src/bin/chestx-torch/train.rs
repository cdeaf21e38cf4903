//! `chestx train`: a new run from the arguments, or a run resumed; progress bars.

use anyhow::{bail, Result};
use chestx_cli::args::{BlankArg, UncertainArg};
use chestx_data::{SampleOptions, Split};
use chestx_infer::run::load_split;
use chestx_model::{parse_device, Arch, Loss, ModelConfig, Pooling};
use chestx_train::{
    classes_present, config, train, Controls, EpochMetrics, Observer, Outcome, Start, TrainConfig,
};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Mutex;

#[derive(Clone, Copy, ValueEnum)]
pub enum PoolArg {
    Avg,
    Max,
    Lse,
}

impl PoolArg {
    /// The pooling, with `lse_r` the sharpness where it is LSE.
    pub fn pooling(self, lse_r: f64) -> Pooling {
        match self {
            PoolArg::Avg => Pooling::Avg,
            PoolArg::Max => Pooling::Max,
            PoolArg::Lse => Pooling::Lse { r: lse_r },
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LossArg {
    Wcel,
    Bce,
    Focal,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Dataset folder: NIH layout (as released, or as written by `chestx ingest` / `chestx synth`),
    /// or CheXpert layout (`train.csv` + `valid.csv` with 1/0/-1/blank label cells).
    #[arg(long, required_unless_present = "resume")]
    dataset: Option<PathBuf>,
    /// Run folder to create (config.json, metrics.csv, latest/best checkpoints).
    #[arg(long, required_unless_present = "resume")]
    out: Option<PathBuf>,
    /// Continue the run in this folder from its latest checkpoint (other options are taken from it).
    #[arg(long)]
    resume: Option<PathBuf>,
    #[arg(long, default_value = "resnet50")]
    arch: String,
    /// Input side in pixels.
    #[arg(long, default_value_t = 512)]
    input: i64,
    #[arg(long, value_enum, default_value_t = PoolArg::Lse)]
    pool: PoolArg,
    /// LSE sharpness r.
    #[arg(long, default_value_t = 10.0)]
    lse_r: f64,
    #[arg(long, value_enum, default_value_t = LossArg::Wcel)]
    loss: LossArg,
    /// Focal loss gamma.
    #[arg(long, default_value_t = 2.0)]
    focal_gamma: f64,
    /// Transition-layer channels D.
    #[arg(long, default_value_t = 1024)]
    transition_dim: i64,
    /// Transition conv kernel: 3 mixes neighbouring cells, 1 keeps heatmaps as sharp as the backbone's.
    #[arg(long, default_value_t = 3)]
    transition_kernel: i64,
    /// ResNet-18 only: first-stage width (64 is standard; smaller for CPU demos).
    #[arg(long)]
    width: Option<i64>,
    /// Heatmap stride: 32, or 16 / 8 for ResNets (layer4 / layer3 and layer4 keep their input
    /// resolution: finer heatmaps).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(i64).range(8..=32))]
    output_stride: i64,
    /// Classes to train (comma-separated); default: findings with positives in the training split.
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    // Negative numbers parse, so that they are refused by name rather than as unknown arguments.
    #[arg(long, default_value_t = 1e-4, allow_negative_numbers = true)]
    lr: f64,
    #[arg(long, default_value_t = 1e-4, allow_negative_numbers = true)]
    weight_decay: f64,
    /// Weights to start from: a backbone file (.pth or .safetensors; torchvision, torchxrayvision,
    /// CheXNet), or a model folder (`chestx import-model`'s, or another run) whose whole network is
    /// fine-tuned: its classifier's rows start the classes the run shares with it.
    #[arg(long)]
    init: Option<PathBuf>,
    /// Seeded augmentation: a random crop of 85–100% of each side in the film's proportions (a
    /// square on square films; every film is then resized whole to the input square, as in
    /// evaluation), a left–right mirror for half the films, ±10% gain and bias.
    #[arg(long)]
    augment: bool,
    /// Share of train_val patients held out for validation.
    #[arg(long, default_value_t = 0.1)]
    val_fraction: f64,
    /// CheXpert layout: what an uncertain (-1) label counts as.
    #[arg(long, value_enum, default_value_t = UncertainArg::Ignore)]
    uncertain: UncertainArg,
    /// CheXpert layout: what a blank label (not mentioned) counts as.
    #[arg(long, value_enum, default_value_t = BlankArg::Zeros)]
    blank: BlankArg,
    /// CheXpert layout: train and evaluate on frontal films only (Frontal/Lateral column).
    #[arg(long)]
    frontal_only: bool,
    #[arg(long, default_value_t = 200)]
    checkpoint_every: u64,
    /// Cosine learning-rate decay to 0 over the run.
    #[arg(long)]
    cosine: bool,
    /// cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Exit 0 even when films were left out (listed but missing, or unreadable); each is still
    /// named, in RUN/skipped.txt.
    #[arg(long)]
    allow_skips: bool,
}

/// Progress bars for the training loop.
pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    visible: bool,
}

impl Bars {
    pub fn new() -> Bars {
        Bars {
            bar: Mutex::new(None),
            visible: std::io::stderr().is_terminal(),
        }
    }
}

impl Observer for Bars {
    fn epoch_start(&self, epoch: usize, batches: usize, first: usize) {
        let pb = if self.visible {
            ProgressBar::new(batches as u64)
        } else {
            ProgressBar::hidden()
        };
        pb.set_style(
            ProgressStyle::with_template(
                "epoch {prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
            )
            .expect("template"),
        );
        pb.set_prefix((epoch + 1).to_string());
        pb.set_position(first as u64);
        *self.bar.lock().unwrap() = Some(pb);
    }
    fn step(&self, _e: usize, batch: usize, loss: f64, ips: f64) {
        if let Some(pb) = &*self.bar.lock().unwrap() {
            pb.set_position(batch as u64 + 1);
            pb.set_message(format!("loss {loss:.4}  {ips:.1} img/s"));
        }
    }
    fn epoch_end(&self, m: &EpochMetrics, classes: &[String]) {
        if let Some(pb) = self.bar.lock().unwrap().take() {
            pb.finish_and_clear();
        }
        let aucs: Vec<String> = classes
            .iter()
            .zip(&m.val_auc)
            .map(|(c, a)| format!("{c} {}", a.map_or("n/a".into(), |a| format!("{a:.3}"))))
            .collect();
        eprintln!(
            "epoch {}: train loss {:.4}, val loss {:.4}, val AUC {} ({}), {:.1} img/s, {:.0} s",
            m.epoch,
            m.train_loss,
            m.val_loss,
            m.val_auc_mean.map_or("n/a".into(), |a| format!("{a:.4}")),
            aucs.join(", "),
            m.images_per_s,
            m.seconds
        );
    }
    fn message(&self, msg: &str) {
        match &*self.bar.lock().unwrap() {
            // A hidden bar (stderr not a terminal) would swallow the line.
            Some(pb) if self.visible => pb.println(msg),
            _ => eprintln!("{msg}"),
        }
    }
}

pub fn run_train(a: TrainArgs) -> Result<ExitCode> {
    let device = parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let controls = interruptible();
    let bars = Bars::new();
    let (dir, outcome) = match &a.resume {
        Some(dir) => {
            if !dir.join("config.json").is_file() {
                anyhow::bail!(
                    "{} is not a run folder (no config.json): nothing to resume",
                    dir.display()
                );
            }
            (
                dir.clone(),
                train(dir, Start::Resume, device, &bars, &controls)?,
            )
        }
        None => {
            let (out, cfg) = new_config(&a)?;
            eprintln!(
                "training {} on {:?} -> {}",
                cfg.model.arch,
                device,
                out.display()
            );
            let start = Start::New(Box::new(cfg));
            (out.clone(), train(&out, start, device, &bars, &controls)?)
        }
    };
    report_outcome(outcome, &dir, a.allow_skips)
}

/// Controls whose stop flag Ctrl-C sets (a second Ctrl-C leaves at once).
fn interruptible() -> Controls {
    let controls = Controls::default();
    let stop = controls.stop.clone();
    ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            std::process::exit(130); // second Ctrl-C: leave now
        }
        eprintln!(
            "\ninterrupt: saving a checkpoint after this step (Ctrl-C again to quit at once)"
        );
    })
    .ok();
    controls
}

/// A new run's folder and configuration from the arguments, checked before the dataset is read
/// (the classes, when not given, are the findings with positives in its training split).
fn new_config(a: &TrainArgs) -> Result<(PathBuf, TrainConfig)> {
    let dataset = a.dataset.clone().expect("clap requires it");
    let out = a.out.clone().expect("clap requires it");
    let arch: Arch = a.arch.parse().map_err(anyhow::Error::msg)?;
    let labels = SampleOptions {
        uncertain: a.uncertain.into(),
        blank: a.blank.into(),
        frontal_only: a.frontal_only,
    };
    let mut model = ModelConfig::new(arch, a.classes.clone().unwrap_or_default());
    model.input_size = a.input;
    model.transition_dim = a.transition_dim;
    model.transition_kernel = a.transition_kernel;
    model.width = a.width;
    model.output_stride = a.output_stride;
    model.pooling = a.pool.pooling(a.lse_r);
    let loss = match a.loss {
        LossArg::Wcel => Loss::Wcel,
        LossArg::Bce => Loss::Bce,
        LossArg::Focal => Loss::Focal {
            gamma: a.focal_gamma,
        },
    };
    let mut cfg = TrainConfig {
        model,
        loss,
        dataset,
        batch_size: a.batch,
        epochs: a.epochs,
        lr: a.lr,
        weight_decay: a.weight_decay,
        seed: a.seed,
        augment: a.augment,
        val_fraction: a.val_fraction,
        init: a.init.clone(),
        checkpoint_every: a.checkpoint_every,
        cosine: a.cosine,
        labels,
    };
    config::validate_settings(&cfg)?;
    if a.classes.is_none() {
        let train_split = load_split(&cfg.dataset, Split::Train, a.val_fraction, a.seed, &labels)?;
        cfg.model.classes = classes_present(&train_split);
        if cfg.model.classes.is_empty() {
            bail!(
                "no class has a positive image in the training split of {}",
                cfg.dataset.display()
            );
        }
    }
    if let Some(dir) = a
        .init
        .as_deref()
        .filter(|d| chestx_train::init::is_model_folder(d))
    {
        // A whole model: its network (backbone, head, input side, channels, preprocessing) is the
        // run's, with the run's classes; the architecture options given here do not apply.
        cfg.model = chestx_train::init::model_of(dir, cfg.model.classes.clone())?;
        config::validate_settings(&cfg)?;
        eprintln!(
            "--init {}: a model folder; training its network ({}, input {}, {} channel(s), {})",
            dir.display(),
            cfg.model.arch,
            cfg.model.input_size,
            cfg.model.in_channels,
            if cfg.model.transition {
                "transition layer"
            } else {
                "no transition layer"
            }
        );
    }
    Ok((out, cfg))
}

fn report_outcome(outcome: Outcome, dir: &std::path::Path, allow_skips: bool) -> Result<ExitCode> {
    Ok(match outcome {
        Outcome::Finished(s) => {
            eprintln!(
                "done: {} steps; best val AUC {} at epoch {}; run in {}",
                s.global_step,
                s.best_auc.map_or("n/a".into(), |a| format!("{a:.4}")),
                s.best_epoch.map_or("-".into(), |e| e.to_string()),
                dir.display()
            );
            account(&s.skipped, dir)?;
            chestx_cli::output::batch_status(s.skipped.len(), allow_skips)
        }
        Outcome::Interrupted(s) => {
            eprintln!(
                "stopped at epoch {}, batch {} (step {}); continue with: chestx train --resume {}",
                s.epoch + 1,
                s.batch,
                s.global_step,
                dir.display()
            );
            ExitCode::from(130)
        }
    })
}

/// The films the run left out, named on stderr (the first 20) and all in `RUN/skipped.txt`.
fn account(skipped: &[String], dir: &std::path::Path) -> Result<()> {
    let list = dir.join("skipped.txt");
    if skipped.is_empty() {
        return Ok(());
    }
    chestx_cli::output::write_atomic(&list, |w| {
        for s in skipped {
            writeln!(w, "{s}")?;
        }
        Ok(())
    })?;
    let mut log = chestx_cli::output::ErrorLog::new(20);
    for s in skipped {
        log.report(s);
    }
    log.finish(Some(&list));
    eprintln!(
        "{} films left out of training or validation, listed in {}",
        skipped.len(),
        list.display()
    );
    Ok(())
}
