//! Operating thresholds: the probability at and above which each finding is called present. They
//! are chosen on the validation split (Youden's J) by evaluation, written beside its report as
//! `thresholds.json`, and handed to prediction explicitly.

use crate::InferError;
use std::path::Path;

/// Per-class operating thresholds, with the classes they belong to and where they came from.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Thresholds {
    pub classes: Vec<String>,
    pub values: Vec<f32>,
    /// How they were chosen, e.g. "Youden's J on the validation split (412 films)".
    pub source: String,
    /// Classes the model was not trained on (a published weight set's outputs without an operating
    /// point): never called positive.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub untrained: Vec<String>,
}

impl Thresholds {
    /// One fixed cut-off for every class.
    pub fn fixed(classes: &[String], p: f32) -> Thresholds {
        Thresholds {
            classes: classes.to_vec(),
            values: vec![p; classes.len()],
            source: format!("fixed at {p}"),
            untrained: Vec::new(),
        }
    }

    /// Read a `thresholds.json` written by evaluation, checked against the model's classes.
    pub fn read(path: &Path, classes: &[String]) -> Result<Thresholds, InferError> {
        let text = std::fs::read_to_string(path).map_err(|e| InferError::io(path, e))?;
        let t: Thresholds = serde_json::from_str(&text).map_err(|e| {
            InferError::Config(format!(
                "{}: not a thresholds file written by `chestx eval` ({e})",
                path.display()
            ))
        })?;
        if t.classes != classes || t.values.len() != classes.len() {
            return Err(InferError::Config(format!(
                "{}: thresholds for {:?}, but the model predicts {:?}",
                path.display(),
                t.classes,
                classes
            )));
        }
        if let Some(v) = t.values.iter().find(|v| !(0.0..=1.0).contains(*v)) {
            return Err(InferError::Config(format!(
                "{}: threshold {v} is not a probability",
                path.display()
            )));
        }
        Ok(t)
    }

    pub fn write(&self, path: &Path) -> Result<(), InferError> {
        let json = serde_json::to_vec_pretty(self).expect("thresholds serialize");
        chestx_core::io::write_atomic(path, &json).map_err(|e| InferError::io(path, e))
    }
}

pub use chestx_eval::youden_threshold;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_round_trip_and_refuse_another_models_classes() {
        let dir = std::env::temp_dir().join(format!("chestx-th-{}", std::process::id()));
        let p = dir.join("thresholds.json");
        let classes = vec!["Mass".to_string(), "Nodule".to_string()];
        let t = Thresholds {
            classes: classes.clone(),
            values: vec![0.25, 0.7],
            source: "test".into(),
            untrained: Vec::new(),
        };
        t.write(&p).unwrap();
        assert_eq!(Thresholds::read(&p, &classes).unwrap(), t);
        let e = Thresholds::read(&p, &["Mass".to_string()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("thresholds.json") && e.contains("Nodule"), "{e}");
        std::fs::write(&p, "[0.5, 0.5]").unwrap();
        let e = Thresholds::read(&p, &classes).unwrap_err().to_string();
        assert!(e.contains("not a thresholds file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
