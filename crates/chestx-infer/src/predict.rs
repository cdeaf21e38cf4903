//! Predictions on new images: probabilities per finding, and heatmap boxes for the findings above
//! their operating threshold.

use crate::heat::{batch_heat, Localizer};
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
    let mut buf = vec![0f32; (3 * size * size) as usize];
    img.resize(size as u32, size as u32)
        .write_chw_imagenet(&mut buf);
    let x = Tensor::from_slice(&buf)
        .view([1, 3, size, size])
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
    let classes = per_image.swap_remove(0);
    let mut heatmaps = Vec::with_capacity(classes.len());
    let findings = net
        .classes()
        .iter()
        .zip(&classes)
        .enumerate()
        .map(|(ci, (name, h))| {
            let threshold = thresholds.values[ci];
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
        model: net.describe(),
        thresholds: thresholds.source.clone(),
        boxes: localizer.describe(net),
        preprocessing: format!(
            "grayscale, resized to {size}x{size} (bilinear), ImageNet mean/std on 3 channels"
        ),
    };
    Ok((pred, heatmaps))
}

pub fn write_json(path: &Path, pred: &ImagePrediction) -> Result<(), InferError> {
    let json = serde_json::to_vec_pretty(pred).expect("predictions serialize");
    chestx_core::io::write_atomic(path, &json).map_err(|e| InferError::io(path, e))
}
