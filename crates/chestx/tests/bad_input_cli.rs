//! Bad inputs and faults for the commands that need no network (issue 18's reproductions): each must
//! end — no hang, no panic — with its exit status, a message naming the file and the problem, nothing
//! silently dropped or counted twice, and a small memory footprint. Inputs are built here.

mod common;
use common::chestx;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Run with a deadline: a command still running after it is a hang (killed, then the test fails).
fn finish(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let start = Instant::now();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() {
        if start.elapsed() > limit {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            panic!("still running after {limit:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter.join().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn label(inputs: &[&Path], out: &Path, extra: &[&str]) -> Output {
    let mut c = chestx();
    c.arg("label").args(inputs).arg("-o").arg(out).args(extra);
    finish(&mut c, Duration::from_secs(60))
}

fn rows(csv: &Path) -> usize {
    std::fs::read_to_string(csv).unwrap().lines().count() - 1
}

const REPORTS: &str = "id,findings,impression\n\
r1,No pneumothorax.,Small left effusion.\n\
r2,Heart is enlarged.,Cardiomegaly.\n\
r3,Lungs are clear.,No acute disease.\n";

#[test]
fn label_survives_binary_fifos_links_and_truncated_archives() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    // A binary file: errors are capped on the terminal, escaped, and all listed in --errors.
    let mut noise = Vec::with_capacity(400_000);
    let mut x: u32 = 7;
    for _ in 0..400_000 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        noise.push((x >> 24) as u8);
    }
    std::fs::write(t.join("binary.csv"), &noise).unwrap();
    let errors = t.join("errors.csv");
    let o = label(
        &[&t.join("binary.csv")],
        &t.join("b.csv"),
        &["--errors", errors.to_str().unwrap()],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.lines().count() <= 55, "{} lines", err.lines().count());
    assert!(
        !err.contains('\u{1b}'),
        "raw escape bytes reached the terminal"
    );
    let listed = rows(&errors);
    assert!(err.contains(&format!("{listed} failed")), "{err}");
    assert!(listed > 60, "{listed}");

    // A folder with a FIFO beside a real CSV, and a link back to itself: the FIFO is named and
    // passed over (reading it would block forever), the loop is cut, each report read once.
    let dir = t.join("reports");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("sub/reports.csv"), REPORTS).unwrap();
    std::os::unix::fs::symlink(&dir, dir.join("sub/loop")).unwrap();
    let fifo = dir.join("pipe.csv");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let out = t.join("folder.csv");
    let o = label(&[&dir], &out, &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("pipe.csv") && err.contains("FIFO"), "{err}");
    assert_eq!(rows(&out), 3, "each report once");
    // Skips accepted: the same account, exit 0.
    let o = label(&[&dir], &out, &["--allow-skips"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("FIFO"), "still named: {}", stderr(&o));

    // A truncated .tgz: the break is an error, not the quiet end of the archive.
    let tgz = truncated_tgz(t);
    let o = label(&[&tgz], &t.join("tgz.csv"), &[]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("not read"), "{err}");
}

/// A gzipped tar of 300 small text reports, cut in half.
fn truncated_tgz(dir: &Path) -> PathBuf {
    let mut tar = Vec::new();
    {
        let mut gz = flate2::write::GzEncoder::new(&mut tar, flate2::Compression::fast());
        let mut b = tar::Builder::new(&mut gz);
        for i in 0..300 {
            let body = format!("FINDINGS: Report {i}. Small effusion on the {i}th film.");
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, format!("r/{i}.txt"), body.as_bytes())
                .unwrap();
        }
        b.finish().unwrap();
    }
    let p = dir.join("cut.tgz");
    std::fs::write(&p, &tar[..tar.len() / 2]).unwrap();
    p
}

#[test]
fn inspect_refuses_a_picture_claiming_gigapixels_from_its_header() {
    let tmp = tempfile::tempdir().unwrap();
    let png = tmp.path().join("huge.png");
    let mut ihdr = 20_000u32.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&20_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut z, &vec![0u8; 1 << 20]).unwrap();
    let idat = z.finish().unwrap();
    for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", idat), (b"IEND", Vec::new())] {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(&data);
        bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
        bytes.extend_from_slice(kind);
        bytes.extend_from_slice(&data);
        bytes.extend_from_slice(&crc.sum().to_be_bytes());
    }
    std::fs::write(&png, bytes).unwrap();
    let o = finish(chestx().arg("inspect").arg(&png), Duration::from_secs(30));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("huge.png") && err.contains("beyond the limit"),
        "{err}"
    );
}

#[test]
fn auc_refuses_labels_without_labels_and_predictions_counted_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let write = |name: &str, body: &str| {
        let p = t.join(name);
        std::fs::write(&p, body).unwrap();
        p
    };
    let preds = write(
        "p.csv",
        "Image Index,Mass,Nodule\na.png,0.9,0.1\nb.png,0.2,0.8\n",
    );
    let labels = write(
        "l.csv",
        "Image Index,Finding Labels\na.png,Mass\nb.png,Nodule\n",
    );
    let auc = |p: &Path, l: &Path| {
        finish(
            chestx()
                .arg("auc")
                .arg("--pred")
                .arg(p)
                .arg("--labels")
                .arg(l),
            Duration::from_secs(30),
        )
    };
    // No label column at all: an error, not a table of zeros.
    let o = auc(
        &preds,
        &write("nolabels.csv", "Image Index,Age\na.png,40\nb.png,50\n"),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("no label columns"), "{}", stderr(&o));
    // The same image predicted twice would count twice.
    let dup = write(
        "dup.csv",
        "Image Index,Mass,Nodule\na.png,0.9,0.1\na.png,0.9,0.1\nb.png,0.2,0.8\n",
    );
    let o = auc(&dup, &labels);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("predicted twice"), "{}", stderr(&o));
    // Two findings predicted: the mean says over how many, and which are missing.
    let o = auc(&preds, &labels);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("(2 of 14 findings)"), "{out}");
    assert!(
        out.contains("No prediction column for: Atelectasis"),
        "{out}"
    );
    assert!(!out.contains("-0.0"), "{out}");
}

#[test]
fn ingest_reads_each_film_once_through_link_loops() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let synth = finish(
        chestx()
            .args([
                "synth",
                "--n",
                "4",
                "--size",
                "64",
                "--procedural",
                "4",
                "-o",
            ])
            .arg(t.join("s")),
        Duration::from_secs(60),
    );
    assert!(synth.status.success(), "{}", stderr(&synth));
    let src = t.join("src");
    std::fs::create_dir_all(&src).unwrap();
    for e in std::fs::read_dir(t.join("s/images")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, src.join(p.file_name().unwrap())).unwrap();
    }
    std::os::unix::fs::symlink(&src, src.join("again")).unwrap();
    let out = t.join("ds");
    let ingest = |size: &str, secret: &str| {
        finish(
            chestx()
                .arg("ingest")
                .arg(&src)
                .arg("-o")
                .arg(&out)
                .args(["--size", size])
                .env("CHESTX_SECRET", secret),
            Duration::from_secs(60),
        )
    };
    let secret = "a test secret of some length";
    let o = ingest("64", secret);
    let err = stderr(&o);
    assert!(
        err.contains("already walked"),
        "the loop is reported: {err}"
    );
    let entries = std::fs::read_to_string(out.join("Data_Entry.csv")).unwrap();
    assert_eq!(entries.lines().count() - 1, 4, "{entries}");
    let pngs = std::fs::read_dir(out.join("images")).unwrap().count();
    assert_eq!(pngs, 4);
    // Resumed with other settings: refused, naming them, before anything is written.
    let o = ingest("32", secret);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--size 64 (now 32)"), "{}", stderr(&o));
    let o = ingest("64", "another secret of some length");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("another secret"), "{}", stderr(&o));
    let pngs = std::fs::read_dir(out.join("images")).unwrap().count();
    assert_eq!(pngs, 4, "nothing written by the refused runs");
}

#[test]
fn label_eval_names_a_gold_file_without_finding_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let gold = tmp.path().join("gold.csv");
    std::fs::write(&gold, "a,b\n1,2\n").unwrap();
    let o = finish(
        chestx()
            .arg("label-eval")
            .arg("--gold")
            .arg(&gold)
            .arg("--pred")
            .arg(&gold),
        Duration::from_secs(30),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("gold.csv") && stderr(&o).contains("no finding columns"));
}
