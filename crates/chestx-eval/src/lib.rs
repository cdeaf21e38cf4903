//! Scoring for every stage of chestx: labeler precision/recall/F1 against gold labels, ROC AUC with
//! bootstrap intervals for any model's predictions, and heatmap → box localization scores (IoBB/IoU/AFP).
//!
//! Pure Rust and free of any model dependency, so that predictions made by any tool (a PyTorch
//! script included) are scored with the same code.

pub mod auc;
pub mod audit;
pub mod boxes;
pub mod labels;
pub mod overlay;
pub mod plot;
pub mod tables;

pub use auc::{percentile_interval, roc_auc, roc_curve, youden_threshold};
pub use boxes::{boxes_from_heatmap, localization, Detection, Heatmap, LocCase, LocScore, Overlap};
pub use labels::{
    read_gold, read_predictions, score_labels, FindingScore, LabelScores, LabelTable,
};
pub use tables::{read_data_entry_labels, read_predictions_table, Predictions};
