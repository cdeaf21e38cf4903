//! The commands of `chestx` that need no network (label, label-eval, auc, ingest, inspect, synth)
//! and the output plumbing every command shares. Both binaries build on this library, which never
//! links libtorch: `chestx` runs these commands itself and hands the model commands (train,
//! import-weights, eval, predict, demo) to `chestx-torch`, so labelling a report costs no libtorch
//! start-up.

pub mod args;
pub mod auc;
pub mod ingest;
pub mod label;
pub mod merge;
pub mod output;
pub mod shards;
pub mod synth;
