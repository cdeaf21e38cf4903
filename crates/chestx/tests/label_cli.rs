//! End-to-end: `chestx label` + `chestx label-eval` on the OpenI development set, asserting the
//! accuracy floors of the labeler. Needs the shared data (CHESTX_DATA, or ../shared/data beside the
//! checkout); skips with a message when it is absent.

mod common;
use common::{chestx, data_dir, json_report};
use std::path::PathBuf;

#[test]
fn labeler_meets_the_f1_floors_on_openi() {
    let Some(data) = data_dir("openi/gold.csv") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let labels = tmp.path().join("labels.csv");
    let evidence = tmp.path().join("evidence.jsonl");
    let out = chestx()
        .arg("label")
        .arg(data.join("openi/reports.csv"))
        .arg("-o")
        .arg(&labels)
        .arg("--binary")
        .arg("--evidence")
        .arg(&evidence)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The development set holds 14 reports with empty findings and impression: each is named, the
    // run carries on, and the exit status says something failed.
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("labelled 2301 reports, 14 failed"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("empty report").count(), 14, "{stderr}");

    let json = tmp.path().join("scores.json");
    let s = json_report(
        chestx()
            .arg("label-eval")
            .arg("--gold")
            .arg(data.join("openi/gold.csv"))
            .arg("--pred")
            .arg(&labels)
            .arg("--json")
            .arg(&json),
        &json,
    );
    let micro = s["micro_with_positives"]["f1"].as_f64().unwrap();
    let nf = s["no_finding"]["f1"].as_f64().unwrap();
    let n13 = s["per_finding"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["gold_positives"].as_u64() > Some(0))
        .count();
    assert_eq!(n13, 13);
    assert!(
        micro >= 0.93,
        "micro-F1 over the 13 findings with gold positives: {micro:.4}"
    );
    assert!(nf >= 0.90, "No Finding F1: {nf:.4}");

    // Evidence: one JSON line per mention, whose character span holds the phrase.
    let reports: std::collections::HashMap<String, String> = {
        let mut r = csv::Reader::from_path(data.join("openi/reports.csv")).unwrap();
        r.records()
            .map(|x| x.unwrap())
            .map(|x| (x[0].to_string(), x[3].to_string()))
            .collect()
    };
    let ev = std::fs::read_to_string(&evidence).unwrap();
    let mut checked = 0;
    for line in ev.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(["positive", "negative", "uncertain"].contains(&v["status"].as_str().unwrap()));
        if v["source"] == "findings" {
            let text = &reports[v["report_id"].as_str().unwrap()];
            let (a, b) = (
                v["start"].as_u64().unwrap() as usize,
                v["end"].as_u64().unwrap() as usize,
            );
            let got: String = text.chars().skip(a).take(b - a).collect();
            assert_eq!(got, v["phrase"].as_str().unwrap());
            checked += 1;
        }
    }
    assert!(checked > 3000, "only {checked} evidence spans checked");
}

#[test]
fn openi_archive_gives_the_same_labels_as_the_csv() {
    let Some(data) = data_dir("openi/gold.csv") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let run = |input: PathBuf, name: &str| -> Vec<(String, Vec<String>)> {
        let out = tmp.path().join(name);
        chestx()
            .arg("label")
            .arg(input)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        let mut rows: Vec<_> = csv::Reader::from_path(&out)
            .unwrap()
            .records()
            .map(|r| r.unwrap())
            .map(|r| {
                (
                    r[0].trim_start_matches("CXR").to_string(),
                    r.iter().skip(1).map(String::from).collect(),
                )
            })
            .collect();
        rows.sort();
        rows
    };
    let a = run(data.join("openi/reports.csv"), "a.csv");
    let b = run(data.join("openi/ecgen-radiology.tgz"), "b.csv");
    assert_eq!(a.len(), 2301);
    assert_eq!(a, b);
}

#[test]
fn uncertain_cells_follow_the_chexpert_convention_and_binary_mapping() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("r.csv");
    std::fs::write(
        &input,
        "id,findings\nA,Cannot exclude pneumonia. No pneumothorax. Small effusion.\n",
    )
    .unwrap();
    let read = |args: &[&str]| -> Vec<String> {
        let out = tmp.path().join("o.csv");
        let st = chestx()
            .arg("label")
            .arg(&input)
            .arg("-o")
            .arg(&out)
            .args(args)
            .status()
            .unwrap();
        assert!(st.success());
        let mut r = csv::Reader::from_path(&out).unwrap();
        let h = r.headers().unwrap().clone();
        let row = r.records().next().unwrap().unwrap();
        [
            "Pneumonia",
            "Pneumothorax",
            "Effusion",
            "Edema",
            "No Finding",
        ]
        .iter()
        .map(|c| row[h.iter().position(|x| x == *c).unwrap()].to_string())
        .collect()
    };
    assert_eq!(read(&[]), ["-1", "0", "1", "", ""]);
    assert_eq!(read(&["--binary"]), ["0", "0", "1", "0", "0"]);
    assert_eq!(
        read(&["--binary", "--uncertain", "positive"]),
        ["1", "0", "1", "0", "0"]
    );
}
