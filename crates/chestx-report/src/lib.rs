//! Radiology report mining: the labeler that turned reports into the ChestX-ray8 labels, rebuilt.
//!
//! - [`input`] reads reports (CSV, OpenI XML and its `.tgz`, `.txt` folders) record by record.
//! - [`text`] finds sections and sentences.
//! - [`rules`] holds the vocabulary and cue lists, a data file compiled in and overridable.
//! - [`labeler`] finds mentions and decides each one's state (positive, negated, uncertain), then
//!   aggregates a report's 14 findings and `No Finding`.
//!
//! The design favours auditability and speed over linguistic depth: every label traces back to a
//! phrase, a sentence and the rule that fired, and a report is scanned by one automaton pass.

pub mod input;
pub mod labeler;
pub mod rules;
pub mod text;

pub use input::{
    for_each_input, read_inputs, ReadOptions, ReadResult, RecordError, Report, Source,
};
pub use labeler::{Labeler, Labelled, Mention, SectionPolicy};
pub use rules::{Rules, RulesError};
pub use text::Section;
