//! Scoring films: batches as tensors, probabilities over a list of samples, per-class AUC on the
//! labels that are known.

use crate::{Classifier, InferError};
use chestx_core::Finding;
use chestx_data::{epoch_order, Batch, Loader, LoaderConfig, Sample};
use chestx_model::Loss;
use std::sync::Arc;
use tch::{Device, Tensor};

/// Classes → their column in the 14-finding label vector.
pub fn columns_of(classes: &[String]) -> Result<Vec<usize>, InferError> {
    classes
        .iter()
        .map(|c| {
            c.parse::<Finding>()
                .ok()
                .and_then(|f| Finding::DISEASES.iter().position(|d| *d == f))
                .ok_or_else(|| {
                    InferError::Config(format!("class {c:?} is not one of the 14 findings"))
                })
        })
        .collect()
}

/// Tensors for one batch: images `[n, channels, S, S]` (channels as the loader's chain made them)
/// and the selected label columns `[n, C]`.
pub fn batch_tensors(b: &Batch, size: i64, columns: &[usize], device: Device) -> (Tensor, Tensor) {
    let channels = b.images.len() as i64 / (b.n.max(1) as i64 * size * size).max(1);
    let shape = [b.n as i64, channels, size, size];
    assert_eq!(
        b.images.len() as i64,
        shape.iter().product::<i64>(),
        "a batch's pixels fill [n, channels, size, size]"
    );
    let x = if device.is_cuda() {
        // Staged once through pinned host memory, then copied without blocking: the host goes on to
        // queue the step's kernels while the copy runs (a pageable copy would wait for the GPU to
        // finish the previous step first), and the pinned block goes back to libtorch's cache.
        // SAFETY: the view reads `b.images` (its length checked above), which outlives it; the
        // pinning has copied the pixels when it returns.
        let pixels = unsafe {
            Tensor::from_blob(
                b.images.as_ptr().cast::<u8>(),
                &shape,
                &[],
                tch::Kind::Float,
                Device::Cpu,
            )
        };
        // (`_pin_memory`, not `pin_memory`: tch passes a device, which the latter warns of.)
        pixels
            .internal_pin_memory(device)
            .to_device_(device, tch::Kind::Float, true, false)
    } else {
        Tensor::from_slice(&b.images).view(shape)
    };
    let per = b.labels.len() / b.n.max(1);
    let y: Vec<f32> = (0..b.n)
        .flat_map(|i| columns.iter().map(move |&c| b.labels[i * per + c]))
        .collect();
    (
        x,
        Tensor::from_slice(&y)
            .view([b.n as i64, columns.len() as i64])
            .to_device(device),
    )
}

/// Probabilities and truths over a list of samples, in sample order, with the mean loss.
pub struct Scored {
    /// `[N][C]` probabilities.
    pub probs: Vec<Vec<f32>>,
    /// `[N][C]` labels (NaN: unknown).
    pub truth: Vec<Vec<f32>>,
    pub mean_loss: f64,
    /// Films that could not be read, with the reason; they are not in `probs`.
    pub failed: Vec<String>,
}

/// Score every sample (in order) with `net`; `loss` gives the mean loss reported beside.
pub fn score_samples(
    net: &dyn Classifier,
    samples: Arc<Vec<Sample>>,
    columns: &[usize],
    loss: &Loss,
    batch_size: usize,
    device: Device,
) -> Scored {
    let size = net.input_size();
    let cfg = LoaderConfig {
        batch_size,
        input_size: size as u32,
        shuffle: false,
        augment: false,
        seed: 0,
        prefetch: 2,
        preprocess: net.preprocess(),
    };
    let order = epoch_order(samples.len(), 0, 0, false);
    let loader = Loader::start(samples, order, 0, 0, cfg);
    let mut s = Scored {
        probs: Vec::new(),
        truth: Vec::new(),
        mean_loss: 0.0,
        failed: Vec::new(),
    };
    let (mut loss_sum, mut n) = (0.0, 0usize);
    for b in loader.batches.iter() {
        s.failed.extend(b.failed.iter().cloned());
        if b.n == 0 {
            continue;
        }
        let (x, y) = batch_tensors(&b, size, columns, device);
        let logits = net.logits(&x);
        loss_sum += loss.compute(&logits, &y).double_value(&[]) * b.n as f64;
        n += b.n;
        let p = rows(&logits.sigmoid(), columns.len());
        let t = rows(&y, columns.len());
        s.probs.extend(p);
        s.truth.extend(t);
    }
    s.mean_loss = loss_sum / n.max(1) as f64;
    s
}

/// `[n, c]` tensor → `n` rows on the host.
fn rows(t: &Tensor, c: usize) -> Vec<Vec<f32>> {
    let v = Vec::<f32>::try_from(t.to_device(Device::Cpu).flatten(0, -1)).unwrap_or_default();
    v.chunks(c.max(1)).map(<[f32]>::to_vec).collect()
}

/// Per-class AUC of probabilities against truth (`None` for a class with one label value only
/// among its known labels).
pub fn per_class_auc(probs: &[Vec<f32>], truth: &[Vec<f32>], classes: usize) -> Vec<Option<f64>> {
    (0..classes)
        .map(|c| {
            let (s, t) = known_labels(probs, truth, c);
            chestx_eval::roc_auc(&s, &t)
        })
        .collect()
}

/// Scores and 0/1 truths of class `c` over the samples whose label is known: a NaN truth (a
/// CheXpert-layout label left out) is neither positive nor negative, so it is skipped.
pub fn known_labels(probs: &[Vec<f32>], truth: &[Vec<f32>], c: usize) -> (Vec<f64>, Vec<bool>) {
    probs
        .iter()
        .zip(truth)
        .filter(|(_, t)| !t[c].is_nan())
        .map(|(p, t)| (p[c] as f64, t[c] > 0.5))
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_labels_are_neither_positive_nor_negative_in_the_auc() {
        let probs = vec![vec![0.9f32], vec![0.1], vec![0.8], vec![0.2]];
        let nan = f32::NAN;
        let truth = vec![vec![1.0f32], vec![0.0], vec![nan], vec![1.0]];
        // Known: positives scored 0.9 and 0.2 above the one negative's 0.1 → AUC 1. Counting the
        // unknown film (0.8) as a negative would give 0.75.
        assert_eq!(per_class_auc(&probs, &truth, 1), vec![Some(1.0)]);
        let (s, t) = known_labels(&probs, &truth, 0);
        assert_eq!((s.len(), t), (3, vec![true, false, true]));
    }
}
