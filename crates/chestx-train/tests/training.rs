//! Training behaviour on generated phantoms (no external data needed): the network learns visible
//! lesions from image-level labels, and an interrupted run resumed from its checkpoint ends with
//! exactly the weights of an uninterrupted one.

use chestx_data::Split;
use chestx_infer::evaluate::OverlayOutcome;
use chestx_infer::run::load_split;
use chestx_infer::score::{columns_of, per_class_auc, score_samples};
use chestx_model::{Arch, Loss, ModelConfig, Pooling};
use chestx_synth::{write_dataset, Backgrounds, SynthConfig};
use chestx_train::{train, Controls, Outcome, Quiet, Run, Start, TrainConfig, TrainError};
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
        labels: Default::default(),
    }
}

/// A new run in `dir`, trained to the end on the CPU.
fn run_to_end(dir: &Path, cfg: TrainConfig) -> Outcome {
    train(
        dir,
        Start::New(Box::new(cfg)),
        Device::Cpu,
        &Quiet,
        &Controls::default(),
    )
    .unwrap()
}

#[test]
fn learns_visible_lesions_from_image_labels() {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(2);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    phantoms(&data, 480, 96);
    let run_dir = tmp.path().join("run");
    let out = run_to_end(&run_dir, config(&data, 96, 8));
    assert!(matches!(out, Outcome::Finished(_)));
    // Score the best checkpoint on the held-out test patients.
    let run = Run::open(&run_dir, Device::Cpu).unwrap();
    let (_vs, net) = run.load_model(&run.best()).unwrap();
    let test = Arc::new(load_split(&data, Split::Test, 0.15, 7, &Default::default()).unwrap());
    let columns = columns_of(&run.config.model.classes).unwrap();
    let s = score_samples(&net, test, &columns, &Loss::Wcel, 32, Device::Cpu);
    let auc = per_class_auc(&s.probs, &s.truth, 3);
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
    run_to_end(&whole, cfg.clone());

    let parts = tmp.path().join("parts");
    let ctl = Controls {
        max_steps: Some(3),
        ..Default::default()
    };
    let first = train(
        &parts,
        Start::New(Box::new(cfg.clone())),
        Device::Cpu,
        &Quiet,
        &ctl,
    )
    .unwrap();
    let Outcome::Interrupted(at) = first else {
        panic!("expected an interruption, got {first:?}")
    };
    assert_eq!((at.epoch, at.batch, at.global_step), (0, 3, 3));
    // A second interruption in the next epoch, then run to the end.
    let ctl = Controls {
        max_steps: Some(2),
        ..Default::default()
    };
    let Outcome::Interrupted(at) = train(&parts, Start::Resume, Device::Cpu, &Quiet, &ctl).unwrap()
    else {
        panic!()
    };
    assert!(at.global_step == 5);
    let last = train(
        &parts,
        Start::Resume,
        Device::Cpu,
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
        Start::New(Box::new(config(&data, 64, 1))),
        Device::Cpu,
        &Quiet,
        &ctl,
    )
    .unwrap();
    let again = train(
        &run,
        Start::New(Box::new(config(&data, 64, 1))),
        Device::Cpu,
        &Quiet,
        &ctl,
    );
    assert!(again.unwrap_err().to_string().contains("--resume"));
}

#[test]
fn a_diverging_run_stops_with_a_clear_error_and_no_checkpoint_of_the_bad_step() {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(2);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    phantoms(&data, 40, 64);
    let run = tmp.path().join("run");
    // Adam moves every weight by about lr per step: 1e30 overflows the activations at once.
    let mut cfg = config(&data, 64, 3);
    cfg.lr = 1e30;
    cfg.checkpoint_every = 1;
    let err = train(
        &run,
        Start::New(Box::new(cfg)),
        Device::Cpu,
        &Quiet,
        &Controls::default(),
    )
    .unwrap_err();
    let TrainError::NonFinite { value, epoch, step } = err else {
        panic!("expected a non-finite loss, got: {err}");
    };
    assert!(!value.is_finite());
    assert!(epoch >= 1);
    assert!(step >= 1, "the first step starts from finite weights");
    let msg = err.to_string();
    assert!(msg.contains("lower the learning rate"), "{msg}");
    // The checkpoints written before the bad step hold finite weights only.
    let latest = run.join("latest.safetensors");
    assert!(latest.exists(), "one checkpoint per step was asked for");
    for (name, t) in Tensor::read_safetensors(&latest).unwrap() {
        if t.is_floating_point() {
            let finite = t.isfinite().all().int64_value(&[]) == 1;
            assert!(finite, "{name} holds a non-finite value");
        }
    }
}

/// The phantoms re-described in the CheXpert layout beside them: `Pleural Effusion`, `Mass` and
/// `Nodule` columns, every fifth Mass positive written uncertain (-1.0) and every seventh Nodule
/// cell blank; train_val films in `train.csv`, test films in `valid.csv`.
fn as_chexpert(data: &Path, root: &Path) {
    let nih = chestx_data::NihDataset::open(data).unwrap();
    let header = "Path,Patient ID,Frontal/Lateral,Pleural Effusion,Mass,Nodule,Lung Opacity";
    let cell = |on: bool| if on { "1.0" } else { "0.0" };
    let write = |name: &str, images: &[String]| {
        let mut lines = vec![header.to_string()];
        for (i, img) in images.iter().enumerate() {
            let e = nih.entry(img).unwrap();
            let l = |f: chestx_core::Finding| e.labels[f.index()];
            let mass = if l(chestx_core::Finding::Mass) && i % 5 == 0 {
                "-1.0"
            } else {
                cell(l(chestx_core::Finding::Mass))
            };
            let nodule = if i % 7 == 0 {
                ""
            } else {
                cell(l(chestx_core::Finding::Nodule))
            };
            lines.push(format!(
                "data/images/{img},{},Frontal,{},{mass},{nodule},",
                e.patient_id,
                cell(l(chestx_core::Finding::Effusion))
            ));
        }
        std::fs::write(root.join(name), lines.join("\n") + "\n").unwrap();
    };
    std::fs::create_dir_all(root).unwrap();
    write("train.csv", &nih.train_val);
    write("valid.csv", &nih.test);
}

#[test]
fn trains_and_evaluates_on_the_chexpert_layout_with_uncertain_labels_left_out() {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(2);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    phantoms(&data, 120, 64);
    let cx = tmp.path().join("cx");
    as_chexpert(&data, &cx);
    let run_dir = tmp.path().join("run");
    // Uncertain cells are NaN targets: a loss that did not leave them out would turn NaN and stop
    // the run with an error.
    let out = run_to_end(&run_dir, config(&cx, 64, 2));
    assert!(matches!(out, Outcome::Finished(_)));
    let metrics = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 3, "{metrics}");
    for row in metrics.lines().skip(1) {
        let train_loss: f64 = row.split(',').nth(2).unwrap().parse().unwrap();
        assert!(train_loss.is_finite() && train_loss > 0.0, "{row}");
    }
    let run = Run::open(&run_dir, Device::Cpu).unwrap();
    let opts = chestx_infer::evaluate::EvalOptions {
        bootstrap: 50,
        overlays: 8, // without boxes, a quarter of these: 2
        ..Default::default()
    };
    let before = folder_snapshot(&run_dir);
    let res = chestx_infer::evaluate::evaluate(&run, &tmp.path().join("eval"), &opts, &|_, _| {})
        .unwrap();
    // An evaluation never writes into the run: its thresholds go beside its report.
    assert_eq!(folder_snapshot(&run_dir), before);
    let th = chestx_infer::Thresholds::read(
        &tmp.path().join("eval/thresholds.json"),
        &run.config.model.classes,
    )
    .unwrap();
    assert_eq!(res.thresholds.as_ref(), Some(&th));
    let test = load_split(&cx, Split::Test, 0.15, 7, &Default::default()).unwrap();
    assert_eq!(res.images, test.len());
    // Each class is scored on its known labels only: Mass loses its uncertain positives, Nodule
    // its blank cells (blank counts negative by default, so they stay: same count as Effusion).
    let positives = |name: &str| {
        res.classes
            .iter()
            .find(|c| c.finding == name)
            .unwrap()
            .positives
    };
    let truth =
        |f: chestx_core::Finding| test.iter().filter(|s| s.labels[f.index()] == 1.0).count();
    assert_eq!(positives("Mass"), truth(chestx_core::Finding::Mass));
    assert_eq!(positives("Effusion"), truth(chestx_core::Finding::Effusion));
    assert!(test
        .iter()
        .any(|s| s.labels[chestx_core::Finding::Mass.index()].is_nan()));
    assert_eq!(res.overlays.len(), 2);
    for o in &res.overlays {
        let f = &o.file;
        assert!(tmp.path().join("eval").join(f).is_file(), "{f}");
        assert!(!f.trim_start_matches("overlays/").contains('/'), "{f}");
        assert_eq!(o.outcome, OverlayOutcome::of(&o.truth, &o.detected).0);
    }
}

/// Every file of a folder with its bytes.
fn folder_snapshot(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    v.sort();
    v
}

/// Issue 18: ResNet-18 at width 8 (and 4) on 64-px films died in 10 of 10 runs with heap corruption
/// in oneDNN's channels-last weight gradient of the 1×1 stride-2 downsample (8 → 16 channels on a
/// 16×16 map; the epoch's last batch of 3 triggers it). Those convolutions now run NCHW on a CPU.
#[test]
fn narrow_resnets_train_on_a_cpu_without_corrupting_memory() {
    let _guard = TORCH_RNG.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(2);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    phantoms(&data, 60, 64);
    for width in [8, 4] {
        let mut cfg = config(&data, 64, 1);
        cfg.model.width = Some(width);
        cfg.model.transition_dim = 16;
        cfg.batch_size = 8;
        let out = run_to_end(&tmp.path().join(format!("run{width}")), cfg);
        assert!(matches!(out, Outcome::Finished(_)), "width {width}");
    }
}
