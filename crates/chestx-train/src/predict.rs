//! Predictions on new images: probabilities per finding, and heatmap boxes for the findings above
//! their operating threshold.

use crate::heat::{batch_heat, Localizer};
use crate::{ChestNet, TrainError};
use chestx_core::BBox;
use chestx_eval::boxes::Heatmap;
use chestx_image::Gray;
use std::path::Path;
use tch::{Device, Tensor};

#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingPrediction {
    pub finding: String,
    pub probability: f32,
    pub threshold: f32,
    pub positive: bool,
    /// Boxes in the input image's pixel coordinates (only for positive findings).
    pub boxes: Vec<BBox>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ImagePrediction {
    pub image: String,
    pub width: u32,
    pub height: u32,
    pub findings: Vec<FindingPrediction>,
    pub model: String,
    /// How the boxes were drawn.
    pub boxes: String,
    pub preprocessing: String,
}

/// Predict one decoded image; also returns each class's heatmap on the model input (for overlays).
pub fn predict_image(
    net: &ChestNet,
    device: Device,
    img: &Gray,
    name: &str,
    thresholds: &[f32],
    localizer: &Localizer,
) -> Result<(ImagePrediction, Vec<Heatmap>), TrainError> {
    let size = net.config.input_size;
    let mut buf = vec![0f32; (3 * size * size) as usize];
    img.resize(size as u32, size as u32)
        .write_chw_imagenet(&mut buf);
    let x = Tensor::from_slice(&buf)
        .view([1, 3, size, size])
        .to_device(device);
    let (p, mut per_image) =
        batch_heat(net, &x, localizer.heat_options(net)).map_err(TrainError::Config)?;
    let classes = per_image.swap_remove(0);
    let mut heatmaps = Vec::with_capacity(classes.len());
    let findings = net
        .config
        .classes
        .iter()
        .zip(&classes)
        .enumerate()
        .map(|(ci, (name, h))| {
            let threshold = thresholds.get(ci).copied().unwrap_or(0.5);
            let positive = p[ci] >= threshold;
            let finding = name.parse().unwrap_or(chestx_core::Finding::NoFinding);
            let (hm, boxes) =
                localizer.class_boxes(h, finding, size as u32, img.width as f64, img.height as f64);
            heatmaps.push(hm);
            FindingPrediction {
                finding: name.clone(),
                probability: p[ci],
                threshold,
                positive,
                // Boxes only where the finding is called.
                boxes: if positive { boxes } else { Vec::new() },
            }
        })
        .collect();
    let pred = ImagePrediction {
        image: name.to_string(),
        width: img.width,
        height: img.height,
        findings,
        model: format!(
            "{} + transition {} + {:?}",
            net.config.arch, net.config.transition_dim, net.config.pooling
        ),
        boxes: localizer.describe(net),
        preprocessing: format!(
            "grayscale, resized to {size}x{size} (bilinear), ImageNet mean/std on 3 channels"
        ),
    };
    Ok((pred, heatmaps))
}

/// Per-class operating thresholds: Youden's J on the validation split (written by `chestx eval`), or
/// 0.5 when none were computed.
pub fn load_thresholds(run_dir: &Path, classes: usize) -> Vec<f32> {
    std::fs::read_to_string(run_dir.join("thresholds.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Vec<f32>>(&t).ok())
        .filter(|v| v.len() == classes)
        .unwrap_or_else(|| vec![0.5; classes])
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

pub fn write_json(path: &Path, pred: &ImagePrediction) -> Result<(), TrainError> {
    crate::write_atomic(path, &serde_json::to_vec_pretty(pred).expect("serializes"))
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
}
