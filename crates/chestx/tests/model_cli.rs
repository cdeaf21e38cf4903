//! The model commands end to end through `chestx` (handed to `chestx-torch`) on a tiny phantom
//! dataset: train, evaluate without touching the run, predict with the evaluation's thresholds, and
//! refuse bad settings and broken weights with clear errors (never a panic, never exit 0).

mod common;
use common::chestx;
use std::path::{Path, PathBuf};
use std::process::Output;

fn run(args: &[&str], paths: &[&Path]) -> Output {
    let mut c = chestx();
    c.args(["--threads", "2"]).args(args);
    for p in paths {
        c.arg(p);
    }
    c.output().unwrap()
}

fn ok(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

/// A failure with exit status 2 whose message contains `says` (not a panic or a signal).
fn refused(out: Output, says: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(says), "{err:?} should say {says:?}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Every file of a folder (not recursing) with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

/// Overwrite a float32 tensor of a safetensors file with NaN, in place.
fn poison(file: &Path, tensor: &str) {
    let mut bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let t = &header[tensor];
    assert_eq!(t["dtype"], "F32", "{tensor}: {t}");
    let (a, b) = (
        t["data_offsets"][0].as_u64().unwrap() as usize,
        t["data_offsets"][1].as_u64().unwrap() as usize,
    );
    for chunk in bytes[8 + n + a..8 + n + b].chunks_mut(4) {
        chunk.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(file, bytes).unwrap();
}

/// `predict` as 3 shards (one chosen by torchrun's RANK/WORLD_SIZE) and `chestx merge`: the same
/// JSON per image and the same `predictions.csv` as one unsharded run, a broken film counted once.
fn sharded_predict_merges_to_the_unsharded_output(
    tmp: &Path,
    data: &Path,
    run_dir: &Path,
    thresholds: &Path,
) {
    let films = tmp.join("films");
    std::fs::create_dir_all(&films).unwrap();
    let mut all: Vec<PathBuf> = std::fs::read_dir(data.join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    all.sort();
    for f in all.iter().take(10) {
        std::fs::copy(f, films.join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(films.join("broken.png"), b"not a film").unwrap();
    let predict = |out: &Path, shard: Option<&str>, env: &[(&str, &str)]| {
        let mut c = chestx();
        c.args([
            "--threads",
            "2",
            "predict",
            "--device",
            "cpu",
            "--allow-skips",
        ])
        .arg(&films)
        .arg("--run")
        .arg(run_dir)
        .arg("--thresholds")
        .arg(thresholds)
        .arg("-o")
        .arg(out);
        for v in [
            "CHESTX_SHARD",
            "SLURM_ARRAY_TASK_ID",
            "JOB_COMPLETION_INDEX",
            "RANK",
        ] {
            c.env_remove(v);
        }
        c.args(shard.map(|s| ["--shard", s]).into_iter().flatten());
        c.envs(env.iter().copied());
        c.output().unwrap()
    };
    let (whole, parts) = (tmp.join("pred-whole"), tmp.join("pred-parts"));
    let err = ok(predict(&whole, None, &[]));
    assert!(err.contains("10 of 11 images predicted, 1 failed"), "{err}");
    ok(predict(&parts, Some("0/3"), &[]));
    ok(predict(&parts, None, &[("RANK", "1"), ("WORLD_SIZE", "3")]));
    ok(predict(&parts, Some("2/3"), &[]));
    let merged = chestx().arg("merge").arg(&parts).output().unwrap();
    let err = ok(merged);
    assert!(err.contains("11 records, 10 written, 1 failed"), "{err}");
    let table = std::fs::read_to_string(whole.join("predictions.csv")).unwrap();
    assert_eq!(table.lines().count(), 11, "a header and 10 films: {table}");
    let files = |d: &Path| -> Vec<(String, Vec<u8>)> {
        snapshot(d)
            .into_iter()
            .map(|(p, b)| (p.file_name().unwrap().to_string_lossy().into_owned(), b))
            .collect()
    };
    let (a, b) = (files(&whole), files(&parts));
    assert_eq!(a.len(), 21, "10 JSON, 10 overlays and the table");
    assert!(a == b, "the same files, byte for byte");
}

#[test]
fn train_eval_predict_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run_dir) = (tmp.path().join("data"), tmp.path().join("run"));
    ok(run(
        &["synth", "--n", "120", "--size", "64", "--procedural", "24"],
        &[Path::new("-o"), &data],
    ));
    // `extra` replaces the value of a setting given here, or adds one.
    let train = |extra: &[&str], out: &Path| {
        let mut settings = vec![
            ("--arch", "resnet18"),
            ("--width", "16"),
            ("--input", "64"),
            ("--transition-dim", "16"),
            ("--epochs", "1"),
            ("--batch", "8"),
            ("--device", "cpu"),
            ("--classes", "Effusion,Mass,Nodule"),
        ];
        // A flag without a value stands alone at the end of `extra`.
        for pair in extra.chunks(2) {
            settings.retain(|(k, _)| *k != pair[0]);
            settings.push((pair[0], pair.get(1).copied().unwrap_or("")));
        }
        let mut a = vec!["train"];
        a.extend(
            settings
                .iter()
                .flat_map(|(k, v)| [*k, *v])
                .filter(|s| !s.is_empty()),
        );
        run(
            &a,
            &[Path::new("--dataset"), &data, Path::new("--out"), out],
        )
    };
    // Bad settings: refused by name before anything is written.
    let bad = tmp.path().join("bad");
    for (arg, value, says) in [
        ("--width", "0", "width 0"),
        ("--input", "0", "input side 0"),
        ("--input", "100000", "input side 100000"),
        ("--batch", "0", "batch size 0"),
        ("--epochs", "0", "epochs"),
        ("--lr", "-1", "learning rate -1"),
        ("--val-fraction", "1.5", "validation fraction 1.5"),
    ] {
        refused(train(&[arg, value], &bad), says);
        assert!(!bad.exists(), "{arg} {value}: nothing written");
    }
    // A class no training film is positive for: nothing to learn it from.
    refused(
        train(&["--classes", "Effusion,Hernia"], &bad),
        "positive for Hernia",
    );
    assert!(!bad.exists(), "a refused run writes nothing");
    for (size, says) in [("0", "image side 0"), ("100000", "image side 100000")] {
        let out = tmp.path().join(format!("synth-{size}"));
        refused(
            run(
                &["synth", "--n", "4", "--size", size],
                &[Path::new("-o"), &out],
            ),
            says,
        );
    }

    // import-weights on a file that is no checkpoint: named, with the reason.
    let garbage = tmp.path().join("garbage.pth");
    std::fs::write(&garbage, b"\x00\x01 not a checkpoint at all").unwrap();
    refused(
        run(
            &["import-weights", "--arch", "resnet18"],
            &[&garbage, Path::new("-o"), &tmp.path().join("w.safetensors")],
        ),
        "garbage.pth: invalid PyTorch file",
    );

    ok(train(&[], &run_dir));
    let before = snapshot(&run_dir);
    let eval_dir = tmp.path().join("eval");
    // `eval` on the run into `dir`, with `extra` arguments.
    let eval_with = |dir: &Path, extra: &[&str]| {
        let mut a = vec!["eval", "--device", "cpu", "--bootstrap", "20"];
        a.extend(extra);
        run(&a, &[Path::new("--run"), &run_dir, Path::new("-o"), dir])
    };
    let eval = |dir: &Path| eval_with(dir, &["--overlays", "0"]);
    ok(eval(&eval_dir));
    assert_eq!(
        snapshot(&run_dir),
        before,
        "an evaluation never writes into the run"
    );
    // Erased regions: the same split, each called finding's cut chosen by erasing and re-scoring.
    let erase_dir = tmp.path().join("eval-erase");
    ok(eval_with(
        &erase_dir,
        &["--overlays", "2", "--box-method", "erase"],
    ));
    let report = std::fs::read_to_string(erase_dir.join("report.md")).unwrap();
    assert!(report.contains("erased from the film"), "{report}");
    let thresholds = eval_dir.join("thresholds.json");
    let th: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&thresholds).unwrap()).unwrap();
    assert_eq!(
        th["classes"],
        serde_json::json!(["Effusion", "Mass", "Nodule"])
    );

    // Subgroups: the phantoms' index with each patient given a sex by parity (the phantoms all say
    // F); every film of the split lands in one group, and localization splits the same way.
    let entry = std::fs::read_to_string(data.join("Data_Entry.csv")).unwrap();
    let meta = tmp.path().join("meta.csv");
    let rows: Vec<String> = entry
        .lines()
        .enumerate()
        .map(|(i, l)| match i {
            0 => l.to_string(),
            _ => {
                let mut cells: Vec<String> = l.split(',').map(String::from).collect();
                let odd = cells[3].parse::<u32>().unwrap() % 2 == 1;
                cells[5] = if odd { "M" } else { "F" }.into();
                cells.join(",")
            }
        })
        .collect();
    std::fs::write(&meta, rows.join("\n")).unwrap();
    let by_dir = tmp.path().join("eval-by");
    let by = |by: &str| {
        run(
            &[
                "eval",
                "--device",
                "cpu",
                "--bootstrap",
                "20",
                "--overlays",
                "0",
                "--by",
                by,
            ],
            &[
                Path::new("--run"),
                &run_dir,
                Path::new("-o"),
                &by_dir,
                Path::new("--meta"),
                &meta,
            ],
        )
    };
    refused(by("Scanner Model"), "no column for \"Scanner Model\"");
    ok(by("sex,follow-up"));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(by_dir.join("results.json")).unwrap()).unwrap();
    let sub = &r["subgroups"];
    assert!(sub["audit"]["thresholds_source"]
        .as_str()
        .unwrap()
        .contains("validation split"));
    for class in r["classes"].as_array().unwrap() {
        let f = class["finding"].as_str().unwrap();
        let of = |partition: &str, key: &str| -> u64 {
            sub["audit"]["subgroups"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|g| g["finding"] == f && g["partition"] == partition)
                .map(|g| g[key].as_u64().unwrap())
                .sum()
        };
        assert_eq!(
            of("sex", "positives"),
            class["positives"].as_u64().unwrap(),
            "{f}"
        );
        assert_eq!(
            of("follow-up", "positives"),
            class["positives"].as_u64().unwrap(),
            "{f}"
        );
        let boxed: u64 = sub["localization"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["finding"] == f && g["partition"] == "sex")
            .map(|g| g["box_images"].as_u64().unwrap())
            .sum();
        assert_eq!(boxed, class["box_images"].as_u64().unwrap(), "{f}");
    }
    let report = std::fs::read_to_string(by_dir.join("report.md")).unwrap();
    assert!(
        report.contains("## Subgroup audit") && report.contains("### Localization by subgroup")
    );

    // Two inputs named alike: two results, neither overwriting the other.
    let film = std::fs::read_dir(data.join("images"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    for sub in ["a", "b"] {
        std::fs::create_dir_all(tmp.path().join(sub)).unwrap();
        std::fs::copy(&film, tmp.path().join(sub).join("x.png")).unwrap();
    }
    let (a, b, pred) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("pred"),
    );
    let predict = |extra: &[&str]| {
        let mut args = vec!["predict", "--device", "cpu"];
        args.extend_from_slice(extra);
        run(
            &args,
            &[&a, &b, Path::new("--run"), &run_dir, Path::new("-o"), &pred],
        )
    };
    let missing = predict(&[]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--thresholds"));
    ok(predict(&["--thresholds", thresholds.to_str().unwrap()]));
    let jsons: Vec<_> = std::fs::read_dir(&pred)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert_eq!(jsons.len(), 2, "{jsons:?}");
    let one: serde_json::Value =
        serde_json::from_slice(&std::fs::read(pred.join(&jsons[0])).unwrap()).unwrap();
    assert!(
        one["thresholds"].as_str().unwrap().contains("Youden"),
        "{one}"
    );
    refused(predict(&["--thresholds", "1.5"]), "between 0 and 1");
    sharded_predict_merges_to_the_unsharded_output(tmp.path(), &data, &run_dir, &thresholds);

    // Resuming a run that never reached its first checkpoint: said so, not a raw I/O error.
    let fresh = tmp.path().join("fresh");
    std::fs::create_dir_all(&fresh).unwrap();
    std::fs::copy(run_dir.join("config.json"), fresh.join("config.json")).unwrap();
    refused(
        run(
            &["train", "--device", "cpu"],
            &[Path::new("--resume"), &fresh],
        ),
        "no checkpoint yet",
    );

    // A test film gone from disk: named in the count, and the evaluation exits 1.
    let entry = std::fs::read_to_string(data.join("test_list.txt")).unwrap();
    let gone = entry.lines().next().unwrap().trim().to_string();
    std::fs::remove_file(data.join("images").join(&gone)).unwrap();
    let out = eval(&tmp.path().join("eval-missing"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("1 images of the split are listed but not on disk"),
        "{err}"
    );
    assert!(err.contains(&gone), "the missing film is named: {err}");
    let accepted = run(
        &[
            "eval",
            "--device",
            "cpu",
            "--bootstrap",
            "20",
            "--overlays",
            "0",
            "--allow-skips",
        ],
        &[
            Path::new("--run"),
            &run_dir,
            Path::new("-o"),
            &tmp.path().join("eval-accepted"),
        ],
    );
    assert_eq!(
        accepted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );

    // Weights that became NaN: a clear error naming the tensor, at once.
    poison(&run_dir.join("best.safetensors"), "model.prediction.weight");
    refused(
        eval(&tmp.path().join("eval-nan")),
        "prediction.weight holds NaN",
    );
    refused(predict(&["--thresholds", "0.5"]), "NaN");

    // Training films gone or broken: named, in RUN/skipped.txt, and exit 1 unless accepted.
    let listed = std::fs::read_to_string(data.join("train_val_list.txt")).unwrap();
    let mut names = listed.lines().map(|l| l.trim().to_string());
    let (gone, cut) = (names.next().unwrap(), names.next().unwrap());
    std::fs::remove_file(data.join("images").join(&gone)).unwrap();
    let png = std::fs::read(data.join("images").join(&cut)).unwrap();
    std::fs::write(data.join("images").join(&cut), &png[..png.len() / 2]).unwrap();
    let skipping = tmp.path().join("run-skips");
    let out = train(&["--epochs", "2"], &skipping);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let account = std::fs::read_to_string(skipping.join("skipped.txt")).unwrap();
    assert_eq!(account.lines().count(), 2, "{account}");
    assert!(
        account.contains(&format!("{gone}: listed in the dataset")),
        "{account}"
    );
    assert!(
        account.contains(&cut) && account.contains("unreadable"),
        "{account}"
    );
    assert!(
        err.contains("2 films left out") && err.contains(&cut),
        "{err}"
    );
    assert_eq!(
        err.matches("skipped unreadable image: ").count(),
        1,
        "said once, not every epoch: {err}"
    );
    ok(train(&["--allow-skips"], &tmp.path().join("run-accepted")));
}
