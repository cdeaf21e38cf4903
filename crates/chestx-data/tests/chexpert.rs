//! The CheXpert layout, on a small release laid out as CheXpert ships it (`CheXpert-v1.0-small/`
//! with `train.csv`, `valid.csv` and `train/patientNNNNN/studyN/viewN_frontal.*`), written here:
//! labels under each uncertainty/blank policy, patient-wise validation, views, missing files, and
//! errors that name the file, line and column.

use chestx_core::Finding;
use chestx_data::{BlankAs, Dataset, SampleOptions, Split, UncertainAs};
use std::collections::HashSet;
use std::path::Path;

const HEADER: &str = "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,\
Cardiomegaly,Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,\
Pleural Effusion,Pleural Other,Fracture,Support Devices";

/// Label cells of patient `p`'s frontal film: Cardiomegaly, Edema, Consolidation, Pneumonia,
/// Atelectasis, Pneumothorax, Pleural Effusion cycle through 1.0 / 0.0 / -1.0 / blank.
fn cells(p: usize) -> [&'static str; 7] {
    let v = ["1.0", "0.0", "-1.0", ""];
    std::array::from_fn(|k| v[(p + k) % 4])
}

fn row(release: &str, split: &str, p: usize, view: &str, frontal: bool) -> String {
    let c = cells(p);
    format!(
        "{release}/{split}/patient{p:05}/study1/view{}_{view}.png,Female,60,{},PA,,,{},1.0,,{},{},{},{},{},{},,,1.0",
        if frontal { 1 } else { 2 },
        if frontal { "Frontal" } else { "Lateral" },
        c[0], c[1], c[2], c[3], c[4], c[5], c[6]
    )
}

fn write_png(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    image::GrayImage::from_pixel(8, 8, image::Luma([90u8]))
        .save(path)
        .unwrap();
}

/// 40 training patients (a frontal and a lateral film each; patient 7's lateral file missing) and
/// 5 valid patients.
fn release(dir: &Path, with_test: bool) -> std::path::PathBuf {
    let root = dir.join("CheXpert-v1.0-small");
    let mut train = vec![HEADER.to_string()];
    for p in 1..=40 {
        for (view, frontal) in [("frontal", true), ("lateral", false)] {
            let r = row("CheXpert-v1.0-small", "train", p, view, frontal);
            let file = r.split(',').next().unwrap().to_string();
            if p != 7 || frontal {
                write_png(&dir.join(&file));
            }
            train.push(r);
        }
    }
    let mut valid = vec![HEADER.to_string()];
    for p in 64541..64546 {
        let r = row("CheXpert-v1.0-small", "valid", p, "frontal", true);
        write_png(&dir.join(r.split(',').next().unwrap()));
        valid.push(r);
    }
    std::fs::write(root.join("train.csv"), train.join("\n") + "\n").unwrap();
    std::fs::write(root.join("valid.csv"), valid.join("\n") + "\n").unwrap();
    if with_test {
        let mut test = vec![HEADER.to_string()];
        let r = row("CheXpert-v1.0-small", "valid", 64541, "frontal", true);
        test.push(r);
        std::fs::write(root.join("test.csv"), test.join("\n") + "\n").unwrap();
    }
    root
}

fn value(f: Finding, labels: &[f32]) -> f32 {
    labels[f.index()]
}

#[test]
fn chexpert_release_gives_labels_by_policy_and_patient_wise_splits() {
    let tmp = tempfile::tempdir().unwrap();
    let root = release(tmp.path(), false);
    let ds = Dataset::open(&root).unwrap();
    let Dataset::Chexpert(cx) = &ds else {
        panic!("expected the CheXpert layout")
    };
    use Finding::*;
    assert_eq!(
        cx.columns,
        vec![
            Atelectasis,
            Cardiomegaly,
            Effusion,
            Pneumonia,
            Pneumothorax,
            Consolidation,
            Edema
        ]
    );
    for unmatched in [
        "Enlarged Cardiomediastinum",
        "Lung Opacity",
        "Lung Lesion",
        "Fracture",
    ] {
        assert!(cx.unmatched.iter().any(|u| u == unmatched), "{unmatched}");
    }
    assert!(!cx.unmatched.iter().any(|u| u == "No Finding" || u == "Sex"));
    assert!(cx.patients_known);
    let about = ds.describe().unwrap();
    assert!(
        about.contains("Lung Opacity") && about.contains("80 training"),
        "{about}"
    );

    let defaults = SampleOptions::default();
    let (train, missing) = ds.samples(Split::Train, 0.25, 3, &defaults);
    let (val, missing_v) = ds.samples(Split::Val, 0.25, 3, &defaults);
    assert_eq!(
        missing.len() + missing_v.len(),
        1,
        "patient 7's lateral film is absent"
    );
    assert_eq!(train.len() + val.len(), 79);
    let (tp, vp): (HashSet<u64>, HashSet<u64>) = (
        train.iter().map(|s| s.patient).collect(),
        val.iter().map(|s| s.patient).collect(),
    );
    assert!(tp.is_disjoint(&vp), "a patient on both sides");
    assert!(
        !vp.is_empty() && vp.len() < 20,
        "{} validation patients",
        vp.len()
    );
    assert!(tp.union(&vp).all(|p| (1..=40).contains(p)));

    // Patient 1's frontal film: Cardiomegaly "0.0", Edema "-1.0", Consolidation "", Pneumonia
    // "1.0", Atelectasis "0.0", Pneumothorax "-1.0", Effusion "".
    let all: Vec<_> = train.iter().chain(&val).collect();
    let p1 = all
        .iter()
        .find(|s| s.patient == 1 && s.image.ends_with("view1_frontal.png"))
        .unwrap();
    assert!(p1.path.is_file());
    let l = &p1.labels;
    assert_eq!(l.len(), 14);
    assert_eq!(value(Cardiomegaly, l), 0.0);
    assert!(value(Edema, l).is_nan(), "uncertain is left out by default");
    assert_eq!(
        value(Consolidation, l),
        0.0,
        "blank counts negative by default"
    );
    assert_eq!(value(Pneumonia, l), 1.0);
    assert!(value(Pneumothorax, l).is_nan());
    assert_eq!(value(Effusion, l), 0.0);
    for absent in [
        Mass,
        Nodule,
        Infiltration,
        Emphysema,
        Fibrosis,
        PleuralThickening,
        Hernia,
    ] {
        assert!(
            value(absent, l).is_nan(),
            "{absent:?} has no column: unknown"
        );
    }

    let ones = SampleOptions {
        uncertain: UncertainAs::Ones,
        blank: BlankAs::Ignore,
        frontal_only: false,
    };
    let zeros = SampleOptions {
        uncertain: UncertainAs::Zeros,
        ..ones
    };
    for (o, edema, consolidation) in [(ones, 1.0, f32::NAN), (zeros, 0.0, f32::NAN)] {
        let (tr, _) = ds.samples(Split::Train, 0.25, 3, &o);
        let (va, _) = ds.samples(Split::Val, 0.25, 3, &o);
        let s = tr.iter().chain(&va).find(|s| s.image == p1.image).unwrap();
        assert_eq!(value(Edema, &s.labels), edema);
        assert!(consolidation.is_nan() && value(Consolidation, &s.labels).is_nan());
    }

    let frontal = SampleOptions {
        frontal_only: true,
        ..defaults
    };
    let (tr, _) = ds.samples(Split::Train, 0.25, 3, &frontal);
    let (va, _) = ds.samples(Split::Val, 0.25, 3, &frontal);
    assert_eq!(tr.len() + va.len(), 40);
    assert!(tr.iter().all(|s| s.image.contains("frontal")));

    // Without a test.csv, valid.csv is the test split.
    let (test, _) = ds.samples(Split::Test, 0.25, 3, &defaults);
    assert_eq!(test.len(), 5);
    assert!(test.iter().all(|s| s.patient >= 64541));
}

#[test]
fn a_test_csv_makes_valid_csv_the_validation_split() {
    let tmp = tempfile::tempdir().unwrap();
    let root = release(tmp.path(), true);
    let ds = Dataset::open(&root).unwrap();
    let o = SampleOptions::default();
    assert_eq!(ds.samples(Split::Train, 0.25, 3, &o).0.len(), 79);
    assert_eq!(ds.samples(Split::Val, 0.25, 3, &o).0.len(), 5);
    assert_eq!(ds.samples(Split::Test, 0.25, 3, &o).0.len(), 1);
}

#[test]
fn bad_cells_and_missing_columns_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let root = release(tmp.path(), false);
    let train = std::fs::read_to_string(root.join("train.csv")).unwrap();
    // Line 4 of the file (third data row): Cardiomegaly written as "2".
    let mut lines: Vec<String> = train.lines().map(String::from).collect();
    let mut cells: Vec<String> = lines[3].split(',').map(String::from).collect();
    cells[7] = "2".into();
    lines[3] = cells.join(",");
    std::fs::write(root.join("train.csv"), lines.join("\n") + "\n").unwrap();
    let err = Dataset::open(&root).unwrap_err().to_string();
    assert!(
        err.contains("train.csv") && err.contains("line 4") && err.contains("Cardiomegaly"),
        "{err}"
    );

    std::fs::write(root.join("train.csv"), "Image,Cardiomegaly\nx.png,1\n").unwrap();
    let err = Dataset::open(&root).unwrap_err().to_string();
    assert!(
        err.contains("train.csv") && err.contains("no Path"),
        "{err}"
    );

    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = Dataset::open(&empty).unwrap_err().to_string();
    assert!(
        err.contains("Data_Entry") && err.contains("valid.csv"),
        "{err}"
    );
}

#[test]
fn mimic_style_ids_give_patients_and_are_not_taken_for_observations() {
    // MIMIC-CXR-JPG's label files key films by subject/study/dicom ids; given a Path column they
    // read as this layout, the subject being the patient.
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("mimic");
    let header = "Path,subject_id,study_id,dicom_id,Edema,Pleural Effusion";
    let mut train = vec![header.to_string()];
    for i in 0..6u32 {
        let file = format!("files/p10/p1000003{}/s5/{i}.png", i / 2);
        write_png(&root.join("images").join(&file));
        train.push(format!("{file},1000003{},5{i},d{i},1.0,", i / 2));
    }
    std::fs::write(root.join("train.csv"), train.join("\n") + "\n").unwrap();
    std::fs::write(root.join("valid.csv"), format!("{header}\n")).unwrap();
    let ds = Dataset::open(&root).unwrap();
    let Dataset::Chexpert(cx) = &ds else { panic!() };
    assert!(cx.unmatched.is_empty(), "{:?}", cx.unmatched);
    assert!(cx.patients_known);
    assert_eq!(cx.columns, vec![Finding::Effusion, Finding::Edema]);
    let (all, missing) = ds.samples(Split::Train, 0.0, 0, &SampleOptions::default());
    assert_eq!((all.len(), missing.len()), (6, 0));
    let patients: HashSet<u64> = all.iter().map(|s| s.patient).collect();
    assert_eq!(patients, HashSet::from([10000030, 10000031, 10000032]));
}
