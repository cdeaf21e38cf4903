//! One checkpoint = one safetensors file holding the model's variables (`model.*`), the optimizer's
//! moments (`adam.m.*`, `adam.v.*`) and the run state as JSON bytes (`__state__`). Written to a
//! temporary file and renamed, so a crash leaves either the old checkpoint or the new one.

use crate::adam::Adam;
use crate::TrainError;
use chestx_infer::{Checkpoint, RunState};
use std::path::Path;
use tch::nn::VarStore;

pub fn save(path: &Path, vs: &VarStore, adam: &Adam, state: &RunState) -> Result<(), TrainError> {
    let moments = [("adam.m.", &adam.m), ("adam.v.", &adam.v)]
        .into_iter()
        .flat_map(|(prefix, map)| {
            map.iter()
                .map(move |(n, t)| (format!("{prefix}{n}"), t.shallow_clone()))
        })
        .collect();
    Ok(Checkpoint::write(path, vs, moments, state, adam.t)?)
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
