//! Decoding the real files in the shared data: DICOM (JPEG baseline, MONOCHROME1, headerless 10-bit)
//! and every NIH PNG (grayscale and RGBA), checked against values known independently of our code.

mod common;

use chestx_image::{dicom, Gray};
use common::{data_dir, nih_pngs};

const JPEG_DCM: &str = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm";

/// The single JPEG fragment of an encapsulated Pixel Data element, found by its SOI/EOI markers.
fn embedded_jpeg(bytes: &[u8]) -> &[u8] {
    let soi = bytes
        .windows(3)
        .position(|w| w == [0xFF, 0xD8, 0xFF])
        .unwrap();
    let eoi = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]).unwrap();
    &bytes[soi..eoi + 2]
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len() as f32
}

/// Mean over a rectangle given in fractions of the side.
fn region_mean(g: &Gray, x0: f32, x1: f32, y0: f32, y1: f32) -> f32 {
    let (w, h) = (g.width as f32, g.height as f32);
    let mut v = Vec::new();
    for y in (y0 * h) as u32..(y1 * h) as u32 {
        for x in (x0 * w) as u32..(x1 * w) as u32 {
            v.push(g.data[(y * g.width + x) as usize]);
        }
    }
    mean(&v)
}

#[test]
fn jpeg_baseline_dicom_matches_its_embedded_jpeg() {
    let Some(dir) = data_dir("dicom") else { return };
    let bytes = std::fs::read(dir.join(JPEG_DCM)).unwrap();
    let (g, info) = dicom::decode(&bytes).unwrap();
    assert_eq!((g.width, g.height), (1024, 1024));
    assert_eq!(info.transfer_syntax, "1.2.840.10008.1.2.4.50");
    assert_eq!(info.photometric, "MONOCHROME2");
    assert_eq!(info.pixel_spacing, Some((0.168, 0.168)));
    assert_eq!(info.view_position.as_deref(), Some("PA"));
    // The same JPEG decoded by the image crate, with no DICOM code involved. No window in the file and
    // values spanning 0..=255, so display values are the stored ones over 255.
    let reference = image::load_from_memory(embedded_jpeg(&bytes))
        .unwrap()
        .to_luma8();
    assert_eq!(reference.dimensions(), (1024, 1024));
    let diffs: Vec<f32> = g
        .data
        .iter()
        .zip(reference.as_raw())
        .map(|(&a, &b)| (a * 255.0 - b as f32).abs())
        .collect();
    let worst = diffs.iter().cloned().fold(0.0, f32::max);
    assert!(
        mean(&diffs) < 0.5 && worst <= 3.0,
        "mean {} worst {worst}",
        mean(&diffs)
    );
}

#[test]
fn monochrome1_is_shown_inverted() {
    let Some(dir) = data_dir("dicom") else { return };
    let (m2, _) = dicom::open_file(&dir.join(JPEG_DCM)).unwrap();
    let (m1, info) = dicom::open_file(&dir.join("Fake_MONOHR1.dcm")).unwrap();
    assert_eq!(info.photometric, "MONOCHROME1");
    // Same stored pixels, opposite interpretation: display values are complements.
    let worst = m1
        .data
        .iter()
        .zip(&m2.data)
        .map(|(a, b)| (a + b - 1.0).abs())
        .fold(0.0, f32::max);
    assert!(worst < 1e-6, "{worst}");
}

#[test]
fn headerless_10_bit_monochrome1_decodes_to_a_normal_looking_chest() {
    let Some(dir) = data_dir("dicom") else { return };
    let (g, info) = dicom::open_file(&dir.join("CR-MONO1-10-chest.dcm")).unwrap();
    assert!(!info.part10, "the file has no preamble or meta group");
    assert_eq!((g.width, g.height), (440, 440));
    assert_eq!((info.bits_allocated, info.bits_stored), (16, 10));
    assert_eq!(info.photometric, "MONOCHROME1");
    // Lungs (mid-height, either side of the spine) are dark; the mediastinum and the abdomen below
    // the diaphragm are bright.
    let right_lung = region_mean(&g, 0.12, 0.32, 0.3, 0.6);
    let left_lung = region_mean(&g, 0.68, 0.88, 0.3, 0.6);
    let mediastinum = region_mean(&g, 0.45, 0.55, 0.3, 0.6);
    let abdomen = region_mean(&g, 0.2, 0.8, 0.9, 0.98);
    for lung in [right_lung, left_lung] {
        assert!(
            lung + 0.15 < mediastinum,
            "lung {lung} vs mediastinum {mediastinum}"
        );
        assert!(lung + 0.15 < abdomen, "lung {lung} vs abdomen {abdomen}");
    }
    // The same through the generic entry point.
    assert_eq!(Gray::open(&dir.join("CR-MONO1-10-chest.dcm")).unwrap(), g);
}

#[test]
fn every_nih_png_decodes_including_rgba() {
    let Some(files) = nih_pngs() else { return };
    assert!(files.len() >= 90, "{} PNGs", files.len());
    let mut rgba = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        let raw = image::load_from_memory(&bytes).unwrap();
        let g = Gray::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!((g.width, g.height), (1024, 1024), "{}", f.display());
        // Independent check: the red channel (R = G = B in these films) over 255.
        let rgb = raw.to_rgba8();
        if raw.color().has_alpha() {
            rgba += 1;
        }
        let worst = g
            .data
            .iter()
            .zip(rgb.pixels())
            .map(|(v, p)| (v * 255.0 - p.0[0] as f32).abs())
            .fold(0.0, f32::max);
        assert!(worst < 0.51, "{}: off by {worst}", f.display());
        let m = mean(&g.data);
        assert!((0.2..0.8).contains(&m), "{}: mean {m}", f.display());
    }
    assert!(rgba >= 4, "the release has RGBA PNGs; found {rgba}");
}

/// Reads `bytes`, then fails: whatever reads past them is caught.
struct Fence<'a>(&'a [u8]);

impl std::io::Read for Fence<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.0.is_empty() {
            return Err(std::io::Error::other(
                "read past the Pixel Data element's header",
            ));
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn dicom_header_is_read_without_the_pixel_data() {
    let Some(dir) = data_dir("dicom") else { return };
    for name in [JPEG_DCM, "Fake_MONOHR1.dcm", "CR-MONO1-10-chest.dcm"] {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).unwrap();
        let want = dicom::read_info(&bytes).unwrap();
        let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        assert_eq!(dicom::read_info_from(file).unwrap(), want, "{name}");
        if !want.part10 {
            continue; // ACR-NEMA data sets are read whole
        }
        // A stream that ends in an error just past the Pixel Data (7FE0,0010) element's header
        // (tag, VR, reserved, length): the header reads the same — the pixels were never asked for.
        let at = bytes
            .windows(4)
            .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
            .expect("a Pixel Data element");
        let got = dicom::read_info_from(Fence(&bytes[..at + 12]));
        assert_eq!(
            got.as_ref(),
            Ok(&want),
            "{name}, stream fenced after the header"
        );
        // Fenced inside the header, the read fails rather than return part of it.
        assert!(
            dicom::read_info_from(Fence(&bytes[..at - 1])).is_err(),
            "{name}"
        );
    }
}
