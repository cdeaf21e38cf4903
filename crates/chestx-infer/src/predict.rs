//! Predictions on new images: probabilities per finding, and heatmap boxes for the findings above
//! their operating threshold.

use crate::heat::{batch_heat, BoxMethod, Localizer};
use crate::{Classifier, InferError, Thresholds};
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
    /// The probability rescaled so the threshold sits at 0.5 (torchxrayvision's `op_norm`; 0.5 for
    /// a class the model was not trained on, as there).
    pub calibrated: f32,
    pub positive: bool,
    /// False for a class the model's weights were not trained on: never positive, no boxes.
    pub trained: bool,
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
    /// Where the operating thresholds came from.
    pub thresholds: String,
    /// How the boxes were drawn.
    pub boxes: String,
    pub preprocessing: String,
}

/// Predict one decoded image; also returns each class's heatmap on the model input (for overlays).
pub fn predict_image(
    net: &dyn Classifier,
    device: Device,
    img: &Gray,
    name: &str,
    thresholds: &Thresholds,
    localizer: &Localizer,
) -> Result<(ImagePrediction, Vec<Heatmap>), InferError> {
    let size = net.input_size();
    let prep = net.preprocess();
    let input = prep.prepare(img, size as u32);
    let view = input.view;
    let x = Tensor::from_slice(&input.data)
        .view([1, input.channels as i64, size, size])
        .to_device(device);
    let (p, mut per_image) =
        batch_heat(net, &x, localizer.heat_options(net)).map_err(InferError::Config)?;
    if let Some(i) = p.iter().position(|v| !v.is_finite()) {
        return Err(InferError::Config(format!(
            "{name}: the model's {} probability is {} (non-finite network output)",
            net.classes()[i % net.classes().len()],
            p[i]
        )));
    }
    if localizer.method == BoxMethod::Erase {
        crate::erase::choose_cuts_at(net, &x, &p, &mut per_image, thresholds, localizer);
    }
    let classes = per_image.swap_remove(0);
    let mut heatmaps = Vec::with_capacity(classes.len());
    let findings = net
        .classes()
        .iter()
        .zip(&classes)
        .enumerate()
        .map(|(ci, (name, h))| {
            let threshold = thresholds.values[ci];
            let trained = !thresholds.untrained.contains(name);
            let positive = trained && p[ci] >= threshold;
            let finding = name.parse().unwrap_or(chestx_core::Finding::NoFinding);
            // Boxes are found on the input and placed on the film through the chain's view.
            let (hm, boxes) = localizer.film_boxes(h, finding, size as u32, view);
            heatmaps.push(on_film(&hm, view, img.width, img.height));
            FindingPrediction {
                finding: name.clone(),
                probability: p[ci],
                threshold,
                calibrated: if trained {
                    op_norm(p[ci], threshold)
                } else {
                    0.5
                },
                positive,
                trained,
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
        model: net.describe(),
        thresholds: thresholds.source.clone(),
        boxes: localizer.describe(net),
        preprocessing: prep.describe(size as u32),
    };
    Ok((pred, heatmaps))
}

/// torchxrayvision's `op_norm`: the probability mapped piecewise linearly so that the operating
/// threshold sits at 0.5 (0 → 0, threshold → 0.5, 1 → 1).
pub fn op_norm(p: f32, threshold: f32) -> f32 {
    if p < threshold {
        p / (threshold * 2.0)
    } else {
        1.0 - (1.0 - p) / ((1.0 - threshold) * 2.0)
    }
}

/// A heatmap on the network input placed on the film it came from: at most 512 cells a side in the
/// film's proportions, zero where the input did not reach (a centre crop's margins).
pub(crate) fn on_film(hm: &Heatmap, view: chestx_image::View, width: u32, height: u32) -> Heatmap {
    let whole = view.x0 == 0.0
        && view.y0 == 0.0
        && view.width == width as f64
        && view.height == height as f64;
    if whole {
        return hm.clone();
    }
    let scale = 512.0 / width.max(height) as f64;
    let (w, h) = (
        ((width as f64 * scale).round() as usize).max(1),
        ((height as f64 * scale).round() as usize).max(1),
    );
    let mut data = vec![0f32; w * h];
    for (y, row) in data.chunks_mut(w).enumerate() {
        let fy = (y as f64 + 0.5) / scale;
        let v = (fy - view.y0) / view.height;
        if !(0.0..1.0).contains(&v) {
            continue;
        }
        for (x, cell) in row.iter_mut().enumerate() {
            let u = ((x as f64 + 0.5) / scale - view.x0) / view.width;
            if (0.0..1.0).contains(&u) {
                let (hx, hy) = (
                    (u * hm.width as f64) as usize,
                    (v * hm.height as f64) as usize,
                );
                *cell = hm.data[hy * hm.width + hx];
            }
        }
    }
    Heatmap::new(w, h, data)
}

pub fn write_json(path: &Path, pred: &ImagePrediction) -> Result<(), InferError> {
    let json = serde_json::to_vec_pretty(pred).expect("predictions serialize");
    chestx_core::io::write_atomic(path, &json).map_err(|e| InferError::io(path, e))
}
