//! `chestx-bench audit`: the subgroup AUC table of `chestx auc --by sex,view,age` next to
//! scikit-learn's `roc_auc_score` over the same subgroups, on the published CheXNet reproduction's
//! NIH test-set predictions; also checks that both give the same AUCs.

use anyhow::{bail, Result};
use chestx_data::SampleOptions;
use chestx_eval::audit::{audit, AuditOptions, Unit};
use clap::Args;
use std::path::PathBuf;
use std::time::Instant;

#[derive(Args)]
pub struct AuditBenchArgs {
    /// Predictions (default: $CHESTX_DATA/nih/reference-preds/reproduce_chexnet_test_preds.csv).
    #[arg(long)]
    pred: Option<PathBuf>,
    /// Labels and metadata (default: $CHESTX_DATA/nih/meta/Data_Entry_2017_v2020.csv.gz).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Timed rounds per side (the median is reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
}

fn median_secs(rounds: usize, mut f: impl FnMut()) -> f64 {
    let times: Vec<f64> = (0..rounds.max(1))
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .collect();
    crate::median(&times)
}

pub fn run(a: AuditBenchArgs) -> Result<()> {
    let data = crate::data_dir();
    let pred = a
        .pred
        .unwrap_or_else(|| data.join("nih/reference-preds/reproduce_chexnet_test_preds.csv"));
    let labels = a
        .labels
        .unwrap_or_else(|| data.join("nih/meta/Data_Entry_2017_v2020.csv.gz"));
    let options = SampleOptions::default();
    let by = vec!["sex,view,age".to_string()];
    let t = Instant::now();
    let input = chestx_cli::auc::load(&pred, &labels, None, &by, &options)?;
    let load = t.elapsed().as_secs_f64();
    let point = AuditOptions {
        resamples: 0,
        seed: 0,
        unit: Unit::Patient,
        level: 0.95,
    };
    let compute = median_secs(a.rounds, || {
        std::hint::black_box(audit(&input, &point));
    });
    let ours = audit(&input, &point);
    let t = Instant::now();
    let full = audit(
        &input,
        &AuditOptions {
            resamples: 1000,
            ..point
        },
    );
    let boot = t.elapsed().as_secs_f64();
    let theirs = crate::python_reference(
        &a.python,
        std::path::Path::new("benches/audit_sklearn.py"),
        &crate::flag_args(&[
            ("--pred", pred.display().to_string()),
            ("--labels", labels.display().to_string()),
            ("--rounds", a.rounds.to_string()),
        ]),
    )?;
    let worst = largest_difference(&ours, &theirs)?;
    std::hint::black_box(full);
    let sizes = (
        input.scores[0].len(),
        input.findings.len(),
        ours.groups.len(),
    );
    print_table(sizes, (load, compute, boot), &theirs, worst);
    Ok(())
}

/// (images, findings, subgroups) and our (read, table, bootstrap) seconds beside theirs.
fn print_table(
    sizes: (usize, usize, usize),
    ours: (f64, f64, f64),
    theirs: &serde_json::Value,
    worst: f64,
) {
    let (images, findings, groups) = sizes;
    let (load, compute, boot) = ours;
    let (their_load, their_compute) = (
        theirs["load_s"].as_f64().unwrap_or(f64::NAN),
        theirs["compute_s"].as_f64().unwrap_or(f64::NAN),
    );
    println!(
        "bench audit: {} images, {} findings × {} subgroups (sex, view, age bands), each with its rest",
        images,
        findings,
        groups / findings
    );
    println!("                       chestx      scikit-learn   ratio");
    println!(
        "  AUC table (median)   {:>8.4} s  {:>10.4} s   {:>6.1}x",
        compute,
        their_compute,
        their_compute / compute
    );
    println!(
        "  read + join          {:>8.4} s  {:>10.4} s   {:>6.1}x",
        load,
        their_load,
        their_load / load
    );
    println!(
        "  both                 {:>8.4} s  {:>10.4} s   {:>6.1}x",
        load + compute,
        their_load + their_compute,
        (their_load + their_compute) / (load + compute)
    );
    println!(
        "  with 1000 patient-level bootstrap resamples (intervals for every AUC and gap): {boot:.2} s on {} threads",
        rayon::current_num_threads()
    );
    println!(
        "  largest |AUC difference| to scikit-learn over {} subgroup/rest pairs: {worst:.2e}",
        groups
    );
}

/// The largest |AUC difference| between ours and scikit-learn's over every subgroup and its rest.
fn largest_difference(ours: &chestx_eval::audit::Audit, theirs: &serde_json::Value) -> Result<f64> {
    let mut worst: f64 = 0.0;
    for g in &ours.groups {
        let key = format!("{}|{}|{}", g.finding, g.partition, g.group);
        let Some(pair) = theirs["aucs"].get(&key) else {
            bail!("scikit-learn side has no {key}");
        };
        for (x, y) in [(g.auc, &pair[0]), (g.rest_auc, &pair[1])] {
            if let (Some(x), Some(y)) = (x, y.as_f64()) {
                worst = worst.max((x - y).abs());
            }
        }
    }
    Ok(worst)
}
