//! Known answer: `chestx auc` on a published DenseNet-121's NIH test-set predictions reproduces the
//! 14 AUCs it reports, to 6 decimals.

mod common;
use common::{chestx, data_dir};

#[test]
fn reproduces_published_chexnet_aucs_to_six_decimals() {
    let Some(data) = data_dir("nih/reference-preds") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let json = tmp.path().join("auc.json");
    let out = chestx()
        .arg("auc")
        .arg("--pred")
        .arg(data.join("nih/reference-preds/reproduce_chexnet_test_preds.csv"))
        .arg("--labels")
        .arg(data.join("nih/meta/Data_Entry_2017_v2020.csv.gz"))
        .args(["--bootstrap", "50", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
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
