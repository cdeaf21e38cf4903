//! Layouts dicom-pixeldata's conversion refused or got wrong, each built here around a known picture
//! and decoded back (correlation ≥ 0.98 with what the file holds): 32-bit samples, plain and RLE, in
//! both byte orders; colour by plane; YBR_FULL_422; an RGB JPEG with no colour-transform marker; a
//! data set written implicit VR under a meta group that says explicit. Issue 18's DICOM coverage.

mod known_picture;

use chestx_image::dicom::decode;
use dicom_core::value::PixelFragmentSequence;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use known_picture::correlation;

/// A Pixel Data value: native samples or compressed fragments.
type Pixels = dicom_core::value::Value<InMemDicomObject, dicom_core::value::InMemFragment>;

const W: usize = 64;
const H: usize = 48;
const BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
const RLE: &str = "1.2.840.10008.1.2.5";
const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";

fn picture() -> Vec<f64> {
    known_picture::picture(W, H)
}

/// An image header; `pixels` goes in as Pixel Data.
fn image(spp: u16, photometric: &str, bits: u16, signed: bool, pixels: Pixels) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    let mut put = |tag, vr, v: PrimitiveValue| o.put(DataElement::new(tag, vr, v));
    put(
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::SECONDARY_CAPTURE_IMAGE_STORAGE.into(),
    );
    put(tags::SOP_INSTANCE_UID, VR::UI, "2.25.7".into());
    put(tags::MODALITY, VR::CS, "OT".into());
    put(tags::ROWS, VR::US, PrimitiveValue::from(H as u16));
    put(tags::COLUMNS, VR::US, PrimitiveValue::from(W as u16));
    put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(spp));
    put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, photometric.into());
    put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(bits));
    put(tags::BITS_STORED, VR::US, PrimitiveValue::from(bits));
    put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(bits - 1));
    put(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(u16::from(signed)),
    );
    if spp == 3 {
        put(
            tags::PLANAR_CONFIGURATION,
            VR::US,
            PrimitiveValue::from(0u16),
        );
    }
    // Fragments are always OB; native samples wider than a byte are OW.
    let vr = if bits == 8 || matches!(pixels, Pixels::PixelSequence(_)) {
        VR::OB
    } else {
        VR::OW
    };
    o.put(DataElement::new(tags::PIXEL_DATA, vr, pixels));
    o
}

/// A Part 10 file: meta group naming `meta_ts`, the data set written in `dataset_ts` (the same,
/// except where a test builds a file that lies about its encoding).
fn part10(obj: &InMemDicomObject, meta_ts: &str, dataset_ts: &str) -> Vec<u8> {
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(meta_ts)
        .media_storage_sop_class_uid(uids::SECONDARY_CAPTURE_IMAGE_STORAGE)
        .media_storage_sop_instance_uid("2.25.7")
        .build()
        .unwrap();
    let mut bytes = vec![0u8; 128];
    bytes.extend_from_slice(b"DICM");
    meta.write(&mut bytes).unwrap();
    let ts = TransferSyntaxRegistry.get(dataset_ts).unwrap();
    obj.write_dataset_with_ts(&mut bytes, ts).unwrap();
    bytes
}

fn decoded(bytes: &[u8], what: &str) -> Vec<f64> {
    let (g, _) = decode(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!((g.width as usize, g.height as usize), (W, H), "{what}");
    g.data.iter().map(|&v| v as f64).collect()
}

fn assert_agrees(got: &[f64], want: &[f64], what: &str) {
    let r = correlation(got, want);
    assert!(r >= 0.98, "{what}: correlation {r:.4}");
}

/// A 32-bit dose-map-like picture: values spanning well beyond 16 bits (and below zero, signed).
fn stored_32(signed: bool) -> Vec<i64> {
    let (lo, hi) = if signed {
        (-3.0e8, 1.5e9)
    } else {
        (1.0e5, 3.9e9)
    };
    picture()
        .iter()
        .map(|&v| (lo + v * (hi - lo)) as i64)
        .collect()
}

#[test]
fn thirty_two_bit_samples_decode_in_both_byte_orders() {
    let want = picture();
    for signed in [false, true] {
        let v = stored_32(signed);
        let px: Pixels = if signed {
            PrimitiveValue::I32(v.iter().map(|&x| x as i32).collect()).into()
        } else {
            PrimitiveValue::U32(v.iter().map(|&x| x as u32).collect()).into()
        };
        let obj = image(1, "MONOCHROME2", 32, signed, px);
        for ts in [uids::EXPLICIT_VR_LITTLE_ENDIAN, BIG_ENDIAN] {
            let what = format!("32-bit signed={signed} in {ts}");
            assert_agrees(&decoded(&part10(&obj, ts, ts), &what), &want, &what);
        }
    }
}

/// PS3.5 G.3: one segment per byte plane, most significant first, each PackBits-coded (here as
/// literal runs of at most 128 bytes).
fn rle_fragment(samples: &[u32]) -> Vec<u8> {
    let planes: Vec<Vec<u8>> = (0..4)
        .map(|k| samples.iter().map(|&s| (s >> (24 - 8 * k)) as u8).collect())
        .collect();
    let mut out = vec![0u8; 64];
    out[..4].copy_from_slice(&4u32.to_le_bytes());
    for (k, plane) in planes.iter().enumerate() {
        let at = out.len() as u32;
        out[4 + 4 * k..8 + 4 * k].copy_from_slice(&at.to_le_bytes());
        for run in plane.chunks(128) {
            out.push((run.len() - 1) as u8);
            out.extend_from_slice(run);
        }
        if out.len() % 2 == 1 {
            out.push(0x80); // a no-op keeps segments even
        }
    }
    out
}

#[test]
fn rle_with_32_bit_samples_decodes() {
    let v: Vec<u32> = stored_32(false).iter().map(|&x| x as u32).collect();
    let seq = PixelFragmentSequence::new(vec![], vec![rle_fragment(&v)]);
    let obj = image(1, "MONOCHROME2", 32, false, Pixels::from(seq));
    let want = picture();
    assert_agrees(
        &decoded(
            &part10(&obj, RLE, uids::EXPLICIT_VR_LITTLE_ENDIAN),
            "RLE 32",
        ),
        &want,
        "RLE 32-bit",
    );
}

/// Red follows the picture, green its negative, blue is flat: luminance falls as the picture
/// brightens, so a decoder that mixes channels up shows as a negative correlation.
fn rgb() -> (Vec<[u8; 3]>, Vec<f64>) {
    let px: Vec<[u8; 3]> = picture()
        .iter()
        .map(|&v| [(v * 255.0) as u8, ((1.0 - v) * 255.0) as u8, 128])
        .collect();
    let luma = px
        .iter()
        .map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64)
        .collect();
    (px, luma)
}

#[test]
fn colour_by_plane_decodes_to_its_luminance() {
    let (px, luma) = rgb();
    let planes: Vec<u8> = (0..3).flat_map(|c| px.iter().map(move |p| p[c])).collect();
    let mut obj = image(3, "RGB", 8, false, PrimitiveValue::from(planes).into());
    obj.put(DataElement::new(
        tags::PLANAR_CONFIGURATION,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    for ts in [uids::EXPLICIT_VR_LITTLE_ENDIAN, BIG_ENDIAN] {
        assert_agrees(&decoded(&part10(&obj, ts, ts), ts), &luma, "planar RGB");
    }
}

#[test]
fn ybr_full_422_takes_each_pixels_luma() {
    // Y₀ Y₁ Cb Cr per pair of pixels: two bytes a pixel. Chroma carries noise that must not leak.
    let pic = picture();
    let mut data = Vec::with_capacity(W * H * 2);
    for (i, pair) in pic.chunks(2).enumerate() {
        let (cb, cr) = ((i * 37 % 256) as u8, (i * 91 % 256) as u8);
        data.extend_from_slice(&[(pair[0] * 255.0) as u8, (pair[1] * 255.0) as u8, cb, cr]);
    }
    let obj = image(
        3,
        "YBR_FULL_422",
        8,
        false,
        PrimitiveValue::from(data).into(),
    );
    let ts = uids::EXPLICIT_VR_LITTLE_ENDIAN;
    assert_agrees(
        &decoded(&part10(&obj, ts, ts), "YBR_FULL_422"),
        &pic,
        "YBR_FULL_422",
    );
}

/// A baseline JPEG of RGB samples stored as they are (no YCbCr transform) and no JFIF or Adobe
/// marker to say so: only the header's RGB tells a decoder not to convert.
fn rgb_jpeg_without_marker(px: &[[u8; 3]]) -> Vec<u8> {
    let flat: Vec<u8> = px.iter().flatten().copied().collect();
    let mut out = Vec::new();
    // Handing RGB over as "YCbCr" makes the encoder store it untransformed.
    jpeg_encoder::Encoder::new(&mut out, 100)
        .encode(&flat, W as u16, H as u16, jpeg_encoder::ColorType::Ycbcr)
        .unwrap();
    let app0 = out
        .windows(2)
        .position(|w| w == [0xFF, 0xE0])
        .expect("JFIF APP0");
    let len = u16::from_be_bytes([out[app0 + 2], out[app0 + 3]]) as usize;
    out.drain(app0..app0 + 2 + len);
    if out.len() % 2 == 1 {
        out.push(0);
    }
    out
}

#[test]
fn rgb_jpeg_without_a_transform_marker_keeps_its_colours() {
    let (px, luma) = rgb();
    let seq = PixelFragmentSequence::new(vec![], vec![rgb_jpeg_without_marker(&px)]);
    let obj = image(3, "RGB", 8, false, Pixels::from(seq));
    let got = decoded(
        &part10(&obj, JPEG_BASELINE, uids::EXPLICIT_VR_LITTLE_ENDIAN),
        "RGB JPEG",
    );
    assert_agrees(&got, &luma, "RGB JPEG without marker");
}

#[test]
fn implicit_data_set_under_an_explicit_meta_group_is_read() {
    let pic = picture();
    let px: Vec<u16> = pic.iter().map(|&v| (v * 4095.0) as u16).collect();
    let obj = image(
        1,
        "MONOCHROME2",
        16,
        false,
        PrimitiveValue::U16(px.into()).into(),
    );
    let bytes = part10(
        &obj,
        uids::EXPLICIT_VR_LITTLE_ENDIAN,
        uids::IMPLICIT_VR_LITTLE_ENDIAN,
    );
    assert_agrees(
        &decoded(&bytes, "implicit under explicit"),
        &pic,
        "implicit data set",
    );
    // The header pass, which streams, reads it too.
    let info = chestx_image::dicom::read_info_from(&bytes[..]).unwrap();
    assert_eq!(
        (info.rows, info.columns, info.bits_allocated),
        (H as u32, W as u32, 16)
    );
}
