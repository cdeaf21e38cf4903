//! One checkpoint = one safetensors file holding the model's variables (`model.*`), the optimizer's
//! moments (`adam.m.*`, `adam.v.*`) and the run state as JSON bytes (`__state__`). Written to a
//! temporary file and renamed, so a crash leaves either the old checkpoint or the new one.

use crate::adam::Adam;
use crate::TrainError;
use std::path::Path;
use tch::{nn::VarStore, Kind, Tensor};

/// Where a run stands.
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
}

pub fn save(path: &Path, vs: &VarStore, adam: &Adam, state: &RunState) -> Result<(), TrainError> {
    // Contiguous copies on the CPU: safetensors refuses strided (e.g. channels-last) tensors.
    let cpu = |t: &Tensor| t.to_device(tch::Device::Cpu).contiguous();
    let mut named: Vec<(String, Tensor)> = Vec::new();
    for (n, t) in vs.variables() {
        named.push((format!("model.{n}"), cpu(&t)));
    }
    for (n, t) in &adam.m {
        named.push((format!("adam.m.{n}"), cpu(t)));
    }
    for (n, t) in &adam.v {
        named.push((format!("adam.v.{n}"), cpu(t)));
    }
    let json = serde_json::to_vec(&(state, adam.t)).expect("state serializes");
    named.push(("__state__".into(), Tensor::from_slice(&json)));
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let tmp = path.with_extension("safetensors.tmp");
    let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    Tensor::write_safetensors(&refs, &tmp)
        .map_err(|e| TrainError::Checkpoint(path.display().to_string(), e.to_string()))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| TrainError::Checkpoint(path.display().to_string(), e.to_string()))
}

/// Restore the model (and, when given, the optimizer); returns the run state.
pub fn load(
    path: &Path,
    vs: &mut VarStore,
    adam: Option<&mut Adam>,
) -> Result<RunState, TrainError> {
    let err = |m: String| TrainError::Checkpoint(path.display().to_string(), m);
    let tensors: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|e| err(e.to_string()))?
        .into_iter()
        .collect();
    let mut vars = vs.variables();
    tch::no_grad(|| -> Result<(), TrainError> {
        for (n, v) in vars.iter_mut() {
            let t = tensors
                .get(&format!("model.{n}"))
                .ok_or_else(|| err(format!("no tensor for variable {n}")))?;
            if t.size() != v.size() {
                return Err(err(format!(
                    "{n}: shape {:?} in the checkpoint, {:?} in the model",
                    t.size(),
                    v.size()
                )));
            }
            v.copy_(&t.to_device(v.device()));
        }
        Ok(())
    })?;
    let state_bytes = tensors
        .get("__state__")
        .ok_or_else(|| err("no run state".into()))?;
    let bytes: Vec<u8> =
        Vec::<u8>::try_from(state_bytes.to_kind(Kind::Uint8)).map_err(|e| err(e.to_string()))?;
    let (state, t): (RunState, i64) =
        serde_json::from_slice(&bytes).map_err(|e| err(e.to_string()))?;
    if let Some(adam) = adam {
        adam.t = t;
        for (prefix, map) in [("adam.m.", &mut adam.m), ("adam.v.", &mut adam.v)] {
            for (n, slot) in map.iter_mut() {
                let t = tensors
                    .get(&format!("{prefix}{n}"))
                    .ok_or_else(|| err(format!("no optimizer state for {n}")))?;
                if t.size() != slot.size() {
                    return Err(err(format!(
                        "optimizer state for {n} has shape {:?}",
                        t.size()
                    )));
                }
                // The moments are views of one flat buffer: copy into them, never replace them.
                tch::no_grad(|| slot.copy_(&t.to_device(slot.device())));
            }
        }
    }
    Ok(state)
}
