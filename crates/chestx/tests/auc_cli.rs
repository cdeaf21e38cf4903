//! Known answer: `chestx auc` on a published DenseNet-121's NIH test-set predictions reproduces the
//! 14 AUCs it reports, to 6 decimals.

mod common;
use common::{chestx, data_dir, json_report};
use std::collections::HashMap;
use std::path::Path;

#[test]
fn reproduces_published_chexnet_aucs_to_six_decimals() {
    let Some(data) = data_dir("nih/reference-preds") else {
        return;
    };
    let got = auc_json(
        &data.join("nih/reference-preds/reproduce_chexnet_test_preds.csv"),
        &data.join("nih/meta/Data_Entry_2017_v2020.csv.gz"),
        &["--bootstrap", "50"],
    );
    assert_eq!(got["images"], 22433);
    let mut want =
        csv::Reader::from_path(data.join("nih/reference-preds/reproduce_chexnet_test_aucs.csv"))
            .unwrap();
    let mut n = 0;
    for rec in want.records() {
        let rec = rec.unwrap();
        let class = got["classes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["finding"] == rec[0])
            .unwrap();
        let auc = class["auc"].as_f64().unwrap();
        let reference: f64 = rec[1].parse().unwrap();
        assert!(
            (auc - reference).abs() < 5e-7,
            "{}: {auc} vs published {reference}",
            &rec[0]
        );
        let (lo, hi) = (
            class["ci95"][0].as_f64().unwrap(),
            class["ci95"][1].as_f64().unwrap(),
        );
        assert!(
            lo < auc && auc < hi,
            "{}: CI {lo}..{hi} excludes {auc}",
            &rec[0]
        );
        n += 1;
    }
    assert_eq!(n, 14);
}

/// `chestx auc`'s JSON report.
fn auc_json(pred: &Path, labels: &Path, extra: &[&str]) -> serde_json::Value {
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("auc.json");
    json_report(
        chestx()
            .arg("auc")
            .arg("--pred")
            .arg(pred)
            .arg("--labels")
            .arg(labels)
            .arg("--json")
            .arg(&json)
            .args(extra),
        &json,
    )
}

/// Without bootstrap, the classes by finding: (positives, negatives, AUC).
fn auc_table(pred: &Path, labels: &Path, extra: &[&str]) -> HashMap<String, (u64, u64, f64)> {
    let args: Vec<&str> = ["--bootstrap", "0"].iter().chain(extra).copied().collect();
    auc_json(pred, labels, &args)["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["finding"].as_str().unwrap().to_string(),
                (
                    c["positives"].as_u64().unwrap(),
                    c["negatives"].as_u64().unwrap(),
                    c["auc"].as_f64().unwrap(),
                ),
            )
        })
        .collect()
}

#[test]
fn chexpert_convention_labels_score_alike_and_leave_uncertain_labels_out() {
    use chestx_core::Finding;
    let Some(data) = data_dir("nih/reference-preds") else {
        return;
    };
    let pred = data.join("nih/reference-preds/reproduce_chexnet_test_preds.csv");
    let entry = data.join("nih/meta/Data_Entry_2017_v2020.csv.gz");
    let nih = chestx_eval::read_data_entry_labels(&entry).unwrap();
    // The same test-set labels in the CheXpert convention (CheXpert's name for Effusion), with the
    // first 100 Mass positives written uncertain.
    let tmp = tempfile::tempdir().unwrap();
    let cx = tmp.path().join("labels.csv");
    let mut w = csv::Writer::from_path(&cx).unwrap();
    let names = Finding::DISEASES.map(|f| match f {
        Finding::Effusion => "Pleural Effusion",
        f => f.name(),
    });
    w.write_record(std::iter::once("Path").chain(names))
        .unwrap();
    let mut uncertain = 0;
    for rec in csv::Reader::from_path(&pred).unwrap().records() {
        let id = rec.unwrap()[0].to_string();
        let l = nih[&id];
        let cells = Finding::DISEASES.map(|f| match l[f.index()] {
            true if f == Finding::Mass && uncertain < 100 => {
                uncertain += 1;
                "-1.0"
            }
            true => "1.0",
            false => "0.0",
        });
        w.write_record(std::iter::once(id.as_str()).chain(cells))
            .unwrap();
    }
    w.flush().unwrap();
    assert_eq!(uncertain, 100);

    let want = auc_table(&pred, &entry, &[]);
    let ignored = auc_table(&pred, &cx, &[]);
    let ones = auc_table(&pred, &cx, &["--uncertain", "ones"]);
    assert_eq!(want.len(), 14);
    for (finding, w) in &want {
        if finding == "Mass" {
            let (p, n, _) = ignored[finding];
            assert_eq!((p, n), (w.0 - 100, w.1), "uncertain Mass films left out");
        } else {
            assert_eq!(&ignored[finding], w, "{finding}");
        }
        assert_eq!(&ones[finding], w, "{finding} with uncertain as positive");
    }
}
