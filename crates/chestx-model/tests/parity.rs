//! Parity with torchvision: a model written by `scripts/parity.py` (torchvision layout, random
//! weights and BN statistics, saved with `torch.save`) is imported from its pickle and must give the
//! same backbone features as PyTorch did, to 1e-4.
//!
//! The tiny committed fixture runs always. With `CHESTX_PARITY_DIR` pointing at the output of
//! `scripts/parity.py full DIR`, the full-size backbones are checked too.

use chestx_model::{import, Arch, ChestNet, ModelConfig};
use std::path::{Path, PathBuf};
use tch::{nn, Tensor};

fn io(path: &Path) -> (Tensor, Tensor) {
    let m: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .unwrap()
        .into_iter()
        .collect();
    (m["input"].shallow_clone(), m["features"].shallow_clone())
}

fn check(cfg: ModelConfig, weights: &Path, io_file: &Path) {
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let net = ChestNet::new(&vs.root(), cfg.clone());
    let tensors = import::read_tensors(weights).unwrap();
    let report = import::load_backbone(&vs, cfg.arch, &tensors, weights).unwrap();
    assert!(
        report.missing.is_empty(),
        "{}: missing {:?}",
        cfg.arch,
        report.missing
    );
    assert!(
        report.shape_mismatch.is_empty(),
        "{}: shapes {:?}",
        cfg.arch,
        report.shape_mismatch
    );
    let (x, want) = io(io_file);
    let got = tch::no_grad(|| net.features(&x));
    assert_eq!(got.size(), want.size(), "{}", cfg.arch);
    let diff = (&got - &want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]);
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "{}: max |Δ| = {diff:e} (features up to {scale})",
        cfg.arch
    );
    eprintln!(
        "{}: {} tensors loaded, max |Δ| = {diff:.2e}",
        cfg.arch, report.loaded
    );
}

#[test]
fn tiny_torchvision_resnet_from_pickle_matches_pytorch() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut cfg = ModelConfig::new(Arch::Resnet18, vec!["a".into()]);
    cfg.width = Some(8);
    check(
        cfg,
        &dir.join("tiny_resnet.pth"),
        &dir.join("tiny_resnet_io.safetensors"),
    );
}

#[test]
fn full_size_backbones_match_pytorch_when_generated() {
    let Some(dir) = std::env::var_os("CHESTX_PARITY_DIR").map(PathBuf::from) else {
        eprintln!("SKIP: set CHESTX_PARITY_DIR to the output of `scripts/parity.py full DIR`");
        return;
    };
    let mut checked = 0;
    for arch in Arch::ALL {
        let weights = dir.join(format!("{arch}.pth"));
        if weights.exists() {
            check(
                ModelConfig::new(arch, vec!["a".into()]),
                &weights,
                &dir.join(format!("{arch}_io.safetensors")),
            );
            checked += 1;
        }
    }
    // A folder without any generated model would otherwise pass having checked nothing.
    assert!(
        checked > 0,
        "CHESTX_PARITY_DIR={} holds no <arch>.pth: run `scripts/parity.py full DIR` first",
        dir.display()
    );
}

#[test]
fn grad_cam_is_nonnegative_and_follows_the_input_that_drives_the_class() {
    tch::manual_seed(3);
    let vs = nn::VarStore::new(tch::Device::Cpu);
    let mut cfg = ModelConfig::new(Arch::Resnet18, vec!["a".into(), "b".into()]);
    cfg.width = Some(8);
    cfg.input_size = 64;
    let net = ChestNet::new(&vs.root(), cfg);
    let x = Tensor::randn([2, 3, 64, 64], (tch::Kind::Float, tch::Device::Cpu));
    let g = net.grad_cam(&x, 1);
    assert_eq!(g.size(), vec![2, 2, 2]);
    assert!(g.min().double_value(&[]) >= 0.0);
    // CAM and Grad-CAM agree in shape: one value per feature-map cell.
    let cam = tch::no_grad(|| net.cam(&net.forward(&x, false).transition));
    assert_eq!(cam.size(), vec![2, 2, 2, 2]);
}
