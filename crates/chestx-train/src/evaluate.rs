//! Evaluating a trained run on a split: per-class ROC AUC with bootstrap intervals, and — on images
//! with hand-drawn boxes — the paper's localization table (accuracy and average false positives at
//! T(IoBB) and T(IoU) thresholds) from class activation maps turned into boxes.

use crate::heat::{batch_heat, heat_boxes, ClassHeat, Flips, HeatOptions};
use crate::{batch_tensors, columns_of, Run, TrainError};
use chestx_core::{BBox, Finding};
use chestx_data::{epoch_order, Loader, LoaderConfig, NihDataset, Sample, Split};
use chestx_eval::boxes::{
    localization, LocCase, LocScore, Overlap, IOBB_THRESHOLDS, IOU_THRESHOLDS,
};
use chestx_eval::{bootstrap_auc_ci, roc_auc, roc_curve};
use chestx_image::Gray;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tch::Device;

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub split: Split,
    /// `best.safetensors` (default) or another checkpoint file.
    pub checkpoint: Option<PathBuf>,
    /// Heatmap thresholds on the 0–255 scale; boxes from all of them are pooled (paper: 60 and 180).
    pub heat_thresholds: Vec<u8>,
    pub bootstrap: usize,
    pub seed: u64,
    /// Overlays to draw (images with boxes first).
    pub overlays: usize,
    pub batch_size: usize,
    /// A box list to use instead of the dataset's own.
    pub boxes: Option<PathBuf>,
    /// Which heatmap gives the boxes, and how.
    pub heat: HeatOptions,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            split: Split::Test,
            checkpoint: None,
            heat_thresholds: vec![60, 180],
            bootstrap: 1000,
            seed: 0,
            overlays: 8,
            batch_size: 16,
            boxes: None,
            heat: HeatOptions::default(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassResult {
    pub finding: String,
    pub positives: usize,
    pub auc: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    /// Images with true boxes of this class.
    pub box_images: usize,
    pub iobb: Vec<LocScore>,
    pub iou: Vec<LocScore>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalResults {
    pub run: String,
    pub checkpoint: String,
    pub split: String,
    pub images: usize,
    pub failed_images: Vec<String>,
    pub heat_thresholds: Vec<u8>,
    pub heat: HeatOptions,
    /// What the maps are, in words ("LayerCAM maps of layer2 × layer4").
    pub heat_maps: String,
    pub classes: Vec<ClassResult>,
    pub mean_auc: Option<f64>,
    pub overlays: Vec<String>,
}

pub fn evaluate(
    run: &Run,
    out_dir: &Path,
    opts: &EvalOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<EvalResults, TrainError> {
    let cfg = &run.config;
    let checkpoint = run.checkpoint_or_best(opts.checkpoint.as_deref());
    let (_vs, net) = run.load_model(&checkpoint)?;
    let heat_maps = opts.heat.describe(&net);
    opts.heat.stages(&net).map_err(TrainError::Config)?;
    let ds = crate::open_dataset(&cfg.dataset)?;
    let (samples, _missing) = ds.samples(opts.split, cfg.val_fraction, cfg.seed, &cfg.labels);
    if samples.is_empty() {
        return Err(TrainError::Dataset(
            cfg.dataset.display().to_string(),
            format!("no {:?} images on disk", opts.split),
        ));
    }
    let samples = Arc::new(samples);
    let columns = columns_of(&cfg.model.classes)?;
    let classes: Vec<Finding> = columns.iter().map(|&c| Finding::DISEASES[c]).collect();

    // True boxes by image and class.
    let box_list = match &opts.boxes {
        Some(p) => {
            let dir = p.parent().unwrap_or(Path::new("."));
            NihDataset::open_boxes(p)
                .map_err(|e| TrainError::Dataset(dir.display().to_string(), e.to_string()))?
        }
        None => ds.boxes().to_vec(),
    };
    let mut truth_boxes: HashMap<(String, Finding), Vec<BBox>> = HashMap::new();
    for b in &box_list {
        truth_boxes
            .entry((b.image.clone(), b.finding))
            .or_default()
            .push(b.bbox);
    }
    let has_boxes = |img: &str| {
        classes
            .iter()
            .any(|f| truth_boxes.contains_key(&(img.to_string(), *f)))
    };

    std::fs::create_dir_all(out_dir.join("overlays"))
        .map_err(|e| TrainError::Io(out_dir.display().to_string(), e.to_string()))?;
    let size = cfg.model.input_size;
    let lcfg = LoaderConfig {
        batch_size: opts.batch_size,
        input_size: size as u32,
        shuffle: false,
        augment: false,
        seed: 0,
        prefetch: 2,
    };
    let loader = Loader::start(
        samples.clone(),
        epoch_order(samples.len(), 0, 0, false),
        0,
        0,
        lcfg,
    );
    let total = loader.total_batches;
    let mut probs: Vec<Vec<f32>> = Vec::new();
    let mut truth: Vec<Vec<f32>> = Vec::new();
    let mut failed = Vec::new();
    // Per class: localization cases; and heatmaps kept for overlays.
    let mut cases: Vec<Vec<LocCase>> = vec![Vec::new(); classes.len()];
    let mut kept: Vec<(usize, Vec<ClassHeat>)> = Vec::new();
    let mut overlay_budget_plain = opts.overlays / 4;
    for b in loader.batches.iter() {
        progress(b.index + 1, total);
        failed.extend(b.failed.iter().cloned());
        if b.n == 0 {
            continue;
        }
        let (x, y) = batch_tensors(&b, size, &columns, run.device);
        let (p, heat) = batch_heat(&net, &x, opts.heat).map_err(TrainError::Config)?;
        let yv: Vec<f32> =
            Vec::<f32>::try_from(y.to_device(Device::Cpu).flatten(0, -1)).unwrap_or_default();
        let nc = classes.len();
        for (k, &si) in b.samples.iter().enumerate() {
            probs.push(p[k * nc..(k + 1) * nc].to_vec());
            truth.push(yv[k * nc..(k + 1) * nc].to_vec());
            let sample: &Sample = &samples[si];
            let boxed = has_boxes(&sample.image);
            let want_overlay = kept.len() < opts.overlays && (boxed || overlay_budget_plain > 0);
            if !boxed && !want_overlay {
                continue;
            }
            let hms = &heat[k];
            if boxed {
                let (w, h) =
                    image::image_dimensions(&sample.path).unwrap_or((size as u32, size as u32));
                for (ci, f) in classes.iter().enumerate() {
                    if let Some(tb) = truth_boxes.get(&(sample.image.clone(), *f)) {
                        let (_, det) = heat_boxes(
                            &hms[ci],
                            size as u32,
                            &opts.heat_thresholds,
                            w as f64,
                            h as f64,
                        );
                        cases[ci].push(LocCase {
                            truth: tb.clone(),
                            detected: det,
                        });
                    }
                }
            } else {
                overlay_budget_plain -= 1;
            }
            if want_overlay {
                kept.push((si, hms.clone()));
            }
        }
    }

    let mut results = Vec::new();
    let mut curves = Vec::new();
    for (ci, f) in classes.iter().enumerate() {
        let (s, t) = crate::known_labels(&probs, &truth, ci);
        let auc = roc_auc(&s, &t);
        if let Some(a) = auc {
            curves.push(chestx_eval::plot::Curve {
                label: format!("{} ({a:.3})", f.name()),
                points: roc_curve(&s, &t),
            });
        }
        let cs = &cases[ci];
        results.push(ClassResult {
            finding: f.name().to_string(),
            positives: t.iter().filter(|&&x| x).count(),
            auc,
            ci95: bootstrap_auc_ci(
                &s,
                &t,
                opts.bootstrap,
                0.95,
                opts.seed.wrapping_add(ci as u64),
            ),
            box_images: cs.len(),
            iobb: IOBB_THRESHOLDS
                .iter()
                .map(|&th| localization(cs, Overlap::IoBB, th))
                .collect(),
            iou: IOU_THRESHOLDS
                .iter()
                .map(|&th| localization(cs, Overlap::IoU, th))
                .collect(),
        });
    }
    let defined: Vec<f64> = results.iter().filter_map(|r| r.auc).collect();
    let split_name = format!("{:?}", opts.split).to_lowercase();
    chestx_eval::plot::roc_plots(
        &out_dir.join("roc"),
        &format!("ROC, {split_name} split"),
        &curves,
    )
    .map_err(|m| TrainError::Io("roc".into(), m))?;

    // Overlays: the heatmap of each true class (or the top-scoring class), true and detected boxes.
    let mut overlay_files = Vec::new();
    for (si, hms) in &kept {
        let sample = &samples[*si];
        let Ok(img) = Gray::open(&sample.path) else {
            continue;
        };
        let shown: Vec<usize> = {
            let v: Vec<usize> = (0..classes.len())
                .filter(|&ci| truth_boxes.contains_key(&(sample.image.clone(), classes[ci])))
                .collect();
            if v.is_empty() {
                vec![0]
            } else {
                v
            }
        };
        for ci in shown {
            let tb = truth_boxes
                .get(&(sample.image.clone(), classes[ci]))
                .cloned()
                .unwrap_or_default();
            let (hm, det) = heat_boxes(
                &hms[ci],
                size as u32,
                &opts.heat_thresholds,
                img.width as f64,
                img.height as f64,
            );
            let o = chestx_eval::overlay::render_overlay(&img, Some(&hm), &tb, &det, 0.45);
            let name = format!("{}_{}.png", overlay_stem(&sample.image), classes[ci].name());
            let path = out_dir.join("overlays").join(&name);
            chestx_eval::overlay::save_overlay(&o, &path)
                .map_err(|m| TrainError::Io(name.clone(), m))?;
            overlay_files.push(format!("overlays/{name}"));
        }
    }

    let res = EvalResults {
        run: run.dir.display().to_string(),
        checkpoint: checkpoint.display().to_string(),
        split: split_name,
        images: probs.len(),
        failed_images: failed,
        heat_thresholds: opts.heat_thresholds.clone(),
        heat: opts.heat,
        heat_maps,
        mean_auc: (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64),
        classes: results,
        overlays: overlay_files,
    };
    // Operating thresholds for `chestx predict`: Youden's J on the validation split, never the split
    // being reported.
    if let Ok(val) = crate::split_of(
        &ds,
        &cfg.dataset,
        Split::Val,
        cfg.val_fraction,
        cfg.seed,
        &cfg.labels,
    ) {
        let (vp, vt, _) = crate::predict_samples(
            &net,
            Arc::new(val),
            &columns,
            &cfg.loss,
            opts.batch_size,
            run.device,
        );
        let th: Vec<f32> = (0..classes.len())
            .map(|ci| {
                let (s, t) = crate::known_labels(&vp, &vt, ci);
                crate::predict::youden_threshold(&s, &t).unwrap_or(0.5) as f32
            })
            .collect();
        crate::write_atomic(
            &run.dir.join("thresholds.json"),
            &serde_json::to_vec(&th).expect("serializes"),
        )?;
    }
    let json = serde_json::to_vec_pretty(&res).expect("results serialize");
    crate::write_atomic(&out_dir.join("results.json"), &json)?;
    crate::write_atomic(&out_dir.join("report.md"), markdown(&res).as_bytes())?;
    Ok(res)
}

/// The report: AUC table, then localization laid out like the paper's Table 4.
pub fn markdown(r: &EvalResults) -> String {
    let mut s = format!(
        "# chestx evaluation\n\nrun `{}`, checkpoint `{}`, {} split, {} images",
        r.run, r.checkpoint, r.split, r.images
    );
    if !r.failed_images.is_empty() {
        s.push_str(&format!(" ({} unreadable, skipped)", r.failed_images.len()));
    }
    s.push_str(
        "\n\n## Classification\n\n| finding | positives | AUC | 95% CI |\n|---|---:|---:|---|\n",
    );
    for c in &r.classes {
        let auc = c.auc.map_or("n/a".into(), |a| format!("{a:.4}"));
        let ci = c.ci95.map_or("-".into(), |(l, h)| format!("{l:.4}–{h:.4}"));
        s.push_str(&format!(
            "| {} | {} | {auc} | {ci} |\n",
            c.finding, c.positives
        ));
    }
    s.push_str(&format!(
        "| **mean** | | **{}** | |\n\n![ROC](roc.png)\n",
        r.mean_auc.map_or("n/a".into(), |a| format!("{a:.4}"))
    ));
    if r.classes.iter().any(|c| c.box_images > 0) {
        let ths: Vec<String> = r.heat_thresholds.iter().map(|t| t.to_string()).collect();
        let kind = &r.heat_maps;
        let views = match r.heat.flips {
            Flips::None => "",
            Flips::Mirror => ", averaged with the mirrored film's (flipped back),",
            Flips::Both => ", averaged over the film and its three flips (flipped back),",
        };
        s.push_str(&format!(
            "\n## Localization\n\nBoxes from {kind}{views} thresholded at {} (0–255), on images with true boxes. Each cell: accuracy / average false positives per image.\n\n",
            ths.join(" and ")
        ));
        let header: Vec<String> = r
            .classes
            .iter()
            .map(|c| format!("{} (n={})", c.finding, c.box_images))
            .collect();
        s.push_str(&format!(
            "| T | {} |\n|---|{}\n",
            header.join(" | "),
            "---|".repeat(r.classes.len())
        ));
        for (label, pick) in [("IoBB", true), ("IoU", false)] {
            let n = if pick {
                IOBB_THRESHOLDS.len()
            } else {
                IOU_THRESHOLDS.len()
            };
            for i in 0..n {
                let th = if pick {
                    IOBB_THRESHOLDS[i]
                } else {
                    IOU_THRESHOLDS[i]
                };
                let cells: Vec<String> = r
                    .classes
                    .iter()
                    .map(|c| {
                        let l = if pick { &c.iobb[i] } else { &c.iou[i] };
                        if c.box_images == 0 {
                            "-".into()
                        } else {
                            format!("{:.3} / {:.2}", l.accuracy, l.afp)
                        }
                    })
                    .collect();
                s.push_str(&format!("| T({label})={th} | {} |\n", cells.join(" | ")));
            }
        }
    }
    if !r.overlays.is_empty() {
        s.push_str("\n## Overlays\n\nGreen: true boxes; red: boxes from the heatmap.\n\n");
        for o in &r.overlays {
            s.push_str(&format!("![{o}]({o})\n"));
        }
    }
    s
}

/// A file name for an image's overlays: its id without the extension, folders joined by `_` (a
/// CheXpert id is a relative path such as `valid/patient64541/study1/view1_frontal.jpg`).
fn overlay_stem(image: &str) -> String {
    let no_ext = match image.rsplit_once('.') {
        Some((stem, ext)) if !ext.contains(['/', '\\']) => stem,
        _ => image,
    };
    no_ext.replace(['/', '\\'], "_")
}
