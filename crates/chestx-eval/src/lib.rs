//! Scoring for every stage of chestx: labeler precision/recall/F1 against gold labels (and, as the
//! model side grows, ROC AUC and localization measures).
//!
//! Pure Rust and free of any model dependency, so that predictions made by any tool can be scored
//! with the same code.

pub mod labels;

pub use labels::{
    read_gold, read_predictions, score_labels, FindingScore, LabelScores, LabelTable,
};
