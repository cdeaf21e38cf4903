//! `chestx label` never loads libtorch: on an empty file it says what is wrong within 50 MB of peak
//! memory (it took ~500 MB when every command loaded libtorch). In its own test binary, because a
//! child's peak as the kernel reports it includes the parent's memory at spawn time: here the
//! parent is this small test process alone.

mod common;
use common::chestx;
use std::process::Command;

/// Run `cmd` to its end and return its exit code, stderr and its own peak resident memory in MB
/// (wait4's rusage of that one child: tests running beside it do not count).
#[allow(clippy::zombie_processes)] // reaped by wait4 below, which std does not know of
fn run_measured(cmd: &mut Command) -> (Option<i32>, String, f64) {
    use std::io::Read;
    // Standard output goes where the caller set it (default: inherited, i.e. the test's log).
    let mut child = cmd.stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: waits for this child (not reaped by std: `wait` is never called on it) and fills
    // the two values given.
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert!(pid > 0, "wait4 failed");
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    (code, err, usage.ru_maxrss as f64 / 1024.0)
}

#[test]
fn label_on_an_empty_file_stays_small_and_says_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty.csv");
    std::fs::write(&empty, "").unwrap();
    let (code, err, peak) = run_measured(
        chestx()
            .stdout(std::process::Stdio::null())
            .arg("label")
            .arg(&empty)
            .arg("-o")
            .arg(tmp.path().join("out.csv")),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("empty.csv") && err.contains("empty CSV"),
        "{err}"
    );
    assert!(peak <= 50.0, "peak RSS {peak:.0} MB");
}

/// `n` report rows (id, findings, impression) built from real-sounding phrases, some negated or
/// hedged, some quoted over two lines, written straight to `path` (never held whole in memory,
/// which a child's measured peak would include).
fn write_reports(path: &std::path::Path, n: usize) -> u64 {
    use std::io::Write;
    const FINDINGS: [&str; 8] = [
        "The lungs are clear. No pneumothorax or pleural effusion.",
        "Small left pleural effusion with adjacent atelectasis.",
        "Cardiomegaly. Mild pulmonary edema cannot be excluded.",
        "Right upper lobe nodule measuring 9 mm.",
        "No focal consolidation to suggest pneumonia.",
        "\"Hyperexpanded lungs consistent with emphysema.\nNo acute process.\"",
        "Large right pneumothorax with mediastinal shift.",
        "Stable left lower lobe mass. Interstitial fibrosis.",
    ];
    const IMPRESSIONS: [&str; 5] = [
        "No acute cardiopulmonary disease.",
        "Possible infiltrate in the right base.",
        "Hiatal hernia.",
        "\"Pleural thickening, unchanged.\"",
        "Findings suggest pneumonia.",
    ];
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    writeln!(w, "id,findings,impression").unwrap();
    for i in 0..n {
        let f = FINDINGS[(i * 7 + i / 3) % FINDINGS.len()];
        let imp = IMPRESSIONS[(i * 3 + i / 5) % IMPRESSIONS.len()];
        writeln!(w, "r{i:07},{f},{imp}").unwrap();
    }
    w.flush().unwrap();
    std::fs::metadata(path).unwrap().len()
}

#[test]
fn label_streams_stdin_to_stdout_in_flat_memory_with_the_same_rows_as_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let reports = t.join("reports.csv");
    let size_mb = write_reports(&reports, 150_000) as f64 / 1e6;
    let by_path = t.join("by-path.csv");
    let (code, err, _) = run_measured(chestx().arg("label").arg(&reports).arg("-o").arg(&by_path));
    assert_eq!(code, Some(0), "{err}");
    // The same reports through a pipe in, rows to standard output.
    let streamed = t.join("streamed.csv");
    let (code, err, peak) = run_measured(
        chestx()
            .args(["label", "-", "-o", "-"])
            .stdin(std::fs::File::open(&reports).unwrap())
            .stdout(std::fs::File::create(&streamed).unwrap()),
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("labelled 150000 reports, 0 failed"), "{err}");
    let (a, b) = (
        std::fs::read(&by_path).unwrap(),
        std::fs::read(&streamed).unwrap(),
    );
    assert_eq!(a.len(), b.len());
    assert!(a == b, "the stream's rows differ from the file's");
    assert_eq!(a.iter().filter(|&&c| c == b'\n').count(), 150_001);
    // Slurping took ~13× the input; a stream holds a chunk at a time.
    assert!(
        peak < 60.0,
        "peak RSS {peak:.0} MB labelling {size_mb:.0} MB of reports from a pipe"
    );
}

#[test]
fn stdin_must_be_the_only_input() {
    let tmp = tempfile::tempdir().unwrap();
    let other = tmp.path().join("a.csv");
    write_reports(&other, 3);
    let (code, err, _) = run_measured(
        chestx()
            .arg("label")
            .arg("-")
            .arg(&other)
            .args(["-o", "-"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null()),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("must be the only input"), "{err}");
}
