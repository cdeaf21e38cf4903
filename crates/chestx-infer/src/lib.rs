//! Using a trained network: everything after training and nothing of it.
//!
//! A *run* (the folder `chestx train` writes: `config.json`, checkpoints) is opened read-only
//! ([`Run`]); its network, or any other behind the [`Classifier`] trait, scores films
//! ([`score::score_samples`]), draws heatmaps and boxes ([`heat`]), is evaluated on a split
//! ([`evaluate`]) and predicts new images ([`predict`]). Operating thresholds are an *output* of
//! evaluation ([`Thresholds`], `thresholds.json` beside the report) and an *input* of prediction.
//!
//! **Nothing here writes into a run folder**: evaluating a run twice, or elsewhere, leaves it as it
//! was. The trainer uses this crate for its per-epoch validation pass and the run format; this crate
//! knows nothing of optimizers.

mod classifier;
pub mod erase;
pub mod evaluate;
pub mod heat;
pub mod predict;
pub mod run;
pub mod score;
pub mod subgroups;
mod thresholds;

pub use classifier::Classifier;
pub use run::{Checkpoint, Run, RunState, TrainConfig};
pub use thresholds::{youden_threshold, Thresholds};

/// What can go wrong reading a run, its data or its inputs.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error("dataset {0}: {1}")]
    Dataset(String, String),
    #[error("checkpoint {0}: {1}")]
    Checkpoint(String, String),
    #[error("{0}")]
    Config(String),
    #[error("{0}: {1}")]
    Io(String, String),
}

impl InferError {
    pub(crate) fn io(path: &std::path::Path, e: impl std::fmt::Display) -> InferError {
        InferError::Io(path.display().to_string(), e.to_string())
    }
}
