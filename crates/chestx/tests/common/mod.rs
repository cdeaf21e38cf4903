//! Shared by the CLI tests: where the real data is, and the binary under test.

use std::path::PathBuf;
use std::process::Command;

/// `$CHESTX_DATA`, else `../shared/data` beside the checkout, if it holds `probe`; `None` (with a
/// SKIP message) when absent.
#[allow(dead_code)] // not every test binary reads the real data
pub fn data_dir(probe: &str) -> Option<PathBuf> {
    chestx_testkit::data(probe).map(|_| chestx_testkit::data_root())
}

pub fn chestx() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chestx"))
}

/// Run `cmd`, which writes a JSON report to `json`: it must succeed (its stderr shown if not), and
/// the report is returned.
#[allow(dead_code)] // not every test binary reads a JSON report
pub fn json_report(cmd: &mut Command, json: &std::path::Path) -> serde_json::Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap()
}
