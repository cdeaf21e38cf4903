//! Sharded jobs end to end on real data: `label` and `ingest` run as shards and joined by
//! `chestx merge` give byte for byte the files of the unsharded run; a missing shard is named, a
//! finished shard is skipped on a rerun, a shard chosen by a Slurm array's variables is the same
//! as one chosen by `--shard`, and a shard file holding more than its manifest says is refused.

mod common;
use common::{chestx, data_dir};
use std::path::Path;
use std::process::{Command, Output};

/// The engines' variables, removed so that the machine running the tests cannot shard them.
const ENGINE_VARS: [&str; 8] = [
    "CHESTX_SHARD",
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_COUNT",
    "JOB_COMPLETION_INDEX",
    "CHESTX_SHARD_COUNT",
    "RANK",
    "WORLD_SIZE",
];

fn cmd(args: &[&str], paths: &[&Path]) -> Command {
    let mut c = chestx();
    for v in ENGINE_VARS {
        c.env_remove(v);
    }
    c.args(["--threads", "2"]).args(args).args(paths);
    c
}

fn ok(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

fn same_file(a: &Path, b: &Path) {
    let (x, y) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    assert!(
        x == y,
        "{} and {} differ ({} and {} bytes)",
        a.display(),
        b.display(),
        x.len(),
        y.len()
    );
}

#[test]
fn label_shards_merge_to_the_unsharded_output() {
    let Some(root) = data_dir("openi/reports.csv") else {
        return;
    };
    let reports = root.join("openi/reports.csv");
    let tmp = tempfile::tempdir().unwrap();
    let (whole, parts) = (tmp.path().join("whole"), tmp.path().join("parts"));
    std::fs::create_dir_all(&whole).unwrap();
    std::fs::create_dir_all(&parts).unwrap();
    // Reports over 1,500 bytes are refused: every shard gets some records that fail.
    let label = |dir: &Path, extra: &[&str]| {
        let mut c = cmd(
            &["label", "--max-report-bytes", "1500", "--allow-skips"],
            &[&reports],
        );
        c.arg("-o").arg(dir.join("labels.csv"));
        c.arg("--evidence").arg(dir.join("evidence.jsonl"));
        c.arg("--errors").arg(dir.join("errors.csv"));
        c.args(extra);
        c
    };
    ok(label(&whole, &[]).output().unwrap());
    let errors = std::fs::read_to_string(whole.join("errors.csv")).unwrap();
    assert!(errors.lines().count() > 4, "some reports fail: {errors}");

    for i in [0, 2, 3] {
        let err = ok(label(&parts, &["--shard", &format!("{i}/4")])
            .output()
            .unwrap());
        assert!(err.contains(&format!("shard {i}/4 (from --shard")), "{err}");
    }
    let merge = || {
        cmd(&["merge"], &[&parts.join("labels.csv")])
            .output()
            .unwrap()
    };
    let missing = merge();
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(missing.status.code(), Some(2), "{err}");
    assert!(
        err.contains("1 of 4 shards have not finished: 1/4"),
        "{err}"
    );
    assert!(!parts.join("labels.csv").exists(), "nothing merged");

    // Shard 1 as a Slurm array's task 2 of tasks 1..4.
    let mut slurm = label(&parts, &[]);
    slurm.envs([
        ("SLURM_ARRAY_TASK_ID", "2"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
    ]);
    let err = ok(slurm.output().unwrap());
    assert!(err.contains("shard 1/4 (from SLURM_ARRAY_TASK_ID"), "{err}");
    assert!(parts.join("labels-00001-of-00004.csv").is_file());

    // A rerun of a finished shard does nothing.
    let shard0 = parts.join("labels-00000-of-00004.csv");
    let before = std::fs::metadata(&shard0).unwrap().modified().unwrap();
    let err = ok(label(&parts, &["--shard", "0/4"]).output().unwrap());
    assert!(err.contains("already finished"), "{err}");
    assert_eq!(
        std::fs::metadata(&shard0).unwrap().modified().unwrap(),
        before
    );
    // The same shard with other arguments is refused, not mixed in.
    let other = label(&parts, &["--shard", "0/4", "--binary"])
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&other.stderr).contains("finished with other arguments"));

    let err = ok(merge());
    assert!(
        err.contains("merged 4 shards of Label: 2315 records"),
        "{err}"
    );
    for f in ["labels.csv", "evidence.jsonl", "errors.csv"] {
        same_file(&whole.join(f), &parts.join(f));
    }

    // A shard file with a row its manifest does not account for: refused.
    let mut text = std::fs::read_to_string(parts.join("labels-00002-of-00004.csv")).unwrap();
    let last = text.lines().last().unwrap().to_string();
    text.push_str(&format!("{last}\n"));
    std::fs::write(parts.join("labels-00002-of-00004.csv"), text).unwrap();
    let bad = merge();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("more than its manifest accounts for"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// Every file under `dir`, relative, with its bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn ingest_shards_agree_without_talking_and_merge_to_the_unsharded_dataset() {
    let Some(root) = data_dir("nih/images/00000100_000.png") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // Real NIH films (several of one patient: follow-up numbers must agree), real DICOM, one file
    // that is not an image (fails before the plan) and one PNG cut short (fails converting).
    let mut films: Vec<_> = std::fs::read_dir(root.join("nih/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    films.sort();
    for f in films.iter().take(9) {
        std::fs::copy(f, src.join(f.file_name().unwrap())).unwrap();
    }
    for f in std::fs::read_dir(root.join("dicom")).unwrap() {
        let f = f.unwrap().path();
        if f.extension().is_some_and(|e| e == "dcm") {
            std::fs::copy(&f, src.join(f.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(src.join("notes.png"), b"not a picture").unwrap();
    let png = std::fs::read(&films[9]).unwrap();
    std::fs::write(src.join("00099999_000.png"), &png[..png.len() / 3]).unwrap();

    let ingest = |out: &Path, extra: &[&str]| {
        let mut c = cmd(
            &["ingest", "--size", "64", "--allow-skips"],
            &[&src, Path::new("-o"), out],
        );
        c.env("CHESTX_SECRET", "a pseudonym key for the shard test");
        c.args(extra);
        c.output().unwrap()
    };
    let (whole, parts) = (tmp.path().join("whole"), tmp.path().join("parts"));
    let err = ok(ingest(&whole, &[]));
    assert!(err.contains("2 failed"), "{err}");
    for i in 0..3 {
        ok(ingest(&parts, &["--shard", &format!("{i}/3")]));
    }
    let err = ok(cmd(&["merge"], &[&parts]).output().unwrap());
    assert!(err.contains("merged 3 shards of Ingest"), "{err}");
    for f in [
        "Data_Entry.csv",
        "train_val_list.txt",
        "val_list.txt",
        "test_list.txt",
    ] {
        same_file(&whole.join(f), &parts.join(f));
    }
    same_file(
        &tmp.path().join("whole-failures.csv"),
        &tmp.path().join("parts-failures.csv"),
    );
    let (a, b) = (tree(&whole.join("images")), tree(&parts.join("images")));
    assert_eq!(a.len(), 12, "9 films and 3 DICOM files converted");
    assert!(a == b, "the same PNGs under the same names");
    let entry = std::fs::read_to_string(whole.join("Data_Entry.csv")).unwrap();
    assert!(!entry.contains("notes") && !entry.contains("00099999"));
}
