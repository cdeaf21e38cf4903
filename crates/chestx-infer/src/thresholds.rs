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
}

impl Thresholds {
    /// One fixed cut-off for every class.
    pub fn fixed(classes: &[String], p: f32) -> Thresholds {
        Thresholds {
            classes: classes.to_vec(),
            values: vec![p; classes.len()],
            source: format!("fixed at {p}"),
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

/// The score threshold maximising sensitivity + specificity − 1.
pub fn youden_threshold(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let (mut tp, mut fp, mut best, mut best_t) = (0.0, 0.0, f64::NEG_INFINITY, 0.5);
    for (k, &i) in idx.iter().enumerate() {
        if labels[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let next_differs = idx.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if next_differs {
            let j = tp / pos - fp / neg;
            if j > best {
                best = j;
                best_t = scores[i];
            }
        }
    }
    Some(best_t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn youden_threshold_separates_perfectly_ranked_scores() {
        let s = [0.9, 0.8, 0.3, 0.2];
        let l = [true, true, false, false];
        assert_eq!(youden_threshold(&s, &l), Some(0.8));
        assert_eq!(youden_threshold(&s, &[true; 4]), None);
    }

    #[test]
    fn thresholds_round_trip_and_refuse_another_models_classes() {
        let dir = std::env::temp_dir().join(format!("chestx-th-{}", std::process::id()));
        let p = dir.join("thresholds.json");
        let classes = vec!["Mass".to_string(), "Nodule".to_string()];
        let t = Thresholds {
            classes: classes.clone(),
            values: vec![0.25, 0.7],
            source: "test".into(),
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
