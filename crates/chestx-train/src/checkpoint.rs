//! One checkpoint = one safetensors file holding the model's variables (`model.*`), the optimizer's
//! moments (`adam.m.*`, `adam.v.*`) and the run state as JSON bytes (`__state__`). Written to a
//! temporary file and renamed, so a crash leaves either the old checkpoint or the new one.

use crate::adam::Adam;
use crate::TrainError;
use chestx_infer::{Checkpoint, RunState};
use std::path::Path;
use tch::{nn::VarStore, Tensor};

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
    let refs: Vec<(&str, &Tensor)> = named.iter().map(|(n, t)| (n.as_str(), t)).collect();
    chestx_core::io::write_atomic_with(path, |tmp| {
        Tensor::write_safetensors(&refs, tmp).map_err(std::io::Error::other)
    })
    .map_err(|e| TrainError::Checkpoint(path.display().to_string(), e.to_string()))
}

/// Restore the model (and, when given, the optimizer); returns the run state.
pub fn load(
    path: &Path,
    vs: &mut VarStore,
    adam: Option<&mut Adam>,
) -> Result<RunState, TrainError> {
    let ckpt = Checkpoint::read(path)?;
    ckpt.load_variables(vs)?;
    let (state, t) = ckpt.state()?;
    if let Some(adam) = adam {
        adam.t = t;
        for (prefix, map) in [("adam.m.", &mut adam.m), ("adam.v.", &mut adam.v)] {
            for (n, slot) in map.iter_mut() {
                let t = ckpt
                    .tensor(&format!("{prefix}{n}"))
                    .ok_or_else(|| ckpt.error(format!("no optimizer state for {n}")))?;
                if t.size() != slot.size() {
                    return Err(ckpt
                        .error(format!("optimizer state for {n} has shape {:?}", t.size()))
                        .into());
                }
                // The moments are views of one flat buffer: copy into them, never replace them.
                tch::no_grad(|| slot.copy_(&t.to_device(slot.device())));
            }
        }
    }
    Ok(state)
}
