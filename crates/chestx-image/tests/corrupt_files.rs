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

/// Issue 18: a small DICOM whose Pixel Data claims 4 GB took 4.6 GB before failing. The claim is
/// now checked against the file first: a clear error, and the process stays small.
#[test]
fn a_dicom_claiming_gigabytes_of_pixels_is_refused_without_allocating_them() {
    let Some(dir) = chestx_testkit::data("dicom") else {
        return;
    };
    let bytes = std::fs::read(dir.join("CR-MONO1-10-chest.dcm")).unwrap();
    // The Pixel Data header (implicit VR: tag, then a 4-byte length), from the end.
    let at = bytes
        .windows(4)
        .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
        .expect("a Pixel Data element");
    let mut forged = bytes[..at + 8].to_vec();
    forged[at + 4..at + 8].copy_from_slice(&0xF000_0000u32.to_le_bytes());
    forged.extend_from_slice(&[0u8; 512]);
    let e = chestx_image::dicom::decode(&forged).unwrap_err();
    assert!(e.contains("declares 4026531840 bytes"), "{e}");
    assert!(peak_rss_mb() < 1024.0, "peak RSS {} MB", peak_rss_mb());
}

/// The process's peak resident memory (Linux), in MB.
fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A PNG chunk: length, type, data, CRC over type and data.
fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut crc = flate2::Crc::new();
    crc.update(kind);
    crc.update(data);
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    c.extend_from_slice(&crc.sum().to_be_bytes());
    c
}

/// Issue 18: a small PNG claiming 20000 × 20000 took 2.4–4.7 GB in inspect, predict and ingest. The
/// claim is refused from the header, before any allocation.
#[test]
fn a_png_claiming_a_huge_picture_is_refused_from_its_header() {
    for (depth, color) in [(8u8, 0u8), (16, 0), (8, 2)] {
        let mut ihdr = 20_000u32.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&20_000u32.to_be_bytes());
        ihdr.extend_from_slice(&[depth, color, 0, 0, 0]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut z, &vec![0u8; 1 << 20]).unwrap();
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(b"IDAT", &z.finish().unwrap()));
        png.extend(chunk(b"IEND", &[]));
        let e = Gray::decode(&png).unwrap_err();
        assert!(e.contains("20000 × 20000"), "{e}");
        let e = chestx_image::Raster::decode(&png).unwrap_err();
        assert!(e.contains("beyond the limit"), "{e}");
    }
    assert!(peak_rss_mb() < 1024.0, "peak RSS {} MB", peak_rss_mb());
}
