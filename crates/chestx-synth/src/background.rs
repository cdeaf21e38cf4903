//! Backgrounds: real radiographs from a folder, or procedural chest-like images.

use chestx_image::Gray;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

/// Where backgrounds come from.
pub enum Backgrounds {
    /// PNG/JPEG files, each one a "patient".
    Files(Vec<PathBuf>),
    /// `n` procedural chests.
    Procedural(usize),
}

impl Backgrounds {
    /// All PNG/JPEG files of a folder, sorted.
    pub fn from_dir(dir: &Path) -> std::io::Result<Backgrounds> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let e = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .unwrap_or("")
                    .to_ascii_lowercase();
                matches!(e.as_str(), "png" | "jpg" | "jpeg")
            })
            .collect();
        files.sort();
        Ok(Backgrounds::Files(files))
    }

    pub fn len(&self) -> usize {
        match self {
            Backgrounds::Files(f) => f.len(),
            Backgrounds::Procedural(n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Background `i` at `size`×`size`.
    pub fn get(&self, i: usize, size: u32, seed: u64) -> Result<Gray, String> {
        match self {
            Backgrounds::Files(f) => Gray::open(&f[i])
                .map(|g| g.resize(size, size))
                .map_err(|e| e.to_string()),
            Backgrounds::Procedural(_) => Ok(procedural_background(
                size,
                seed ^ (i as u64).wrapping_mul(0x2545F4914F6CDD1D),
            )),
        }
    }
}

/// A chest-like image: bright body and mediastinum, two dark lung fields, rib arcs, smooth noise.
pub fn procedural_background(size: u32, seed: u64) -> Gray {
    use rand::SeedableRng;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let s = size as f32;
    let jitter = |rng: &mut ChaCha8Rng, v: f32, d: f32| v + rng.random_range(-d..=d);
    let lungs = [
        (
            jitter(&mut rng, 0.31, 0.02),
            jitter(&mut rng, 0.47, 0.02),
            jitter(&mut rng, 0.15, 0.015),
            jitter(&mut rng, 0.29, 0.02),
        ),
        (
            jitter(&mut rng, 0.69, 0.02),
            jitter(&mut rng, 0.47, 0.02),
            jitter(&mut rng, 0.15, 0.015),
            jitter(&mut rng, 0.29, 0.02),
        ),
    ];
    let rib_phase = rng.random_range(0.0..std::f32::consts::TAU);
    let rib_period = rng.random_range(0.085..0.11);
    let base = rng.random_range(0.55..0.7);
    let mut data = Vec::with_capacity((size * size) as usize);
    for y in 0..size {
        for x in 0..size {
            let (u, v) = (x as f32 / s, y as f32 / s);
            // Body: brighter towards the edges of the thorax, fading out at the image border.
            let mut val = base - 0.25 * ((u - 0.5).powi(2) * 4.0).min(1.0);
            // Lung fields: dark, soft-edged ellipses.
            for &(cx, cy, ax, ay) in &lungs {
                let d = ((u - cx) / ax).powi(2) + ((v - cy) / ay).powi(2);
                let inside = 1.0 / (1.0 + (12.0 * (d - 1.0)).exp());
                val -= 0.38 * inside;
                // Ribs: arcs across the lung fields.
                let arc = ((v + 0.35 * (u - cx).powi(2)) / rib_period * std::f32::consts::TAU
                    + rib_phase)
                    .sin();
                val += 0.05 * inside * arc.max(0.0);
            }
            // Mediastinum and heart: bright centre, heart bulging left-low.
            let med = (-((u - 0.5) / 0.07).powi(2)).exp() * (v > 0.12) as u8 as f32;
            let heart = (-(((u - 0.56) / 0.12).powi(2) + ((v - 0.66) / 0.11).powi(2))).exp();
            val += 0.22 * med + 0.25 * heart;
            data.push(val.clamp(0.0, 1.0));
        }
    }
    Gray::new(size, size, data)
}
