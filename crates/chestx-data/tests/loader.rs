//! What the loader hands the model: the film normalized, and with augmentation a seeded crop,
//! gain and mirror that change per sample and repeat per seed.

use chestx_data::loader::prepare;
use chestx_data::{epoch_order, Loader, LoaderConfig, Sample};
use chestx_image::{Gray, IMAGENET_MEAN, IMAGENET_STD};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const S: u32 = 48;

/// A 160×128 8-bit film, bright on the left and dark on the right, with a grain.
fn write_film(path: &Path) {
    let (w, h) = (160u32, 128u32);
    let data: Vec<u8> = (0..w * h)
        .map(|i| {
            let x = i % w;
            let ramp = 200.0 - 150.0 * x as f32 / w as f32;
            (ramp + ((i * 7919) % 13) as f32) as u8
        })
        .collect();
    image::GrayImage::from_raw(w, h, data)
        .unwrap()
        .save(path)
        .unwrap();
}

fn sample(path: PathBuf) -> Sample {
    Sample {
        image: path.file_name().unwrap().to_string_lossy().into(),
        path,
        labels: vec![1.0, 0.0],
        patient: 0,
    }
}

/// Channel 0 of a prepared sample, back in [0, 1].
fn unnormalized(buf: &[f32]) -> Vec<f32> {
    buf[..(S * S) as usize]
        .iter()
        .map(|v| v * IMAGENET_STD[0] + IMAGENET_MEAN[0])
        .collect()
}

fn half_means(v: &[f32]) -> (f32, f32) {
    let (mut l, mut r) = (0.0, 0.0);
    for (i, x) in v.iter().enumerate() {
        if (i as u32 % S) < S / 2 {
            l += x
        } else {
            r += x
        }
    }
    let n = (v.len() / 2) as f32;
    (l / n, r / n)
}

#[test]
fn an_unaugmented_sample_is_the_whole_film_resized_and_normalized() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("film.png");
    write_film(&p);
    let mut buf = vec![0f32; 3 * (S * S) as usize];
    prepare(&sample(p.clone()), S, None, &mut buf).unwrap();
    let mut want = vec![0f32; buf.len()];
    Gray::open(&p)
        .unwrap()
        .resize(S, S)
        .write_chw_imagenet(&mut want);
    // The 8-bit resample agrees with the float one to a grey level, in normalized units.
    let worst = buf
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(worst <= 1.0 / 255.0 / IMAGENET_STD[2], "off by {worst}");
}

#[test]
fn augmentation_is_seeded_varies_per_sample_and_mirrors_about_half() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("film.png");
    write_film(&p);
    let s = sample(p);
    let run = |seed: u64| {
        let mut buf = vec![0f32; 3 * (S * S) as usize];
        prepare(&s, S, Some(ChaCha8Rng::seed_from_u64(seed)), &mut buf).unwrap();
        buf
    };
    assert_eq!(run(7), run(7));
    let (mut left_bright, mut right_bright) = (0, 0);
    let mut distinct = std::collections::HashSet::new();
    for seed in 0..40 {
        let v = unnormalized(&run(seed));
        assert!(v.iter().all(|x| (-1e-5..=1.0 + 1e-5).contains(x)));
        let (l, r) = half_means(&v);
        if l > r {
            left_bright += 1
        } else {
            right_bright += 1
        }
        distinct.insert(v.iter().map(|x| (x * 1e4) as i64).collect::<Vec<_>>());
    }
    assert!(
        left_bright >= 10 && right_bright >= 10,
        "{left_bright} / {right_bright}"
    );
    assert_eq!(distinct.len(), 40);
}

#[test]
fn a_broken_file_is_reported_in_its_batch_and_the_rest_still_arrive() {
    let dir = tempfile::tempdir().unwrap();
    let mut samples = Vec::new();
    for i in 0..5 {
        let p = dir.path().join(format!("f{i}.png"));
        if i == 2 {
            std::fs::write(&p, b"\x89PNG\r\n\x1a\ntruncated").unwrap();
        } else {
            write_film(&p);
        }
        samples.push(sample(p));
    }
    let cfg = LoaderConfig {
        batch_size: 2,
        input_size: S,
        shuffle: false,
        augment: true,
        seed: 3,
        prefetch: 1,
        preprocess: chestx_image::Preprocess::Imagenet,
    };
    let loader = Loader::start(Arc::new(samples), epoch_order(5, 3, 0, false), 0, 0, cfg);
    let batches: Vec<_> = loader.batches.iter().collect();
    assert_eq!(loader.total_batches, 3);
    let seen: Vec<usize> = batches.iter().flat_map(|b| b.samples.clone()).collect();
    assert_eq!(seen, [0, 1, 3, 4]);
    assert_eq!(batches[1].n, 1);
    assert_eq!(batches[1].failed.len(), 1);
    assert!(
        batches[1].failed[0].contains("f2.png"),
        "{}",
        batches[1].failed[0]
    );
    assert!(batches
        .iter()
        .all(|b| b.images.len() == b.n * 3 * (S * S) as usize));
}

#[test]
fn augmentation_crops_a_film_that_is_not_square_in_its_own_proportions() {
    // A 320×80 film whose brightness ramps across its width: evaluation resizes the whole film, so
    // a training crop must span most of the width too (85–100%), not a square of the short side
    // (a quarter of the width, a quarter of the ramp).
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("wide.png");
    let (w, h) = (320u32, 80u32);
    let data: Vec<u8> = (0..w * h)
        .map(|i| (30.0 + 200.0 * (i % w) as f32 / (w - 1) as f32) as u8)
        .collect();
    image::GrayImage::from_raw(w, h, data)
        .unwrap()
        .save(&p)
        .unwrap();
    let s = sample(p);
    for seed in 0..12 {
        let mut buf = vec![0f32; 3 * (S * S) as usize];
        prepare(&s, S, Some(ChaCha8Rng::seed_from_u64(seed)), &mut buf).unwrap();
        let v = unnormalized(&buf);
        let row = &v[(S * (S / 2)) as usize..(S * (S / 2 + 1)) as usize];
        let span = (row[0] - row[S as usize - 1]).abs();
        // Full ramp: 200/255 ≈ 0.78; at least 85% of it, times the gain (≥ 0.9), less the edge
        // pixels' resampling: > 0.55. A square crop of the short side spans ≤ 0.2 × 1.1.
        assert!(
            span > 0.55,
            "seed {seed}: the crop spans {span:.3} of the ramp"
        );
    }
}
