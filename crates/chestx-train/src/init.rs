//! Starting a run from a whole model folder (an imported published model, or another run): its
//! backbone, and its prediction layer's rows for every class the new run shares with it, so the new
//! run's first logits for those classes are the source's own.

use crate::TrainError;
use chestx_core::Finding;
use chestx_infer::{Checkpoint, Run};
use chestx_model::ModelConfig;
use std::path::Path;
use tch::nn::VarStore;
use tch::Device;

/// What a whole-model start took from its source.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInit {
    /// Backbone (and transition) tensors copied.
    pub tensors: usize,
    /// The new run's classes whose prediction rows came from the source.
    pub classes: Vec<String>,
}

/// Whether `init` is a model folder (a run or an imported model) rather than a weights file.
pub fn is_model_folder(init: &Path) -> bool {
    Run::config_path(init).is_file()
}

/// The network a run started from `dir` must have: the source's, with the new run's `classes`.
pub fn model_of(dir: &Path, classes: Vec<String>) -> Result<ModelConfig, TrainError> {
    let source = Run::open(dir, Device::Cpu)?;
    Ok(ModelConfig {
        classes,
        ..source.config.model
    })
}

/// Same finding, whatever the spelling (`Pleural_Thickening`, `Pleural Thickening`).
fn same_class(a: &str, b: &str) -> bool {
    match (a.parse::<Finding>(), b.parse::<Finding>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Copy the source model's weights into `vs` (a network built by [`model_of`]): every variable but
/// the prediction layer by name, and the prediction layer row by row for the classes both have
/// (and the source was trained on); the others keep their fresh initialisation.
pub fn init_from_model(
    vs: &VarStore,
    dir: &Path,
    classes: &[String],
) -> Result<ModelInit, TrainError> {
    let source = Run::open(dir, Device::Cpu)?;
    let ckpt_path = source.checkpoint_or_best(None);
    let ckpt = Checkpoint::read(&ckpt_path)?;
    let src_classes = &source.config.model.classes;
    // An output the source's weights were not trained on carries nothing to start from.
    let untrained = source.untrained_classes();
    let rows: Vec<(usize, usize)> = classes
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            src_classes
                .iter()
                .position(|s| same_class(s, c) && !untrained.contains(s))
                .map(|j| (i, j))
        })
        .collect();
    let mut init = ModelInit {
        tensors: 0,
        classes: rows.iter().map(|&(i, _)| classes[i].clone()).collect(),
    };
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, v) in &vars {
            let t = ckpt
                .tensor(&format!("model.{name}"))
                .ok_or_else(|| ckpt.error(format!("no tensor for {name}")))?;
            if name.starts_with("prediction.") {
                for &(i, j) in &rows {
                    v.get(i as i64)
                        .copy_(&t.get(j as i64).to_device(v.device()));
                }
                continue;
            }
            if t.size() != v.size() {
                return Err(ckpt.error(format!(
                    "{name}: shape {:?} in the model folder, {:?} in the run",
                    t.size(),
                    v.size()
                )));
            }
            v.shallow_clone().copy_(&t.to_device(v.device()));
            init.tensors += 1;
        }
        Ok::<(), chestx_infer::InferError>(())
    })?;
    Ok(init)
}
