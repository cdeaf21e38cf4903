//! Property: truncated or bit-flipped real files give an error or an image, never a panic or a hang.

use chestx_image::Gray;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

fn real_files() -> Vec<PathBuf> {
    let Some(root) = chestx_testkit::data("dicom").map(|d| d.parent().unwrap().to_path_buf())
    else {
        return Vec::new();
    };
    let mut v = Vec::new();
    for (dir, take) in [("dicom", 10), ("nih/images", 2)] {
        let Ok(rd) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut files: Vec<PathBuf> = rd
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "dcm" || e == "png"))
            .collect();
        files.sort();
        v.extend(files.into_iter().take(take));
    }
    if v.is_empty() {
        eprintln!("SKIP: no shared data (set CHESTX_DATA)");
    }
    v
}

/// Decode on another thread; a panic or a run past the limit fails the test, naming the case.
/// Returns whether an image came back.
fn must_return(bytes: Vec<u8>, case: &str) -> bool {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(|| Gray::decode(&bytes).is_ok());
        let _ = tx.send(r);
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(_)) => panic!("{case}: decoder panicked"),
        Err(_) => panic!("{case}: decoder hung"),
    }
}

#[test]
fn truncations_and_bit_flips_never_panic_or_hang() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for f in real_files() {
        let bytes = std::fs::read(&f).unwrap();
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        // Truncations: all through the header, then spread over the pixel data.
        let mut cuts: Vec<usize> = (0..bytes.len().min(1200)).step_by(7).collect();
        cuts.extend((0..24).map(|_| rng.random_range(0..bytes.len())));
        for n in cuts {
            let decoded = must_return(bytes[..n].to_vec(), &format!("{name} cut at {n}"));
            // Half a file must not come back as a clean image: pixels would be made up.
            assert!(
                !decoded || n + 64 > bytes.len(),
                "{name} cut at {n} of {} decoded without error",
                bytes.len()
            );
        }
        // Bit flips: a few random bits, mostly in the header where lengths and tags live.
        for k in 0..60 {
            let mut b = bytes.clone();
            for _ in 0..1 + k % 4 {
                let hi = if k % 3 == 0 {
                    b.len()
                } else {
                    b.len().min(2048)
                };
                let i = rng.random_range(0..hi);
                b[i] ^= 1 << rng.random_range(0..8);
            }
            must_return(b, &format!("{name} flip set {k}"));
        }
    }
}
