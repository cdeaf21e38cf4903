//! Radiograph pixels. Everything becomes a single-channel `f32` image in [0, 1] on decode, whatever
//! the file held (DICOM of any bit depth, 8/16-bit grayscale, RGB, RGBA PNG/JPEG): radiographs are
//! grayscale, and one representation keeps resize and normalization simple and exact.

pub mod dicom;
pub mod prep;
mod raster;

pub use prep::{Prepared, Preprocess, View};
pub use raster::{Raster, Region};

use image::{ImageBuffer, Luma};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {msg}")]
    Decode { path: String, msg: String },
    #[error("{path}: cannot write: {msg}")]
    Write { path: String, msg: String },
}

/// Read the file at `path` and decode its bytes with `decode`; either failure names the file.
pub(crate) fn decode_file<T>(
    path: &Path,
    decode: impl FnOnce(&[u8]) -> Result<T, String>,
) -> Result<T, ImageError> {
    let err = |msg: String| ImageError::Decode {
        path: path.display().to_string(),
        msg,
    };
    let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    decode(&bytes).map_err(err)
}

/// Largest side of a picture accepted, in pixels (the largest radiographs are ~4,300 px a side).
pub const MAX_SIDE: u32 = 16_384;
/// Largest picture accepted, in pixels (8192²: 256 MB as floats).
pub const MAX_PIXELS: u64 = 1 << 26;
/// Most memory a picture decoder may set aside.
const MAX_DECODE_BYTES: u64 = 1 << 30;

/// Refuse a picture whose header claims more than [`MAX_SIDE`] a side or [`MAX_PIXELS`] in all,
/// before anything is allocated for it (a 400 KB PNG may claim 20000 × 20000).
pub fn check_size(width: u32, height: u32) -> Result<(), String> {
    if width == 0 || height == 0 {
        return Err(format!("the picture claims {width} × {height} pixels"));
    }
    if width > MAX_SIDE || height > MAX_SIDE || width as u64 * height as u64 > MAX_PIXELS {
        return Err(format!(
            "the picture claims {width} × {height} pixels, beyond the limit of {MAX_SIDE} a side and {MAX_PIXELS} in all (a corrupt or hostile file?)"
        ));
    }
    Ok(())
}

/// A grayscale image, row-major, values in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Gray {
    pub width: u32,
    pub height: u32,
    pub data: Vec<f32>,
}

/// ImageNet statistics, the normalization torchvision backbones were trained with.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

impl Gray {
    pub fn new(width: u32, height: u32, data: Vec<f32>) -> Gray {
        assert_eq!(data.len(), (width * height) as usize);
        Gray {
            width,
            height,
            data,
        }
    }

    /// Decode a PNG, JPEG or DICOM file. Colour is reduced to luminance; alpha is ignored.
    pub fn open(path: &Path) -> Result<Gray, ImageError> {
        Raster::open(path).map(Raster::into_gray)
    }

    /// Decode PNG, JPEG or DICOM bytes (DICOM through [`dicom::decode`]: windowed, air dark).
    pub fn decode(bytes: &[u8]) -> Result<Gray, String> {
        Raster::decode(bytes).map(Raster::into_gray)
    }

    /// The general decoder, straight to floats.
    fn decode_float(bytes: &[u8]) -> Result<Gray, String> {
        if dicom::is_dicom(bytes) {
            return dicom::decode(bytes).map(|(g, _)| g);
        }
        let reader = || {
            image::ImageReader::new(std::io::Cursor::new(bytes))
                .with_guessed_format()
                .map_err(|e| e.to_string())
        };
        let (w, h) = reader()?.into_dimensions().map_err(|e| e.to_string())?;
        check_size(w, h)?;
        let mut limited = reader()?;
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        limited.limits(limits);
        let img = limited.decode().map_err(|e| e.to_string())?;
        let data = match img {
            image::DynamicImage::ImageLuma8(b) => {
                b.into_raw().into_iter().map(|v| v as f32 / 255.0).collect()
            }
            image::DynamicImage::ImageLuma16(b) => b
                .into_raw()
                .into_iter()
                .map(|v| v as f32 / 65535.0)
                .collect(),
            other => other.to_luma32f().into_raw(),
        };
        Ok(Gray {
            width: w,
            height: h,
            data,
        })
    }

    /// Bilinear (triangle-filter) resize; downscaling widens the filter to cover every source pixel
    /// (antialiased, like PIL's and torchvision's bilinear). SIMD convolution by fast_image_resize.
    pub fn resize(&self, width: u32, height: u32) -> Gray {
        self.resample(Region::whole(self.width, self.height), width, height)
    }

    /// Write `3 × H × W` ImageNet-normalized values (the gray value repeated per channel) into `out`.
    pub fn write_chw_imagenet(&self, out: &mut [f32]) {
        let n = self.data.len();
        assert_eq!(out.len(), 3 * n);
        for c in 0..3 {
            let (m, s) = (IMAGENET_MEAN[c], IMAGENET_STD[c]);
            for (o, &v) in out[c * n..(c + 1) * n].iter_mut().zip(&self.data) {
                *o = (v - m) / s;
            }
        }
    }

    /// 8-bit values (rounded, clamped).
    pub fn to_u8(&self) -> Vec<u8> {
        self.data
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect()
    }

    /// Save as an 8-bit grayscale PNG, atomically (temporary file, then rename).
    pub fn save_png(&self, path: &Path) -> Result<(), ImageError> {
        let err = |msg: String| ImageError::Write {
            path: path.display().to_string(),
            msg,
        };
        let buf: ImageBuffer<Luma<u8>, Vec<u8>> =
            ImageBuffer::from_raw(self.width, self.height, self.to_u8()).expect("sizes agree");
        chestx_core::io::write_atomic_with(path, |tmp| {
            buf.save_with_format(tmp, image::ImageFormat::Png)
                .map_err(std::io::Error::other)
        })
        .map_err(|e| err(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_png<P: image::PixelWithColorType>(buf: &ImageBuffer<P, Vec<P::Subpixel>>) -> Vec<u8>
    where
        [P::Subpixel]: image::EncodableLayout,
    {
        let mut out = std::io::Cursor::new(Vec::new());
        buf.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_8_and_16_bit_gray_and_rgba_to_unit_range() {
        let g8 = ImageBuffer::<Luma<u8>, _>::from_raw(2, 1, vec![0u8, 255]).unwrap();
        assert_eq!(Gray::decode(&encode_png(&g8)).unwrap().data, vec![0.0, 1.0]);
        let g16 = ImageBuffer::<Luma<u16>, _>::from_raw(2, 1, vec![0u16, 65535]).unwrap();
        assert_eq!(
            Gray::decode(&encode_png(&g16)).unwrap().data,
            vec![0.0, 1.0]
        );
        // A gray RGBA pixel (same value in R, G, B) keeps its value whatever the alpha.
        let rgba =
            ImageBuffer::<image::Rgba<u8>, _>::from_raw(1, 1, vec![51u8, 51, 51, 7]).unwrap();
        let v = Gray::decode(&encode_png(&rgba)).unwrap().data[0];
        assert!((v - 0.2).abs() < 1e-3, "{v}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(Gray::decode(b"not an image").is_err());
        let g8 = ImageBuffer::<Luma<u8>, _>::from_raw(4, 4, vec![9u8; 16]).unwrap();
        let png = encode_png(&g8);
        assert!(Gray::decode(&png[..png.len() / 2]).is_err());
    }

    #[test]
    fn resize_preserves_a_constant_and_averages_down() {
        let flat = Gray::new(8, 8, vec![0.25; 64]);
        assert!(flat
            .resize(3, 5)
            .data
            .iter()
            .all(|v| (v - 0.25).abs() < 1e-6));
        // Left half 0, right half 1: halving keeps the mean.
        let data = (0..64).map(|i| if i % 8 < 4 { 0.0 } else { 1.0 }).collect();
        let half = Gray::new(8, 8, data).resize(4, 4);
        let mean: f32 = half.data.iter().sum::<f32>() / 16.0;
        assert!((mean - 0.5).abs() < 1e-6);
    }

    #[test]
    fn imagenet_normalization_per_channel() {
        let g = Gray::new(1, 1, vec![0.5]);
        let mut out = [0.0; 3];
        g.write_chw_imagenet(&mut out);
        for c in 0..3 {
            assert!((out[c] - (0.5 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]).abs() < 1e-6);
        }
    }
}
