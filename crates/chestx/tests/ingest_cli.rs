//! `chestx ingest` on the real DICOM files and NIH PNGs: a dataset our own reader opens, split by
//! patient, labelled from reports, resumable, and with no patient identifier in any output file.

mod common;

use chestx_core::Finding;
use chestx_data::NihDataset;
use common::{chestx, data_dir};
use dicom_dictionary_std::tags;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn dicom_text(path: &Path, tag: dicom_object::Tag) -> String {
    let obj = dicom_object::open_file(path).unwrap();
    obj.element(tag)
        .unwrap()
        .to_str()
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn ingest_real_dicom_and_png_round_trips_without_identifiers() {
    let Some(data) = data_dir("dicom") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // The sources: the three DICOMs and ten NIH PNGs (four of the release's RGBA ones among them).
    let src = tmp.path().join("export");
    std::fs::create_dir_all(&src).unwrap();
    for e in std::fs::read_dir(data.join("dicom")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "dcm") {
            std::fs::copy(&p, src.join(p.file_name().unwrap())).unwrap();
        }
    }
    let mut pngs: Vec<PathBuf> = std::fs::read_dir(data.join("nih/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pngs.sort();
    for p in pngs.iter().take(10) {
        std::fs::copy(p, src.join(p.file_name().unwrap())).unwrap();
    }
    let reports = tmp.path().join("reports.csv");
    std::fs::write(
        &reports,
        "id,findings,impression\n\
         CR-MONO1-10-chest,Small left pleural effusion.,Left effusion.\n\
         Fake_MONOHR1,Lungs are clear. No pneumothorax.,No acute cardiopulmonary abnormality.\n",
    )
    .unwrap();
    let secret = tmp.path().join("key");
    std::fs::write(&secret, "a hospital secret of some length\n").unwrap();
    let out = tmp.path().join("ds");
    let run = || {
        chestx()
            .args([
                "ingest", "--size", "128", "--split", "50,0,50", "--seed", "1",
            ])
            .arg(&src)
            .arg("-o")
            .arg(&out)
            .arg("--reports")
            .arg(&reports)
            .arg("--secret-file")
            .arg(&secret)
            .output()
            .unwrap()
    };
    let first = run();
    let log = String::from_utf8_lossy(&first.stderr).into_owned();
    assert!(first.status.success(), "{log}");
    assert!(log.contains("13 images written"), "{log}");

    // Our own NIH reader opens it.
    let ds = NihDataset::open(&out).unwrap();
    assert_eq!(ds.entries.len(), 13);
    for e in &ds.entries {
        let img = image::open(ds.image_path(&e.image).unwrap()).unwrap();
        assert_eq!((img.width(), img.height()), (128, 128));
        assert_eq!(img.color(), image::ColorType::L8);
    }
    // The two JPEG DICOMs are one patient (same Patient ID), follow-ups 0 and 1, 62-year-old man, PA.
    let dcm: Vec<_> = ds
        .entries
        .iter()
        .filter(|e| e.original_size == (1024, 1024) && e.age == Some(62))
        .collect();
    assert_eq!(dcm.len(), 2);
    assert_eq!(dcm[0].patient_id, dcm[1].patient_id);
    let mut fu: Vec<u32> = dcm.iter().map(|e| e.follow_up).collect();
    fu.sort();
    assert_eq!(fu, [0, 1]);
    assert_eq!((dcm[0].gender.as_str(), dcm[0].view.as_str()), ("M", "PA"));
    assert!((dcm[0].pixel_spacing.0 - 0.168).abs() < 1e-9);
    // Labels from the reports, by file stem: the CR film has an effusion; the other report is normal.
    let cr = ds
        .entries
        .iter()
        .find(|e| e.original_size == (440, 440))
        .unwrap();
    assert!(cr.labels[Finding::Effusion.index()], "{cr:?}");
    let normal = dcm.iter().filter(|e| e.labels[14]).count();
    assert_eq!(normal, 1, "one DICOM is labelled No Finding");

    // Patient-wise split covering every image once.
    let sides: HashMap<&str, bool> = ds
        .train_val
        .iter()
        .map(|s| (s.as_str(), true))
        .chain(ds.test.iter().map(|s| (s.as_str(), false)))
        .collect();
    assert_eq!(sides.len(), 13);
    let mut patient_side: HashMap<u64, bool> = HashMap::new();
    for e in &ds.entries {
        let side = sides[e.image.as_str()];
        assert_eq!(*patient_side.entry(e.patient_id).or_insert(side), side);
    }

    // No identifier anywhere: DICOM patient name and id, or the NIH patient numbers of the sources.
    let mut needles = Vec::new();
    for f in [
        "Fake_MONOHR1.dcm",
        "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm",
    ] {
        for tag in [tags::PATIENT_NAME, tags::PATIENT_ID] {
            let v = dicom_text(&data.join("dicom").join(f), tag);
            assert!(v.len() >= 4, "{f}: {v:?}");
            needles.push(v);
        }
    }
    for p in pngs.iter().take(10) {
        let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
        needles.push(stem.split('_').next().unwrap().to_string());
    }
    let mut files = Vec::new();
    all_files(&out, &mut files);
    assert!(files.len() >= 13 + 4);
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "{} contains the identifier {n:?}",
                f.display()
            );
        }
    }

    // Re-running resumes: nothing rewritten, same index.
    let before = std::fs::read(out.join("Data_Entry.csv")).unwrap();
    let again = run();
    let log = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(again.status.success(), "{log}");
    assert!(log.contains("0 images written, 13 already there"), "{log}");
    assert_eq!(std::fs::read(out.join("Data_Entry.csv")).unwrap(), before);
}

#[test]
fn ingest_refuses_to_run_without_a_key_and_lists_bad_files() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("in");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("broken.dcm"), b"DICM not really").unwrap();
    let out = tmp.path().join("ds");
    let no_key = chestx()
        .args(["ingest"])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .env_remove("CHESTX_SECRET")
        .output()
        .unwrap();
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("pseudonym key"));
    let bad = chestx()
        .args(["ingest"])
        .arg(&src)
        .arg("-o")
        .arg(&out)
        .env("CHESTX_SECRET", "0123456789abcdef0123")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{log}");
    assert!(log.contains("broken.dcm"), "{log}");
    let listed = std::fs::read_to_string(tmp.path().join("ds-failures.csv")).unwrap();
    assert!(listed.contains("broken.dcm"));
    assert!(!out.join("failures.csv").exists());
}
