//! The audit as Markdown: the largest gaps first, then each finding, each partition, calibration.

use super::{Audit, GroupAudit, Operating, Unit, MIN_CASES};
use std::fmt::Write;

fn num(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |x| format!("{x:.3}"))
}

/// ECEs of rare findings are small: four decimals keep them apart.
fn ece(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |x| format!("{x:.4}"))
}

fn ci(x: Option<(f64, f64)>) -> String {
    x.map_or("-".into(), |(l, h)| format!("{l:.3}–{h:.3}"))
}

fn signed(x: Option<f64>) -> String {
    x.map_or("n/a".into(), |x| format!("{x:+.3}"))
}

fn sens_spec(o: Option<Operating>) -> String {
    o.map_or("-".into(), |o| {
        format!("{} / {}", num(o.sensitivity), num(o.specificity))
    })
}

/// "excludes 0" where the gap's interval does not straddle zero.
fn verdict(g: &GroupAudit) -> &'static str {
    match g.gap_ci95 {
        Some((_, h)) if h < 0.0 => "worse",
        Some((l, _)) if l > 0.0 => "better",
        Some(_) => "",
        None => "",
    }
}

fn unit_text(a: &Audit) -> String {
    let b = &a.bootstrap;
    let what = match b.unit {
        Unit::Patient => format!(
            "over {} patients (each brings all their films)",
            a.patients.unwrap_or(0)
        ),
        Unit::Image => {
            if a.patients.is_some() {
                "over films (asked for; patients are known)".into()
            } else {
                "over films: no patient column, so intervals may be too narrow where a patient has \
                 several films"
                    .into()
            }
        }
    };
    format!(
        "{:.0}% intervals: percentile bootstrap, {} resamples {what}, seed {}; each subgroup and \
         its rest come from the same resample (paired).",
        b.level * 100.0,
        b.resamples,
        b.seed
    )
}

pub fn markdown(a: &Audit) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Subgroup audit\n");
    let _ = writeln!(
        md,
        "{} images{}. {}\nThresholds: {}.\n",
        a.images,
        a.patients
            .map_or(String::new(), |p| format!(", {p} patients")),
        unit_text(a),
        a.thresholds_source
    );
    if !a.partitions.is_empty() {
        largest(&mut md, a);
    }
    overall(&mut md, a);
    for p in &a.partitions {
        let _ = writeln!(
            md,
            "## By {} (column `{}`)\n\n| finding | group | pos | neg | AUC (95% CI) | rest | gap (95% CI) | \
             sens / spec | ECE | |\n|---|---|---:|---:|---|---:|---|---|---:|---|",
            p.name, p.column
        );
        for g in a.groups.iter().filter(|g| g.partition == p.name) {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} ({}) | {} | {} ({}) | {} | {} | {} |",
                g.finding,
                g.group,
                g.positives,
                g.negatives,
                num(g.auc),
                ci(g.ci95),
                num(g.rest_auc),
                signed(g.gap),
                ci(g.gap_ci95),
                sens_spec(g.operating),
                ece(g.ece),
                if g.small { "small" } else { verdict(g) }
            );
        }
        md.push('\n');
    }
    md
}

fn largest(md: &mut String, a: &Audit) {
    let _ = writeln!(
        md,
        "## Largest gaps\n\nSubgroups whose AUC falls furthest below everyone else's (\"worse\": the \
         gap's interval excludes 0). Subgroups with fewer than {MIN_CASES} positives or negatives are \
         not ranked here; they are flagged \"small\" in the tables below.\n"
    );
    if a.largest_gaps.is_empty() {
        let _ = writeln!(md, "No subgroup scores below the rest.\n");
        return;
    }
    let _ = writeln!(
        md,
        "| finding | subgroup | pos / neg | AUC | rest | gap (95% CI) | |\n|---|---|---|---:|---:|---|---|"
    );
    for &i in &a.largest_gaps {
        let g = &a.groups[i];
        let _ = writeln!(
            md,
            "| {} | {} = {} | {} / {} | {} | {} | {} ({}) | {} |",
            g.finding,
            g.partition,
            g.group,
            g.positives,
            g.negatives,
            num(g.auc),
            num(g.rest_auc),
            signed(g.gap),
            ci(g.gap_ci95),
            verdict(g)
        );
    }
    md.push('\n');
}

fn overall(md: &mut String, a: &Audit) {
    let _ = writeln!(
        md,
        "## Per finding\n\n| finding | pos | neg | AUC (95% CI) | threshold | sens / spec | in-sample \
         threshold | sens / spec | ECE |\n|---|---:|---:|---|---:|---|---:|---|---:|"
    );
    for f in &a.findings {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} ({}) | {} | {} | {} | {} | {} |",
            f.finding,
            f.positives,
            f.negatives,
            num(f.auc),
            ci(f.ci95),
            num(f.operating.map(|o| o.threshold)),
            sens_spec(f.operating),
            num(f.in_sample.map(|o| o.threshold)),
            sens_spec(f.in_sample),
            ece(f.calibration.as_ref().map(|c| c.ece))
        );
    }
    let aucs: Vec<f64> = a.findings.iter().filter_map(|f| f.auc).collect();
    if !aucs.is_empty() {
        let _ = writeln!(
            md,
            "| **mean** ({} of {} findings) | | | **{:.4}** | | | | | |",
            aucs.len(),
            a.findings.len() + a.missing_findings.len(),
            aucs.iter().sum::<f64>() / aucs.len() as f64
        );
    }
    if !a.missing_findings.is_empty() {
        let _ = writeln!(
            md,
            "\nNo prediction column for: {} (left out of the mean).",
            a.missing_findings.join(", ")
        );
    }
    let _ = writeln!(
        md,
        "\nECE: expected calibration error over ten equal-width probability bins (n/a where scores \
         are not probabilities). In-sample threshold: Youden's J fitted on these predictions, the \
         best a threshold chosen here could do.\n"
    );
}
