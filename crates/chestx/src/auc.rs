//! `chestx auc`: per-class ROC AUC with bootstrap intervals, calibration and operating points for
//! any model's predictions, and the subgroup audit (`--by`): who the model fails.

use crate::args::{BlankArg, UncertainArg};
use crate::output::emit_report;
use anyhow::{bail, Context, Result};
use chestx_core::Finding;
use chestx_data::{read_label_file, SampleOptions};
use chestx_eval::audit::{
    audit, markdown, parse_by, reliability_plots, subgroups, Audit, AuditInput, AuditOptions,
    Panel, ThresholdSet, Unit,
};
use chestx_eval::{read_data_entry_labels, read_predictions_table, youden_threshold, Predictions};
use clap::{Args, ValueEnum};
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum)]
pub enum UnitArg {
    Patient,
    Image,
}

impl From<UnitArg> for Unit {
    fn from(u: UnitArg) -> Unit {
        match u {
            UnitArg::Patient => Unit::Patient,
            UnitArg::Image => Unit::Image,
        }
    }
}

#[derive(Args)]
pub struct AucArgs {
    /// Predictions CSV: image name first, then `prob_<Finding>` or `<Finding>` columns.
    #[arg(long)]
    pred: PathBuf,
    /// Labels: an NIH Data_Entry CSV (plain or .gz) with `Image Index` and `Finding Labels`, or a
    /// CheXpert-convention CSV (`Path` or `Image Index`, one column per finding: 1/0/-1/blank).
    #[arg(long)]
    labels: PathBuf,
    /// CheXpert-convention labels: what an uncertain (-1) label counts as.
    #[arg(long, value_enum, default_value_t = UncertainArg::Ignore)]
    uncertain: UncertainArg,
    /// CheXpert-convention labels: what a blank label counts as.
    #[arg(long, value_enum, default_value_t = BlankArg::Zeros)]
    blank: BlankArg,
    /// Bootstrap resamples for the 95% intervals (0 to skip).
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// What a bootstrap resample draws: patients (each with all their films; the default wherever
    /// the labels or --meta name each film's patient) or single films.
    #[arg(long, value_enum, default_value_t = UnitArg::Patient)]
    bootstrap_unit: UnitArg,
    /// Subgroups to audit: sex, view, frontal, follow-up, age (bands 0-20,20-40,40-60,60-80,80-, or
    /// your own: age:0-18,18-65,65-), or any column of the labels (or --meta) file; comma-separated
    /// or repeated.
    #[arg(long)]
    by: Vec<String>,
    /// Where the --by columns and patients are read (default: the labels file), keyed by image.
    #[arg(long)]
    meta: Option<PathBuf>,
    /// Operating thresholds chosen elsewhere: a thresholds.json from `chestx eval`, or a predictions
    /// CSV on which Youden's J is taken (another split or hospital). Default: Youden's J on these
    /// predictions, in-sample.
    #[arg(long)]
    thresholds_from: Option<PathBuf>,
    /// Labels for a --thresholds-from predictions CSV (default: the --labels file).
    #[arg(long)]
    thresholds_labels: Option<PathBuf>,
    /// Write the reliability diagram (reliability.png and .svg, a panel per finding) into this folder.
    #[arg(long)]
    plots: Option<PathBuf>,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Also write the table as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write the table as Markdown.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

/// Per image, a target per finding in [`Finding::ALL`] order: 1, 0, or NaN where unknown.
type Targets = HashMap<String, [f32; 15]>;

/// Read either label format: a `Finding Labels` column marks NIH's.
fn read_targets(path: &Path, options: &SampleOptions) -> Result<Targets> {
    let mut first = String::new();
    std::io::BufReader::new(
        chestx_core::io::open_maybe_gz(path).with_context(|| path.display().to_string())?,
    )
    .read_line(&mut first)
    .with_context(|| path.display().to_string())?;
    if first.split(',').any(|h| h.trim() == "Finding Labels") {
        return Ok(read_data_entry_labels(path)?
            .into_iter()
            .map(|(id, l)| (id, l.map(|on| if on { 1.0 } else { 0.0 })))
            .collect());
    }
    let file = read_label_file(path)?;
    if !file.columns.iter().any(|&c| c) {
        bail!(
            "{}: no label columns: neither NIH's `Finding Labels` nor a column per finding (1/0/-1/blank)",
            path.display()
        );
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = file.rows.iter().find(|r| !seen.insert(r.path.as_str())) {
        bail!(
            "{}: image {:?} has two label rows",
            path.display(),
            dup.path
        );
    }
    Ok(file
        .rows
        .into_iter()
        .map(|r| {
            let mut t = [f32::NAN; 15];
            for (f, v) in Finding::DISEASES.iter().zip(r.targets(options)) {
                t[f.index()] = v;
            }
            (r.path, t)
        })
        .collect())
}

#[derive(serde::Serialize)]
struct AucReport {
    #[serde(flatten)]
    audit: Audit,
    /// Over the classes with both positives and negatives; `None` when there are none.
    mean_auc: Option<f64>,
    /// How many classes the mean is over.
    classes_averaged: usize,
}

pub fn run(a: AucArgs) -> Result<ExitCode> {
    let options = SampleOptions {
        uncertain: a.uncertain.into(),
        blank: a.blank.into(),
        frontal_only: false,
    };
    let mut input = load(&a.pred, &a.labels, a.meta.as_deref(), &a.by, &options)?;
    if let Some(p) = &a.thresholds_from {
        let labels = a.thresholds_labels.as_deref().unwrap_or(&a.labels);
        let findings: Vec<Finding> = input.findings.iter().map(|f| f.parse().unwrap()).collect();
        input.thresholds = Some(thresholds_from(p, labels, &findings, &options)?);
    }
    let mut audit = audit(
        &input,
        &AuditOptions {
            resamples: a.bootstrap,
            seed: a.seed,
            unit: a.bootstrap_unit.into(),
            level: 0.95,
        },
    );
    audit.missing_findings = Finding::DISEASES
        .iter()
        .filter(|f| !input.findings.iter().any(|x| x == f.name()))
        .map(|f| f.name().to_string())
        .collect();
    if let Some(dir) = &a.plots {
        reliability_diagram(dir, &audit)?;
    }
    let valid: Vec<f64> = audit.findings.iter().filter_map(|c| c.auc).collect();
    let report = AucReport {
        mean_auc: (!valid.is_empty()).then(|| valid.iter().sum::<f64>() / valid.len() as f64),
        classes_averaged: valid.len(),
        audit,
    };
    let md = markdown(&report.audit);
    emit_report(&md, &report, a.markdown.as_deref(), a.json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// Predictions joined to their labels and, for `by` (the `--by` items), to the metadata in `meta`
/// (default: the labels file); thresholds left for the caller.
pub fn load(
    pred: &Path,
    labels_path: &Path,
    meta: Option<&Path>,
    by: &[String],
    options: &SampleOptions,
) -> Result<AuditInput> {
    let labels = read_targets(labels_path, options)?;
    let preds = read_predictions(pred, &labels, labels_path)?;
    let specs = match by.is_empty() {
        true => Vec::new(),
        false => parse_by(&by.join(",")).map_err(|e| anyhow::anyhow!("--by: {e}"))?,
    };
    let images: Vec<&str> = preds.rows.iter().map(|r| r.0.as_str()).collect();
    let (partitions, patients) =
        subgroups(meta.unwrap_or(labels_path), &specs, &images).map_err(|e| anyhow::anyhow!(e))?;
    Ok(AuditInput {
        findings: preds
            .findings
            .iter()
            .map(|f| f.name().to_string())
            .collect(),
        scores: (0..preds.findings.len())
            .map(|c| preds.rows.iter().map(|r| r.1[c]).collect())
            .collect(),
        truth: preds
            .findings
            .iter()
            .map(|f| {
                preds
                    .rows
                    .iter()
                    .map(|r| {
                        let t = labels[&r.0][f.index()];
                        (!t.is_nan()).then_some(t > 0.5)
                    })
                    .collect()
            })
            .collect(),
        partitions,
        patients,
        thresholds: None,
    })
}

/// Predictions, each image once and each with a label row.
fn read_predictions(path: &Path, labels: &Targets, labels_path: &Path) -> Result<Predictions> {
    let preds = read_predictions_table(path)?;
    let mut seen = std::collections::HashSet::new();
    if let Some((dup, _)) = preds.rows.iter().find(|(id, _)| !seen.insert(id.as_str())) {
        bail!(
            "{}: image {dup:?} is predicted twice (it would count twice in every AUC)",
            path.display()
        );
    }
    let missing: Vec<&str> = preds
        .rows
        .iter()
        .filter(|(id, _)| !labels.contains_key(id))
        .map(|(id, _)| id.as_str())
        .collect();
    if !missing.is_empty() {
        bail!(
            "{} of {} predicted images have no row in {} (first: {})",
            missing.len(),
            preds.rows.len(),
            labels_path.display(),
            missing[0]
        );
    }
    Ok(preds)
}

/// Thresholds chosen elsewhere: a `thresholds.json` from `chestx eval`, or Youden's J on another
/// predictions CSV (another split, another hospital) against `labels`.
fn thresholds_from(
    path: &Path,
    labels: &Path,
    findings: &[Finding],
    options: &SampleOptions,
) -> Result<ThresholdSet> {
    let is_json = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if is_json {
        #[derive(serde::Deserialize)]
        struct File {
            classes: Vec<String>,
            values: Vec<f64>,
            source: String,
        }
        let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
        let f: File = serde_json::from_str(&text).with_context(|| {
            format!(
                "{}: not a thresholds file written by `chestx eval`",
                path.display()
            )
        })?;
        let find = |name: &str| {
            f.classes
                .iter()
                .position(|c| c == name)
                .and_then(|i| f.values.get(i).copied())
        };
        return Ok(ThresholdSet {
            source: format!("{} ({})", path.display(), f.source),
            values: findings.iter().map(|x| find(x.name())).collect(),
        });
    }
    let targets = read_targets(labels, options)?;
    let other = read_predictions(path, &targets, labels)?;
    let values = findings
        .iter()
        .map(|f| {
            let c = other.findings.iter().position(|x| x == f)?;
            let (s, t): (Vec<f64>, Vec<bool>) = other
                .rows
                .iter()
                .map(|r| (r.1[c], targets[&r.0][f.index()]))
                .filter(|(_, t)| !t.is_nan())
                .map(|(s, t)| (s, t > 0.5))
                .unzip();
            youden_threshold(&s, &t)
        })
        .collect();
    Ok(ThresholdSet {
        source: format!(
            "Youden's J on {} ({} images)",
            path.display(),
            other.rows.len()
        ),
        values,
    })
}

fn reliability_diagram(dir: &Path, audit: &Audit) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    let panels: Vec<Panel> = audit
        .findings
        .iter()
        .filter_map(|f| {
            let r = f.calibration.as_ref()?;
            Some(Panel {
                title: format!("{} (ECE {:.4})", f.finding, r.ece),
                reliability: r,
            })
        })
        .collect();
    if panels.is_empty() {
        bail!("--plots: no finding has probabilities in [0, 1] to draw a reliability diagram of");
    }
    reliability_plots(&dir.join("reliability"), &panels).map_err(|e| anyhow::anyhow!(e))
}
