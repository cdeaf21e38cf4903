//! How a network wants its input: the chain from a file's bytes to the values it was trained on.
//!
//! Our runs use [`Preprocess::Imagenet`]. A published model's weights mean something only on the
//! input its authors fed it, so each source's chain is written out here exactly — torchxrayvision's
//! [-1024, 1024] scaling, centre crop and scikit-image resize; CheXNet's torchvision transforms —
//! and checked against the source libraries themselves (`python/tests/test_published.py`).

use crate::{dicom, Gray};
use serde::{Deserialize, Serialize};

/// A preprocessing chain, stored with the model that needs it.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Preprocess {
    /// chestx's own: DICOM windowed for display, the whole film resized to the input (antialiased
    /// bilinear), the gray value on 3 channels with ImageNet mean and std.
    #[default]
    Imagenet,
    /// torchxrayvision: 8-bit values (or DICOM stored values over 2^BitsStored − 1, MONOCHROME1
    /// inverted, no window) scaled to [-1024, 1024], the centred square of the film's short side
    /// (`XRayCenterCrop`), scikit-image's `resize` (Gaussian anti-aliasing, bilinear, constant
    /// edges: `XRayResizer`), one channel.
    Xrv,
    /// CheXNet as re-implemented with torchvision: the short side resized to `resize` (bilinear,
    /// antialiased), the centred input square cropped (`CenterCrop`), the gray value on 3 channels
    /// with ImageNet mean and std.
    Chexnet { resize: u32 },
}

/// Where the network's input square lies on the film, in film pixels: boxes and heatmaps found on
/// the input map back through it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    pub x0: f64,
    pub y0: f64,
    pub width: f64,
    pub height: f64,
}

/// A film made ready for a network.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// `channels × size × size`, channel-major.
    pub data: Vec<f32>,
    pub channels: usize,
    pub view: View,
}

impl Preprocess {
    /// Channels of the network input.
    pub fn channels(&self) -> usize {
        match self {
            Preprocess::Xrv => 1,
            _ => 3,
        }
    }

    /// Decode PNG, JPEG or DICOM bytes as this chain reads them (DICOM scaling differs).
    pub fn decode(&self, bytes: &[u8]) -> Result<Gray, String> {
        match self {
            p if p.reads_dicom_as_stored()
                && (dicom::is_dicom(bytes) || dicom::looks_like_dicom(bytes)) =>
            {
                dicom::decode_as(bytes, dicom::Scaling::StoredRange).map(|(g, _)| g)
            }
            _ => Gray::decode(bytes),
        }
    }

    /// Whether DICOM files are read as stored values rather than as displayed (a viewer, or an
    /// overlay, then wants [`Gray::decode`]'s windowed film beside this chain's input).
    pub fn reads_dicom_as_stored(&self) -> bool {
        matches!(self, Preprocess::Xrv)
    }

    /// Decode the file at `path` (see [`Preprocess::decode`]); errors name the file.
    pub fn open(&self, path: &std::path::Path) -> Result<Gray, crate::ImageError> {
        crate::decode_file(path, |b| self.decode(b))
    }

    /// The network input of side `size` for a decoded film.
    pub fn prepare(&self, img: &Gray, size: u32) -> Prepared {
        match *self {
            Preprocess::Imagenet => {
                let mut data = vec![0f32; 3 * (size * size) as usize];
                img.resize(size, size).write_chw_imagenet(&mut data);
                Prepared {
                    data,
                    channels: 3,
                    view: self.view(img.width, img.height, size),
                }
            }
            Preprocess::Xrv => xrv(img, size),
            Preprocess::Chexnet { resize } => chexnet(img, resize, size),
        }
    }

    /// Where the input square of side `size` lies on a `width × height` film (what
    /// [`Preprocess::prepare`] reads), computed from the sizes alone.
    pub fn view(&self, width: u32, height: u32, size: u32) -> View {
        match *self {
            Preprocess::Imagenet => View {
                x0: 0.0,
                y0: 0.0,
                width: width as f64,
                height: height as f64,
            },
            Preprocess::Xrv => {
                let crop = width.min(height);
                View {
                    x0: (width / 2 - crop / 2) as f64,
                    y0: (height / 2 - crop / 2) as f64,
                    width: crop as f64,
                    height: crop as f64,
                }
            }
            Preprocess::Chexnet { resize } => {
                let ((rw, rh), (left, top)) = chexnet_geometry(width, height, resize, size);
                let (sx, sy) = (width as f64 / rw as f64, height as f64 / rh as f64);
                View {
                    x0: left as f64 * sx,
                    y0: top as f64 * sy,
                    width: size as f64 * sx,
                    height: size as f64 * sy,
                }
            }
        }
    }

    /// The chain in words, for prediction files and reports.
    pub fn describe(&self, size: u32) -> String {
        match self {
            Preprocess::Imagenet => format!(
                "grayscale, resized to {size}x{size} (bilinear, antialiased), ImageNet mean/std on 3 channels; DICOM: modality LUT, VOI window, MONOCHROME1 inverted"
            ),
            Preprocess::Xrv => format!(
                "torchxrayvision: [-1024, 1024] scaling, centre crop, scikit-image resize to {size}x{size}, 1 channel; DICOM: stored values over 2^BitsStored - 1, MONOCHROME1 inverted, no window"
            ),
            Preprocess::Chexnet { resize } => format!(
                "CheXNet: short side to {resize} (bilinear, antialiased), centre crop {size}x{size}, ImageNet mean/std on 3 channels"
            ),
        }
    }
}

fn xrv(img: &Gray, size: u32) -> Prepared {
    let view = Preprocess::Xrv.view(img.width, img.height, size);
    let (w, crop) = (img.width as usize, view.width as usize);
    let (x0, y0) = (view.x0 as usize, view.y0 as usize);
    let mut square = Vec::with_capacity(crop * crop);
    for y in y0..y0 + crop {
        square.extend(
            img.data[y * w + x0..y * w + x0 + crop]
                .iter()
                .map(|&g| (2.0 * g - 1.0) * 1024.0),
        );
    }
    Prepared {
        data: skimage_resize(&square, crop, size as usize),
        channels: 1,
        view,
    }
}

/// torchvision's `Resize(resize)` then `CenterCrop(size)` on a `width × height` film: the resized
/// sides (the short one to `resize`, the long one truncated in proportion) and the crop's offset
/// (`int(round((side − size) / 2))`, Python rounding halves to even).
fn chexnet_geometry(
    width: u32,
    height: u32,
    resize: u32,
    size: u32,
) -> ((u32, u32), (usize, usize)) {
    let (w, h) = (width as f64, height as f64);
    let (rw, rh) = if width <= height {
        (resize, (resize as f64 * h / w) as u32)
    } else {
        ((resize as f64 * w / h) as u32, resize)
    };
    let offset = |side: u32| {
        ((side as f64 - size as f64) / 2.0)
            .round_ties_even()
            .max(0.0) as usize
    };
    ((rw, rh), (offset(rw), offset(rh)))
}

fn chexnet(img: &Gray, resize: u32, size: u32) -> Prepared {
    let ((rw, rh), (left, top)) = chexnet_geometry(img.width, img.height, resize, size);
    let resized = img.resize(rw, rh);
    let n = (size * size) as usize;
    let mut gray = vec![0f32; n];
    for y in 0..size as usize {
        for x in 0..size as usize {
            let (sx, sy) = (left + x, top + y);
            if sx < rw as usize && sy < rh as usize {
                gray[y * size as usize + x] = resized.data[sy * rw as usize + sx];
            }
        }
    }
    let mut data = vec![0f32; 3 * n];
    Gray::new(size, size, gray).write_chw_imagenet(&mut data);
    Prepared {
        data,
        channels: 3,
        view: Preprocess::Chexnet { resize }.view(img.width, img.height, size),
    }
}

/// scikit-image's `resize(img, (size, size), mode='constant', preserve_range=True)` of a square
/// float32 image, as torchxrayvision's `XRayResizer` calls it: when shrinking, SciPy's
/// `gaussian_filter` with σ = (factor − 1) / 2 (truncated at 4σ, zero outside), one axis at a time
/// rounding to f32 between them; then `zoom` with order 1 on the pixel grid (`grid_mode`: sample at
/// (i + ½)·factor − ½, zero outside); then clipped to the input's range as skimage clips.
pub fn skimage_resize(img: &[f32], side: usize, size: usize) -> Vec<f32> {
    assert_eq!(img.len(), side * side);
    let factor = side as f64 / size as f64;
    let filtered = if size < side {
        let sigma = (factor - 1.0) / 2.0;
        let rows = gaussian_1d(img, side, sigma, true);
        gaussian_1d(&rows, side, sigma, false)
    } else {
        img.to_vec()
    };
    let taps: Vec<(isize, f64)> = (0..size)
        .map(|i| {
            let c = (i as f64 + 0.5) * factor - 0.5;
            let f = c.floor();
            (f as isize, c - f)
        })
        .collect();
    let at = |y: isize, x: isize| -> f64 {
        if y < 0 || x < 0 || y >= side as isize || x >= side as isize {
            0.0
        } else {
            filtered[y as usize * side + x as usize] as f64
        }
    };
    let mut out = Vec::with_capacity(size * size);
    for &(y, ty) in &taps {
        for &(x, tx) in &taps {
            let v = (1.0 - ty) * ((1.0 - tx) * at(y, x) + tx * at(y, x + 1))
                + ty * ((1.0 - tx) * at(y + 1, x) + tx * at(y + 1, x + 1));
            out.push(v as f32);
        }
    }
    clip_like_skimage(img, &mut out);
    out
}

/// SciPy's `gaussian_filter1d` along the columns (`down`, axis 0) or rows of a square image, mode
/// `constant` with cval 0, computed in f64 and stored as f32.
fn gaussian_1d(img: &[f32], side: usize, sigma: f64, down: bool) -> Vec<f32> {
    let radius = (4.0 * sigma + 0.5) as isize;
    let mut weights: Vec<f64> = (-radius..=radius)
        .map(|x| (-0.5 / (sigma * sigma) * (x * x) as f64).exp())
        .collect();
    let total: f64 = weights.iter().sum();
    weights.iter_mut().for_each(|w| *w /= total);
    let mut out = vec![0f32; img.len()];
    let n = side as isize;
    for line in 0..side {
        let get = |k: isize| -> f64 {
            if k < 0 || k >= n {
                0.0
            } else if down {
                img[k as usize * side + line] as f64
            } else {
                img[line * side + k as usize] as f64
            }
        };
        for k in 0..n {
            // Symmetric weights, summed as SciPy's correlate1d sums them: centre, then pairs.
            let mut acc = get(k) * weights[radius as usize];
            for j in 1..=radius {
                acc += (get(k + j) + get(k - j)) * weights[(radius + j) as usize];
            }
            let at = if down {
                k as usize * side + line
            } else {
                line * side + k as usize
            };
            out[at] = acc as f32;
        }
    }
    out
}

/// skimage's `_clip_warp_output` for mode `constant`, cval 0: clip to the input's range, widened to
/// 0 when 0 lies outside it but inside the output's.
fn clip_like_skimage(input: &[f32], out: &mut [f32]) {
    let range = |v: &[f32]| {
        v.iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &x| {
                (l.min(x), h.max(x))
            })
    };
    let (mut lo, mut hi) = range(input);
    let (olo, ohi) = range(out);
    if !(lo <= 0.0 && 0.0 <= hi) && olo <= 0.0 && 0.0 <= ohi {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    out.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IMAGENET_MEAN, IMAGENET_STD};

    #[test]
    fn skimage_resize_keeps_a_flat_image_flat_inside_and_darkens_edges_toward_zero() {
        let mut img = vec![100f32; 64 * 64];
        // One dark pixel widens the input's range below 0, so skimage's clip keeps the dark edge.
        img[40 * 64 + 40] = -100.0;
        let out = skimage_resize(&img, 64, 16);
        // Interior samples see only 100s; the Gaussian's zero padding pulls the border down.
        assert!(
            (out[4 * 16 + 4] - 100.0).abs() < 1e-4,
            "{}",
            out[4 * 16 + 4]
        );
        assert!(out[0] < 100.0 && out[0] > 50.0, "{}", out[0]);
        assert!(out.iter().all(|&v| (-100.0..=100.0).contains(&v)));
        // A flat image's range is one value: skimage clips the dark edge away.
        let flat = skimage_resize(&[100f32; 64 * 64], 64, 16);
        assert!(flat.iter().all(|&v| v == 100.0));
    }

    #[test]
    fn skimage_resize_at_the_same_size_is_the_identity() {
        let img: Vec<f32> = (0..49).map(|i| i as f32).collect();
        assert_eq!(skimage_resize(&img, 7, 7), img);
    }

    #[test]
    fn xrv_crops_the_centred_square_and_scales_to_plus_minus_1024() {
        // 6 wide, 4 high: the square is columns 1..5 (6 // 2 - 4 // 2 = 1).
        let data: Vec<f32> = (0..24)
            .map(|i| if i % 6 == 0 { 0.0 } else { 1.0 })
            .collect();
        let p = Preprocess::Xrv.prepare(&Gray::new(6, 4, data), 4);
        assert_eq!(p.channels, 1);
        assert_eq!(
            (p.view.x0, p.view.y0, p.view.width, p.view.height),
            (1.0, 0.0, 4.0, 4.0)
        );
        assert!(p.data.iter().all(|&v| v == 1024.0), "{:?}", p.data);
    }

    #[test]
    fn the_view_from_sizes_alone_is_the_one_prepare_reads() {
        for chain in [
            Preprocess::Imagenet,
            Preprocess::Xrv,
            Preprocess::Chexnet { resize: 40 },
        ] {
            for (w, h) in [(96, 64), (64, 97), (50, 50)] {
                let img = Gray::new(w, h, vec![0.5; (w * h) as usize]);
                assert_eq!(
                    chain.view(w, h, 32),
                    chain.prepare(&img, 32).view,
                    "{chain:?} {w}x{h}"
                );
            }
        }
    }

    #[test]
    fn chexnet_resizes_the_short_side_and_crops_the_centre() {
        let img = Gray::new(40, 20, vec![0.5; 800]);
        let p = Preprocess::Chexnet { resize: 10 }.prepare(&img, 8);
        assert_eq!(p.data.len(), 3 * 64);
        // 40×20 → 20×10; crop 8 at (6, 1) → film (12, 2) 16×16.
        assert_eq!(
            (p.view.x0, p.view.y0, p.view.width, p.view.height),
            (12.0, 2.0, 16.0, 16.0)
        );
        assert!((p.data[0] - (0.5 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]).abs() < 1e-5);
    }
}
