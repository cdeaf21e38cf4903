//! Training behaviour on generated phantoms (no external data needed): the network learns visible
//! lesions from image-level labels, and an interrupted run resumed from its checkpoint ends with
//! exactly the weights of an uninterrupted one.

use chestx_data::Split;
use chestx_model::{Arch, Loss, ModelConfig, Pooling};
use chestx_synth::{write_dataset, Backgrounds, SynthConfig};
use chestx_train::{
    load_split, per_class_auc, predict_samples, train, Controls, Outcome, Quiet, Run, TrainConfig,
};
use std::path::Path;
use std::sync::Arc;
use tch::{Device, Tensor};

/// libtorch's random generator is process-global: tests that initialize networks must not overlap,
/// or their initial weights interleave.
static TORCH_RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn phantoms(dir: &Path, n: usize, size: u32) {
    let cfg = SynthConfig {
        n,
        size,
        seed: 11,
        contrast: (0.35, 0.55),
        noise: 0.015,
        ..Default::default()
    };
    write_dataset(&Backgrounds::Procedural(40), dir, &cfg, &|| {}).unwrap();
}

fn config(dataset: &Path, input: i64, epochs: usize) -> TrainConfig {
    let classes = ["Effusion", "Mass", "Nodule"].map(String::from).to_vec();
    let mut model = ModelConfig::new(Arch::Resnet18, classes);
    model.width = Some(16);
    model.transition_dim = 64;
    model.input_size = input;
    model.pooling = Pooling::Lse { r: 5.0 };
    TrainConfig {
        model,
        loss: Loss::Wcel,
        dataset: dataset.to_path_buf(),
        batch_size: 16,
        epochs,
        lr: 2e-3,
        weight_decay: 1e-4,
        seed: 7,
        augment: false,
        val_fraction: 0.15,
        init: None,
        checkpoint_every: 1000,
        cosine: false,
    }
}

#[test]
fn learns_visible_lesions_from_image_labels() {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(2);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    phantoms(&data, 480, 96);
    let run_dir = tmp.path().join("run");
    let out = train(
        &run_dir,
        Some(config(&data, 96, 8)),
        Device::Cpu,
        false,
        &Quiet,
        &Controls::default(),
    )
    .unwrap();
    assert!(matches!(out, Outcome::Finished(_)));
    // Score the best checkpoint on the held-out test patients.
    let run = Run::open(&run_dir, Device::Cpu).unwrap();
    let (_vs, net) = run.load_model(&run.best()).unwrap();
    let test = Arc::new(load_split(&data, Split::Test, 0.15, 7).unwrap());
    let columns = chestx_train::columns_of(&run.config.model.classes).unwrap();
    let (p, t, _) = predict_samples(&net, test, &columns, &Loss::Wcel, 32, Device::Cpu);
    let auc = per_class_auc(&p, &t, 3);
    let mean = auc.iter().flatten().sum::<f64>() / 3.0;
    eprintln!("test AUC per class {auc:?}, mean {mean:.3}");
    assert!(mean >= 0.9, "mean test AUC {mean:.3}: {auc:?}");
    let metrics = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 9, "{metrics}");
}

#[test]
fn interrupted_and_resumed_run_matches_an_uninterrupted_one() {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(2);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    phantoms(&data, 90, 64);
    let mut cfg = config(&data, 64, 2);
    cfg.augment = true;
    cfg.checkpoint_every = 2;

    let whole = tmp.path().join("whole");
    train(
        &whole,
        Some(cfg.clone()),
        Device::Cpu,
        false,
        &Quiet,
        &Controls::default(),
    )
    .unwrap();

    let parts = tmp.path().join("parts");
    let ctl = Controls {
        max_steps: Some(3),
        ..Default::default()
    };
    let first = train(&parts, Some(cfg.clone()), Device::Cpu, false, &Quiet, &ctl).unwrap();
    let Outcome::Interrupted(at) = first else {
        panic!("expected an interruption, got {first:?}")
    };
    assert_eq!((at.epoch, at.batch, at.global_step), (0, 3, 3));
    // A second interruption in the next epoch, then run to the end.
    let ctl = Controls {
        max_steps: Some(2),
        ..Default::default()
    };
    let Outcome::Interrupted(at) = train(&parts, None, Device::Cpu, true, &Quiet, &ctl).unwrap()
    else {
        panic!()
    };
    assert!(at.global_step == 5);
    let last = train(
        &parts,
        None,
        Device::Cpu,
        true,
        &Quiet,
        &Controls::default(),
    )
    .unwrap();
    assert!(matches!(last, Outcome::Finished(_)));

    let a: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(whole.join("latest.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    let b: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(parts.join("latest.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
    assert_eq!(a.len(), b.len());
    let mut compared = 0;
    for (k, ta) in &a {
        if k.starts_with("model.") {
            let d = (ta - &b[k]).abs().max().double_value(&[]);
            assert!(d <= 1e-6, "{k} differs by {d}");
            compared += 1;
        }
    }
    assert!(compared > 50);
    assert_eq!(
        std::fs::read_to_string(whole.join("metrics.csv"))
            .unwrap()
            .lines()
            .count(),
        3
    );
}

#[test]
fn a_new_run_refuses_a_folder_that_holds_one() {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    phantoms(&data, 40, 64);
    let run = tmp.path().join("run");
    let ctl = Controls {
        max_steps: Some(1),
        ..Default::default()
    };
    train(
        &run,
        Some(config(&data, 64, 1)),
        Device::Cpu,
        false,
        &Quiet,
        &ctl,
    )
    .unwrap();
    let again = train(
        &run,
        Some(config(&data, 64, 1)),
        Device::Cpu,
        false,
        &Quiet,
        &ctl,
    );
    assert!(again.unwrap_err().to_string().contains("--resume"));
}
