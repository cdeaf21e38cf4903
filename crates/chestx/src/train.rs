//! `chestx train`, `chestx import-weights`, `chestx synth`.

use anyhow::{bail, Context, Result};
use chestx_data::{BlankAs, SampleOptions, Split, UncertainAs};
use chestx_model::{import, parse_device, Arch, Loss, ModelConfig, Pooling};
use chestx_train::{
    classes_present, load_split, train, Controls, EpochMetrics, Observer, Outcome, TrainConfig,
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

#[derive(Clone, Copy, ValueEnum)]
pub enum LossArg {
    Wcel,
    Bce,
    Focal,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum UncertainArg {
    /// Leave uncertain labels out of the loss and the AUCs (U-Ignore).
    Ignore,
    /// Count them negative (U-Zeros).
    Zeros,
    /// Count them positive (U-Ones).
    Ones,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BlankArg {
    /// Not mentioned counts as negative.
    Zeros,
    /// Not mentioned is unknown: left out of the loss and the AUCs.
    Ignore,
}

impl From<UncertainArg> for UncertainAs {
    fn from(a: UncertainArg) -> UncertainAs {
        match a {
            UncertainArg::Ignore => UncertainAs::Ignore,
            UncertainArg::Zeros => UncertainAs::Zeros,
            UncertainArg::Ones => UncertainAs::Ones,
        }
    }
}

impl From<BlankArg> for BlankAs {
    fn from(a: BlankArg) -> BlankAs {
        match a {
            BlankArg::Zeros => BlankAs::Zeros,
            BlankArg::Ignore => BlankAs::Ignore,
        }
    }
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
    #[arg(long, default_value_t = 1e-4)]
    lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Backbone weights to start from (.pth or .safetensors; torchvision, torchxrayvision, CheXNet).
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
            Some(pb) => pb.println(msg),
            None => eprintln!("{msg}"),
        }
    }
}

pub fn run_train(a: TrainArgs) -> Result<ExitCode> {
    let device = parse_device(&a.device).map_err(anyhow::Error::msg)?;
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
    let bars = Bars::new();
    let (dir, outcome) = if let Some(dir) = &a.resume {
        (
            dir.clone(),
            train(dir, None, device, true, &bars, &controls)?,
        )
    } else {
        let dataset = a.dataset.clone().expect("clap requires it");
        let out = a.out.clone().expect("clap requires it");
        let arch: Arch = a.arch.parse().map_err(anyhow::Error::msg)?;
        if a.width.is_some() && arch != Arch::Resnet18 {
            bail!("--width applies to resnet18 only");
        }
        if a.width.is_some_and(|w| w <= 8) && a.input >= 192 && !device.is_cuda() {
            // Found here: plain PyTorch crashes the same way (channels-last weight gradient of a
            // 1×1 stride-2 convolution to ≤ 16 channels on a map of 48 px or more).
            bail!(
                "--width {} at --input {} is refused on a CPU: libtorch 2.11's backward pass corrupts \
                 memory there (oneDNN's weight gradient for layer2's 1x1 stride-2 downsample); use \
                 --width 16 or more, or --input below 192",
                a.width.unwrap_or_default(),
                a.input
            );
        }
        if ![8, 16, 32].contains(&a.output_stride) {
            bail!("--output-stride is 8, 16 or 32");
        }
        if a.output_stride != 32 && !arch.is_resnet() {
            bail!("--output-stride 8 and 16 apply to ResNets only");
        }
        let labels = SampleOptions {
            uncertain: a.uncertain.into(),
            blank: a.blank.into(),
            frontal_only: a.frontal_only,
        };
        let classes = match &a.classes {
            Some(c) => c.clone(),
            None => classes_present(&load_split(
                &dataset,
                Split::Train,
                a.val_fraction,
                a.seed,
                &labels,
            )?),
        };
        if classes.is_empty() {
            bail!(
                "no class has a positive image in the training split of {}",
                dataset.display()
            );
        }
        let mut model = ModelConfig::new(arch, classes);
        model.input_size = a.input;
        model.transition_dim = a.transition_dim;
        if a.transition_kernel < 1 || a.transition_kernel % 2 == 0 {
            bail!("--transition-kernel must be odd and positive (1, 3, …)");
        }
        model.transition_kernel = a.transition_kernel;
        model.width = a.width;
        model.output_stride = a.output_stride;
        model.pooling = match a.pool {
            PoolArg::Avg => Pooling::Avg,
            PoolArg::Max => Pooling::Max,
            PoolArg::Lse => Pooling::Lse { r: a.lse_r },
        };
        let loss = match a.loss {
            LossArg::Wcel => Loss::Wcel,
            LossArg::Bce => Loss::Bce,
            LossArg::Focal => Loss::Focal {
                gamma: a.focal_gamma,
            },
        };
        let cfg = TrainConfig {
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
        eprintln!(
            "training {} on {:?} -> {}",
            cfg.model.arch,
            device,
            out.display()
        );
        (
            out.clone(),
            train(&out, Some(cfg), device, false, &bars, &controls)?,
        )
    };
    match outcome {
        Outcome::Finished(s) => {
            eprintln!(
                "done: {} steps; best val AUC {} at epoch {}; run in {}",
                s.global_step,
                s.best_auc.map_or("n/a".into(), |a| format!("{a:.4}")),
                s.best_epoch.map_or("-".into(), |e| e.to_string()),
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Outcome::Interrupted(s) => {
            eprintln!(
                "stopped at epoch {}, batch {} (step {}); continue with: chestx train --resume {}",
                s.epoch + 1,
                s.batch,
                s.global_step,
                dir.display()
            );
            Ok(ExitCode::from(130))
        }
    }
}

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
    let tmp = a.output.with_extension("safetensors.tmp");
    tch::Tensor::write_safetensors(&refs, &tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &a.output)
        .with_context(|| format!("cannot write {}", a.output.display()))?;
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
