//! One frame's stored samples, as numbers: what sits between the codec and the display pipeline.
//!
//! Compressed frames go through dicom-rs's codecs. Uncompressed ones are read here, because
//! dicom-pixeldata's conversion stops at layouts a PACS does send: 32-bit samples (dose maps,
//! some flat-panel exports), colour-by-plane (Planar Configuration 1), and YBR_FULL_422's
//! subsampled frames, whose size it miscounts. RLE with 32-bit samples is decoded here too (the
//! crate's RLE decoder stops at 16 bits); RLE is PackBits over byte planes (PS3.5 G), a few lines.

use dicom_core::value::Value;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::PixelDecoder;
use std::borrow::Cow;

/// How one frame's samples are laid out, from the header (or, after a codec, from its output).
#[derive(Clone, Debug)]
pub(super) struct Layout {
    pub width: usize,
    pub height: usize,
    pub samples_per_pixel: usize,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub signed: bool,
    /// Colour stored plane by plane (RRR…GGG…BBB) rather than pixel by pixel.
    pub planar: bool,
    pub photometric: String,
}

impl Layout {
    fn bytes_per_sample(&self) -> usize {
        (self.bits_allocated as usize).div_ceil(8)
    }

    fn is_ybr_422(&self) -> bool {
        self.samples_per_pixel == 3
            && self.photometric.starts_with("YBR")
            && self.photometric.ends_with("_422")
    }

    /// Bytes of one uncompressed frame.
    fn frame_len(&self) -> usize {
        let n = self.width * self.height;
        match self.bits_allocated {
            1 => n.div_ceil(8),
            // Two luma samples share one Cb and one Cr: two samples a pixel, not three.
            _ if self.is_ybr_422() => n * 2 * self.bytes_per_sample(),
            _ => n * self.samples_per_pixel * self.bytes_per_sample(),
        }
    }
}

/// The first frame's bytes (little-endian samples) and their layout.
pub(super) fn first_frame(
    obj: &DefaultDicomObject,
    mut layout: Layout,
    big_endian: bool,
) -> Result<(Cow<'_, [u8]>, Layout), String> {
    if !matches!(layout.bits_allocated, 1 | 8 | 16 | 32) {
        return Err(format!(
            "Bits Allocated {} is not 1, 8, 16 or 32",
            layout.bits_allocated
        ));
    }
    let element = obj
        .element(dicom_dictionary_std::tags::PIXEL_DATA)
        .map_err(|_| "no Pixel Data (7FE0,0010)".to_string())?;
    let rle = obj.meta().transfer_syntax().trim_end_matches('\0') == "1.2.840.10008.1.2.5";
    let frame = match element.value() {
        Value::Primitive(p) => native_frame(p.to_bytes(), &layout, big_endian)?,
        Value::PixelSequence(seq) if rle && layout.bits_allocated == 32 => {
            let fragment = seq
                .fragments()
                .first()
                .ok_or("RLE pixel data has no fragment")?;
            layout.planar = false;
            Cow::Owned(rle_frame(fragment, &layout)?)
        }
        Value::PixelSequence(seq) if rgb_jpeg_without_marker(obj, &layout, seq.fragments()) => {
            let stream = first_frame_stream(seq.fragments(), obj);
            let mut decoder = jpeg_decoder::Decoder::new(&stream[..]);
            decoder.set_color_transform(jpeg_decoder::ColorTransform::RGB);
            layout.planar = false;
            let out = decoder
                .decode()
                .map_err(|e| format!("cannot decode the JPEG frame: {e}"))?;
            whole(Cow::Owned(out), &layout, "the JPEG frame")?
        }
        Value::PixelSequence(_) => {
            let px = obj
                .decode_pixel_data_frame(0)
                .map_err(|e| format!("cannot decode pixel data: {e}"))?;
            layout.photometric = px.photometric_interpretation().as_str().to_string();
            layout.planar = false; // the codecs give pixel-by-pixel samples
            layout.width = px.columns() as usize;
            layout.height = px.rows() as usize;
            whole(Cow::Owned(px.into_data()), &layout, "the codec's output")?
        }
        Value::Sequence(_) => return Err("Pixel Data holds a sequence, not pixels".into()),
    };
    Ok((frame, layout))
}

/// `bytes` cut to one frame, or an error saying how short they fall.
fn whole<'a>(bytes: Cow<'a, [u8]>, layout: &Layout, what: &str) -> Result<Cow<'a, [u8]>, String> {
    let need = layout.frame_len();
    if bytes.len() < need {
        return Err(format!(
            "{what} holds {} bytes; one {}×{} frame needs {need}",
            bytes.len(),
            layout.width,
            layout.height
        ));
    }
    Ok(match bytes {
        Cow::Borrowed(b) => Cow::Borrowed(&b[..need]),
        Cow::Owned(mut b) => {
            b.truncate(need);
            Cow::Owned(b)
        }
    })
}

/// The first frame of uncompressed pixel data, its samples little-endian.
fn native_frame<'a>(
    bytes: Cow<'a, [u8]>,
    layout: &Layout,
    big_endian: bool,
) -> Result<Cow<'a, [u8]>, String> {
    let mut frame = whole(bytes, layout, "the pixel data")?;
    if big_endian && layout.bits_allocated == 32 {
        // dicom-rs reads OW as 16-bit words: each 32-bit sample still has its halves swapped.
        frame.to_mut().chunks_exact_mut(4).for_each(|c| {
            c.swap(0, 2);
            c.swap(1, 3);
        });
    }
    Ok(frame)
}

/// Whether a colour JPEG (baseline or extended 8-bit) that the header calls RGB carries no marker
/// saying it was stored as YCbCr (no JFIF, no Adobe APP14 with a transform): such streams hold RGB
/// as is, but a JPEG decoder's default guess is YCbCr, which scrambles the colours. PS3.5 8.2.1
/// makes the Photometric Interpretation authoritative; dcmtk and pydicom decide the same way.
fn rgb_jpeg_without_marker(
    obj: &DefaultDicomObject,
    layout: &Layout,
    fragments: &[Vec<u8>],
) -> bool {
    let ts = obj.meta().transfer_syntax().trim_end_matches('\0');
    if !matches!(ts, "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51")
        || layout.samples_per_pixel != 3
        || layout.photometric != "RGB"
        || layout.bits_allocated != 8
    {
        return false;
    }
    let Some(head) = fragments.first() else {
        return false;
    };
    let has = |marker: &[u8]| head.windows(marker.len()).any(|w| w == marker);
    let adobe_transform = (0..head.len().saturating_sub(9))
        .find(|&at| head[at..at + 2] == [0xFF, 0xEE] && &head[at + 4..at + 9] == b"Adobe")
        .and_then(|at| {
            let len = u16::from_be_bytes([head[at + 2], head[at + 3]]) as usize;
            // "Adobe", version (2), flags (2 + 2), transform (1): 12 bytes after the length's own 2.
            (len >= 14).then(|| head.get(at + 15).copied()).flatten()
        });
    !has(b"JFIF\0") && !matches!(adobe_transform, Some(1 | 2))
}

/// The first frame's JPEG stream: every fragment when the file has one frame (a frame may span
/// fragments), else the first.
fn first_frame_stream<'a>(fragments: &'a [Vec<u8>], obj: &DefaultDicomObject) -> Cow<'a, [u8]> {
    let frames = obj
        .get(dicom_dictionary_std::tags::NUMBER_OF_FRAMES)
        .and_then(|e| e.to_int::<u32>().ok())
        .unwrap_or(1);
    if frames <= 1 && fragments.len() > 1 {
        Cow::Owned(fragments.concat())
    } else {
        Cow::Borrowed(fragments.first().map_or(&[][..], |f| &f[..]))
    }
}

/// Decode one RLE frame (PS3.5 G.3) into little-endian, pixel-by-pixel samples.
fn rle_frame(fragment: &[u8], layout: &Layout) -> Result<Vec<u8>, String> {
    let bps = layout.bytes_per_sample();
    let spp = layout.samples_per_pixel;
    let n = layout.width * layout.height;
    let word = |at: usize| {
        fragment
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()) as usize)
            .ok_or("RLE header is truncated")
    };
    let segments = word(0)?;
    if segments != spp * bps || segments > 15 {
        return Err(format!(
            "RLE header lists {segments} segments; {spp} samples of {bps} bytes need {}",
            spp * bps
        ));
    }
    let offsets: Vec<usize> = (0..segments)
        .map(|i| word(4 + 4 * i))
        .collect::<Result<_, _>>()?;
    let mut out = vec![0u8; n * spp * bps];
    for (s, &start) in offsets.iter().enumerate() {
        let end = offsets.get(s + 1).copied().unwrap_or(fragment.len());
        let segment = fragment
            .get(start..end.max(start))
            .ok_or("RLE segment offset beyond the fragment")?;
        let plane = packbits(segment, n);
        // Segments run most significant byte first, sample by sample.
        let (sample, byte) = (s / bps, bps - 1 - s % bps);
        for (p, &v) in plane.iter().enumerate() {
            out[(p * spp + sample) * bps + byte] = v;
        }
    }
    Ok(out)
}

/// PackBits: a header byte h then h+1 literal bytes (h ≥ 0), or one byte repeated 1−h times
/// (h < 0; −128 is a no-op). Stops at `n` bytes; a short segment leaves zeros.
fn packbits(src: &[u8], n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < src.len() && out.len() < n {
        let h = src[i] as i8;
        i += 1;
        if h >= 0 {
            let take = (h as usize + 1).min(src.len() - i);
            out.extend_from_slice(&src[i..i + take]);
            i += take;
        } else if h != -128 {
            if let Some(&b) = src.get(i) {
                out.extend(std::iter::repeat_n(b, (1 - h as isize) as usize));
            }
            i += 1;
        }
    }
    out.resize(n, 0);
    out
}

/// Sample `i` of a frame of single-sample pixels, as stored (masked to Bits Stored, sign-extended).
fn sample(bytes: &[u8], layout: &Layout, i: usize) -> f64 {
    let bits = layout.bits_stored.clamp(1, layout.bits_allocated.max(1)) as u32;
    let raw: u32 = match layout.bits_allocated {
        1 => ((bytes[i / 8] >> (i % 8)) & 1) as u32,
        8 => bytes[i] as u32,
        16 => u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) as u32,
        _ => u32::from_le_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()),
    };
    let masked = if bits >= 32 {
        raw
    } else {
        raw & ((1u32 << bits) - 1)
    };
    if layout.signed && bits > 1 && masked >> (bits - 1) & 1 == 1 {
        (masked as i64 - (1i64 << bits)) as f64
    } else {
        masked as f64
    }
}

/// Stored values of a grayscale frame, one per pixel.
pub(super) fn gray_values(bytes: &[u8], layout: &Layout) -> Vec<f64> {
    (0..layout.width * layout.height)
        .map(|i| sample(bytes, layout, i))
        .collect()
}

/// Luminance in [0, 1] of a colour frame (ITU-R BT.601 weights). In YBR forms the luma sample is
/// the luminance already.
pub(super) fn luminance(bytes: &[u8], layout: &Layout) -> Vec<f32> {
    let n = layout.width * layout.height;
    let max = if layout.bits_stored >= 32 {
        u32::MAX as f64
    } else {
        ((1u64 << layout.bits_stored.max(1)) - 1) as f64
    };
    let at = |i: usize| sample(bytes, layout, i) / max;
    let ybr = layout.photometric.starts_with("YBR");
    (0..n)
        .map(|p| {
            let y = if layout.is_ybr_422() {
                // Y₀ Y₁ Cb Cr for each pair of pixels along a row.
                at(p / 2 * 4 + p % 2)
            } else if layout.planar {
                let rgb = [at(p), at(n + p), at(2 * n + p)];
                if ybr {
                    rgb[0]
                } else {
                    0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
                }
            } else if ybr {
                at(3 * p)
            } else {
                0.299 * at(3 * p) + 0.587 * at(3 * p + 1) + 0.114 * at(3 * p + 2)
            };
            y.clamp(0.0, 1.0) as f32
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(bits: u16, stored: u16, signed: bool) -> Layout {
        Layout {
            width: 2,
            height: 1,
            samples_per_pixel: 1,
            bits_allocated: bits,
            bits_stored: stored,
            signed,
            planar: false,
            photometric: "MONOCHROME2".into(),
        }
    }

    #[test]
    fn samples_are_masked_to_bits_stored_and_sign_extended() {
        // 12 bits stored in 16, an overlay bit set above them: 0xF800 | 0x0FFF = -1 once signed.
        let bytes = [0xFF, 0xFF, 0x00, 0x08];
        assert_eq!(
            gray_values(&bytes, &layout(16, 12, true)),
            vec![-1.0, -2048.0]
        );
        assert_eq!(
            gray_values(&bytes, &layout(16, 12, false)),
            vec![4095.0, 2048.0]
        );
        let bytes32 = [0xFE, 0xFF, 0xFF, 0xFF, 0x01, 0, 0, 0x80];
        assert_eq!(
            gray_values(&bytes32, &layout(32, 32, true)),
            vec![-2.0, -2147483647.0]
        );
        assert_eq!(
            gray_values(&bytes32, &layout(32, 32, false)),
            vec![4294967294.0, 2147483649.0]
        );
    }

    #[test]
    fn packbits_runs_and_literals() {
        // Literal of 3, a run of 4 × 9, a no-op, a literal of 1.
        let src = [2, 1, 2, 3, (-3i8) as u8, 9, 0x80, 0, 7];
        assert_eq!(packbits(&src, 8), vec![1, 2, 3, 9, 9, 9, 9, 7]);
        // A short segment is padded, a long one cut.
        assert_eq!(packbits(&src, 10).len(), 10);
        assert_eq!(packbits(&src, 2), vec![1, 2]);
    }

    #[test]
    fn rle_segments_are_most_significant_byte_first() {
        // Two 32-bit pixels, one sample: four segments, each a literal of two bytes.
        let mut frag = vec![0u8; 64];
        frag[0] = 4;
        let segs: [[u8; 2]; 4] = [[0x12, 0xAA], [0x34, 0xBB], [0x56, 0xCC], [0x78, 0xDD]];
        for (k, s) in segs.iter().enumerate() {
            let off = frag.len() as u32;
            frag[4 + 4 * k..8 + 4 * k].copy_from_slice(&off.to_le_bytes());
            frag.extend_from_slice(&[1, s[0], s[1]]);
        }
        let out = rle_frame(&frag, &layout(32, 32, false)).unwrap();
        assert_eq!(
            gray_values(&out, &layout(32, 32, false)),
            vec![0x12345678 as f64, 0xAABBCCDDu32 as f64]
        );
    }

    #[test]
    fn ybr_422_takes_each_pixels_own_luma() {
        let l = Layout {
            width: 4,
            height: 1,
            samples_per_pixel: 3,
            bits_allocated: 8,
            bits_stored: 8,
            signed: false,
            planar: false,
            photometric: "YBR_FULL_422".into(),
        };
        assert_eq!(l.frame_len(), 8);
        let bytes = [0, 255, 128, 128, 51, 102, 10, 20];
        let y = luminance(&bytes, &l);
        let want = [0.0, 1.0, 0.2, 0.4];
        for (a, b) in y.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{y:?}");
        }
    }
}
