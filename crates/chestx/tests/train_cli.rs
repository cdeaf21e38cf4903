//! `chestx train` refuses, with a clear error and before touching the dataset, a model that
//! libtorch 2.11's CPU backward pass is known to crash on.

mod common;
use common::chestx;

#[test]
fn refuses_width_8_at_large_inputs_on_a_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |input: &str| {
        chestx()
            .args(["train", "--dataset"])
            .arg(tmp.path().join("no-such-dataset"))
            .arg("--out")
            .arg(tmp.path().join("run"))
            .args(["--arch", "resnet18", "--width", "8", "--device", "cpu"])
            .args(["--input", input])
            .output()
            .unwrap()
    };
    let out = run("224");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--width 8 at --input 224 is refused"), "{err}");
    assert!(!tmp.path().join("run").exists(), "nothing written");
    // Below 192 px the check lets it through (and the missing dataset is what fails).
    let err = String::from_utf8_lossy(&run("128").stderr).into_owned();
    assert!(!err.contains("refused"), "{err}");
}
