//! The vocabulary every other chestx crate speaks: the 14 ChestX-ray14 findings plus `No Finding`
//! in their canonical order, the CheXpert label states, boxes in image coordinates, and where a
//! network's heatmap cells sit on its input.
//!
//! This crate has no heavy dependencies on purpose: the labeler, imaging, evaluation and model crates
//! all depend on it, and none of them should pay for the others.

mod bbox;
mod finding;
mod grid;
pub mod io;
mod label;
pub mod seed;
pub mod shard;
pub mod walk;

pub use bbox::BBox;
pub use finding::{Finding, ParseFindingError};
pub use grid::{CellGrid, Window};
pub use label::{LabelState, ReportLabels};
