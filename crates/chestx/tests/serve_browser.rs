//! `chestx serve` end to end in a real browser: a run trained here, served by the binary on a
//! loopback port, and the viewer driven by headless Chromium (selenium), which uploads a real NIH
//! PNG and a real DICOM, pastes a report, filters the evaluation's gallery, and checks the drawing by
//! its pixels
//! (`crates/chestx-serve/tests/browser/viewer_test.py`). Screenshots are left in
//! `target/tmp/viewer-screenshots/`.
//!
//! Needs Debian's chromium and chromium-driver and selenium in the venv (`scripts/setup-browser.sh`);
//! skipped with a message without them, except under `CHESTX_BROWSER_TESTS=1` (CI), where it fails.

mod common;
use common::chestx;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn browser_ready() -> bool {
    let required = std::env::var("CHESTX_BROWSER_TESTS").is_ok_and(|v| v == "1");
    let have = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = have("chromium", &["--version"])
        && have("chromedriver", &["--version"])
        && have("python3", &["-c", "import selenium, PIL"]);
    if !ok {
        assert!(!required, "CHESTX_BROWSER_TESTS=1 but chromium, chromedriver or selenium is missing: run scripts/setup-browser.sh");
        eprintln!("SKIP: the browser test needs chromium, chromedriver and selenium (scripts/setup-browser.sh)");
    }
    ok
}

fn ok(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A server on its own process; killed when dropped.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `chestx serve` on an ephemeral port and read its URL from what it prints.
fn serve(run: &Path, eval: &Path) -> (Served, String) {
    let mut child = chestx()
        .args([
            "--threads",
            "2",
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--thresholds",
            "0",
            "--device",
            "cpu",
            "--run",
        ])
        .arg(run)
        .arg("--eval")
        .arg(eval)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let served = Served(child);
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.strip_prefix("serving on ") {
            let url = rest
                .split_whitespace()
                .next()
                .unwrap()
                .trim_end_matches('/')
                .to_string();
            // Keep draining what the server prints, so it never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            return (served, url);
        }
    }
    panic!("the server ended before serving:\n{seen}");
}

#[test]
fn the_viewer_draws_films_heatmaps_boxes_and_report_evidence() {
    let Some(data) = common::data_dir("nih/images") else {
        return;
    };
    if !browser_ready() {
        return;
    }
    let mut films: Vec<PathBuf> = std::fs::read_dir(data.join("nih/images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    films.sort();
    let dicom = data.join("dicom/1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm");

    let tmp = tempfile::tempdir().unwrap();
    let (phantoms, run) = (tmp.path().join("data"), tmp.path().join("run"));
    ok(chestx()
        .args([
            "--threads",
            "2",
            "synth",
            "--n",
            "90",
            "--size",
            "64",
            "--procedural",
            "20",
            "-o",
        ])
        .arg(&phantoms));
    ok(chestx()
        .args([
            "--threads",
            "2",
            "train",
            "--arch",
            "resnet18",
            "--width",
            "16",
            "--input",
            "64",
            "--transition-dim",
            "16",
        ])
        .args([
            "--epochs",
            "1",
            "--batch",
            "16",
            "--device",
            "cpu",
            "--classes",
            "Effusion,Mass,Nodule",
            "--dataset",
        ])
        .arg(&phantoms)
        .arg("--out")
        .arg(&run));
    let eval = tmp.path().join("eval");
    ok(chestx()
        .args([
            "--threads",
            "2",
            "eval",
            "--device",
            "cpu",
            "--overlays",
            "8",
            "--bootstrap",
            "50",
            "--by",
            "follow-up",
            "--run",
        ])
        .arg(&run)
        .arg("-o")
        .arg(&eval));
    let (_server, url) = serve(&run, &eval);

    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../chestx-serve/tests/browser/viewer_test.py");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("viewer-screenshots");
    let out = Command::new("python3")
        .arg(&script)
        .arg(&url)
        .arg(&films[0])
        .arg(&dicom)
        .arg(&shots)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("PASS"), "{stdout}");
    assert!(shots.join("viewer.png").is_file());
}
