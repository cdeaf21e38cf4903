//! Training the ChestX-ray8 network from image-level labels: the loop, validation AUC each epoch,
//! checkpoints, and exact resume (same step, same data order, same augmentations, same optimizer
//! moments), so an interrupted run ends where an uninterrupted one would.

mod adam;
pub mod checkpoint;
pub mod config;
pub mod init;

pub use adam::Adam;
pub use chestx_infer::{Run, RunState, TrainConfig};

use chestx_core::Finding;
use chestx_data::{epoch_order, Loader, LoaderConfig, Sample, Split};
use chestx_infer::run::nonempty;
use chestx_infer::score::{batch_tensors, columns_of, per_class_auc, score_samples};
use chestx_infer::InferError;
pub use chestx_model::ChestNet;
use chestx_model::{import, GradBuffers};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn::VarStore, Device};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Run(#[from] InferError),
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

/// The findings with at least one positive among `samples`, in NIH order.
pub fn classes_present(samples: &[Sample]) -> Vec<String> {
    Finding::DISEASES
        .iter()
        .enumerate()
        .filter(|(i, _)| samples.iter().any(|s| s.labels[*i] > 0.5))
        .map(|(_, f)| f.name().to_string())
        .collect()
}

fn mean_defined(v: &[Option<f64>]) -> Option<f64> {
    let d: Vec<f64> = v.iter().flatten().copied().collect();
    (!d.is_empty()).then(|| d.iter().sum::<f64>() / d.len() as f64)
}

/// How [`train`] begins: a new run with its configuration, or the run already in the folder.
#[derive(Debug, Clone)]
pub enum Start {
    New(Box<TrainConfig>),
    Resume,
}

/// Start or continue the run in `dir`; returns when the run is finished or stopped.
pub fn train(
    dir: &Path,
    start: Start,
    device: Device,
    obs: &dyn Observer,
    ctl: &Controls,
) -> Result<Outcome, TrainError> {
    let resume = matches!(start, Start::Resume);
    let run = open_or_plan(dir, start, device)?;
    // The data is checked before a new run's folder is written: a refused run leaves nothing.
    let data = TrainData::load(&run, obs)?;
    if !resume {
        write_config(&run)?;
    }
    let mut session = Session::begin(&run, resume, obs)?;
    session.state.note_skipped(data.missing.iter().cloned());
    let mut steps_this_call = 0u64;
    while session.state.epoch < run.config.epochs {
        let t0 = Instant::now();
        let Some((loss_sum, seen)) = session.train_epoch(&data, ctl, &mut steps_this_call)? else {
            return Ok(Outcome::Interrupted(session.state));
        };
        session.end_epoch(&data, loss_sum, seen, t0)?;
    }
    Ok(Outcome::Finished(session.state))
}

/// The existing run (resume), or a new one checked but not yet written.
fn open_or_plan(dir: &Path, start: Start, device: Device) -> Result<Run, TrainError> {
    let config = match start {
        Start::Resume => return Ok(Run::open(dir, device)?),
        Start::New(c) => *c,
    };
    config::validate(&config)?;
    if dir.join("latest.safetensors").exists() {
        return Err(TrainError::Config(format!(
            "{} already holds a run: use --resume, or another --out",
            dir.display()
        )));
    }
    Ok(Run {
        dir: dir.to_path_buf(),
        config,
        device,
    })
}

/// A new run's folder and its `config.json`.
fn write_config(run: &Run) -> Result<(), TrainError> {
    std::fs::create_dir_all(&run.dir)
        .map_err(|e| TrainError::Io(run.dir.display().to_string(), e.to_string()))?;
    let json = serde_json::to_vec_pretty(&run.config).expect("config serializes");
    write_atomic(&Run::config_path(&run.dir), &json)
}

/// The films a run trains and validates on.
struct TrainData {
    columns: Vec<usize>,
    train: Arc<Vec<Sample>>,
    val: Arc<Vec<Sample>>,
    /// Films the dataset lists that are not on disk, with the reason.
    missing: Vec<String>,
}

impl TrainData {
    fn load(run: &Run, obs: &dyn Observer) -> Result<TrainData, TrainError> {
        let cfg = &run.config;
        let columns = columns_of(&cfg.model.classes)?;
        let ds = run.dataset()?;
        if let Some(about) = ds.describe() {
            obs.message(&about);
        }
        // One listing per split: the missing films are reported, then the samples are checked.
        let mut missing = Vec::new();
        let mut split = |s| {
            let listed = ds.samples(s, cfg.val_fraction, cfg.seed, &cfg.labels);
            if !listed.1.is_empty() {
                obs.message(&format!(
                    "warning: {} {s:?} images listed by {} are not on disk and are left out",
                    listed.1.len(),
                    cfg.dataset.display()
                ));
                missing.extend(listed.1.iter().map(|name| {
                    format!("{name}: listed in the dataset ({s:?} split) but not on disk")
                }));
            }
            nonempty(listed, &cfg.dataset, s)
        };
        let (train, val) = (split(Split::Train)?, split(Split::Val)?);
        let lacking: Vec<&str> = columns
            .iter()
            .zip(&cfg.model.classes)
            .filter(|(&c, _)| !train.iter().any(|s| s.labels[c] > 0.5))
            .map(|(_, name)| name.as_str())
            .collect();
        if !lacking.is_empty() {
            return Err(TrainError::Config(format!(
                "no training image of {} is positive for {}: nothing to learn it from (leave it out of --classes)",
                cfg.dataset.display(),
                lacking.join(", ")
            )));
        }
        obs.message(&format!(
            "{} training and {} validation images; classes: {}",
            train.len(),
            val.len(),
            cfg.model.classes.join(", ")
        ));
        Ok(TrainData {
            columns,
            train: Arc::new(train),
            val: Arc::new(val),
            missing,
        })
    }
}

/// The network, optimizer and position of a run being trained.
struct Session<'a> {
    run: &'a Run,
    obs: &'a dyn Observer,
    vs: VarStore,
    net: ChestNet,
    adam: Adam,
    grad_buffers: GradBuffers,
    state: RunState,
    metrics: Vec<EpochMetrics>,
}

impl<'a> Session<'a> {
    /// A fresh network (from `init` weights when given), or the run's latest checkpoint.
    fn begin(run: &'a Run, resume: bool, obs: &'a dyn Observer) -> Result<Session<'a>, TrainError> {
        let cfg = &run.config;
        tch::manual_seed(cfg.seed as i64);
        let mut vs = VarStore::new(run.device);
        let net = ChestNet::new(&vs.root(), cfg.model.clone());
        let mut adam = Adam::new(&vs, cfg.lr, cfg.weight_decay);
        let (mut state, mut metrics) = (RunState::default(), Vec::new());
        if resume {
            if !run.latest().exists() {
                return Err(TrainError::Config(format!(
                    "{} holds no checkpoint yet (the run stopped before its first): start it again without --resume",
                    run.dir.display()
                )));
            }
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
        } else if let Some(init) = cfg.init.as_deref().filter(|i| init::is_model_folder(i)) {
            let done = init::init_from_model(&vs, init, &cfg.model.classes)?;
            obs.message(&format!(
                "initialized from the model in {}: {} tensors, prediction rows of {} of {} classes ({})",
                init.display(),
                done.tensors,
                done.classes.len(),
                cfg.model.classes.len(),
                done.classes.join(", ")
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
        Ok(Session {
            run,
            obs,
            vs,
            net,
            adam,
            grad_buffers: GradBuffers::default(),
            state,
            metrics,
        })
    }

    /// The rest of the current epoch: `(loss sum, films seen)`, or `None` when stopped (the latest
    /// checkpoint then holds the exact position).
    fn train_epoch(
        &mut self,
        data: &TrainData,
        ctl: &Controls,
        steps_this_call: &mut u64,
    ) -> Result<Option<(f64, usize)>, TrainError> {
        let cfg = &self.run.config;
        let epoch = self.state.epoch;
        let lcfg = LoaderConfig {
            batch_size: cfg.batch_size,
            input_size: cfg.model.input_size as u32,
            shuffle: true,
            augment: cfg.augment,
            seed: cfg.seed,
            prefetch: 3,
            preprocess: cfg.model.preprocess,
        };
        let order = epoch_order(data.train.len(), cfg.seed, epoch as u64, true);
        let loader = Loader::start(
            data.train.clone(),
            order,
            self.state.batch,
            epoch as u64,
            lcfg,
        );
        self.obs
            .epoch_start(epoch, loader.total_batches, self.state.batch);
        let t0 = Instant::now();
        let (mut loss_sum, mut seen) = (0.0, 0usize);
        for b in loader.batches.iter() {
            self.skip_unreadable(&b.failed);
            self.state.batch = b.index + 1;
            if b.n == 0 {
                continue;
            }
            let value = self.step(&b, &data.columns, loader.total_batches)?;
            loss_sum += value * b.n as f64;
            seen += b.n;
            *steps_this_call += 1;
            let ips = seen as f64 / t0.elapsed().as_secs_f64();
            self.obs.step(epoch, b.index, value, ips);
            let stop = ctl.stop.load(Ordering::SeqCst)
                || ctl.max_steps.is_some_and(|m| *steps_this_call >= m);
            if stop
                || self
                    .state
                    .global_step
                    .is_multiple_of(cfg.checkpoint_every.max(1))
            {
                checkpoint::save(&self.run.latest(), &self.vs, &self.adam, &self.state)?;
            }
            if stop {
                return Ok(None);
            }
        }
        Ok(Some((loss_sum, seen)))
    }

    /// One optimizer step on a batch; returns its loss.
    fn step(
        &mut self,
        b: &chestx_data::Batch,
        columns: &[usize],
        batches: usize,
    ) -> Result<f64, TrainError> {
        let cfg = &self.run.config;
        let (x, y) = batch_tensors(b, cfg.model.input_size, columns, self.run.device);
        let (loss, grads) = self.net.loss_and_gradients(
            &x,
            &y,
            &cfg.loss,
            &self.adam.parameters(),
            &mut self.grad_buffers,
        );
        if cfg.cosine {
            let total = (cfg.epochs * batches).max(1) as f64;
            let progress = (self.state.global_step as f64 / total).min(1.0);
            self.adam.lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        }
        self.adam.update(&grads);
        // Read after the whole step is queued: on a GPU, reading it before the backward pass
        // would stall the host between forward and backward. A non-finite loss has spoilt this
        // step's update, so the run stops before any checkpoint holds it.
        let value = loss.double_value(&[]);
        if !value.is_finite() {
            return Err(TrainError::NonFinite {
                value,
                epoch: self.state.epoch + 1,
                step: self.state.global_step,
            });
        }
        self.state.global_step += 1;
        Ok(value)
    }

    /// Validation AUC, metrics files and the epoch's checkpoints (best when it improved).
    /// Films that could not be read: said once each, and kept in the run's account.
    fn skip_unreadable(&mut self, failed: &[String]) {
        for f in failed {
            let entry = format!("{f} (unreadable, left out)");
            if self.state.skipped.binary_search(&entry).is_err() {
                self.obs.message(&format!("skipped unreadable image: {f}"));
            }
        }
        self.state
            .note_skipped(failed.iter().map(|f| format!("{f} (unreadable, left out)")));
    }

    fn end_epoch(
        &mut self,
        data: &TrainData,
        loss_sum: f64,
        seen: usize,
        t0: Instant,
    ) -> Result<(), TrainError> {
        let cfg = &self.run.config;
        let train_secs = t0.elapsed().as_secs_f64();
        let v = score_samples(
            &self.net,
            data.val.clone(),
            &data.columns,
            &cfg.loss,
            cfg.batch_size,
            self.run.device,
        );
        self.skip_unreadable(&v.failed);
        let val_auc = per_class_auc(&v.probs, &v.truth, data.columns.len());
        let m = EpochMetrics {
            epoch: self.state.epoch + 1,
            step: self.state.global_step,
            train_loss: loss_sum / seen.max(1) as f64,
            val_loss: v.mean_loss,
            val_auc_mean: mean_defined(&val_auc),
            val_auc,
            images_per_s: seen as f64 / train_secs,
            seconds: t0.elapsed().as_secs_f64(),
        };
        self.obs.epoch_end(&m, &cfg.model.classes);
        let s = &mut self.state;
        s.epoch += 1;
        s.batch = 0;
        let improved = match (m.val_auc_mean, s.best_auc) {
            (Some(a), Some(b)) => a > b,
            (Some(_), None) => true,
            _ => false,
        };
        if improved {
            s.best_auc = m.val_auc_mean;
            s.best_epoch = Some(m.epoch);
        }
        s.finished = s.epoch >= cfg.epochs;
        self.metrics.push(m);
        write_metrics(&self.run.dir, &self.metrics, &cfg.model.classes)?;
        checkpoint::save(&self.run.latest(), &self.vs, &self.adam, &self.state)?;
        if improved {
            checkpoint::save(&self.run.best(), &self.vs, &self.adam, &self.state)?;
        }
        Ok(())
    }
}

/// Write a run file atomically (see [`chestx_core::io::write_atomic`]).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    chestx_core::io::write_atomic(path, bytes)
        .map_err(|e| TrainError::Io(path.display().to_string(), e.to_string()))
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
