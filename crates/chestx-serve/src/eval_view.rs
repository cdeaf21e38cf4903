//! `chestx serve --eval DIR`: an evaluation `chestx eval` wrote, read once at start-up and served from
//! memory — the AUC and localization tables, the ROC plot and the overlay gallery. Requests name
//! overlays by number, never by path; the files come from the folder's own `results.json`, each
//! checked to lie inside the folder.

use chestx_infer::evaluate::OverlayCase;
use std::path::{Component, Path};

pub struct EvalView {
    /// What `GET /v1/eval` answers: the tables, and the gallery's cases with their ids.
    pub summary: serde_json::Value,
    pub overlays: Vec<Vec<u8>>,
    pub roc: Option<Vec<u8>>,
}

/// Read `dir/results.json`, its overlays and `dir/roc.png`.
pub fn load(dir: &Path) -> Result<EvalView, String> {
    let results = dir.join("results.json");
    let text = std::fs::read_to_string(&results).map_err(|e| {
        format!(
            "{}: {e} (an output folder of `chestx eval`)",
            results.display()
        )
    })?;
    let mut v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", results.display()))?;
    let cases: Vec<OverlayCase> = serde_json::from_value(v["overlays"].take()).map_err(|e| {
        format!(
            "{}: its overlays are not this version's ({e}); evaluate again",
            results.display()
        )
    })?;
    let mut overlays = Vec::with_capacity(cases.len());
    for c in &cases {
        let rel = Path::new(&c.file);
        if !rel.components().all(|p| matches!(p, Component::Normal(_))) {
            return Err(format!(
                "{}: overlay {:?} is not a path inside the folder",
                results.display(),
                c.file
            ));
        }
        let f = dir.join(rel);
        overlays.push(std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?);
    }
    let roc = std::fs::read(dir.join("roc.png")).ok();
    let gallery: Vec<serde_json::Value> = cases
        .iter()
        .enumerate()
        .map(|(id, c)| {
            let mut o = serde_json::to_value(c).expect("cases serialize");
            o["id"] = id.into();
            o.as_object_mut().map(|m| m.remove("file"));
            o
        })
        .collect();
    // Server paths stay on the server: the run and checkpoint by their last component only.
    for key in ["run", "checkpoint"] {
        if let Some(s) = v[key].as_str() {
            let name = Path::new(s)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            v[key] = name.into();
        }
    }
    let subgroups = largest_gaps(&v["subgroups"]["audit"]);
    let summary = serde_json::json!({
        "run": v["run"],
        "checkpoint": v["checkpoint"],
        "split": v["split"],
        "images": v["images"],
        "mean_auc": v["mean_auc"],
        "method": v["method"],
        "classes": v["classes"],
        "thresholds": v["thresholds"],
        "has_roc": roc.is_some(),
        "cases": gallery,
        "subgroups": subgroups,
    });
    Ok(EvalView {
        summary,
        overlays,
        roc,
    })
}

/// The audit's largest gaps (an evaluation with `--by`), in its order: `null` without an audit.
fn largest_gaps(audit: &serde_json::Value) -> serde_json::Value {
    let Some(rows) = audit["subgroups"].as_array() else {
        return serde_json::Value::Null;
    };
    let pick = |i: &serde_json::Value| {
        let g = &rows[i.as_u64().unwrap_or(u64::MAX) as usize];
        serde_json::json!({
            "finding": g["finding"], "partition": g["partition"], "group": g["group"],
            "positives": g["positives"], "negatives": g["negatives"], "auc": g["auc"],
            "rest_auc": g["rest_auc"], "gap": g["gap"], "gap_ci95": g["gap_ci95"],
        })
    };
    let valid = |i: &&serde_json::Value| i.as_u64().is_some_and(|i| (i as usize) < rows.len());
    serde_json::json!({
        "unit": audit["bootstrap"]["unit"],
        "resamples": audit["bootstrap"]["resamples"],
        "partitions": audit["partitions"].as_array().map(|p| p.iter().map(|x| x["name"].clone()).collect::<Vec<_>>()),
        "largest": audit["largest_gaps"].as_array().map(|l| l.iter().filter(valid).map(pick).collect::<Vec<_>>()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_overlay_outside_the_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let results = serde_json::json!({
            "run": "/srv/runs/r1", "checkpoint": "/srv/runs/r1/best.safetensors",
            "split": "test", "images": 1, "mean_auc": 0.5, "method": "m", "classes": [],
            "thresholds": null,
            "overlays": [{
                "file": "../secret.png", "image": "a.png", "finding": "Mass", "probability": 0.9,
                "called": true, "truth": [], "detected": [], "best_iou": null, "outcome": "clear"
            }]
        });
        std::fs::write(tmp.path().join("results.json"), results.to_string()).unwrap();
        let e = load(tmp.path()).err().unwrap();
        assert!(e.contains("not a path inside the folder"), "{e}");
        assert!(load(&tmp.path().join("nothing"))
            .err()
            .unwrap()
            .contains("chestx eval"));
    }

    #[test]
    fn the_audits_largest_gaps_are_served_in_its_order_and_nothing_else_of_it() {
        let tmp = tempfile::tempdir().unwrap();
        let row = |group: &str, gap: f64| {
            serde_json::json!({"finding": "Mass", "partition": "sex", "group": group, "positives": 40,
                "negatives": 90, "auc": 0.8, "rest_auc": 0.8 - gap, "gap": gap, "gap_ci95": [gap - 0.1, gap + 0.1],
                "ece": 0.01, "small": false})
        };
        let results = serde_json::json!({
            "run": "r", "checkpoint": "c", "split": "test", "images": 2, "mean_auc": 0.5, "method": "m",
            "classes": [], "thresholds": null, "overlays": [],
            "subgroups": {"metadata": "/srv/data/Data_Entry.csv", "audit": {
                "bootstrap": {"unit": "patient", "resamples": 50},
                "partitions": [{"name": "sex", "column": "Patient Gender", "groups": ["F", "M"]}],
                "subgroups": [row("F", 0.02), row("M", -0.02)],
                "largest_gaps": [1, 7]
            }}
        });
        std::fs::write(tmp.path().join("results.json"), results.to_string()).unwrap();
        let v = load(tmp.path()).unwrap().summary;
        let largest = v["subgroups"]["largest"].as_array().unwrap();
        assert_eq!(largest.len(), 1, "an index past the rows is dropped");
        assert_eq!(largest[0]["group"], "M");
        assert_eq!(v["subgroups"]["unit"], "patient");
        assert!(
            !v.to_string().contains("/srv/data"),
            "server paths stay on the server"
        );
    }
}
