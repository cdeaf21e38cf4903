//! The run folder `chestx train` writes, read-only: `config.json` (a [`TrainConfig`]),
//! `latest.safetensors` and `best.safetensors` ([`Checkpoint`]s), `metrics.csv`/`.json`.

use crate::InferError;
use chestx_data::{Dataset, Sample, SampleOptions, Split};
use chestx_model::layout::{relayout, ConvLayout};
use chestx_model::{ChestNet, Loss, ModelConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Device, Kind, Tensor};

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

/// Where a run stands (stored in each checkpoint).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    /// Epoch in progress (0-based).
    pub epoch: usize,
    /// Next batch of that epoch.
    pub batch: usize,
    pub global_step: u64,
    pub best_auc: Option<f64>,
    pub best_epoch: Option<usize>,
    pub finished: bool,
    /// Every film the run left out so far, sorted, once each, as `image: reason` (listed but not
    /// on disk, or unreadable): the account a run ends with, kept across resumes.
    #[serde(default)]
    pub skipped: Vec<String>,
}

impl RunState {
    /// Add films left out (each once, whatever the epoch that met it).
    pub fn note_skipped(&mut self, entries: impl IntoIterator<Item = String>) {
        let before = self.skipped.len();
        self.skipped.extend(entries);
        if self.skipped.len() != before {
            self.skipped.sort();
            self.skipped.dedup();
        }
    }
}

/// An opened run folder.
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
    pub fn open(dir: &Path, device: Device) -> Result<Run, InferError> {
        let p = Run::config_path(dir);
        let text = std::fs::read_to_string(&p).map_err(|e| InferError::io(&p, e))?;
        let config: TrainConfig = serde_json::from_str(&text)
            .map_err(|e| InferError::Config(format!("{}: {e}", p.display())))?;
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

    /// Build the network and load a checkpoint's weights into it, laid out for inference on the
    /// run's device. The `VarStore` owns the weights: keep it alive as long as the network.
    pub fn load_model(&self, checkpoint: &Path) -> Result<(VarStore, ChestNet), InferError> {
        let mut vs = VarStore::new(self.device);
        let net = ChestNet::new(&vs.root(), self.config.model.clone());
        Checkpoint::read(checkpoint)?.load_variables(&mut vs)?;
        relayout(&vs, ConvLayout::for_inference(self.device));
        Ok((vs, net))
    }

    /// Classes whose outputs the weights were not trained on: an imported model's folder lists them
    /// in its `thresholds.json` (a published weight set's blank or threshold-less outputs); a run
    /// trained here has none. Whatever thresholds are used, these are never called positive.
    pub fn untrained_classes(&self) -> Vec<String> {
        crate::Thresholds::read(
            &self.dir.join("thresholds.json"),
            &self.config.model.classes,
        )
        .map(|t| t.untrained)
        .unwrap_or_default()
    }

    /// [`Run::load_model`] keeping only the outputs that can be scored against a dataset's labels:
    /// classes that are among the 14 findings and that the weights were trained on (an imported
    /// model's `thresholds.json` lists the untrained). A published model's other outputs
    /// (torchxrayvision's "Lung Opacity", "Fracture"…) are dropped from the copy, and named.
    pub fn load_scorable_model(
        &self,
        checkpoint: &Path,
    ) -> Result<(VarStore, ChestNet, Vec<String>), InferError> {
        let (vs, net) = self.load_model(checkpoint)?;
        let untrained = self.untrained_classes();
        let scorable = |c: &String| {
            c.parse::<chestx_core::Finding>()
                .is_ok_and(|f| chestx_core::Finding::DISEASES.contains(&f))
                && !untrained.contains(c)
        };
        let classes = &net.config.classes;
        if classes.iter().all(scorable) {
            return Ok((vs, net, Vec::new()));
        }
        let keep: Vec<i64> = (0..classes.len() as i64)
            .filter(|&i| scorable(&classes[i as usize]))
            .collect();
        if keep.is_empty() {
            return Err(InferError::Config(format!(
                "none of the model's classes {classes:?} is one of the 14 findings it was trained on"
            )));
        }
        let dropped = classes.iter().filter(|c| !scorable(c)).cloned().collect();
        let config = ModelConfig {
            classes: keep.iter().map(|&i| classes[i as usize].clone()).collect(),
            ..net.config.clone()
        };
        let sub_vs = VarStore::new(self.device);
        let sub = ChestNet::new(&sub_vs.root(), config);
        let index = Tensor::from_slice(&keep).to_device(self.device);
        let from = vs.variables();
        tch::no_grad(|| {
            for (name, v) in sub_vs.variables() {
                let t = &from[&name];
                let t = if name.starts_with("prediction.") {
                    t.index_select(0, &index)
                } else {
                    t.shallow_clone()
                };
                v.shallow_clone().copy_(&t);
            }
        });
        relayout(&sub_vs, ConvLayout::for_inference(self.device));
        Ok((sub_vs, sub, dropped))
    }

    /// The run's dataset, opened.
    pub fn dataset(&self) -> Result<Dataset, InferError> {
        if self.config.dataset.as_os_str().is_empty() {
            return Err(InferError::Config(format!(
                "{} holds an imported model, which has no dataset of its own: give --dataset",
                self.dir.display()
            )));
        }
        open_dataset(&self.config.dataset)
    }

    /// A split of `ds` as this run divides it (its seed, validation share and label policy).
    pub fn split(&self, ds: &Dataset, split: Split) -> Result<Vec<Sample>, InferError> {
        let c = &self.config;
        split_of(ds, &c.dataset, split, c.val_fraction, c.seed, &c.labels)
    }
}

/// One checkpoint file: the model's variables (`model.*`), the optimizer's state (`adam.*`, read by
/// the trainer only) and the run state as JSON bytes (`__state__`).
pub struct Checkpoint {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Checkpoint {
    pub fn read(path: &Path) -> Result<Checkpoint, InferError> {
        let tensors = Tensor::read_safetensors(path)
            .map_err(|e| InferError::Checkpoint(path.display().to_string(), e.to_string()))?
            .into_iter()
            .collect();
        Ok(Checkpoint {
            path: path.to_path_buf(),
            tensors,
        })
    }

    pub fn error(&self, msg: String) -> InferError {
        InferError::Checkpoint(self.path.display().to_string(), msg)
    }

    /// The tensor stored under `name`.
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// Copy the stored weights into every variable of `vs` (names and shapes must match).
    pub fn load_variables(&self, vs: &mut VarStore) -> Result<(), InferError> {
        let mut vars = vs.variables();
        tch::no_grad(|| {
            for (n, v) in vars.iter_mut() {
                let t = self
                    .tensor(&format!("model.{n}"))
                    .ok_or_else(|| self.error(format!("no tensor for variable {n}")))?;
                if t.size() != v.size() {
                    return Err(self.error(format!(
                        "{n}: shape {:?} in the checkpoint, {:?} in the model",
                        t.size(),
                        v.size()
                    )));
                }
                // A diverged run's NaN weights would give NaN probabilities and maps downstream
                // (and maps of NaN defeat every box rule): refuse them here, by name.
                if t.is_floating_point() && !bool::try_from(t.isfinite().all()).unwrap_or(false) {
                    return Err(self.error(format!(
                        "{n} holds NaN or infinite values: the run diverged (train again with a lower --lr)"
                    )));
                }
                v.copy_(&t.to_device(v.device()));
            }
            Ok(())
        })
    }

    /// Write a checkpoint of `vs`'s weights alone (no optimizer state) with `state`: what an
    /// imported model's folder holds, read like any run's.
    pub fn write_weights(path: &Path, vs: &VarStore, state: &RunState) -> Result<(), InferError> {
        Checkpoint::write(path, vs, Vec::new(), state, 0)
    }

    /// Write one checkpoint file atomically: `vs`'s variables as `model.*`, the `extra` tensors as
    /// named (the optimizer's moments), and the run state with the optimizer's step count.
    pub fn write(
        path: &Path,
        vs: &VarStore,
        extra: Vec<(String, Tensor)>,
        state: &RunState,
        step: i64,
    ) -> Result<(), InferError> {
        // Contiguous copies on the CPU: safetensors refuses strided (e.g. channels-last) tensors.
        let cpu = |t: &Tensor| t.to_device(Device::Cpu).contiguous();
        let mut named: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("model.{n}"), cpu(&t)))
            .chain(extra.into_iter().map(|(n, t)| (n, cpu(&t))))
            .collect();
        let json = serde_json::to_vec(&(state, step)).expect("state serializes");
        named.push(("__state__".into(), Tensor::from_slice(&json)));
        named.sort_by(|a, b| a.0.cmp(&b.0));
        let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
        chestx_core::io::write_atomic_with(path, |tmp| {
            Tensor::write_safetensors(&refs, tmp).map_err(std::io::Error::other)
        })
        .map_err(|e| InferError::Checkpoint(path.display().to_string(), e.to_string()))
    }

    /// The run state and the optimizer's step count.
    pub fn state(&self) -> Result<(RunState, i64), InferError> {
        let bytes = self
            .tensor("__state__")
            .ok_or_else(|| self.error("no run state".into()))?;
        let bytes: Vec<u8> = Vec::<u8>::try_from(bytes.to_kind(Kind::Uint8))
            .map_err(|e| self.error(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| self.error(e.to_string()))
    }
}

/// Open a dataset folder (NIH or CheXpert layout), naming the folder in any error.
pub fn open_dataset(dataset: &Path) -> Result<Dataset, InferError> {
    Dataset::open(dataset)
        .map_err(|e| InferError::Dataset(dataset.display().to_string(), e.to_string()))
}

/// The samples of a split of `ds`, or a clear error when there are none.
pub fn split_of(
    ds: &Dataset,
    dataset: &Path,
    split: Split,
    val_fraction: f64,
    seed: u64,
    options: &SampleOptions,
) -> Result<Vec<Sample>, InferError> {
    nonempty(
        ds.samples(split, val_fraction, seed, options),
        dataset,
        split,
    )
}

/// A split's `(samples, listed but missing)` as [`Dataset::samples`] gives them, or a clear error
/// when no sample is on disk.
pub fn nonempty(
    (s, missing): (Vec<Sample>, Vec<String>),
    dataset: &Path,
    split: Split,
) -> Result<Vec<Sample>, InferError> {
    if s.is_empty() {
        return Err(InferError::Dataset(
            dataset.display().to_string(),
            format!(
                "no {split:?} images found on disk ({} listed but missing)",
                missing.len()
            ),
        ));
    }
    Ok(s)
}

/// [`split_of`] of a dataset folder not yet open.
pub fn load_split(
    dataset: &Path,
    split: Split,
    val_fraction: f64,
    seed: u64,
    options: &SampleOptions,
) -> Result<Vec<Sample>, InferError> {
    split_of(
        &open_dataset(dataset)?,
        dataset,
        split,
        val_fraction,
        seed,
        options,
    )
}
