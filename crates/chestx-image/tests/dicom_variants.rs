//! Pixel layouts a chest X-ray PACS sends, built here with known pictures: each decodes to the picture
//! it holds (correlation ≥ 0.98 with the expected display values, air dark), or the case is listed
//! as not yet supported with the decoder's own message. Issue 18 names signed 16-bit, big-endian
//! explicit VR, MONOCHROME1 and 8-bit among the layouts refused before.

mod known_picture;

use chestx_image::dicom::decode;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use known_picture::correlation;

const W: u16 = 64;
const H: u16 = 48;

/// The expected picture, in [0, 1].
fn picture() -> Vec<f64> {
    known_picture::picture(W as usize, H as usize)
}

struct Layout {
    name: &'static str,
    ts: &'static str,
    bits: u16,
    signed: bool,
    monochrome1: bool,
}

fn file(l: &Layout) -> Vec<u8> {
    let pic = picture();
    let (lo, hi): (f64, f64) = match (l.bits, l.signed) {
        (8, _) => (0.0, 255.0),
        (_, true) => (-2000.0, 2000.0),
        _ => (0.0, 4095.0),
    };
    // MONOCHROME1 stores white as the minimum.
    let stored = |v: f64| {
        let v = if l.monochrome1 { 1.0 - v } else { v };
        (lo + v * (hi - lo)).round()
    };
    let mut obj = InMemDicomObject::new_empty();
    let put = |o: &mut InMemDicomObject, tag, vr, v: PrimitiveValue| {
        o.put(DataElement::new(tag, vr, v));
    };
    put(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION.into(),
    );
    put(&mut obj, tags::SOP_INSTANCE_UID, VR::UI, "2.25.1".into());
    put(&mut obj, tags::MODALITY, VR::CS, "DX".into());
    put(&mut obj, tags::ROWS, VR::US, PrimitiveValue::from(H));
    put(&mut obj, tags::COLUMNS, VR::US, PrimitiveValue::from(W));
    put(
        &mut obj,
        tags::SAMPLES_PER_PIXEL,
        VR::US,
        PrimitiveValue::from(1u16),
    );
    let photometric = if l.monochrome1 {
        "MONOCHROME1"
    } else {
        "MONOCHROME2"
    };
    put(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        photometric.into(),
    );
    put(
        &mut obj,
        tags::BITS_ALLOCATED,
        VR::US,
        PrimitiveValue::from(l.bits),
    );
    let stored_bits = if l.bits == 8 { 8u16 } else { 12 };
    put(
        &mut obj,
        tags::BITS_STORED,
        VR::US,
        PrimitiveValue::from(stored_bits),
    );
    put(
        &mut obj,
        tags::HIGH_BIT,
        VR::US,
        PrimitiveValue::from(stored_bits - 1),
    );
    put(
        &mut obj,
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(u16::from(l.signed)),
    );
    let pixels = if l.bits == 8 {
        PrimitiveValue::from(pic.iter().map(|&v| stored(v) as u8).collect::<Vec<u8>>())
    } else if l.signed {
        PrimitiveValue::I16(pic.iter().map(|&v| stored(v) as i16).collect())
    } else {
        PrimitiveValue::U16(pic.iter().map(|&v| stored(v) as u16).collect())
    };
    let vr = if l.bits == 8 { VR::OB } else { VR::OW };
    put(&mut obj, tags::PIXEL_DATA, vr, pixels);
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(l.ts)
        .media_storage_sop_class_uid(uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION)
        .media_storage_sop_instance_uid("2.25.1");
    let file = obj.with_meta(meta).unwrap();
    let mut bytes = Vec::new();
    file.write_all(&mut bytes).unwrap();
    bytes
}

#[test]
fn pacs_pixel_layouts_decode_to_their_picture() {
    let le = uids::EXPLICIT_VR_LITTLE_ENDIAN;
    let layouts = [
        Layout {
            name: "16-bit unsigned, explicit LE",
            ts: le,
            bits: 16,
            signed: false,
            monochrome1: false,
        },
        Layout {
            name: "16-bit signed, explicit LE",
            ts: le,
            bits: 16,
            signed: true,
            monochrome1: false,
        },
        Layout {
            name: "16-bit unsigned MONOCHROME1",
            ts: le,
            bits: 16,
            signed: false,
            monochrome1: true,
        },
        Layout {
            name: "16-bit signed MONOCHROME1",
            ts: le,
            bits: 16,
            signed: true,
            monochrome1: true,
        },
        Layout {
            name: "8-bit, explicit LE",
            ts: le,
            bits: 8,
            signed: false,
            monochrome1: false,
        },
        Layout {
            name: "16-bit unsigned, implicit LE",
            ts: uids::IMPLICIT_VR_LITTLE_ENDIAN,
            bits: 16,
            signed: false,
            monochrome1: false,
        },
        Layout {
            name: "16-bit signed, explicit big endian",
            ts: "1.2.840.10008.1.2.2", // explicit VR big endian (retired, still sent by old modalities)
            bits: 16,
            signed: true,
            monochrome1: false,
        },
    ];
    let want = picture();
    let mut failed = Vec::new();
    for l in &layouts {
        match decode(&file(l)) {
            Ok((g, _)) => {
                assert_eq!((g.width, g.height), (W as u32, H as u32), "{}", l.name);
                let got: Vec<f64> = g.data.iter().map(|&v| v as f64).collect();
                let r = correlation(&got, &want);
                if r < 0.98 {
                    failed.push(format!("{}: correlation {r:.3}", l.name));
                }
            }
            Err(e) => failed.push(format!("{}: {e}", l.name)),
        }
    }
    assert!(failed.is_empty(), "{failed:#?}");
}
