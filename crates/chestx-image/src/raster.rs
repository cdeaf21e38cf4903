//! Films at the depth their file stored, for the paths that only shrink them.
//!
//! A training loader reads a 1024² 8-bit PNG and keeps a 224² crop of it. Widening all million
//! pixels to `f32` first (4 MB, freshly faulted in) and copying the crop out cost more than the PNG
//! decode itself; here an 8-bit grayscale PNG is decoded straight to bytes by the `png` crate and the
//! crop is resampled in place, in 8 bits, as PIL resamples such films for torchvision. Only the
//! small result becomes floats. It differs from the all-float path by at most one grey level
//! (each of the two separable passes rounds to a byte, as PIL's do). Every other kind of file (16-bit, colour, palette, JPEG, DICOM) takes the float path.

use crate::{Gray, ImageError};
use fast_image_resize as fr;
use std::path::Path;

/// A decoded film.
#[derive(Debug, Clone, PartialEq)]
pub enum Raster {
    /// 8-bit grayscale, row-major: most PNG exports, and NIH's release.
    Gray8 {
        width: u32,
        height: u32,
        data: Vec<u8>,
    },
    /// Anything else, already in [0, 1].
    Float(Gray),
}

/// A rectangle of source pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub x0: u32,
    pub y0: u32,
    pub width: u32,
    pub height: u32,
}

impl Region {
    /// All of a `width × height` film.
    pub fn whole(width: u32, height: u32) -> Region {
        Region {
            x0: 0,
            y0: 0,
            width,
            height,
        }
    }
}

impl Raster {
    /// Decode a PNG, JPEG or DICOM file; errors name the file.
    pub fn open(path: &Path) -> Result<Raster, ImageError> {
        crate::decode_file(path, Raster::decode)
    }

    /// Decode PNG, JPEG or DICOM bytes; 8-bit grayscale PNGs stay bytes.
    pub fn decode(bytes: &[u8]) -> Result<Raster, String> {
        match gray8_png(bytes) {
            Some((width, height, data)) => Ok(Raster::Gray8 {
                width,
                height,
                data,
            }),
            None => Gray::decode_float(bytes).map(Raster::Float),
        }
    }

    pub fn width(&self) -> u32 {
        match self {
            Raster::Gray8 { width, .. } => *width,
            Raster::Float(g) => g.width,
        }
    }

    pub fn height(&self) -> u32 {
        match self {
            Raster::Gray8 { height, .. } => *height,
            Raster::Float(g) => g.height,
        }
    }

    /// The whole film.
    pub fn full(&self) -> Region {
        Region::whole(self.width(), self.height())
    }

    /// Resample `region` to `width × height` with the antialiased bilinear filter of
    /// [`Gray::resize`]. The filter reads the pixels just outside the region where the film has them
    /// (a crop of the continuous image, like PIL's `resize(box=…)`), so a crop's border is not
    /// darkened or sharpened by an artificial edge.
    ///
    /// # Panics
    /// If `region` is empty or reaches past the film.
    pub fn resample(&self, region: Region, width: u32, height: u32) -> Gray {
        assert!(
            region.width > 0
                && region.height > 0
                && region.x0 + region.width <= self.width()
                && region.y0 + region.height <= self.height(),
            "region {region:?} outside a {}×{} film",
            self.width(),
            self.height()
        );
        match self {
            Raster::Gray8 {
                width: w,
                height: h,
                data,
            } => {
                let mut out = vec![0u8; width as usize * height as usize];
                resample(
                    data,
                    *w,
                    *h,
                    fr::PixelType::U8,
                    region,
                    &mut out,
                    width,
                    height,
                );
                Gray::new(width, height, to_unit(&out))
            }
            Raster::Float(g) => g.resample(region, width, height),
        }
    }

    /// The whole film as floats in [0, 1].
    pub fn into_gray(self) -> Gray {
        match self {
            Raster::Gray8 {
                width,
                height,
                data,
            } => Gray::new(width, height, to_unit(&data)),
            Raster::Float(g) => g,
        }
    }
}

impl Gray {
    /// [`Raster::resample`] for a float film.
    pub fn resample(&self, region: Region, width: u32, height: u32) -> Gray {
        if region == Region::whole(width, height) && (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let mut data = vec![0f32; width as usize * height as usize];
        resample(
            bytemuck::cast_slice(&self.data),
            self.width,
            self.height,
            fr::PixelType::F32,
            region,
            bytemuck::cast_slice_mut(&mut data),
            width,
            height,
        );
        Gray::new(width, height, data)
    }

    /// Mirror left and right.
    pub fn mirror(&mut self) {
        self.data
            .chunks_mut(self.width as usize)
            .for_each(|row| row.reverse());
    }
}

fn to_unit(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&v| v as f32 / 255.0).collect()
}

/// SIMD convolution by fast_image_resize; `src` and `dst` hold pixels of `pixel` type as bytes.
#[allow(clippy::too_many_arguments)]
fn resample(
    src: &[u8],
    src_width: u32,
    src_height: u32,
    pixel: fr::PixelType,
    region: Region,
    dst: &mut [u8],
    width: u32,
    height: u32,
) {
    let src = fr::images::ImageRef::new(src_width, src_height, src, pixel)
        .expect("a buffer of width × height pixels");
    let mut dst = fr::images::Image::from_slice_u8(width, height, dst, pixel)
        .expect("a buffer of width × height pixels");
    let opts = fr::ResizeOptions::new()
        .resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Bilinear))
        .crop(
            region.x0 as f64,
            region.y0 as f64,
            region.width as f64,
            region.height as f64,
        );
    fr::Resizer::new()
        .resize(&src, &mut dst, &opts)
        .expect("same pixel type, non-empty sizes");
}

/// An 8-bit grayscale PNG (bit depths below 8 expanded), or `None` for anything else — including a
/// PNG the `png` crate rejects, which the general decoder then reports on.
fn gray8_png(bytes: &[u8]) -> Option<(u32, u32, Vec<u8>)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if !bytes.starts_with(SIGNATURE) {
        return None;
    }
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().ok()?;
    if reader.output_color_type() != (png::ColorType::Grayscale, png::BitDepth::Eight) {
        return None;
    }
    // Oversized claims are refused by the general decoder, before it allocates.
    crate::check_size(reader.info().width, reader.info().height).ok()?;
    let mut data = vec![0u8; reader.output_buffer_size()?];
    let frame = reader.next_frame(&mut data).ok()?;
    data.truncate(frame.buffer_size());
    Some((frame.width, frame.height, data))
}
