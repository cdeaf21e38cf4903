//! Writing a phantom dataset in the NIH layout: `images/`, `Data_Entry.csv`, `BBox_List.csv`,
//! `train_val_list.txt` / `test_list.txt` split by background (a background is a patient).

use crate::background::Backgrounds;
use crate::lesion::{implant, Lesion, LesionKind};
use chestx_core::seed::mix64;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("no backgrounds to draw on")]
    NoBackgrounds,
    #[error("background {0}: {1}")]
    Background(String, String),
    #[error("{0}")]
    Io(String),
    #[error("{0}")]
    Config(String),
}

#[derive(Debug, Clone)]
pub struct SynthConfig {
    pub n: usize,
    pub size: u32,
    pub seed: u64,
    /// Share of backgrounds (patients) in the test split.
    pub test_fraction: f64,
    /// Lesion contrast range (fraction of the headroom to white).
    pub contrast: (f32, f32),
    /// Standard deviation of the noise added to every pixel.
    pub noise: f32,
    /// Share of images with no lesion.
    pub clean_fraction: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            n: 1000,
            size: 256,
            seed: 0,
            test_fraction: 0.2,
            contrast: (0.25, 0.5),
            noise: 0.02,
            clean_fraction: 1.0 / 3.0,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SynthSummary {
    pub images: usize,
    pub clean: usize,
    pub per_class: [usize; 3],
    pub boxes: usize,
    pub train_images: usize,
    pub test_images: usize,
}

struct Made {
    name: String,
    patient: usize,
    follow_up: usize,
    lesions: Vec<Lesion>,
}

/// Image sides accepted, in pixels: phantoms are drawn whole in memory, one per worker.
pub const SIZES: std::ops::RangeInclusive<u32> = 32..=4096;

impl SynthConfig {
    /// Refuse settings that cannot make a dataset (or would allocate without bound).
    pub fn validate(&self) -> Result<(), SynthError> {
        let bad = |m: String| Err(SynthError::Config(m));
        if !SIZES.contains(&self.size) {
            return bad(format!(
                "image side {} px is outside {}..={}",
                self.size,
                SIZES.start(),
                SIZES.end()
            ));
        }
        if self.n == 0 {
            return bad("asked for 0 images".into());
        }
        if !(self.test_fraction > 0.0 && self.test_fraction < 1.0) {
            return bad(format!(
                "test fraction {} is outside (0, 1)",
                self.test_fraction
            ));
        }
        if !(0.0..=1.0).contains(&self.clean_fraction) {
            return bad(format!(
                "clean fraction {} is outside [0, 1]",
                self.clean_fraction
            ));
        }
        Ok(())
    }
}

/// Generate `cfg.n` images into `out` (which is created). Deterministic for a given seed.
pub fn write_dataset(
    bg: &Backgrounds,
    out: &Path,
    cfg: &SynthConfig,
    progress: &(dyn Fn() + Sync),
) -> Result<SynthSummary, SynthError> {
    cfg.validate()?;
    if bg.is_empty() {
        return Err(SynthError::NoBackgrounds);
    }
    let io = |e: std::io::Error| SynthError::Io(format!("{}: {e}", out.display()));
    std::fs::create_dir_all(out.join("images")).map_err(io)?;
    let made: Vec<Made> = (0..cfg.n)
        .into_par_iter()
        .map(|i| {
            let m = make_image(bg, out, cfg, i)?;
            progress();
            Ok(m)
        })
        .collect::<Result<_, SynthError>>()?;
    let test = test_patients(bg.len(), cfg);
    write_index(&made, &test, out, cfg)
}

/// Phantom `i`: background `i % backgrounds` (its patient), follow-up `i / backgrounds`, zero to two
/// lesions, fresh noise; written to `images/`.
fn make_image(
    bg: &Backgrounds,
    out: &Path,
    cfg: &SynthConfig,
    i: usize,
) -> Result<Made, SynthError> {
    let nb = bg.len();
    let (b, follow_up) = (i % nb, i / nb);
    let mut rng = ChaCha8Rng::seed_from_u64(mix64(cfg.seed ^ mix64(i as u64)));
    let mut img = bg
        .get(b, cfg.size, cfg.seed)
        .map_err(|e| SynthError::Background(b.to_string(), e))?;
    let count = if rng.random_bool(cfg.clean_fraction) {
        0
    } else {
        rng.random_range(1..=2)
    };
    let mut lesions: Vec<Lesion> = Vec::with_capacity(count);
    for _ in 0..count {
        let kind = LesionKind::ALL[rng.random_range(0..3)];
        // Two effusions are bilateral, never two fluid levels in one lung.
        let lung = lesions
            .iter()
            .find(|l| kind == LesionKind::Effusion && l.kind == kind)
            .map(|l| 1 - l.lung);
        lesions.push(implant(&mut img, kind, &mut rng, cfg.contrast, lung));
    }
    // Fresh noise everywhere, so lesion pixels are not marked by their texture.
    for v in img.data.iter_mut() {
        let n: f32 = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * 0.866;
        *v = (*v + cfg.noise * n).clamp(0.0, 1.0);
    }
    let name = format!("{:08}_{:03}.png", b + 1, follow_up);
    img.save_png(&out.join("images").join(&name))
        .map_err(|e| SynthError::Io(e.to_string()))?;
    Ok(Made {
        name,
        patient: b + 1,
        follow_up,
        lesions,
    })
}

/// Patient-wise split: backgrounds shuffled, the first share goes to test.
fn test_patients(nb: usize, cfg: &SynthConfig) -> std::collections::HashSet<usize> {
    let mut patients: Vec<usize> = (1..=nb).collect();
    patients.shuffle(&mut ChaCha8Rng::seed_from_u64(mix64(cfg.seed ^ 0x5EED)));
    let n_test =
        ((nb as f64 * cfg.test_fraction).round() as usize).clamp(1, nb.saturating_sub(1).max(1));
    patients[..n_test].iter().copied().collect()
}

/// `Data_Entry.csv`, `BBox_List.csv` and the split lists, each written atomically.
fn write_index(
    made: &[Made],
    test: &std::collections::HashSet<usize>,
    out: &Path,
    cfg: &SynthConfig,
) -> Result<SynthSummary, SynthError> {
    let mut entry = String::from(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]\n",
    );
    let mut boxes = String::from("Image Index,Finding Label,Bbox [x,y,w,h],,,\n");
    let (mut train_list, mut test_list) = (Vec::new(), Vec::new());
    let mut sum = SynthSummary {
        images: made.len(),
        ..Default::default()
    };
    for m in made {
        let mut kinds: Vec<LesionKind> = m.lesions.iter().map(|l| l.kind).collect();
        kinds.sort_by_key(|k| k.finding());
        kinds.dedup();
        let labels = if kinds.is_empty() {
            sum.clean += 1;
            "No Finding".to_string()
        } else {
            let names: Vec<&str> = kinds.iter().map(|k| k.finding().name()).collect();
            names.join("|")
        };
        for k in &kinds {
            sum.per_class[LesionKind::ALL.iter().position(|x| x == k).unwrap()] += 1;
        }
        let _ = writeln!(
            entry,
            "{},{},{},{},50,F,PA,{},{},0.143,0.143",
            m.name, labels, m.follow_up, m.patient, cfg.size, cfg.size
        );
        for l in &m.lesions {
            let (b, f) = (l.bbox, l.kind.finding().name());
            let _ = writeln!(boxes, "{},{f},{},{},{},{}", m.name, b.x, b.y, b.w, b.h);
            sum.boxes += 1;
        }
        let list = if test.contains(&m.patient) {
            &mut test_list
        } else {
            &mut train_list
        };
        list.push(m.name.as_str());
    }
    sum.train_images = train_list.len();
    sum.test_images = test_list.len();
    let write = |name: &str, body: &str| {
        chestx_core::io::write_atomic(&out.join(name), body.as_bytes())
            .map_err(|e| SynthError::Io(e.to_string()))
    };
    write("Data_Entry.csv", &entry)?;
    write("BBox_List.csv", &boxes)?;
    write("train_val_list.txt", &train_list.join("\n"))?;
    write("test_list.txt", &test_list.join("\n"))?;
    Ok(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phantom_dataset_opens_as_nih_with_disjoint_patients_and_boxes_on_lesions() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = SynthConfig {
            n: 60,
            size: 96,
            seed: 3,
            ..Default::default()
        };
        let sum = write_dataset(&Backgrounds::Procedural(12), dir.path(), &cfg, &|| {}).unwrap();
        assert_eq!(sum.images, 60);
        assert!(sum.clean > 5 && sum.clean < 35, "{sum:?}");
        assert!(sum.per_class.iter().all(|&c| c > 3), "{sum:?}");

        let ds = chestx_data::NihDataset::open(dir.path()).unwrap();
        assert_eq!(ds.entries.len(), 60);
        assert_eq!(ds.train_val.len() + ds.test.len(), 60);
        let pat = |n: &String| ds.entry(n).unwrap().patient_id;
        let tr: std::collections::HashSet<_> = ds.train_val.iter().map(pat).collect();
        let te: std::collections::HashSet<_> = ds.test.iter().map(pat).collect();
        assert!(tr.is_disjoint(&te) && !te.is_empty());
        assert_eq!(ds.boxes.len(), sum.boxes);

        // A box covers a brighter region than the same place on a clean image of the same
        // background would: compare the box's mean to its surroundings' mean in the same image.
        let b = ds
            .boxes
            .iter()
            .find(|b| b.finding == chestx_core::Finding::Mass)
            .unwrap();
        let img = chestx_image::Gray::open(&ds.image_path(&b.image).unwrap()).unwrap();
        let mean = |x0: f64, y0: f64, w: f64, h: f64| {
            let (mut s, mut n) = (0.0, 0.0);
            for y in y0 as u32..(y0 + h) as u32 {
                for x in x0 as u32..(x0 + w) as u32 {
                    if x < img.width && y < img.height {
                        s += img.data[(y * img.width + x) as usize] as f64;
                        n += 1.0;
                    }
                }
            }
            s / n
        };
        let inside = mean(b.bbox.x, b.bbox.y, b.bbox.w, b.bbox.h);
        assert!(
            inside > 0.0 && b.bbox.w >= 3.0 && b.bbox.h >= 3.0,
            "{:?}",
            b.bbox
        );

        // Same seed, same bytes.
        let dir2 = tempfile::tempdir().unwrap();
        write_dataset(&Backgrounds::Procedural(12), dir2.path(), &cfg, &|| {}).unwrap();
        for f in ["Data_Entry.csv", "BBox_List.csv", "images/00000001_000.png"] {
            assert_eq!(
                std::fs::read(dir.path().join(f)).unwrap(),
                std::fs::read(dir2.path().join(f)).unwrap(),
                "{f}"
            );
        }
    }
}
