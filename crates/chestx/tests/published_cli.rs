//! A published model end to end: a torchxrayvision-layout DenseNet-121 state dict (generated here,
//! random weights: nothing downloaded or committed) imported with `chestx import-model`, evaluated
//! against a phantom dataset's labels, and fine-tuned for one epoch with `train --init MODEL`,
//! which starts from the imported network's own logits for the classes it shares.
//! (Parity with torchxrayvision and torchvision themselves: `interop/test_published.py`.)

mod common;
use chestx_image::Preprocess;
use chestx_infer::Run;
use chestx_model::published::XRV_TARGETS;
use chestx_model::{Arch, ChestNet, ModelConfig, Pooling};
use common::chestx;
use std::path::Path;
use tch::{nn::VarStore, Device, Kind, Tensor};

fn ok(args: &[&str], paths: &[&Path]) -> String {
    let mut c = chestx();
    c.args(["--threads", "2"]).args(args).args(paths);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{args:?}: {err}");
    err
}

/// A state dict as `torch.save(xrv.models.DenseNet(op_threshs=…).state_dict())` holds it, written
/// as safetensors: `features.…`, `classifier.weight/bias`, `op_threshs` (one NaN: an output without
/// an operating point). The classifier is scaled down so random features give moderate logits.
fn xrv_state_dict(path: &Path) {
    tch::manual_seed(7);
    let vs = VarStore::new(Device::Cpu);
    let mut cfg = ModelConfig::new(
        Arch::Densenet121,
        XRV_TARGETS.iter().map(|s| s.to_string()).collect(),
    );
    cfg.transition = false;
    cfg.in_channels = 1;
    let _net = ChestNet::new(&vs.root(), cfg);
    let mut named: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| {
            let k = k.strip_prefix("backbone.").unwrap_or(&k).to_string();
            match k.strip_prefix("prediction.") {
                Some(rest) => (format!("classifier.{rest}"), t * 1e-3),
                None => (k, t),
            }
        })
        .collect();
    let mut th = vec![0.3f32; 18];
    th[16] = f32::NAN;
    named.push(("op_threshs".into(), Tensor::from_slice(&th)));
    let refs: Vec<(&str, &Tensor)> = named.iter().map(|(k, t)| (k.as_str(), t)).collect();
    Tensor::write_safetensors(&refs, path).unwrap();
}

#[test]
fn imported_xrv_model_evaluates_and_fine_tunes_from_its_own_logits() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, model, data, run) = (
        tmp.path().join("xrv.safetensors"),
        tmp.path().join("model"),
        tmp.path().join("data"),
        tmp.path().join("run"),
    );
    xrv_state_dict(&file);
    let said = ok(
        &["import-model", "--from", "torchxrayvision", "-o"],
        &[&model, &file],
    );
    assert!(said.contains("18 classes, 1 untrained"), "{said}");
    let imported = Run::open(&model, Device::Cpu).unwrap();
    let m = &imported.config.model;
    assert_eq!(
        (
            m.arch,
            m.in_channels,
            m.transition,
            m.input_size,
            m.preprocess
        ),
        (Arch::Densenet121, 1, false, 224, Preprocess::Xrv)
    );
    assert_eq!(m.pooling, Pooling::Avg);
    let th: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("thresholds.json")).unwrap()).unwrap();
    assert_eq!(th["untrained"], serde_json::json!(["Lung Opacity"]));
    assert!((th["values"][0].as_f64().unwrap() - 0.3).abs() < 1e-6);
    // A second import into the same folder is refused: a model is never overwritten.
    let again = chestx()
        .args(["import-model", "--from", "xrv", "-o"])
        .args([&model, &file])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));

    ok(
        &[
            "synth",
            "--n",
            "48",
            "--size",
            "64",
            "--procedural",
            "12",
            "-o",
        ],
        &[&data],
    );
    // Evaluation against the dataset's labels scores the outputs that are findings and trained:
    // torchxrayvision's extra outputs are left out, never mislabelled.
    let eval_out = tmp.path().join("eval");
    ok(
        &[
            "eval",
            "--device",
            "cpu",
            "--bootstrap",
            "10",
            "--overlays",
            "1",
            "--run",
        ],
        &[
            &model,
            Path::new("--dataset"),
            &data,
            Path::new("-o"),
            &eval_out,
        ],
    );
    let results: serde_json::Value =
        serde_json::from_slice(&std::fs::read(eval_out.join("results.json")).unwrap()).unwrap();
    let scored: Vec<&str> = results["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["finding"].as_str().unwrap())
        .collect();
    assert_eq!(scored.len(), 14, "{scored:?}");
    assert!(!scored.contains(&"Lung Opacity") && !scored.contains(&"Fracture"));
    assert!(snapshot_names(&model).iter().all(|n| n != "results.json"));

    boxes_stay_in_the_centre_crop(&model, tmp.path());
    served_with_its_own_chain_and_operating_points(&model, &tmp.path().join("wide.png"));

    let said = ok(
        &[
            "train",
            "--epochs",
            "1",
            "--batch",
            "6",
            "--device",
            "cpu",
            "--loss",
            "bce",
            "--classes",
            "Effusion,Mass,Nodule",
            "--val-fraction",
            "0.3",
            "--init",
        ],
        &[
            &model,
            Path::new("--dataset"),
            &data,
            Path::new("--out"),
            &run,
        ],
    );
    assert!(said.contains("prediction rows of 3 of 3 classes"), "{said}");
    let tuned = Run::open(&run, Device::Cpu).unwrap();
    assert_eq!(
        (tuned.config.model.arch, tuned.config.model.in_channels),
        (Arch::Densenet121, 1)
    );
    assert!(!tuned.config.model.transition);
    assert!(tuned.latest().is_file(), "one epoch ran and was saved");

    // Where the run started: the same initialisation `train` used, against the imported model's
    // logits on a real phantom film, for the three shared classes.
    let classes: Vec<String> = ["Effusion", "Mass", "Nodule"].map(String::from).to_vec();
    let vs = VarStore::new(Device::Cpu);
    let start = ChestNet::new(
        &vs.root(),
        chestx_train::init::model_of(&model, classes.clone()).unwrap(),
    );
    chestx_train::init::init_from_model(&vs, &model, &classes).unwrap();
    let (_src_vs, source) = imported
        .load_model(&imported.checkpoint_or_best(None))
        .unwrap();
    let film = std::fs::read_dir(data.join("images"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .unwrap();
    let input = Preprocess::Xrv.prepare(&Preprocess::Xrv.open(&film).unwrap(), 224);
    let x = Tensor::from_slice(&input.data).view([1, 1, 224, 224]);
    let (ours, theirs) = tch::no_grad(|| {
        (
            start.forward(&x, false).logits,
            source.forward(&x, false).logits,
        )
    });
    for (i, c) in classes.iter().enumerate() {
        let j = XRV_TARGETS.iter().position(|t| t == c).unwrap() as i64;
        let (a, b) = (
            ours.double_value(&[0, i as i64]),
            theirs.double_value(&[0, j]),
        );
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{c}: {a} vs {b}");
    }
    // And the epoch moved the weights away from there.
    let trained = chestx_infer::Checkpoint::read(&tuned.latest()).unwrap();
    let w = trained.tensor("model.prediction.weight").unwrap();
    let w0 = vs.variables()["prediction.weight"].shallow_clone();
    let moved = (w - w0).abs().max().double_value(&[]);
    assert!(moved > 0.0, "the epoch changed the classifier");
    assert_eq!(ours.kind(), Kind::Float);
}

/// On a film wider than tall, torchxrayvision's chain reads the centred square: every box (all
/// trained findings called, at threshold 0) lies inside it, in the film's own coordinates; the
/// untrained output gets none.
fn boxes_stay_in_the_centre_crop(model: &Path, tmp: &Path) {
    let film = tmp.join("wide.png");
    let (w, h) = (96u32, 64u32);
    let px = image::GrayImage::from_fn(w, h, |x, y| {
        let d = ((x as f32 - 40.0).powi(2) + (y as f32 - 30.0).powi(2)).sqrt();
        image::Luma([if d < 9.0 { 230 } else { (60 + y) as u8 }])
    });
    px.save(&film).unwrap();
    let out = tmp.join("predicted");
    ok(
        &["predict", "--device", "cpu", "--thresholds", "0", "--run"],
        &[model, Path::new("-o"), &out, &film],
    );
    let pred: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("wide.json")).unwrap()).unwrap();
    assert_eq!(
        (pred["width"].as_u64(), pred["height"].as_u64()),
        (Some(96), Some(64))
    );
    let findings = pred["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 18);
    let mut boxes = 0;
    for f in findings {
        let trained = f["trained"].as_bool().unwrap();
        assert_eq!(f["positive"].as_bool().unwrap(), trained, "{f}");
        for b in f["boxes"].as_array().unwrap() {
            let (x, y, bw, bh) = (
                b["x"].as_f64().unwrap(),
                b["y"].as_f64().unwrap(),
                b["w"].as_f64().unwrap(),
                b["h"].as_f64().unwrap(),
            );
            // The square is columns 16..80 (96 / 2 − 64 / 2 = 16).
            assert!(x >= 16.0 - 1e-9 && x + bw <= 80.0 + 1e-9, "{f}");
            assert!(y >= 0.0 && y + bh <= 64.0 + 1e-9, "{f}");
            boxes += 1;
        }
    }
    assert!(boxes > 0, "called findings get boxes");
    let opacity = findings
        .iter()
        .find(|f| f["finding"] == "Lung Opacity")
        .unwrap();
    assert!(opacity["boxes"].as_array().unwrap().is_empty());
}

/// `chestx serve --run MODEL`: the imported model behind the API, with its own preprocessing (the
/// response says which part of the film the input was), its operating points from the folder and
/// its untrained output never called.
fn served_with_its_own_chain_and_operating_points(model: &Path, film: &Path) {
    use std::io::{Read, Write};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = chestx()
        .args(["--threads", "2", "serve", "--device", "cpu", "--addr"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--run")
        .arg(model)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let body = std::fs::read(film).unwrap();
    let ask = || -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        let head = format!(
            "POST /v1/predict HTTP/1.1\r\nHost: localhost\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).ok()?;
        s.write_all(&body).ok()?;
        let mut reply = String::new();
        s.read_to_string(&mut reply).ok()?;
        Some(reply)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let reply = loop {
        match ask() {
            Some(r) if r.starts_with("HTTP/1.1 200") => break r,
            _ if std::time::Instant::now() > deadline => {
                let _ = server.kill();
                panic!("the server did not answer in time");
            }
            _ => std::thread::sleep(std::time::Duration::from_millis(300)),
        }
    };
    // `chestx` hands serve to chestx-torch (same process) with OpenMP's passive wait, unless the
    // caller chose a policy.
    #[cfg(target_os = "linux")]
    let environ = std::fs::read(format!("/proc/{}/environ", server.id())).unwrap_or_default();
    let _ = server.kill();
    let _ = server.wait();
    #[cfg(target_os = "linux")]
    if std::env::var_os("OMP_WAIT_POLICY").is_none() {
        let passive = environ
            .split(|&b| b == 0)
            .any(|v| v == b"OMP_WAIT_POLICY=PASSIVE");
        assert!(passive, "chestx serve runs OpenMP's passive wait");
    }
    let json: serde_json::Value =
        serde_json::from_str(reply.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(
        json["film"]["input_region"],
        serde_json::json!([16.0, 0.0, 64.0, 64.0])
    );
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 18);
    assert!(
        json["thresholds"].as_str().unwrap().contains("op_threshs"),
        "{json}"
    );
    let opacity = findings
        .iter()
        .find(|f| f["finding"] == "Lung Opacity")
        .unwrap();
    assert_eq!(opacity["positive"], false);
    for f in findings {
        assert!((f["threshold"].as_f64().unwrap() - 0.3).abs() < 1e-6 || f == opacity);
    }
}

fn snapshot_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}
