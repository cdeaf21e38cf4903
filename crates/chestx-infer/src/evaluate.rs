//! Evaluating a trained run on a split: per-class ROC AUC with bootstrap intervals, and — on images
//! with hand-drawn boxes — the paper's localization table (accuracy and average false positives at
//! T(IoBB) and T(IoU) thresholds) from class activation maps turned into boxes.

use crate::heat::{batch_heat, BoxMethod, ClassHeat, Localizer};
use crate::score::{batch_tensors, columns_of, known_labels, score_samples};
use crate::subgroups::{by_subgroup, Asked, Scored, SubgroupResults};
use crate::{youden_threshold, InferError, Run, Thresholds};
use chestx_core::{BBox, Finding};
use chestx_data::{epoch_order, Dataset, Loader, LoaderConfig, NihDataset, Sample, Split};
use chestx_eval::audit::clustered_auc_ci;
use chestx_eval::audit::GroupSpec;
use chestx_eval::boxes::{
    localization, BoxQuality, LocCase, LocScore, Overlap, IOBB_THRESHOLDS, IOU_THRESHOLDS,
};
use chestx_eval::{roc_auc, roc_curve};
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
    pub bootstrap: usize,
    pub seed: u64,
    /// Overlays to draw (images with boxes first).
    pub overlays: usize,
    pub batch_size: usize,
    /// A box list to use instead of the dataset's own.
    pub boxes: Option<PathBuf>,
    /// Which heatmaps give the boxes, and how.
    pub localizer: Localizer,
    /// Subgroups to audit (`--by`); none: no audit.
    pub by: Vec<GroupSpec>,
    /// Where the subgroups' columns and patients are read (default: the dataset's index file).
    pub meta: Option<PathBuf>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            split: Split::Test,
            checkpoint: None,
            bootstrap: 1000,
            seed: 0,
            overlays: 8,
            batch_size: 16,
            boxes: None,
            localizer: Localizer::default(),
            by: Vec::new(),
            meta: None,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassResult {
    pub finding: String,
    pub positives: usize,
    pub auc: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    /// The probability at and above which the finding is called (Youden's J on the validation
    /// split); boxes of a gated method appear only then.
    pub operating_threshold: Option<f32>,
    /// Images with true boxes of this class.
    pub box_images: usize,
    pub iou: Vec<LocScore>,
    pub iobb: Vec<LocScore>,
    pub quality: BoxQuality,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalResults {
    pub run: String,
    pub checkpoint: String,
    pub split: String,
    pub images: usize,
    pub failed_images: Vec<String>,
    /// Films the split lists that are not on disk: how many, and their names.
    pub missing_images: usize,
    #[serde(default)]
    pub missing_image_names: Vec<String>,
    pub localizer: Localizer,
    /// The localization method, in words.
    pub method: String,
    pub classes: Vec<ClassResult>,
    pub mean_auc: Option<f64>,
    /// The overlays written, each with what it shows (the gallery of `chestx serve --eval`).
    pub overlays: Vec<OverlayCase>,
    /// The operating thresholds chosen on the validation split (also written as
    /// `thresholds.json` beside the report), when the dataset has validation films.
    pub thresholds: Option<Thresholds>,
    /// The subgroup audit (`--by`), localization by subgroup included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subgroups: Option<SubgroupResults>,
}

/// One overlay: a film's map for one finding with its true (green) and detected (red) boxes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OverlayCase {
    /// The PNG, relative to the evaluation folder (`overlays/NAME.png`).
    pub file: String,
    pub image: String,
    pub finding: String,
    pub probability: f32,
    /// Whether the finding is called (boxes of a gated method are drawn only then).
    pub called: bool,
    pub truth: Vec<BBox>,
    pub detected: Vec<BBox>,
    /// The best IoU of a detected box with a true box, when the film has both.
    pub best_iou: Option<f64>,
    pub outcome: OverlayOutcome,
}

/// What an overlay shows, by the T(IoU) = 0.5 criterion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverlayOutcome {
    /// A detected box overlaps a true box with IoU ≥ 0.5.
    Hit,
    /// True boxes, none matched at IoU ≥ 0.5.
    Miss,
    /// Boxes drawn on a film without a true box of the finding.
    FalseBox,
    /// No true box and no box drawn.
    Clear,
}

impl OverlayOutcome {
    pub fn of(truth: &[BBox], detected: &[BBox]) -> (OverlayOutcome, Option<f64>) {
        let best = detected
            .iter()
            .flat_map(|d| truth.iter().map(move |t| d.iou(t)))
            .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        let outcome = match (truth.is_empty(), detected.is_empty()) {
            (false, _) if best.is_some_and(|b| b >= 0.5) => OverlayOutcome::Hit,
            (false, _) => OverlayOutcome::Miss,
            (true, false) => OverlayOutcome::FalseBox,
            (true, true) => OverlayOutcome::Clear,
        };
        (outcome, best)
    }
}

/// What the loop over the split gathers.
#[derive(Default)]
struct Gathered {
    probs: Vec<Vec<f32>>,
    truth: Vec<Vec<f32>>,
    /// The image of each row of `probs`, and its patient.
    images: Vec<String>,
    patients: Vec<u64>,
    failed: Vec<String>,
    /// Per class: images with true boxes, and the row of each.
    cases: Vec<Vec<LocCase>>,
    case_rows: Vec<Vec<usize>>,
    /// Per class: (films labelled negative, boxes drawn on them).
    negatives: Vec<(usize, usize)>,
    /// Per class: (row, boxes drawn) of each film labelled negative.
    negative_rows: Vec<Vec<(usize, usize)>>,
    /// Probabilities and heatmaps kept for overlays, by sample.
    kept: Vec<(usize, Vec<f32>, Vec<ClassHeat>)>,
}

/// The split's films, the model, and the true boxes by (image, finding).
struct Setup<'a> {
    run: &'a Run,
    opts: &'a EvalOptions,
    net: chestx_model::ChestNet,
    samples: Arc<Vec<Sample>>,
    columns: Vec<usize>,
    classes: Vec<Finding>,
    truth_boxes: HashMap<(String, Finding), Vec<BBox>>,
    /// Per class, the operating threshold (validation split), when there is one.
    thresholds: Option<Thresholds>,
    /// Films the split lists that are not on disk.
    missing: Vec<String>,
    /// Where `--by` reads its subgroups; `None` without `--by`.
    meta: Option<PathBuf>,
}

impl Setup<'_> {
    fn boxes_of(&self, image: &str, f: Finding) -> Option<&Vec<BBox>> {
        self.truth_boxes.get(&(image.to_string(), f))
    }

    fn has_boxes(&self, image: &str) -> bool {
        self.classes
            .iter()
            .any(|f| self.boxes_of(image, *f).is_some())
    }

    /// Class `f`'s map on the input and its boxes on a `w × h` film, placed through the part of
    /// the film the model's preprocessing reads (the whole film for our runs; a centre crop for
    /// some published models), with that part.
    fn film_boxes(
        &self,
        heat: &ClassHeat,
        f: Finding,
        (w, h): (u32, u32),
    ) -> (chestx_eval::boxes::Heatmap, Vec<BBox>, chestx_image::View) {
        let size = self.run.config.model.input_size as u32;
        let v = self.net.config.preprocess.view(w, h, size);
        let (map, boxes) = self.opts.localizer.film_boxes(heat, f, size, v);
        (map, boxes, v)
    }

    /// Whether the method draws boxes of class `ci` at probability `p`.
    fn draws(&self, ci: usize, p: f32) -> bool {
        !self.opts.localizer.gated() || p >= self.thresholds.as_ref().map_or(0.5, |t| t.values[ci])
    }
}

pub fn evaluate(
    run: &Run,
    out_dir: &Path,
    opts: &EvalOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<EvalResults, InferError> {
    let checkpoint = run.checkpoint_or_best(opts.checkpoint.as_deref());
    let (_vs, net, _dropped) = run.load_scorable_model(&checkpoint)?;
    let ds = run.dataset()?;
    let setup = setup(run, opts, net, &ds)?;
    std::fs::create_dir_all(out_dir.join("overlays"))
        .map_err(|e| InferError::Io(out_dir.display().to_string(), e.to_string()))?;
    let g = gather(&setup, progress)?;
    let split_name = format!("{:?}", opts.split).to_lowercase();
    let (results, curves) = class_results(&setup, &g);
    chestx_eval::plot::roc_plots(
        &out_dir.join("roc"),
        &format!("ROC, {split_name} split"),
        &curves,
    )
    .map_err(|m| InferError::Io(out_dir.join("roc").display().to_string(), m))?;
    let overlays = write_overlays(&setup, &g.kept, out_dir)?;
    let subgroups = audit_subgroups(&setup, &g)?;
    let defined: Vec<f64> = results.iter().filter_map(|r| r.auc).collect();
    let res = EvalResults {
        run: run.dir.display().to_string(),
        checkpoint: checkpoint.display().to_string(),
        split: split_name,
        images: g.probs.len(),
        failed_images: g.failed,
        missing_images: setup.missing.len(),
        missing_image_names: setup.missing.clone(),
        localizer: opts.localizer.clone(),
        method: opts.localizer.describe(&setup.net),
        mean_auc: (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64),
        classes: results,
        overlays,
        thresholds: setup.thresholds.clone(),
        subgroups,
    };
    // Operating thresholds for `chestx predict --thresholds`, beside the report (never in the run).
    if let Some(th) = &res.thresholds {
        th.write(&out_dir.join("thresholds.json"))?;
    }
    let write = |name: &str, bytes: &[u8]| {
        let p = out_dir.join(name);
        chestx_core::io::write_atomic(&p, bytes).map_err(|e| InferError::io(&p, e))
    };
    write(
        "results.json",
        &serde_json::to_vec_pretty(&res).expect("results serialize"),
    )?;
    write("report.md", markdown(&res).as_bytes())?;
    Ok(res)
}

fn setup<'a>(
    run: &'a Run,
    opts: &'a EvalOptions,
    net: chestx_model::ChestNet,
    ds: &Dataset,
) -> Result<Setup<'a>, InferError> {
    let cfg = &run.config;
    opts.localizer
        .heat_options(&net)
        .stages(&net)
        .map_err(InferError::Config)?;
    let (samples, missing) = ds.samples(opts.split, cfg.val_fraction, cfg.seed, &cfg.labels);
    if samples.is_empty() {
        return Err(InferError::Dataset(
            cfg.dataset.display().to_string(),
            format!("no {:?} images on disk", opts.split),
        ));
    }
    let columns = columns_of(&net.config.classes)?;
    let classes: Vec<Finding> = columns.iter().map(|&c| Finding::DISEASES[c]).collect();
    let box_list = match &opts.boxes {
        Some(p) => {
            let dir = p.parent().unwrap_or(Path::new("."));
            NihDataset::open_boxes(p)
                .map_err(|e| InferError::Dataset(dir.display().to_string(), e.to_string()))?
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
    let meta = subgroup_metadata(opts, ds)?;
    let thresholds = operating_thresholds(run, ds, &net, &columns, opts.batch_size);
    Ok(Setup {
        meta,
        run,
        opts,
        net,
        samples: Arc::new(samples),
        columns,
        classes,
        truth_boxes,
        thresholds,
        missing,
    })
}

/// The subgroup audit, when `--by` asked for one.
fn audit_subgroups(s: &Setup, g: &Gathered) -> Result<Option<SubgroupResults>, InferError> {
    let Some(meta) = &s.meta else {
        return Ok(None);
    };
    let ask = Asked {
        meta,
        specs: &s.opts.by,
        bootstrap: s.opts.bootstrap,
        seed: s.opts.seed,
    };
    let scored = Scored {
        images: &g.images,
        probs: &g.probs,
        truth: &g.truth,
        cases: &g.cases,
        case_rows: &g.case_rows,
        negatives: &g.negative_rows,
    };
    by_subgroup(&ask, &s.classes, &scored, s.thresholds.as_ref()).map(Some)
}

/// Where `--by` reads its columns, checked before the split is scored (a wrong column name should
/// not cost an evaluation).
fn subgroup_metadata(opts: &EvalOptions, ds: &Dataset) -> Result<Option<PathBuf>, InferError> {
    if opts.by.is_empty() {
        return Ok(None);
    }
    let meta = opts
        .meta
        .clone()
        .or_else(|| ds.metadata_file(opts.split))
        .ok_or_else(|| {
            InferError::Config(
                "--by: the dataset has no metadata file; give one with --meta".into(),
            )
        })?;
    chestx_eval::audit::subgroups(&meta, &opts.by, &[]).map_err(InferError::Config)?;
    Ok(Some(meta))
}

/// The operating thresholds `chestx eval` would write for `net`: Youden's J per class on the run's
/// validation split, or `None` when its dataset has no validation films.
pub fn validation_thresholds(
    run: &Run,
    net: &chestx_model::ChestNet,
    batch_size: usize,
) -> Result<Option<Thresholds>, InferError> {
    let ds = run.dataset()?;
    let columns = columns_of(&run.config.model.classes)?;
    Ok(operating_thresholds(run, &ds, net, &columns, batch_size))
}

/// Youden's J per class on the validation split — never the split being reported — or `None`
/// when the dataset has no validation films.
fn operating_thresholds(
    run: &Run,
    ds: &Dataset,
    net: &chestx_model::ChestNet,
    columns: &[usize],
    batch_size: usize,
) -> Option<Thresholds> {
    let val = run.split(ds, Split::Val).ok()?;
    let films = val.len();
    let cfg = &run.config;
    let v = score_samples(
        net,
        Arc::new(val),
        columns,
        &cfg.loss,
        batch_size,
        run.device,
    );
    Some(Thresholds {
        classes: net.config.classes.clone(),
        values: (0..columns.len())
            .map(|ci| {
                let (s, t) = known_labels(&v.probs, &v.truth, ci);
                youden_threshold(&s, &t).unwrap_or(0.5) as f32
            })
            .collect(),
        source: format!(
            "Youden's J on the validation split ({} of {films} films read)",
            v.probs.len()
        ),
        untrained: Vec::new(),
    })
}

/// Probabilities, heatmaps and boxes over the split.
fn gather(s: &Setup, progress: &dyn Fn(usize, usize)) -> Result<Gathered, InferError> {
    let size = s.run.config.model.input_size;
    let lcfg = LoaderConfig {
        batch_size: s.opts.batch_size,
        input_size: size as u32,
        shuffle: false,
        augment: false,
        seed: 0,
        prefetch: 2,
        preprocess: s.run.config.model.preprocess,
    };
    let loader = Loader::start(
        s.samples.clone(),
        epoch_order(s.samples.len(), 0, 0, false),
        0,
        0,
        lcfg,
    );
    let heat_opts = s.opts.localizer.heat_options(&s.net);
    let nc = s.classes.len();
    let mut g = Gathered {
        cases: vec![Vec::new(); nc],
        case_rows: vec![Vec::new(); nc],
        negatives: vec![(0, 0); nc],
        negative_rows: vec![Vec::new(); nc],
        ..Default::default()
    };
    let mut plain_overlays = s.opts.overlays / 4;
    for b in loader.batches.iter() {
        progress(b.index + 1, loader.total_batches);
        g.failed.extend(b.failed.iter().cloned());
        if b.n == 0 {
            continue;
        }
        let (x, y) = batch_tensors(&b, size, &s.columns, s.run.device);
        let (p, mut heat) = batch_heat(&s.net, &x, heat_opts).map_err(InferError::Config)?;
        if s.opts.localizer.method == BoxMethod::Erase {
            let th: Vec<f32> = (0..nc)
                .map(|ci| s.thresholds.as_ref().map_or(0.5, |t| t.values[ci]))
                .collect();
            crate::erase::choose_cuts(
                &s.net,
                &x,
                &p,
                &mut heat,
                &s.classes,
                &th,
                &s.opts.localizer,
            );
        }
        let yv: Vec<f32> =
            Vec::<f32>::try_from(y.to_device(Device::Cpu).flatten(0, -1)).unwrap_or_default();
        for (k, &si) in b.samples.iter().enumerate() {
            let (pk, yk) = (&p[k * nc..(k + 1) * nc], &yv[k * nc..(k + 1) * nc]);
            g.probs.push(pk.to_vec());
            g.truth.push(yk.to_vec());
            g.images.push(s.samples[si].image.clone());
            g.patients.push(s.samples[si].patient);
            let boxed = s.has_boxes(&s.samples[si].image);
            score_image(s, &mut g, &s.samples[si], pk, yk, &heat[k]);
            let want_overlay = g.kept.len() < s.opts.overlays && (boxed || plain_overlays > 0);
            if want_overlay {
                plain_overlays -= usize::from(!boxed);
                g.kept.push((si, pk.to_vec(), heat[k].clone()));
            }
        }
    }
    Ok(g)
}

/// One film's boxes per class: scored against its true boxes, or counted as false alarms when the
/// film is labelled negative for the class.
fn score_image(
    s: &Setup,
    g: &mut Gathered,
    sample: &Sample,
    p: &[f32],
    y: &[f32],
    heat: &[ClassHeat],
) {
    let size = s.run.config.model.input_size as u32;
    let dims = std::cell::OnceCell::new();
    let dims =
        || *dims.get_or_init(|| image::image_dimensions(&sample.path).unwrap_or((size, size)));
    for (ci, f) in s.classes.iter().enumerate() {
        let truth = s.boxes_of(&sample.image, *f);
        if truth.is_none() && y[ci] != 0.0 {
            continue; // positive (or unknown) without boxes: nothing to score
        }
        let drawn = s.draws(ci, p[ci]);
        let Some(tb) = truth else {
            // A negative film: its boxes are false alarms (none to compute when none are drawn).
            let mut count = 0;
            if drawn {
                count = s.film_boxes(&heat[ci], *f, dims()).1.len();
            }
            g.negatives[ci].0 += 1;
            g.negatives[ci].1 += count;
            g.negative_rows[ci].push((g.probs.len() - 1, count));
            continue;
        };
        let (map, boxes, v) = s.film_boxes(&heat[ci], *f, dims());
        let peak = map.peak().map(|(x, y)| {
            (
                v.x0 + (x as f64 + 0.5) * v.width / map.width as f64,
                v.y0 + (y as f64 + 0.5) * v.height / map.height as f64,
            )
        });
        g.case_rows[ci].push(g.probs.len() - 1);
        g.cases[ci].push(LocCase {
            truth: tb.clone(),
            detected: if drawn { boxes } else { Vec::new() },
            peak,
        });
    }
}

fn class_results(s: &Setup, g: &Gathered) -> (Vec<ClassResult>, Vec<chestx_eval::plot::Curve>) {
    let mut results = Vec::new();
    let mut curves = Vec::new();
    for (ci, f) in s.classes.iter().enumerate() {
        let (sc, t) = known_labels(&g.probs, &g.truth, ci);
        let auc = roc_auc(&sc, &t);
        if let Some(a) = auc {
            curves.push(chestx_eval::plot::Curve {
                label: format!("{} ({a:.3})", f.name()),
                points: roc_curve(&sc, &t),
            });
        }
        let cs = &g.cases[ci];
        let (neg_films, neg_boxes) = g.negatives[ci];
        results.push(ClassResult {
            finding: f.name().to_string(),
            positives: t.iter().filter(|&&x| x).count(),
            auc,
            ci95: clustered_auc_ci(
                &g.probs.iter().map(|p| p[ci] as f64).collect::<Vec<_>>(),
                &g.truth
                    .iter()
                    .map(|t| (!t[ci].is_nan()).then_some(t[ci] > 0.5))
                    .collect::<Vec<_>>(),
                &g.patients,
                s.opts.bootstrap,
                0.95,
                s.opts.seed.wrapping_add(ci as u64),
            ),
            operating_threshold: s.thresholds.as_ref().map(|t| t.values[ci]),
            box_images: cs.len(),
            iou: IOU_THRESHOLDS
                .iter()
                .map(|&th| localization(cs, Overlap::IoU, th))
                .collect(),
            iobb: IOBB_THRESHOLDS
                .iter()
                .map(|&th| localization(cs, Overlap::IoBB, th))
                .collect(),
            quality: BoxQuality::of(cs, neg_films, neg_boxes),
        });
    }
    (results, curves)
}

/// Overlays: the heatmap of each true class (or the first class), true and detected boxes.
fn write_overlays(
    s: &Setup,
    kept: &[(usize, Vec<f32>, Vec<ClassHeat>)],
    out_dir: &Path,
) -> Result<Vec<OverlayCase>, InferError> {
    let mut cases = Vec::new();
    for (si, p, hms) in kept {
        let sample = &s.samples[*si];
        let Ok(img) = Gray::open(&sample.path) else {
            continue;
        };
        let mut shown: Vec<usize> = (0..s.classes.len())
            .filter(|&ci| s.boxes_of(&sample.image, s.classes[ci]).is_some())
            .collect();
        if shown.is_empty() {
            shown.push(0);
        }
        for ci in shown {
            let tb = s
                .boxes_of(&sample.image, s.classes[ci])
                .cloned()
                .unwrap_or_default();
            let (hm, det, view) = s.film_boxes(&hms[ci], s.classes[ci], (img.width, img.height));
            let hm = crate::predict::on_film(&hm, view, img.width, img.height);
            let called = s.draws(ci, p[ci]);
            let det = if called { det } else { Vec::new() };
            let o = chestx_eval::overlay::render_overlay(&img, Some(&hm), &tb, &det, 0.45);
            let name = format!(
                "{}_{}.png",
                overlay_stem(&sample.image),
                s.classes[ci].name()
            );
            let path = out_dir.join("overlays").join(&name);
            chestx_eval::overlay::save_overlay(&o, &path)
                .map_err(|m| InferError::Io(name.clone(), m))?;
            let (outcome, best_iou) = OverlayOutcome::of(&tb, &det);
            cases.push(OverlayCase {
                file: format!("overlays/{name}"),
                image: sample.image.clone(),
                finding: s.classes[ci].name().to_string(),
                probability: p[ci],
                called,
                truth: tb,
                detected: det,
                best_iou,
                outcome,
            });
        }
    }
    Ok(cases)
}

/// The report: AUC table, then localization — the IoU table first (does a box outline the lesion),
/// the paper's IoBB table after it, and what an expert asks beside them.
pub fn markdown(r: &EvalResults) -> String {
    let mut s = format!(
        "# chestx evaluation\n\nrun `{}`, checkpoint `{}`, {} split, {} images",
        r.run, r.checkpoint, r.split, r.images
    );
    if !r.failed_images.is_empty() {
        s.push_str(&format!(" ({} unreadable, skipped)", r.failed_images.len()));
    }
    if r.missing_images > 0 {
        s.push_str(&format!(
            " ({} listed in the split but not on disk)",
            r.missing_images
        ));
    }
    s.push_str(
        "\n\n## Classification\n\n95% intervals: percentile bootstrap over patients (each with all their \
         films).\n\n| finding | positives | AUC | 95% CI |\n|---|---:|---:|---|\n",
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
        s.push_str(&localization_markdown(r));
    }
    if let Some(sub) = &r.subgroups {
        s.push('\n');
        s.push_str(&crate::subgroups::markdown(sub));
    }
    if !r.overlays.is_empty() {
        s.push_str("\n## Overlays\n\nGreen: true boxes; red: boxes drawn by the method.\n\n");
        for o in &r.overlays {
            s.push_str(&format!("![{}]({})\n", o.file, o.file));
        }
    }
    s
}

/// The localization section: T(IoU) and T(IoBB) tables (accuracy / AFP), then box quality.
pub fn localization_markdown(r: &EvalResults) -> String {
    let mut s = format!(
        "\n## Localization\n\nBoxes by {}. Each cell: accuracy / average false positives per image, on the images with true boxes.\n\n",
        r.method
    );
    let header: Vec<String> = r
        .classes
        .iter()
        .map(|c| format!("{} (n={})", c.finding, c.box_images))
        .collect();
    let head = format!(
        "| T | {} |\n|---|{}\n",
        header.join(" | "),
        "---|".repeat(r.classes.len())
    );
    let row = |label: &str, th: f64, pick: &dyn Fn(&ClassResult) -> Option<LocScore>| {
        let cells: Vec<String> = r
            .classes
            .iter()
            .map(|c| match pick(c) {
                Some(l) if c.box_images > 0 => format!("{:.3} / {:.2}", l.accuracy, l.afp),
                _ => "-".into(),
            })
            .collect();
        format!("| T({label})={th} | {} |\n", cells.join(" | "))
    };
    s.push_str(&head);
    for (i, &th) in IOU_THRESHOLDS.iter().enumerate() {
        s.push_str(&row("IoU", th, &|c| c.iou.get(i).copied()));
    }
    s.push_str("\nThe paper's measure, intersection over the *detected* box (a speck inside a lesion scores 1):\n\n");
    s.push_str(&head);
    for (i, &th) in IOBB_THRESHOLDS.iter().enumerate() {
        s.push_str(&row("IoBB", th, &|c| c.iobb.get(i).copied()));
    }
    s.push_str("\n| | pointing (map peak in a true box) | median detected / true box area | false boxes per film without the finding (films) | operating threshold |\n|---|---:|---:|---:|---:|\n");
    for c in &r.classes {
        let q = &c.quality;
        s.push_str(&format!(
            "| {} | {:.3} | {} | {:.2} ({}) | {} |\n",
            c.finding,
            q.pointing,
            q.median_area_ratio
                .map_or("-".into(), |a| format!("{a:.2}")),
            q.false_boxes_per_negative_film,
            q.negative_films,
            c.operating_threshold
                .map_or("-".into(), |t| format!("{t:.3}")),
        ));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlay_is_a_hit_only_at_iou_half() {
        let t = [BBox::new(10.0, 10.0, 20.0, 20.0)];
        let near = [BBox::new(12.0, 12.0, 20.0, 20.0)]; // IoU 324/476 = 0.68
        let speck = [BBox::new(15.0, 15.0, 3.0, 3.0)]; // inside: IoBB 1, IoU 0.02
        assert_eq!(OverlayOutcome::of(&t, &near).0, OverlayOutcome::Hit);
        let (o, best) = OverlayOutcome::of(&t, &speck);
        assert_eq!(o, OverlayOutcome::Miss);
        assert!((best.unwrap() - 9.0 / 400.0).abs() < 1e-9);
        assert_eq!(OverlayOutcome::of(&t, &[]), (OverlayOutcome::Miss, None));
        assert_eq!(OverlayOutcome::of(&[], &near).0, OverlayOutcome::FalseBox);
        assert_eq!(OverlayOutcome::of(&[], &[]), (OverlayOutcome::Clear, None));
    }
}
