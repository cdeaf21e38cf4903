//! `chestx eval --by`: the subgroup audit of an evaluated split — AUC and its gap to the rest with
//! patient-level intervals, sensitivity and specificity at the validation thresholds, calibration
//! (from `chestx_eval::audit`) — and localization split the same way.

use crate::{InferError, Thresholds};
use chestx_core::Finding;
use chestx_eval::audit::{self, Audit, AuditInput, AuditOptions, GroupSpec, ThresholdSet, Unit};
use chestx_eval::boxes::{localization, BoxQuality, LocCase, LocScore, Overlap};
use std::fmt::Write;
use std::path::Path;

/// Localization of one finding in one subgroup.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GroupLocalization {
    pub finding: String,
    pub partition: String,
    pub group: String,
    pub box_images: usize,
    /// At T(IoU) = 0.3 and 0.5.
    pub iou: Vec<LocScore>,
    pub quality: BoxQuality,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SubgroupResults {
    /// Where the subgroups were read from.
    pub metadata: String,
    pub audit: Audit,
    pub localization: Vec<GroupLocalization>,
}

/// What evaluation gathered, per scored film (rows) and per class.
pub(crate) struct Scored<'a> {
    pub images: &'a [String],
    pub probs: &'a [Vec<f32>],
    pub truth: &'a [Vec<f32>],
    /// Per class: films with true boxes, and the row of each.
    pub cases: &'a [Vec<LocCase>],
    pub case_rows: &'a [Vec<usize>],
    /// Per class: (row, boxes drawn) of each film labelled negative.
    pub negatives: &'a [Vec<(usize, usize)>],
}

pub(crate) struct Asked<'a> {
    pub meta: &'a Path,
    pub specs: &'a [GroupSpec],
    pub bootstrap: usize,
    pub seed: u64,
}

pub(crate) fn by_subgroup(
    ask: &Asked,
    classes: &[Finding],
    s: &Scored,
    thresholds: Option<&Thresholds>,
) -> Result<SubgroupResults, InferError> {
    let names: Vec<&str> = s.images.iter().map(String::as_str).collect();
    let (partitions, patients) =
        audit::subgroups(ask.meta, ask.specs, &names).map_err(InferError::Config)?;
    let input = AuditInput {
        findings: classes.iter().map(|f| f.name().to_string()).collect(),
        scores: (0..classes.len())
            .map(|c| s.probs.iter().map(|p| p[c] as f64).collect())
            .collect(),
        truth: (0..classes.len())
            .map(|c| {
                s.truth
                    .iter()
                    .map(|t| (!t[c].is_nan()).then_some(t[c] > 0.5))
                    .collect()
            })
            .collect(),
        patients,
        thresholds: thresholds.map(|t| ThresholdSet {
            source: t.source.clone(),
            values: t.values.iter().map(|&v| Some(v as f64)).collect(),
        }),
        partitions,
    };
    let audit = audit::audit(
        &input,
        &AuditOptions {
            resamples: ask.bootstrap,
            seed: ask.seed,
            unit: Unit::Patient,
            level: 0.95,
        },
    );
    let localization = localization_by_group(&input, classes, s);
    Ok(SubgroupResults {
        metadata: ask.meta.display().to_string(),
        audit,
        localization,
    })
}

fn localization_by_group(
    input: &AuditInput,
    classes: &[Finding],
    s: &Scored,
) -> Vec<GroupLocalization> {
    let mut out = Vec::new();
    for (c, f) in classes.iter().enumerate() {
        if s.cases[c].is_empty() {
            continue;
        }
        for part in &input.partitions {
            for (l, name) in part.groups.iter().enumerate() {
                let in_group = |row: usize| part.of_image[row] as usize == l;
                let cases: Vec<LocCase> = s.cases[c]
                    .iter()
                    .zip(&s.case_rows[c])
                    .filter(|(_, &row)| in_group(row))
                    .map(|(case, _)| case.clone())
                    .collect();
                let negatives: Vec<usize> = s.negatives[c]
                    .iter()
                    .filter(|(row, _)| in_group(*row))
                    .map(|&(_, boxes)| boxes)
                    .collect();
                if cases.is_empty() && negatives.is_empty() {
                    continue;
                }
                out.push(GroupLocalization {
                    finding: f.name().to_string(),
                    partition: part.name.clone(),
                    group: name.clone(),
                    box_images: cases.len(),
                    iou: [0.3, 0.5]
                        .iter()
                        .map(|&t| localization(&cases, Overlap::IoU, t))
                        .collect(),
                    quality: BoxQuality::of(&cases, negatives.len(), negatives.iter().sum()),
                });
            }
        }
    }
    out
}

/// The audit's report, then localization by subgroup.
pub fn markdown(r: &SubgroupResults) -> String {
    let mut md = audit::markdown(&r.audit).replacen("# Subgroup audit", "## Subgroup audit", 1);
    // The audit's own sections sit one level below the evaluation's.
    md = md.replace("\n## ", "\n### ");
    let _ = writeln!(md, "Subgroups read from `{}`.\n", r.metadata);
    if r.localization.is_empty() {
        return md;
    }
    let _ = writeln!(
        md,
        "### Localization by subgroup\n\n| finding | subgroup | films with boxes | T(IoU)=0.3 acc / AFP | \
         T(IoU)=0.5 acc / AFP | pointing | false boxes per negative film (films) |\n|---|---|---:|---|---|---:|---|"
    );
    for g in &r.localization {
        let cell = |i: usize| {
            g.iou
                .get(i)
                .filter(|_| g.box_images > 0)
                .map_or("-".into(), |l| format!("{:.3} / {:.2}", l.accuracy, l.afp))
        };
        let _ = writeln!(
            md,
            "| {} | {} = {} | {} | {} | {} | {} | {:.2} ({}) |",
            g.finding,
            g.partition,
            g.group,
            g.box_images,
            cell(0),
            cell(1),
            if g.box_images > 0 {
                format!("{:.3}", g.quality.pointing)
            } else {
                "-".into()
            },
            g.quality.false_boxes_per_negative_film,
            g.quality.negative_films
        );
    }
    md
}
