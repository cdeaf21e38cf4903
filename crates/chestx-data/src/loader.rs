//! The batch loader: decode → (augment) → resize → ImageNet-normalize, in parallel, on a producer
//! thread that stays a bounded number of batches ahead of the consumer, so decoding overlaps compute.
//!
//! Everything random is seeded by (seed, epoch, sample), so an epoch's order and augmentations are
//! the same whether a run is fresh or resumed mid-epoch. A file that fails to decode is reported in
//! its batch and left out; it never stalls the loader.

use crate::samples::Sample;
use chestx_image::{Gray, Preprocess, Raster, Region};
use crossbeam_channel::{bounded, Receiver};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Square side of the network input.
    pub input_size: u32,
    pub shuffle: bool,
    /// Random crop (85–100% of each side in the film's proportions, anywhere), a mirror for half the
    /// films, and ±10% brightness/contrast.
    pub augment: bool,
    pub seed: u64,
    /// Batches decoded ahead of the consumer.
    pub prefetch: usize,
    /// How a film becomes the network's input (a published model's own chain, else ImageNet's).
    pub preprocess: Preprocess,
}

/// One batch, ready for the model.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Position of this batch in the epoch.
    pub index: usize,
    /// `n × channels × S × S`, as the loader's [`Preprocess`] makes them.
    pub images: Vec<f32>,
    /// `n × C`.
    pub labels: Vec<f32>,
    pub n: usize,
    /// Indices into the sample list, in batch order.
    pub samples: Vec<usize>,
    /// Files that could not be read, with the reason; they are not in the batch.
    pub failed: Vec<String>,
}

/// The order of one epoch: a seeded permutation (or the identity without shuffling).
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(
            seed ^ epoch.wrapping_mul(0x9E3779B97F4A7C15),
        ));
    }
    order
}

/// Load one sample into `3 × S × S` ImageNet-normalized floats. The crop is resampled straight
/// from the decoded film (8-bit films stay 8-bit until they are small: see [`Raster`]).
pub fn prepare(
    sample: &Sample,
    size: u32,
    augment: Option<ChaCha8Rng>,
    out: &mut [f32],
) -> Result<(), String> {
    prepare_with(sample, size, Preprocess::Imagenet, augment, out)
}

/// Load one sample into `channels × S × S` floats made by `preprocess`. Augmentation (a crop of
/// the film, a mirror, gain) comes first, on the film; then the chain, as for prediction.
pub fn prepare_with(
    sample: &Sample,
    size: u32,
    preprocess: Preprocess,
    augment: Option<ChaCha8Rng>,
    out: &mut [f32],
) -> Result<(), String> {
    if preprocess != Preprocess::Imagenet {
        let mut film = preprocess.open(&sample.path).map_err(|e| e.to_string())?;
        if let Some(rng) = augment {
            film = augmented(&Raster::Float(film), rng, None);
        }
        let p = preprocess.prepare(&film, size);
        out.copy_from_slice(&p.data);
        return Ok(());
    }
    let film = Raster::open(&sample.path).map_err(|e| e.to_string())?;
    let img = match augment {
        None => film.resample(film.full(), size, size),
        Some(rng) => augmented(&film, rng, Some(size)),
    };
    img.write_chw_imagenet(out);
    Ok(())
}

/// A seeded crop of 85–100% of each side in the film's own proportions (evaluation and prediction
/// take the whole film, so a film that is not square is squeezed the same way in training; on
/// NIH's square films this is a square crop), resampled to `size²` (or kept at its own size), a
/// mirror for half the films and ±10% gain and bias.
fn augmented(film: &Raster, mut rng: ChaCha8Rng, size: Option<u32>) -> Gray {
    let (w, h) = (film.width(), film.height());
    let scale = rng.random_range(0.85f32..=1.0);
    let cw = ((w as f32 * scale) as u32).clamp(1, w);
    let ch = ((h as f32 * scale) as u32).clamp(1, h);
    let x0 = rng.random_range(0..=w - cw);
    let y0 = rng.random_range(0..=h - ch);
    let (gain, bias) = (
        rng.random_range(0.9f32..1.1),
        rng.random_range(-0.1f32..0.1),
    );
    let crop = Region {
        x0,
        y0,
        width: cw,
        height: ch,
    };
    let (ow, oh) = size.map_or((cw, ch), |s| (s, s));
    let mut g = film.resample(crop, ow, oh);
    // Mirror half the films, as CheXNet and most chest work do: findings occur on both sides.
    // (After the resample, which the mirror commutes with: the filter is symmetric.)
    if rng.random_bool(0.5) {
        g.mirror();
    }
    g.data
        .iter_mut()
        .for_each(|v| *v = (*v * gain + bias).clamp(0.0, 1.0));
    g
}

/// A running loader for one epoch.
pub struct Loader {
    pub batches: Receiver<Batch>,
    pub total_batches: usize,
}

impl Loader {
    /// Start producing the batches of `order` from batch `first_batch` on.
    pub fn start(
        samples: Arc<Vec<Sample>>,
        order: Vec<usize>,
        first_batch: usize,
        epoch: u64,
        cfg: LoaderConfig,
    ) -> Loader {
        let bs = cfg.batch_size.max(1);
        let total_batches = order.len().div_ceil(bs);
        let (tx, rx) = bounded(cfg.prefetch.max(1));
        std::thread::spawn(move || {
            let px = cfg.preprocess.channels() * (cfg.input_size * cfg.input_size) as usize;
            for (index, chunk) in order.chunks(bs).enumerate().skip(first_batch) {
                let classes = samples.first().map_or(0, |s| s.labels.len());
                let results: Vec<(usize, Result<Vec<f32>, String>)> = chunk
                    .par_iter()
                    .map(|&i| {
                        let rng = cfg.augment.then(|| {
                            ChaCha8Rng::seed_from_u64(
                                cfg.seed
                                    ^ (epoch << 40)
                                    ^ (i as u64).wrapping_mul(0xA24BAED4963EE407),
                            )
                        });
                        let mut buf = vec![0f32; px];
                        (
                            i,
                            prepare_with(
                                &samples[i],
                                cfg.input_size,
                                cfg.preprocess,
                                rng,
                                &mut buf,
                            )
                            .map(|_| buf),
                        )
                    })
                    .collect();
                let mut batch = Batch {
                    index,
                    images: Vec::with_capacity(chunk.len() * px),
                    labels: Vec::with_capacity(chunk.len() * classes),
                    n: 0,
                    samples: Vec::with_capacity(chunk.len()),
                    failed: Vec::new(),
                };
                for (i, r) in results {
                    match r {
                        Ok(px) => {
                            batch.images.extend_from_slice(&px);
                            batch.labels.extend_from_slice(&samples[i].labels);
                            batch.samples.push(i);
                            batch.n += 1;
                        }
                        Err(e) => batch.failed.push(e),
                    }
                }
                if tx.send(batch).is_err() {
                    return; // The consumer stopped.
                }
            }
        });
        Loader {
            batches: rx,
            total_batches,
        }
    }
}
