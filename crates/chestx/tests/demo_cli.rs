//! The phantom study, small: `chestx demo --quick` on the shared real radiographs (lesions implanted,
//! trained on image labels only, boxes used only by evaluation) must reach a mean test AUC ≥ 0.9, and
//! every lesion class — effusion-, mass- and nodule-like — must be localized from the heatmaps
//! (accuracy ≥ 0.6 at T(IoBB) = 0.5).

mod common;
use common::{chestx, data_dir};

#[test]
fn quick_phantom_study_learns_and_localizes() {
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
        let iobb = c["iobb"].as_array().unwrap();
        let at_half = iobb
            .iter()
            .find(|l| l["threshold"].as_f64() == Some(0.5))
            .unwrap();
        let acc = at_half["accuracy"].as_f64().unwrap();
        eprintln!(
            "{}: IoBB@0.5 accuracy {acc:.3}, AFP {:.2}",
            c["finding"], at_half["afp"]
        );
        assert!(acc >= 0.6, "{}: IoBB@0.5 accuracy {acc}", c["finding"]);
    }
    assert_eq!(r["classes"].as_array().unwrap().len(), 3);
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("## Localization") && report.contains("## Report labelling"));
}
