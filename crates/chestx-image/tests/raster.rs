//! Films kept at their stored depth: which files stay 8-bit, and that resampling them in 8 bits
//! agrees with the float path to one grey level, on generated films and on real NIH PNGs.

mod common;

use chestx_image::{Gray, Raster, Region};
use image::{ImageBuffer, Luma, Rgba};
use rand::{Rng, SeedableRng};

fn png_of<P: image::PixelWithColorType>(buf: &ImageBuffer<P, Vec<P::Subpixel>>) -> Vec<u8>
where
    [P::Subpixel]: image::EncodableLayout,
{
    let mut out = std::io::Cursor::new(Vec::new());
    buf.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// A smooth film with noise on top: gradients, a bright disc, grain.
fn film(w: u32, h: u32, seed: u64) -> Vec<u8> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f32 / w as f32, (i / w) as f32 / h as f32);
            let disc = if (x - 0.6).powi(2) + (y - 0.4).powi(2) < 0.04 {
                80.0
            } else {
                0.0
            };
            (40.0 + 120.0 * x * y + disc + rng.random_range(-20.0f32..20.0)).clamp(0.0, 255.0) as u8
        })
        .collect()
}

fn worst(a: &Gray, b: &Gray) -> f32 {
    assert_eq!((a.width, a.height), (b.width, b.height));
    a.data
        .iter()
        .zip(&b.data)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn eight_bit_gray_pngs_stay_bytes_and_other_files_become_floats() {
    let pixels = film(37, 23, 1);
    let gray8 = ImageBuffer::<Luma<u8>, _>::from_raw(37, 23, pixels.clone()).unwrap();
    match Raster::decode(&png_of(&gray8)).unwrap() {
        Raster::Gray8 {
            width,
            height,
            data,
        } => assert_eq!((width, height, data), (37, 23, pixels.clone())),
        other => panic!("8-bit gray PNG decoded as {other:?}"),
    }
    let gray16 = ImageBuffer::<Luma<u16>, _>::from_raw(2, 1, vec![0u16, 65535]).unwrap();
    assert_eq!(
        Raster::decode(&png_of(&gray16)).unwrap(),
        Raster::Float(Gray::new(2, 1, vec![0.0, 1.0]))
    );
    let rgba = ImageBuffer::<Rgba<u8>, _>::from_raw(1, 1, vec![51u8, 51, 51, 7]).unwrap();
    assert!(matches!(
        Raster::decode(&png_of(&rgba)).unwrap(),
        Raster::Float(_)
    ));
    // Either way the floats are the bytes over 255.
    let g = Raster::decode(&png_of(&gray8)).unwrap().into_gray();
    let want: Vec<f32> = pixels.iter().map(|&v| v as f32 / 255.0).collect();
    assert_eq!(g.data, want);
    assert!(Raster::decode(b"\x89PNG\r\n\x1a\nnot really").is_err());
}

#[test]
fn low_bit_depth_gray_expands_to_full_range_bytes() {
    // A 1-bit film written by the png crate: black and white become 0 and 255, as the image crate
    // (the independent reference here) reads them.
    let mut bytes = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut bytes, 8, 2);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::One);
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[0b1010_0110, 0b0000_1111]).unwrap();
    }
    let reference = image::load_from_memory(&bytes)
        .unwrap()
        .into_luma8()
        .into_raw();
    match Raster::decode(&bytes).unwrap() {
        Raster::Gray8 { data, .. } => assert_eq!(data, reference),
        other => panic!("1-bit gray PNG decoded as {other:?}"),
    }
    assert_eq!(reference[..4], [255, 0, 255, 0]);
}

#[test]
fn eight_bit_resample_is_within_one_grey_level_of_the_float_path() {
    let (w, h) = (301, 257);
    let bytes = film(w, h, 2);
    let eight = Raster::Gray8 {
        width: w,
        height: h,
        data: bytes.clone(),
    };
    let float = Raster::Float(eight.clone().into_gray());
    let regions = [
        eight.full(),
        Region {
            x0: 0,
            y0: 0,
            width: 200,
            height: 200,
        },
        Region {
            x0: 101,
            y0: 57,
            width: 200,
            height: 200,
        },
        Region {
            x0: 13,
            y0: 29,
            width: 47,
            height: 91,
        },
    ];
    for r in regions {
        for (ow, oh) in [
            (64, 64),
            (31, 17),
            (r.width, r.height),
            (2 * r.width, r.height),
        ] {
            let (a, b) = (eight.resample(r, ow, oh), float.resample(r, ow, oh));
            let off = worst(&a, &b);
            // Two passes, each rounded to a byte: at most half a level each.
            assert!(off <= 1.0 / 255.0, "{r:?} to {ow}x{oh}: off by {off}");
        }
    }
}

#[test]
fn a_crop_is_resampled_from_its_own_pixels_and_mirroring_commutes() {
    let (w, h) = (120, 90);
    let base = film(w, h, 3);
    let float = Raster::Float(
        Raster::Gray8 {
            width: w,
            height: h,
            data: base.clone(),
        }
        .into_gray(),
    );
    let r = Region {
        x0: 30,
        y0: 10,
        width: 60,
        height: 60,
    };
    // A crop kept at its own size is exactly those pixels.
    let same = float.resample(r, 60, 60);
    for y in 0..60 {
        for x in 0..60 {
            let want = base[((y + 10) * w + x + 30) as usize] as f32 / 255.0;
            assert!((same.data[(y * 60 + x) as usize] - want).abs() < 1e-6);
        }
    }
    // The film mirrored, its mirrored region resampled, then mirrored back, is the region resampled.
    let flipped: Vec<u8> = base
        .chunks(w as usize)
        .flat_map(|row| row.iter().rev().copied())
        .collect();
    let flipped = Raster::Float(
        Raster::Gray8 {
            width: w,
            height: h,
            data: flipped,
        }
        .into_gray(),
    );
    let mirrored_region = Region {
        x0: w - r.x0 - r.width,
        ..r
    };
    let mut back = flipped.resample(mirrored_region, 23, 23);
    back.mirror();
    let off = worst(&back, &float.resample(r, 23, 23));
    assert!(off < 1e-5, "off by {off}");
}

#[test]
fn nih_films_resample_alike_either_way() {
    let Some(files) = common::nih_pngs() else {
        return;
    };
    let (mut eight, mut float) = (0, 0);
    for f in files.iter().take(12) {
        let film = Raster::open(f).unwrap();
        let reference = Gray::open(f).unwrap();
        match film {
            Raster::Gray8 { .. } => eight += 1,
            Raster::Float(_) => float += 1,
        }
        let r = Region {
            x0: 40,
            y0: 100,
            width: 900,
            height: 900,
        };
        let off = worst(
            &film.resample(r, 224, 224),
            &reference.resample(r, 224, 224),
        );
        assert!(off <= 1.0 / 255.0, "{}: off by {off}", f.display());
    }
    assert!(eight >= 10, "{eight} 8-bit gray, {float} other");
}
