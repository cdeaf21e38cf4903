//! Subgroup audit: who a model fails, and whether its thresholds transfer.
//!
//! Per finding and per subgroup (sex, view, age band, any column): AUC with a bootstrap interval, the
//! gap to everyone else with an interval for the difference, sensitivity and specificity at the
//! operating thresholds, and calibration (ECE, reliability bins). The bootstrap resamples patients,
//! not images, whenever patients are known: one patient's films are alike, and resampling them one by
//! one would overstate how sure the numbers are. Group and rest are scored on the same resample
//! (a paired bootstrap), so the interval of their difference is honest about both.

pub mod calibration;
pub mod groups;
pub mod pairs;
mod report;

pub use calibration::{reliability, reliability_plots, Panel, Reliability};
pub use groups::{parse_by, subgroups, Band, GroupSpec, Partition, UNKNOWN};
pub use report::markdown;

use crate::auc::{percentile_interval, youden_threshold};
use pairs::{tally, Layout, Ranked};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// What one resample stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// Patients drawn with replacement, each bringing all their films.
    Patient,
    /// Films drawn one by one.
    Image,
}

/// Subgroups with fewer positives or negatives than this are flagged: an AUC from a handful of
/// cases swings by tenths between resamples.
pub const MIN_CASES: usize = 30;

/// Operating thresholds per finding and where they came from.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ThresholdSet {
    pub source: String,
    /// Per finding, in the audit's finding order; `None` when the source has none for it.
    pub values: Vec<Option<f64>>,
}

/// Scores and labels of the images audited.
pub struct AuditInput {
    pub findings: Vec<String>,
    /// `scores[c][i]`: image `i`'s score for finding `c`.
    pub scores: Vec<Vec<f64>>,
    /// `truth[c][i]`: its label, `None` where unknown (left out of that finding).
    pub truth: Vec<Vec<Option<bool>>>,
    pub partitions: Vec<Partition>,
    /// Each image's patient (dense indices from 0), when known.
    pub patients: Option<Vec<u32>>,
    /// Thresholds from elsewhere (another split, dataset or `chestx eval`); `None`: chosen here.
    pub thresholds: Option<ThresholdSet>,
}

pub struct AuditOptions {
    pub resamples: usize,
    pub seed: u64,
    /// `Image` even when patients are known (to compare); patients are used by default.
    pub unit: Unit,
    pub level: f64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Bootstrap {
    pub resamples: usize,
    pub unit: Unit,
    pub seed: u64,
    pub level: f64,
}

/// Sensitivity and specificity of calling a finding at `threshold`.
#[derive(Clone, Copy, Debug, serde::Serialize, PartialEq)]
pub struct Operating {
    pub threshold: f64,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
}

/// One finding over all images.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FindingAudit {
    pub finding: String,
    pub positives: usize,
    pub negatives: usize,
    pub auc: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    /// At the audit's thresholds.
    pub operating: Option<Operating>,
    /// At the threshold Youden's J picks on these very predictions: what a threshold fitted here
    /// would give, beside which the transferred one's loss shows.
    pub in_sample: Option<Operating>,
    pub calibration: Option<Reliability>,
}

/// One finding in one subgroup.
#[derive(Clone, Debug, serde::Serialize)]
pub struct GroupAudit {
    pub finding: String,
    pub partition: String,
    pub group: String,
    pub positives: usize,
    pub negatives: usize,
    pub auc: Option<f64>,
    pub ci95: Option<(f64, f64)>,
    /// AUC of everyone else in the partition.
    pub rest_auc: Option<f64>,
    /// `auc − rest_auc`, negative where the subgroup fares worse.
    pub gap: Option<f64>,
    pub gap_ci95: Option<(f64, f64)>,
    pub operating: Option<Operating>,
    pub ece: Option<f64>,
    /// Fewer than [`MIN_CASES`] positives or negatives.
    pub small: bool,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PartitionInfo {
    pub name: String,
    pub column: String,
    pub groups: Vec<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct Audit {
    pub images: usize,
    pub patients: Option<usize>,
    pub bootstrap: Bootstrap,
    pub thresholds_source: String,
    #[serde(rename = "classes")]
    pub findings: Vec<FindingAudit>,
    pub partitions: Vec<PartitionInfo>,
    #[serde(rename = "subgroups")]
    pub groups: Vec<GroupAudit>,
    /// Indices into `subgroups` of the largest gaps among subgroups that are not small, largest first.
    pub largest_gaps: Vec<usize>,
    /// Findings the labels know but the predictions have no column for (set by the caller, which
    /// knows the label set): the mean is over the others, and the report says which are missing.
    pub missing_findings: Vec<String>,
}

/// Bootstrap AUCs of one resample: overall, and per finding × global group for group and rest.
struct Resample {
    overall: Vec<f64>,
    group: Vec<f64>,
    rest: Vec<f64>,
}

/// Run the audit.
pub fn audit(input: &AuditInput, opt: &AuditOptions) -> Audit {
    let n = input.scores.first().map_or(0, Vec::len);
    let layout = Layout::new(&input.partitions, n);
    let ranked: Vec<Ranked> = input
        .scores
        .par_iter()
        .zip(&input.truth)
        .map(|(s, t)| Ranked::new(s, t))
        .collect();
    let unit = match (&input.patients, opt.unit) {
        (Some(_), Unit::Patient) => Unit::Patient,
        _ => Unit::Image,
    };
    let resamples = resample_all(input, &ranked, &layout, opt, unit);
    let thresholds = input.thresholds.clone().unwrap_or_else(|| in_sample(input));
    let findings = (0..input.findings.len())
        .map(|c| finding_audit(input, &ranked[c], &layout, &resamples, &thresholds, c, opt))
        .collect();
    let groups = group_audits(input, &ranked, &layout, &resamples, &thresholds, opt);
    Audit {
        images: n,
        patients: input
            .patients
            .as_ref()
            .map(|p| p.iter().copied().max().map_or(0, |m| m as usize + 1)),
        bootstrap: Bootstrap {
            resamples: opt.resamples,
            unit,
            seed: opt.seed,
            level: opt.level,
        },
        thresholds_source: thresholds.source.clone(),
        largest_gaps: largest_gaps(&groups),
        missing_findings: Vec::new(),
        findings,
        partitions: input
            .partitions
            .iter()
            .map(|p| PartitionInfo {
                name: p.name.clone(),
                column: p.column.clone(),
                groups: p.groups.clone(),
            })
            .collect(),
        groups,
    }
}

/// The bootstrap interval of one AUC with `clusters` (patients) resampled whole: what `chestx eval`
/// reports beside each finding. `truth[i]` is `None` where the label is unknown.
pub fn clustered_auc_ci(
    scores: &[f64],
    truth: &[Option<bool>],
    clusters: &[u64],
    resamples: usize,
    level: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    let mut dense = std::collections::HashMap::new();
    let patients = clusters
        .iter()
        .map(|c| {
            let next = dense.len() as u32;
            *dense.entry(*c).or_insert(next)
        })
        .collect();
    let input = AuditInput {
        findings: vec![String::new()],
        scores: vec![scores.to_vec()],
        truth: vec![truth.to_vec()],
        partitions: Vec::new(),
        patients: Some(patients),
        thresholds: None,
    };
    let ranked = [Ranked::new(scores, truth)];
    let layout = Layout::new(&[], scores.len());
    let opt = AuditOptions {
        resamples,
        seed,
        unit: Unit::Patient,
        level,
    };
    let r = resample_all(&input, &ranked, &layout, &opt, Unit::Patient);
    interval(&r, level, |x| x.overall[0])
}

/// Youden's J on the audited predictions themselves.
fn in_sample(input: &AuditInput) -> ThresholdSet {
    ThresholdSet {
        source: "Youden's J on these predictions (in-sample: optimistic; give thresholds from \
                 another split to see how they transfer)"
            .into(),
        values: (0..input.findings.len())
            .map(|c| {
                let (s, t) = known(input, c, |_| true);
                youden_threshold(&s, &t)
            })
            .collect(),
    }
}

/// Scores and labels of finding `c` over the images `keep` admits whose label is known.
fn known(input: &AuditInput, c: usize, keep: impl Fn(usize) -> bool) -> (Vec<f64>, Vec<bool>) {
    input.truth[c]
        .iter()
        .enumerate()
        .filter_map(|(i, t)| Some((input.scores[c][i], (*t)?)).filter(|_| keep(i)))
        .unzip()
}

fn operating(scores: &[f64], truth: &[bool], threshold: Option<f64>) -> Option<Operating> {
    let threshold = threshold?;
    let (mut tp, mut fneg, mut tn, mut fp) = (0usize, 0usize, 0usize, 0usize);
    for (&s, &t) in scores.iter().zip(truth) {
        match (s >= threshold, t) {
            (true, true) => tp += 1,
            (false, true) => fneg += 1,
            (false, false) => tn += 1,
            (true, false) => fp += 1,
        }
    }
    let rate = |a: usize, b: usize| (a + b > 0).then(|| a as f64 / (a + b) as f64);
    Some(Operating {
        threshold,
        sensitivity: rate(tp, fneg),
        specificity: rate(tn, fp),
    })
}

/// Per-image weights of resample `r`: its own ChaCha stream, so that the result does not depend
/// on which thread drew it.
fn weights(input: &AuditInput, n: usize, unit: Unit, seed: u64, r: usize) -> Vec<u32> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(r as u64);
    match (unit, &input.patients) {
        (Unit::Patient, Some(patients)) => {
            let count = patients.iter().copied().max().map_or(0, |m| m as usize + 1);
            let mut drawn = vec![0u32; count];
            for _ in 0..count {
                drawn[rng.random_range(0..count)] += 1;
            }
            patients.iter().map(|&p| drawn[p as usize]).collect()
        }
        _ => {
            let mut drawn = vec![0u32; n];
            for _ in 0..n {
                drawn[rng.random_range(0..n)] += 1;
            }
            drawn
        }
    }
}

fn resample_all(
    input: &AuditInput,
    ranked: &[Ranked],
    layout: &Layout,
    opt: &AuditOptions,
    unit: Unit,
) -> Vec<Resample> {
    let n = input.scores.first().map_or(0, Vec::len);
    let ng = layout.total_groups();
    (0..opt.resamples)
        .into_par_iter()
        .map(|r| {
            let w = weights(input, n, unit, opt.seed, r);
            let mut out = Resample {
                overall: Vec::with_capacity(ranked.len()),
                group: Vec::with_capacity(ranked.len() * ng),
                rest: Vec::with_capacity(ranked.len() * ng),
            };
            for rk in ranked {
                let t = tally(rk, Some(&w), layout);
                out.overall.push(t.auc().unwrap_or(f64::NAN));
                for g in 0..ng {
                    let (own, rest) = t.group_and_rest(layout, g);
                    out.group.push(own.unwrap_or(f64::NAN));
                    out.rest.push(rest.unwrap_or(f64::NAN));
                }
            }
            out
        })
        .collect()
}

/// The interval of the finite values `pick` takes from each resample.
fn interval(
    resamples: &[Resample],
    level: f64,
    pick: impl Fn(&Resample) -> f64,
) -> Option<(f64, f64)> {
    percentile_interval(
        resamples
            .iter()
            .map(pick)
            .filter(|x| x.is_finite())
            .collect(),
        level,
    )
}

fn finding_audit(
    input: &AuditInput,
    ranked: &Ranked,
    layout: &Layout,
    resamples: &[Resample],
    thresholds: &ThresholdSet,
    c: usize,
    opt: &AuditOptions,
) -> FindingAudit {
    let (s, t) = known(input, c, |_| true);
    let positives = t.iter().filter(|&&x| x).count();
    FindingAudit {
        finding: input.findings[c].clone(),
        positives,
        negatives: t.len() - positives,
        auc: tally(ranked, None, layout).auc(),
        ci95: interval(resamples, opt.level, |r| r.overall[c]),
        operating: operating(&s, &t, thresholds.values[c]),
        in_sample: operating(&s, &t, youden_threshold(&s, &t)),
        calibration: reliability(&s, &t),
    }
}

fn group_audits(
    input: &AuditInput,
    ranked: &[Ranked],
    layout: &Layout,
    resamples: &[Resample],
    thresholds: &ThresholdSet,
    opt: &AuditOptions,
) -> Vec<GroupAudit> {
    let ng = layout.total_groups();
    let mut out = Vec::new();
    for (c, rk) in ranked.iter().enumerate() {
        let point = tally(rk, None, layout);
        for (p, part) in input.partitions.iter().enumerate() {
            for (l, name) in part.groups.iter().enumerate() {
                let g = layout.offsets[p] + l;
                let (auc, rest_auc) = point.group_and_rest(layout, g);
                let (s, t) = known(input, c, |i| part.of_image[i] as usize == l);
                let positives = t.iter().filter(|&&x| x).count();
                let at = c * ng + g;
                out.push(GroupAudit {
                    finding: input.findings[c].clone(),
                    partition: part.name.clone(),
                    group: name.clone(),
                    positives,
                    negatives: t.len() - positives,
                    auc,
                    ci95: interval(resamples, opt.level, |r| r.group[at]),
                    rest_auc,
                    gap: auc.zip(rest_auc).map(|(a, b)| a - b),
                    gap_ci95: interval(resamples, opt.level, |r| r.group[at] - r.rest[at]),
                    operating: operating(&s, &t, thresholds.values[c]),
                    ece: reliability(&s, &t).map(|r| r.ece),
                    small: positives < MIN_CASES || t.len() - positives < MIN_CASES,
                });
            }
        }
    }
    out
}

/// The ten largest gaps by size among subgroups that are not small; two-group partitions show each
/// gap twice (F vs M, M vs F), so only the group that fares worse is listed.
fn largest_gaps(groups: &[GroupAudit]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..groups.len())
        .filter(|&i| !groups[i].small && groups[i].gap.is_some_and(|g| g < 0.0))
        .filter(|&i| groups[i].group != UNKNOWN)
        .collect();
    idx.sort_by(|&a, &b| groups[a].gap.unwrap().total_cmp(&groups[b].gap.unwrap()));
    idx.truncate(10);
    idx
}

#[cfg(test)]
mod tests;
