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
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
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
