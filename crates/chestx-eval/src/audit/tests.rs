use super::*;
use rand::Rng;

/// 300 patients × 4 films. A patient's films share their label and most of their score (so films
/// are not independent), and patients of group "b" are scored with far more noise.
fn study() -> AuditInput {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (mut scores, mut truth, mut group, mut patients) = (vec![], vec![], vec![], vec![]);
    for p in 0..300u32 {
        let positive = rng.random_bool(0.3);
        let worse = p % 2 == 1;
        let shared: f64 = rng.random_range(-1.0..1.0) * if worse { 3.0 } else { 0.8 };
        for _ in 0..4 {
            let s = if positive { 1.0 } else { 0.0 } + shared + rng.random_range(-0.1..0.1);
            scores.push(1.0 / (1.0 + (-s).exp()));
            truth.push(Some(positive));
            group.push(worse as u16);
            patients.push(p);
        }
    }
    AuditInput {
        findings: vec!["Mass".into()],
        scores: vec![scores],
        truth: vec![truth],
        partitions: vec![Partition {
            name: "site".into(),
            column: "site".into(),
            groups: vec!["a".into(), "b".into()],
            of_image: group,
        }],
        patients: Some(patients),
        thresholds: None,
    }
}

fn options(unit: Unit) -> AuditOptions {
    AuditOptions {
        resamples: 300,
        seed: 5,
        unit,
        level: 0.95,
    }
}

#[test]
fn the_noisier_group_shows_a_gap_whose_interval_excludes_zero() {
    let a = audit(&study(), &options(Unit::Patient));
    let b = a.groups.iter().find(|g| g.group == "b").unwrap();
    let (lo, hi) = b.gap_ci95.unwrap();
    assert!(
        b.gap.unwrap() < -0.1 && hi < 0.0 && lo < b.gap.unwrap(),
        "{b:?}"
    );
    assert_eq!(a.largest_gaps.len(), 1);
    assert_eq!(a.groups[a.largest_gaps[0]].group, "b");
    assert_eq!(a.patients, Some(300));
    let md = markdown(&a);
    assert!(
        md.contains("| Mass | site = b |") && md.contains("worse"),
        "{md}"
    );
}

#[test]
fn intervals_are_seeded_and_patients_widen_them_when_films_are_alike() {
    let input = study();
    let p1 = audit(&input, &options(Unit::Patient));
    let p2 = audit(&input, &options(Unit::Patient));
    let img = audit(&input, &options(Unit::Image));
    assert_eq!(p1.findings[0].ci95, p2.findings[0].ci95);
    assert_eq!(p1.groups[1].gap_ci95, p2.groups[1].gap_ci95);
    let width = |x: Option<(f64, f64)>| x.map(|(l, h)| h - l).unwrap();
    // Four near-copies of each film: resampling films pretends to four times the evidence.
    assert!(
        width(p1.findings[0].ci95) > 1.5 * width(img.findings[0].ci95),
        "{:?} vs {:?}",
        p1.findings[0].ci95,
        img.findings[0].ci95
    );
    assert_eq!(img.bootstrap.unit, Unit::Image);
}

#[test]
fn thresholds_from_elsewhere_are_used_and_sensitivity_follows_them() {
    let mut input = study();
    input.thresholds = Some(ThresholdSet {
        source: "test".into(),
        values: vec![Some(0.0)],
    });
    let a = audit(&input, &options(Unit::Patient));
    let o = a.findings[0].operating.unwrap();
    assert_eq!((o.sensitivity, o.specificity), (Some(1.0), Some(0.0)));
    assert_eq!(a.thresholds_source, "test");
    // The in-sample threshold is reported beside it and does better.
    let i = a.findings[0].in_sample.unwrap();
    assert!(i.specificity.unwrap() > 0.5);
}

#[test]
fn a_clustered_interval_is_the_audits_own_for_one_finding() {
    let input = study();
    let clusters: Vec<u64> = input
        .patients
        .as_ref()
        .unwrap()
        .iter()
        .map(|&p| p as u64 * 7 + 3)
        .collect();
    let direct = clustered_auc_ci(&input.scores[0], &input.truth[0], &clusters, 300, 0.95, 5);
    let a = audit(&input, &options(Unit::Patient));
    assert_eq!(direct, a.findings[0].ci95);
    assert!(direct.is_some());
}
