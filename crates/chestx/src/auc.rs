//! `chestx auc`: per-class ROC AUC (with bootstrap intervals) for any model's predictions.

use crate::args::{BlankArg, UncertainArg};
use crate::output::emit_report;
use anyhow::{bail, Context, Result};
use chestx_core::Finding;
use chestx_data::{read_label_file, SampleOptions};
use chestx_eval::{
    bootstrap_auc_ci, read_data_entry_labels, read_predictions_table, roc_auc, Predictions,
};
use clap::Args;
use rayon::prelude::*;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

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

#[derive(serde::Serialize)]
struct ClassAuc {
    finding: String,
    positives: usize,
    negatives: usize,
    auc: Option<f64>,
    ci95: Option<(f64, f64)>,
}

#[derive(serde::Serialize)]
struct AucReport {
    images: usize,
    classes: Vec<ClassAuc>,
    /// Over the classes with both positives and negatives; `None` when there are none.
    mean_auc: Option<f64>,
    /// How many classes the mean is over.
    classes_averaged: usize,
    /// Findings the predictions have no column for.
    missing_findings: Vec<String>,
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

pub fn run(a: AucArgs) -> Result<ExitCode> {
    let options = SampleOptions {
        uncertain: a.uncertain.into(),
        blank: a.blank.into(),
        frontal_only: false,
    };
    let labels = read_targets(&a.labels, &options)?;
    let preds = read_predictions_table(&a.pred)?;
    let mut seen = std::collections::HashSet::new();
    if let Some((dup, _)) = preds.rows.iter().find(|(id, _)| !seen.insert(id.as_str())) {
        bail!(
            "{}: image {dup:?} is predicted twice (it would count twice in every AUC)",
            a.pred.display()
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
            a.labels.display(),
            missing[0]
        );
    }
    let classes = class_aucs(&preds, &labels, a.bootstrap, a.seed);
    let valid: Vec<f64> = classes.iter().filter_map(|c| c.auc).collect();
    let missing_findings: Vec<String> = Finding::DISEASES
        .iter()
        .filter(|f| !preds.findings.contains(f))
        .map(|f| f.name().to_string())
        .collect();
    let report = AucReport {
        images: preds.rows.len(),
        mean_auc: (!valid.is_empty()).then(|| valid.iter().sum::<f64>() / valid.len() as f64),
        classes_averaged: valid.len(),
        missing_findings,
        classes,
    };
    let md = markdown(&report);
    emit_report(&md, &report, a.markdown.as_deref(), a.json.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

/// Per finding with a prediction column: AUC and its bootstrap interval over the images whose label
/// is known.
fn class_aucs(preds: &Predictions, labels: &Targets, bootstrap: usize, seed: u64) -> Vec<ClassAuc> {
    preds
        .findings
        .par_iter()
        .enumerate()
        .map(|(c, f)| {
            // Images whose label is unknown (CheXpert convention) are left out of this class.
            let (scores, truth): (Vec<f64>, Vec<bool>) = preds
                .rows
                .iter()
                .map(|r| (r.1[c], labels[&r.0][f.index()]))
                .filter(|(_, t)| !t.is_nan())
                .map(|(s, t)| (s, t > 0.5))
                .unzip();
            let positives = truth.iter().filter(|&&t| t).count();
            ClassAuc {
                finding: f.name().to_string(),
                positives,
                negatives: truth.len() - positives,
                auc: roc_auc(&scores, &truth),
                ci95: bootstrap_auc_ci(
                    &scores,
                    &truth,
                    bootstrap,
                    0.95,
                    seed.wrapping_add(c as u64),
                ),
            }
        })
        .collect()
}

fn markdown(report: &AucReport) -> String {
    let mut md = format!(
        "{} images\n\n| finding | positives | AUC | 95% CI |\n|---|---:|---:|---|\n",
        report.images
    );
    for c in &report.classes {
        let auc = c
            .auc
            .map_or("n/a (one class)".into(), |x| format!("{x:.4}"));
        let ci = c
            .ci95
            .map_or(String::from("-"), |(l, h)| format!("{l:.4}–{h:.4}"));
        md.push_str(&format!(
            "| {} | {} | {auc} | {ci} |\n",
            c.finding, c.positives
        ));
    }
    let mean = report.mean_auc.map_or("n/a".into(), |m| format!("{m:.4}"));
    md.push_str(&format!(
        "| **mean** ({} of 14 findings) | | **{mean}** | |\n",
        report.classes_averaged
    ));
    if !report.missing_findings.is_empty() {
        md.push_str(&format!(
            "\nNo prediction column for: {} (left out of the mean).\n",
            report.missing_findings.join(", ")
        ));
    }
    md
}
