//! The phantom study, small: `chestx demo --quick` on the shared real radiographs (lesions implanted,
//! trained on image labels only, boxes used only by evaluation) must reach a mean test AUC ≥ 0.9, and
//! every lesion class — effusion-, mass- and nodule-like — must be outlined by its boxes: accuracy
//! ≥ 0.6 at T(IoU) = 0.3 (IoBB would pass specks inside the lesion), with at most one false box per
//! image there and at most 0.3 boxes per film without the finding.

mod common;
use common::{chestx, data_dir};

#[test]
fn quick_phantom_study_learns_and_localizes() {
    if !chestx_testkit::slow("the quick phantom study (about 4 minutes)") {
        return;
    }
    let Some(data) = data_dir("nih/backgrounds-256") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let status = chestx()
        .args([
            "--threads",
            "2",
            "demo",
            "--quick",
            "--device",
            "cpu",
            "--seed",
            "1",
        ])
        .arg("--backgrounds")
        .arg(data.join("nih/backgrounds-256"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("run/eval-test/results.json")).unwrap())
            .unwrap();
    let mean = r["mean_auc"].as_f64().unwrap();
    eprintln!("mean test AUC {mean:.4}");
    assert!(mean >= 0.9, "mean test AUC {mean}");
    for c in r["classes"].as_array().unwrap() {
        let iou = c["iou"].as_array().unwrap();
        let at = iou
            .iter()
            .find(|l| l["threshold"].as_f64() == Some(0.3))
            .unwrap();
        let (acc, afp) = (
            at["accuracy"].as_f64().unwrap(),
            at["afp"].as_f64().unwrap(),
        );
        let negative = c["quality"]["false_boxes_per_negative_film"]
            .as_f64()
            .unwrap();
        eprintln!(
            "{}: IoU@0.3 accuracy {acc:.3}, AFP {afp:.2}; false boxes per negative film {negative:.2}",
            c["finding"]
        );
        assert!(acc >= 0.6, "{}: IoU@0.3 accuracy {acc}", c["finding"]);
        assert!(afp <= 1.0, "{}: AFP {afp}", c["finding"]);
        assert!(
            negative <= 0.3,
            "{}: {negative} boxes per negative film",
            c["finding"]
        );
    }
    assert_eq!(r["classes"].as_array().unwrap().len(), 3);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    // The report leads with the IoU table, and shows the paper's method beside it.
    let iou_at = report.find("| T(IoU)=0.1").expect("IoU table");
    assert!(iou_at < report.find("| T(IoBB)=0.1").expect("IoBB table"));
    assert!(iou_at < report.find("## Model").expect("model section"));
    assert!(report.contains("the paper's method on the same run"));
    assert!(report.contains("## Report labelling"));
}
