//! Phantom studies. Without pretrained weights or a labelled hospital archive, weak supervision can
//! still be proven end to end: implant lesions with known boxes into radiographs, train on the
//! image-level labels only, and check that the heatmaps find the lesions.
//!
//! Three lesion classes differ the way the real findings do: a small round nodule-like opacity, a
//! larger lobulated mass-like opacity, and a basal effusion-like opacity with a meniscus. Each is
//! blended with a soft edge at a random contrast, and the whole image gets fresh noise, so no single
//! pixel value gives a lesion away.

mod background;
mod lesion;
mod write;

pub use background::{procedural_background, Backgrounds};
pub use lesion::{implant, Lesion, LesionKind};
pub use write::{write_dataset, SynthConfig, SynthError, SynthSummary};
