//! The training view of a dataset: image path + multi-hot labels per sample, by split.

use crate::nih::NihDataset;
use chestx_core::seed::mix64;
use chestx_core::Finding;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// One training/evaluation example.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub image: String,
    pub path: PathBuf,
    /// One value per class, in the 14-finding order: 1, 0, or NaN where the label is unknown (a
    /// CheXpert-layout finding without a column, or an uncertain/blank cell the options leave out).
    pub labels: Vec<f32>,
    pub patient: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Val,
    Test,
}

/// Whether a patient's images go to validation when it is carved from the training pool: a seeded
/// hash of the patient, so every image of a patient lands on the same side.
pub fn patient_in_val(patient: u64, val_fraction: f64, seed: u64) -> bool {
    (mix64(patient ^ mix64(seed)) % 1_000_000) as f64 / 1e6 < val_fraction
}

/// A validation fraction `chestx train` accepts: from 0 (no validation) up to, not including, 1.
pub fn check_val_fraction(f: f64) -> Result<(), String> {
    if f.is_finite() && (0.0..1.0).contains(&f) {
        Ok(())
    } else {
        Err(format!("validation fraction {f} is outside [0, 1)"))
    }
}

impl NihDataset {
    /// Whether a `train_val_list` image (with its patient) is held out for validation: listed in a
    /// `val_list.txt` beside the release when there is one, else by [`patient_in_val`].
    pub fn val_membership(&self, val_fraction: f64, seed: u64) -> impl Fn(&str, u64) -> bool {
        let val_list: Option<HashSet<String>> =
            std::fs::read_to_string(self.root.join("val_list.txt"))
                .ok()
                .map(|s| {
                    s.lines()
                        .map(|l| l.trim().to_string())
                        .filter(|l| !l.is_empty())
                        .collect()
                });
        move |image: &str, patient: u64| match &val_list {
            Some(v) => v.contains(image),
            None => patient_in_val(patient, val_fraction, seed),
        }
    }

    /// The split of every listed image, as [`NihDataset::samples`] assigns them (an image in both
    /// lists counts as test).
    pub fn split_of(&self, val_fraction: f64, seed: u64) -> HashMap<&str, Split> {
        let in_val = self.val_membership(val_fraction, seed);
        let mut out = HashMap::new();
        for name in &self.train_val {
            if let Some(e) = self.entry(name) {
                let s = if in_val(name, e.patient_id) {
                    Split::Val
                } else {
                    Split::Train
                };
                out.insert(name.as_str(), s);
            }
        }
        for name in &self.test {
            if self.entry(name).is_some() {
                out.insert(name.as_str(), Split::Test);
            }
        }
        out
    }

    /// Samples of one split whose image file exists. Validation is carved from `train_val_list` by
    /// patient (a `val_list.txt` in the dataset overrides it), so no patient is in two splits.
    /// Returns the samples and how many listed images were not found on disk.
    pub fn samples(
        &self,
        split: Split,
        val_fraction: f64,
        seed: u64,
    ) -> (Vec<Sample>, Vec<String>) {
        let in_val = self.val_membership(val_fraction, seed);
        let names: &[String] = if split == Split::Test {
            &self.test
        } else {
            &self.train_val
        };
        let (mut out, mut missing) = (Vec::new(), Vec::new());
        for name in names {
            let Some(e) = self.entry(name) else { continue };
            let keep = match split {
                Split::Test => true,
                Split::Val => in_val(name, e.patient_id),
                Split::Train => !in_val(name, e.patient_id),
            };
            if !keep {
                continue;
            }
            match self.image_path(name) {
                Some(path) => out.push(Sample {
                    image: name.clone(),
                    path,
                    labels: Finding::DISEASES
                        .iter()
                        .map(|f| if e.labels[f.index()] { 1.0 } else { 0.0 })
                        .collect(),
                    patient: e.patient_id,
                }),
                None => missing.push(name.clone()),
            }
        }
        (out, missing)
    }
}
