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

/// Rank AUC (Mann-Whitney U, tied scores given their mean rank) written here, apart from chestx's.
fn independent_auc(pairs: &mut [(f64, bool)]) -> f64 {
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (mut rank_sum, mut i) = (0.0, 0);
    while i < pairs.len() {
        let j = i + pairs[i..].iter().take_while(|p| p.0 == pairs[i].0).count();
        let mean_rank = (i + 1 + j) as f64 / 2.0;
        rank_sum += mean_rank * pairs[i..j].iter().filter(|p| p.1).count() as f64;
        i = j;
    }
    let pos = pairs.iter().filter(|p| p.1).count() as f64;
    let neg = pairs.len() as f64 - pos;
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// The reference predictions joined to Data_Entry's labels, sex and view, read here with csv.
struct Joined {
    findings: Vec<String>,
    rows: Vec<Row>,
}

/// Scores, labels, patient, sex, view.
type Row = (Vec<f64>, [bool; 15], String, String, String);

fn joined(data: &Path) -> Joined {
    let entry = data.join("nih/meta/Data_Entry_2017_v2020.csv.gz");
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(&entry).unwrap());
    let mut meta = HashMap::new();
    let mut rdr = csv::ReaderBuilder::new().flexible(true).from_reader(gz);
    for rec in rdr.records() {
        let r = rec.unwrap();
        let labels = chestx_core::Finding::parse_labels(&r[1]).unwrap();
        meta.insert(
            r[0].to_string(),
            (labels, r[3].to_string(), r[5].to_string(), r[6].to_string()),
        );
    }
    let pred = data.join("nih/reference-preds/reproduce_chexnet_test_preds.csv");
    let mut rdr = csv::Reader::from_path(pred).unwrap();
    let findings = rdr
        .headers()
        .unwrap()
        .iter()
        .skip(1)
        .map(|h| h.trim_start_matches("prob_").to_string())
        .collect();
    let rows = rdr
        .records()
        .map(|rec| {
            let r = rec.unwrap();
            let (labels, patient, sex, view) = meta[&r[0]].clone();
            let scores = r.iter().skip(1).map(|x| x.parse().unwrap()).collect();
            (scores, labels, patient, sex, view)
        })
        .collect();
    Joined { findings, rows }
}

fn audit_json(data: &Path, extra: &[&str]) -> serde_json::Value {
    auc_json(
        &data.join("nih/reference-preds/reproduce_chexnet_test_preds.csv"),
        &data.join("nih/meta/Data_Entry_2017_v2020.csv.gz"),
        extra,
    )
}

#[test]
fn subgroup_aucs_by_sex_and_view_equal_an_independent_computation() {
    let Some(data) = data_dir("nih/reference-preds") else {
        return;
    };
    let got = audit_json(&data, &["--by", "sex,view", "--bootstrap", "0"]);
    let j = joined(&data);
    let groups = got["subgroups"].as_array().unwrap();
    assert_eq!(groups.len(), 14 * 4, "F, M, AP, PA per finding");
    for g in groups {
        let finding = g["finding"].as_str().unwrap();
        let c = j
            .findings
            .iter()
            .position(|f| f == finding.replace(' ', "_").as_str())
            .unwrap();
        let f: chestx_core::Finding = finding.parse().unwrap();
        let value = g["group"].as_str().unwrap();
        let in_group = |r: &Row| match g["partition"].as_str().unwrap() {
            "sex" => r.3 == value,
            "view" => r.4 == value,
            p => panic!("partition {p}"),
        };
        let mut own: Vec<(f64, bool)> = j
            .rows
            .iter()
            .filter(|r| in_group(r))
            .map(|r| (r.0[c], r.1[f.index()]))
            .collect();
        let mut rest: Vec<(f64, bool)> = j
            .rows
            .iter()
            .filter(|r| !in_group(r))
            .map(|r| (r.0[c], r.1[f.index()]))
            .collect();
        let (a, b) = (independent_auc(&mut own), independent_auc(&mut rest));
        let auc = g["auc"].as_f64().unwrap();
        assert!((auc - a).abs() < 5e-7, "{finding} {value}: {auc} vs {a}");
        assert!(
            (g["rest_auc"].as_f64().unwrap() - b).abs() < 5e-7,
            "{finding} rest of {value}"
        );
        assert_eq!(
            g["positives"].as_u64().unwrap() as usize,
            own.iter().filter(|p| p.1).count()
        );
        assert!(
            g["gap"].as_f64().is_some() && g["ci95"].is_null(),
            "no interval without resamples"
        );
    }
}

#[test]
fn patient_level_intervals_are_seeded_and_wider_than_film_level_ones() {
    let Some(data) = data_dir("nih/reference-preds") else {
        return;
    };
    let run = |unit: &str, seed: &str| {
        audit_json(
            &data,
            &[
                "--by",
                "view",
                "--bootstrap",
                "200",
                "--bootstrap-unit",
                unit,
                "--seed",
                seed,
            ],
        )
    };
    let (p, again, other, film) = (
        run("patient", "3"),
        run("patient", "3"),
        run("patient", "4"),
        run("image", "3"),
    );
    assert_eq!(p["bootstrap"]["unit"], "patient");
    assert_eq!(p["patients"], 6187);
    assert_eq!(p["classes"], again["classes"]);
    assert_eq!(p["subgroups"], again["subgroups"]);
    assert_ne!(
        p["classes"], other["classes"],
        "another seed, other resamples"
    );
    let width =
        |v: &serde_json::Value| v["ci95"][1].as_f64().unwrap() - v["ci95"][0].as_f64().unwrap();
    let (mut wider, mut n) = (0, 0);
    let mut ratio = 0.0;
    for (a, b) in p["classes"]
        .as_array()
        .unwrap()
        .iter()
        .zip(film["classes"].as_array().unwrap())
    {
        n += 1;
        wider += (width(a) > width(b)) as usize;
        ratio += width(a) / width(b) / 14.0;
    }
    // Films of one patient are alike; 22,433 films are 6,187 patients' worth of evidence.
    assert_eq!(n, 14);
    assert!(
        wider >= 12 && ratio > 1.15,
        "{wider} of 14 wider, mean width ratio {ratio:.3}"
    );
}

#[test]
fn calibration_and_operating_points_match_a_direct_computation() {
    let Some(data) = data_dir("nih/reference-preds") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let plots = tmp.path().join("plots");
    let got = audit_json(
        &data,
        &["--bootstrap", "0", "--plots", plots.to_str().unwrap()],
    );
    let j = joined(&data);
    for class in got["classes"].as_array().unwrap() {
        let finding = class["finding"].as_str().unwrap();
        let c = j
            .findings
            .iter()
            .position(|f| f == finding.replace(' ', "_").as_str())
            .unwrap();
        let f: chestx_core::Finding = finding.parse().unwrap();
        // ECE over ten bins of width 0.1, written out directly.
        let mut bins = vec![(0usize, 0.0f64, 0.0f64); 10];
        for r in &j.rows {
            let b = ((r.0[c] * 10.0).floor() as usize).min(9);
            bins[b].0 += 1;
            bins[b].1 += r.0[c];
            bins[b].2 += r.1[f.index()] as u8 as f64;
        }
        let n = j.rows.len() as f64;
        let ece: f64 = bins.iter().map(|b| (b.2 - b.1).abs() / n).sum();
        let cal = &class["calibration"];
        assert!(
            (cal["ece"].as_f64().unwrap() - ece).abs() < 1e-12,
            "{finding}"
        );
        for (b, want) in cal["bins"].as_array().unwrap().iter().zip(&bins) {
            assert_eq!(b["count"].as_u64().unwrap() as usize, want.0);
        }
        // Sensitivity at the reported threshold, counted here.
        let op = &class["operating"];
        let t = op["threshold"].as_f64().unwrap();
        let pos: Vec<f64> = j
            .rows
            .iter()
            .filter(|r| r.1[f.index()])
            .map(|r| r.0[c])
            .collect();
        let sens = pos.iter().filter(|&&s| s >= t).count() as f64 / pos.len() as f64;
        assert!(
            (op["sensitivity"].as_f64().unwrap() - sens).abs() < 1e-12,
            "{finding}"
        );
    }
    let png = image::open(plots.join("reliability.png")).unwrap();
    assert_eq!(png.width(), 1100);
    assert!(std::fs::read_to_string(plots.join("reliability.svg"))
        .unwrap()
        .contains("Hernia (ECE"));
}

#[test]
fn thresholds_chosen_on_some_patients_transfer_to_the_others_and_the_report_says_so() {
    let Some(data) = data_dir("nih/reference-preds") else {
        return;
    };
    // Split the predictions by patient: thresholds from the even patients, scored on the odd ones.
    let tmp = tempfile::tempdir().unwrap();
    let pred = data.join("nih/reference-preds/reproduce_chexnet_test_preds.csv");
    let text = std::fs::read_to_string(&pred).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let (mut even, mut odd) = (vec![header], vec![header]);
    for l in lines {
        let patient: u32 = l[..8].parse().unwrap();
        if patient.is_multiple_of(2) {
            even.push(l)
        } else {
            odd.push(l)
        }
    }
    let (a, b) = (tmp.path().join("even.csv"), tmp.path().join("odd.csv"));
    std::fs::write(&a, even.join("\n")).unwrap();
    std::fs::write(&b, odd.join("\n")).unwrap();
    let entry = data.join("nih/meta/Data_Entry_2017_v2020.csv.gz");
    let got = auc_json(
        &b,
        &entry,
        &[
            "--bootstrap",
            "0",
            "--thresholds-from",
            a.to_str().unwrap(),
            "--by",
            "sex",
        ],
    );
    assert!(got["thresholds_source"]
        .as_str()
        .unwrap()
        .contains("even.csv"));
    let mut differ = 0;
    for class in got["classes"].as_array().unwrap() {
        let (t, own) = (
            class["operating"]["threshold"].as_f64().unwrap(),
            class["in_sample"]["threshold"].as_f64().unwrap(),
        );
        differ += (t != own) as usize;
    }
    assert!(
        differ >= 10,
        "thresholds fitted elsewhere differ from in-sample ones ({differ} of 14)"
    );
    // A thresholds.json as `chestx eval` writes it.
    let json = tmp.path().join("thresholds.json");
    std::fs::write(&json, r#"{"classes":["Mass","Nodule"],"values":[0.5,0.25],"source":"Youden's J on the validation split"}"#).unwrap();
    let got = auc_json(
        &b,
        &entry,
        &[
            "--bootstrap",
            "0",
            "--thresholds-from",
            json.to_str().unwrap(),
        ],
    );
    let mass = got["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["finding"] == "Mass")
        .unwrap();
    assert_eq!(mass["operating"]["threshold"], 0.5);
    let atel = got["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["finding"] == "Atelectasis")
        .unwrap();
    assert!(
        atel["operating"].is_null(),
        "no threshold for it in the file"
    );
}
