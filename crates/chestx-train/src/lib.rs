//! Training the ChestX-ray8 network from image-level labels: the loop, validation AUC each epoch,
//! checkpoints, and exact resume (same step, same data order, same augmentations, same optimizer
//! moments), so an interrupted run ends where an uninterrupted one would.

mod adam;
pub mod checkpoint;
pub mod evaluate;
pub mod heat;
pub mod layout;
pub mod predict;

pub use adam::Adam;
pub use checkpoint::RunState;
pub use layout::ConvLayout;

use chestx_core::Finding;
use chestx_data::{epoch_order, Dataset, Loader, LoaderConfig, Sample, SampleOptions, Split};
pub use chestx_model::ChestNet;
use chestx_model::{import, Loss, ModelConfig};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn::VarStore, Device, Tensor};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("dataset {0}: {1}")]
    Dataset(String, String),
    #[error("checkpoint {0}: {1}")]
    Checkpoint(String, String),
    #[error("{0}")]
    Config(String),
    #[error("loss became {value} at epoch {epoch}, step {step}: lower the learning rate or check the inputs")]
    NonFinite { value: f64, epoch: usize, step: u64 },
    #[error("weights: {0}")]
    Import(#[from] import::ImportError),
    #[error("{0}: {1}")]
    Io(String, String),
}

/// Everything a run needs; written to `RUN/config.json`, read back on resume and by eval/predict.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    pub model: ModelConfig,
    pub loss: Loss,
    pub dataset: PathBuf,
    pub batch_size: usize,
    pub epochs: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub augment: bool,
    /// Share of train_val patients held out for validation (unless the dataset has val_list.txt).
    pub val_fraction: f64,
    /// Backbone weights to start from (.pth or .safetensors).
    pub init: Option<PathBuf>,
    /// Save the latest checkpoint every this many steps (and at each epoch end).
    pub checkpoint_every: u64,
    /// Cosine decay of the learning rate from `lr` to 0 over the run (constant otherwise).
    #[serde(default)]
    pub cosine: bool,
    /// How a CheXpert-layout dataset's uncertain and blank labels count, and which views are kept.
    #[serde(default)]
    pub labels: SampleOptions,
}

/// Per-epoch numbers, one row of `metrics.csv`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub step: u64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub val_auc_mean: Option<f64>,
    pub val_auc: Vec<Option<f64>>,
    pub images_per_s: f64,
    pub seconds: f64,
}

/// What the loop reports as it goes (the CLI draws progress bars from it).
pub trait Observer {
    fn epoch_start(&self, _epoch: usize, _batches: usize, _first_batch: usize) {}
    fn step(&self, _epoch: usize, _batch: usize, _loss: f64, _images_per_s: f64) {}
    fn epoch_end(&self, _m: &EpochMetrics, _classes: &[String]) {}
    fn message(&self, _msg: &str) {}
}

pub struct Quiet;
impl Observer for Quiet {}

/// How a call to [`train`] ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Finished(RunState),
    /// Stopped early (Ctrl-C or a step limit); the latest checkpoint holds the exact position.
    Interrupted(RunState),
}

/// Optional controls, mostly for tests and signal handling.
#[derive(Default, Clone)]
pub struct Controls {
    /// Set from a signal handler: the loop checkpoints and stops after the current step.
    pub stop: Arc<AtomicBool>,
    /// Stop after this many steps in this call (simulates a crash in tests).
    pub max_steps: Option<u64>,
}

pub struct Run {
    pub dir: PathBuf,
    pub config: TrainConfig,
    pub device: Device,
}

impl Run {
    pub fn config_path(dir: &Path) -> PathBuf {
        dir.join("config.json")
    }
    pub fn latest(&self) -> PathBuf {
        self.dir.join("latest.safetensors")
    }
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }

    /// Open an existing run folder (for resume, eval or predict).
    pub fn open(dir: &Path, device: Device) -> Result<Run, TrainError> {
        let p = Run::config_path(dir);
        let text = std::fs::read_to_string(&p)
            .map_err(|e| TrainError::Io(p.display().to_string(), e.to_string()))?;
        let config: TrainConfig = serde_json::from_str(&text)
            .map_err(|e| TrainError::Config(format!("{}: {e}", p.display())))?;
        Ok(Run {
            dir: dir.to_path_buf(),
            config,
            device,
        })
    }

    /// The checkpoint to read: the one given, else the best, else the latest.
    pub fn checkpoint_or_best(&self, explicit: Option<&Path>) -> PathBuf {
        match explicit {
            Some(p) => p.to_path_buf(),
            None if self.best().exists() => self.best(),
            None => self.latest(),
        }
    }

    /// Build the model and load a checkpoint's weights into it (for evaluation).
    pub fn load_model(&self, checkpoint: &Path) -> Result<(VarStore, ChestNet), TrainError> {
        let mut vs = VarStore::new(self.device);
        let net = ChestNet::new(&vs.root(), self.config.model.clone());
        checkpoint::load(checkpoint, &mut vs, None)?;
        layout::relayout(&vs, ConvLayout::for_inference(self.device));
        Ok((vs, net))
    }
}

/// Write a file atomically: a temporary file beside it, then a rename.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| TrainError::Io(path.display().to_string(), e.to_string()))
}

/// Classes → their column in the 14-finding label vector.
pub fn columns_of(classes: &[String]) -> Result<Vec<usize>, TrainError> {
    classes
        .iter()
        .map(|c| {
            c.parse::<Finding>()
                .ok()
                .and_then(|f| Finding::DISEASES.iter().position(|d| *d == f))
                .ok_or_else(|| {
                    TrainError::Config(format!("class {c:?} is not one of the 14 findings"))
                })
        })
        .collect()
}

/// The findings with at least one positive among `samples`, in NIH order.
pub fn classes_present(samples: &[Sample]) -> Vec<String> {
    Finding::DISEASES
        .iter()
        .enumerate()
        .filter(|(i, _)| samples.iter().any(|s| s.labels[*i] > 0.5))
        .map(|(_, f)| f.name().to_string())
        .collect()
}

/// Open a dataset folder (NIH or CheXpert layout), naming the folder in any error.
pub fn open_dataset(dataset: &Path) -> Result<Dataset, TrainError> {
    Dataset::open(dataset)
        .map_err(|e| TrainError::Dataset(dataset.display().to_string(), e.to_string()))
}

/// Load the samples of a split, or fail clearly when there are none.
pub fn load_split(
    dataset: &Path,
    split: Split,
    val_fraction: f64,
    seed: u64,
    options: &SampleOptions,
) -> Result<Vec<Sample>, TrainError> {
    split_of(
        &open_dataset(dataset)?,
        dataset,
        split,
        val_fraction,
        seed,
        options,
    )
}

/// [`load_split`] of a dataset already open.
pub fn split_of(
    ds: &Dataset,
    dataset: &Path,
    split: Split,
    val_fraction: f64,
    seed: u64,
    options: &SampleOptions,
) -> Result<Vec<Sample>, TrainError> {
    let (s, missing) = ds.samples(split, val_fraction, seed, options);
    if s.is_empty() {
        return Err(TrainError::Dataset(
            dataset.display().to_string(),
            format!("no {split:?} images found on disk ({missing} listed but missing)"),
        ));
    }
    Ok(s)
}

/// Tensors for one batch: images `[n, 3, S, S]` and the selected label columns `[n, C]`.
pub fn batch_tensors(
    b: &chestx_data::Batch,
    size: i64,
    columns: &[usize],
    device: Device,
) -> (Tensor, Tensor) {
    let shape = [b.n as i64, 3, size, size];
    assert_eq!(
        b.images.len() as i64,
        shape.iter().product::<i64>(),
        "a batch's pixels fill [n, 3, size, size]"
    );
    let x = if device.is_cuda() {
        // Staged once through pinned host memory, then copied without blocking: the host goes on to
        // queue the step's kernels while the copy runs (a pageable copy would wait for the GPU to
        // finish the previous step first), and the pinned block goes back to libtorch's cache.
        // SAFETY: the view reads `b.images` (its length checked above), which outlives it; the
        // pinning has copied the pixels when it returns.
        let pixels = unsafe {
            Tensor::from_blob(
                b.images.as_ptr().cast::<u8>(),
                &shape,
                &[],
                tch::Kind::Float,
                Device::Cpu,
            )
        };
        // (`_pin_memory`, not `pin_memory`: tch passes a device, which the latter warns of.)
        pixels
            .internal_pin_memory(device)
            .to_device_(device, tch::Kind::Float, true, false)
    } else {
        Tensor::from_slice(&b.images).view(shape)
    };
    let per = b.labels.len() / b.n.max(1);
    let y: Vec<f32> = (0..b.n)
        .flat_map(|i| columns.iter().map(move |&c| b.labels[i * per + c]))
        .collect();
    (
        x,
        Tensor::from_slice(&y)
            .view([b.n as i64, columns.len() as i64])
            .to_device(device),
    )
}

/// Probabilities `[N, C]` (row per sample, in sample order) and the mean loss over `samples`.
pub fn predict_samples(
    net: &ChestNet,
    samples: Arc<Vec<Sample>>,
    columns: &[usize],
    loss: &Loss,
    batch_size: usize,
    device: Device,
) -> (Vec<Vec<f32>>, Vec<Vec<f32>>, f64) {
    let size = net.config.input_size;
    let cfg = LoaderConfig {
        batch_size,
        input_size: size as u32,
        shuffle: false,
        augment: false,
        seed: 0,
        prefetch: 2,
    };
    let order = epoch_order(samples.len(), 0, 0, false);
    let loader = Loader::start(samples, order, 0, 0, cfg);
    let (mut probs, mut truth, mut loss_sum, mut n) = (Vec::new(), Vec::new(), 0.0, 0usize);
    for b in loader.batches.iter() {
        if b.n == 0 {
            continue;
        }
        let (x, y) = batch_tensors(&b, size, columns, device);
        let logits = tch::no_grad(|| net.forward(&x, false).logits);
        loss_sum += loss.compute(&logits, &y).double_value(&[]) * b.n as f64;
        n += b.n;
        let p: Vec<f32> =
            Vec::<f32>::try_from(logits.sigmoid().to_device(Device::Cpu).flatten(0, -1))
                .unwrap_or_default();
        let t: Vec<f32> =
            Vec::<f32>::try_from(y.to_device(Device::Cpu).flatten(0, -1)).unwrap_or_default();
        let c = columns.len();
        for i in 0..b.n {
            probs.push(p[i * c..(i + 1) * c].to_vec());
            truth.push(t[i * c..(i + 1) * c].to_vec());
        }
    }
    (probs, truth, loss_sum / n.max(1) as f64)
}

/// Per-class AUC of probabilities against truth (`None` for a class with one label value only
/// among its known labels).
pub fn per_class_auc(probs: &[Vec<f32>], truth: &[Vec<f32>], classes: usize) -> Vec<Option<f64>> {
    (0..classes)
        .map(|c| {
            let (s, t) = known_labels(probs, truth, c);
            chestx_eval::roc_auc(&s, &t)
        })
        .collect()
}

/// Scores and 0/1 truths of class `c` over the samples whose label is known: a NaN truth (a
/// CheXpert-layout label left out) is neither positive nor negative, so it is skipped.
pub fn known_labels(probs: &[Vec<f32>], truth: &[Vec<f32>], c: usize) -> (Vec<f64>, Vec<bool>) {
    probs
        .iter()
        .zip(truth)
        .filter(|(_, t)| !t[c].is_nan())
        .map(|(p, t)| (p[c] as f64, t[c] > 0.5))
        .unzip()
}

fn mean_defined(v: &[Option<f64>]) -> Option<f64> {
    let d: Vec<f64> = v.iter().flatten().copied().collect();
    (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64)
}

/// Start (or, with `resume`, continue) the run in `dir`.
pub fn train(
    dir: &Path,
    config: Option<TrainConfig>,
    device: Device,
    resume: bool,
    obs: &dyn Observer,
    ctl: &Controls,
) -> Result<Outcome, TrainError> {
    let run = if resume {
        Run::open(dir, device)?
    } else {
        let config =
            config.ok_or_else(|| TrainError::Config("a new run needs a configuration".into()))?;
        std::fs::create_dir_all(dir)
            .map_err(|e| TrainError::Io(dir.display().to_string(), e.to_string()))?;
        if dir.join("latest.safetensors").exists() {
            return Err(TrainError::Config(format!(
                "{} already holds a run: use --resume, or another --out",
                dir.display()
            )));
        }
        let json = serde_json::to_vec_pretty(&config).expect("config serializes");
        write_atomic(&Run::config_path(dir), &json)?;
        Run {
            dir: dir.to_path_buf(),
            config,
            device,
        }
    };
    let cfg = &run.config;
    let columns = columns_of(&cfg.model.classes)?;
    let ds = open_dataset(&cfg.dataset)?;
    if let Some(about) = ds.describe() {
        obs.message(&about);
    }
    let split = |s| {
        split_of(
            &ds,
            &cfg.dataset,
            s,
            cfg.val_fraction,
            cfg.seed,
            &cfg.labels,
        )
    };
    let train_samples = Arc::new(split(Split::Train)?);
    let val_samples = Arc::new(split(Split::Val)?);
    drop(ds);
    obs.message(&format!(
        "{} training and {} validation images; classes: {}",
        train_samples.len(),
        val_samples.len(),
        cfg.model.classes.join(", ")
    ));

    tch::manual_seed(cfg.seed as i64);
    let mut vs = VarStore::new(device);
    let net = ChestNet::new(&vs.root(), cfg.model.clone());
    let mut adam = Adam::new(&vs, cfg.lr, cfg.weight_decay);
    let mut state = RunState::default();
    let mut metrics: Vec<EpochMetrics> = Vec::new();
    if resume {
        state = checkpoint::load(&run.latest(), &mut vs, Some(&mut adam))?;
        if let Ok(text) = std::fs::read_to_string(run.dir.join("metrics.json")) {
            metrics = serde_json::from_str(&text).unwrap_or_default();
        }
        obs.message(&format!(
            "resuming at epoch {}, batch {} (step {})",
            state.epoch + 1,
            state.batch,
            state.global_step
        ));
    } else if let Some(init) = &cfg.init {
        let tensors = import::read_tensors(init)?;
        let report = import::load_backbone(&vs, cfg.model.arch, &tensors, init)?;
        obs.message(&format!(
            "initialized {} backbone tensors from {} ({} missing, {} unused)",
            report.loaded,
            init.display(),
            report.missing.len(),
            report.unused.len()
        ));
    }

    let size = cfg.model.input_size;
    let mut steps_this_call = 0u64;
    while state.epoch < cfg.epochs {
        let epoch = state.epoch;
        let order = epoch_order(train_samples.len(), cfg.seed, epoch as u64, true);
        let lcfg = LoaderConfig {
            batch_size: cfg.batch_size,
            input_size: size as u32,
            shuffle: true,
            augment: cfg.augment,
            seed: cfg.seed,
            prefetch: 3,
        };
        let loader = Loader::start(
            train_samples.clone(),
            order,
            state.batch,
            epoch as u64,
            lcfg,
        );
        obs.epoch_start(epoch, loader.total_batches, state.batch);
        let t0 = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for b in loader.batches.iter() {
            for f in &b.failed {
                obs.message(&format!("skipped unreadable image: {f}"));
            }
            if b.n == 0 {
                state.batch = b.index + 1;
                continue;
            }
            let (x, y) = batch_tensors(&b, size, &columns, device);
            let out = net.forward(&x, true);
            let loss = cfg.loss.compute(&out.logits, &y);
            if cfg.cosine {
                let total = (cfg.epochs * loader.total_batches).max(1) as f64;
                let progress = (state.global_step as f64 / total).min(1.0);
                adam.lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            }
            adam.backward_step_with(&loss, &out.manual);
            // Read after the whole step is queued: on a GPU, reading it before the backward pass
            // would stall the host between forward and backward. A non-finite loss has spoilt this
            // step's update, so the run stops before any checkpoint holds it.
            let value = loss.double_value(&[]);
            if !value.is_finite() {
                return Err(TrainError::NonFinite {
                    value,
                    epoch: epoch + 1,
                    step: state.global_step,
                });
            }
            loss_sum += value * b.n as f64;
            seen += b.n;
            state.batch = b.index + 1;
            state.global_step += 1;
            steps_this_call += 1;
            obs.step(
                epoch,
                b.index,
                value,
                seen as f64 / t0.elapsed().as_secs_f64(),
            );
            let stop = ctl.stop.load(Ordering::SeqCst)
                || ctl.max_steps.is_some_and(|m| steps_this_call >= m);
            if stop || state.global_step % cfg.checkpoint_every.max(1) == 0 {
                checkpoint::save(&run.latest(), &vs, &adam, &state)?;
            }
            if stop {
                return Ok(Outcome::Interrupted(state));
            }
        }
        let train_secs = t0.elapsed().as_secs_f64();
        let (probs, truth, val_loss) = predict_samples(
            &net,
            val_samples.clone(),
            &columns,
            &cfg.loss,
            cfg.batch_size,
            device,
        );
        let val_auc = per_class_auc(&probs, &truth, columns.len());
        let m = EpochMetrics {
            epoch: epoch + 1,
            step: state.global_step,
            train_loss: loss_sum / seen.max(1) as f64,
            val_loss,
            val_auc_mean: mean_defined(&val_auc),
            val_auc,
            images_per_s: seen as f64 / train_secs,
            seconds: t0.elapsed().as_secs_f64(),
        };
        obs.epoch_end(&m, &cfg.model.classes);
        state.epoch += 1;
        state.batch = 0;
        let improved = match (m.val_auc_mean, state.best_auc) {
            (Some(a), Some(b)) => a > b,
            (Some(_), None) => true,
            _ => false,
        };
        if improved {
            state.best_auc = m.val_auc_mean;
            state.best_epoch = Some(m.epoch);
        }
        metrics.push(m);
        write_metrics(&run.dir, &metrics, &cfg.model.classes)?;
        state.finished = state.epoch >= cfg.epochs;
        checkpoint::save(&run.latest(), &vs, &adam, &state)?;
        if improved {
            checkpoint::save(&run.best(), &vs, &adam, &state)?;
        }
    }
    Ok(Outcome::Finished(state))
}

fn write_metrics(
    dir: &Path,
    metrics: &[EpochMetrics],
    classes: &[String],
) -> Result<(), TrainError> {
    let mut csv = String::from("epoch,step,train_loss,val_loss,val_auc_mean,images_per_s,seconds");
    for c in classes {
        csv.push_str(&format!(",val_auc_{c}"));
    }
    csv.push('\n');
    let f = |x: Option<f64>| x.map_or(String::new(), |v| format!("{v:.6}"));
    for m in metrics {
        csv.push_str(&format!(
            "{},{},{:.6},{:.6},{},{:.2},{:.1}",
            m.epoch,
            m.step,
            m.train_loss,
            m.val_loss,
            f(m.val_auc_mean),
            m.images_per_s,
            m.seconds
        ));
        for a in &m.val_auc {
            csv.push(',');
            csv.push_str(&f(*a));
        }
        csv.push('\n');
    }
    write_atomic(&dir.join("metrics.csv"), csv.as_bytes())?;
    write_atomic(
        &dir.join("metrics.json"),
        &serde_json::to_vec_pretty(metrics).expect("metrics serialize"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_labels_are_neither_positive_nor_negative_in_the_auc() {
        let probs = vec![vec![0.9f32], vec![0.1], vec![0.8], vec![0.2]];
        let nan = f32::NAN;
        let truth = vec![vec![1.0f32], vec![0.0], vec![nan], vec![1.0]];
        // Known: positives scored 0.9 and 0.2 above the one negative's 0.1 → AUC 1. Counting the
        // unknown film (0.8) as a negative would give 0.75.
        assert_eq!(per_class_auc(&probs, &truth, 1), vec![Some(1.0)]);
        let (s, t) = known_labels(&probs, &truth, 0);
        assert_eq!((s.len(), t), (3, vec![true, false, true]));
    }
}
