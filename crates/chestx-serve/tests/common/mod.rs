//! A tiny trained run (phantoms, one epoch) and a server on 127.0.0.1 for the API tests.

use chestx_infer::heat::Localizer;
use chestx_model::{Arch, Loss, ModelConfig, Pooling};
use chestx_serve::metrics::Metrics;
use chestx_serve::{AppState, Limits, ModelSpec, ThresholdSource};
use chestx_synth::{write_dataset, Backgrounds, SynthConfig};
use chestx_train::{train, Controls, Quiet, Start, TrainConfig};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use tch::Device;

/// One run for the whole test binary: 90 phantoms at 64 px, a narrow ResNet-18, one epoch.
pub fn tiny_run() -> &'static Path {
    static RUN: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &RUN.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let cfg = SynthConfig {
            n: 90,
            size: 64,
            seed: 3,
            ..Default::default()
        };
        write_dataset(&Backgrounds::Procedural(20), &data, &cfg, &|| {}).unwrap();
        let classes = ["Effusion", "Mass", "Nodule"].map(String::from).to_vec();
        let mut model = ModelConfig::new(Arch::Resnet18, classes);
        model.width = Some(16);
        model.transition_dim = 16;
        model.input_size = 64;
        model.pooling = Pooling::Lse { r: 5.0 };
        let run = tmp.path().join("run");
        let config = TrainConfig {
            model,
            loss: Loss::Wcel,
            dataset: data,
            batch_size: 16,
            epochs: 1,
            lr: 1e-3,
            weight_decay: 1e-4,
            seed: 5,
            augment: false,
            val_fraction: 0.2,
            init: None,
            checkpoint_every: 1000,
            cosine: false,
            labels: Default::default(),
        };
        let start = Start::New(Box::new(config));
        train(&run, start, Device::Cpu, &Quiet, &Controls::default()).unwrap();
        (tmp, run)
    })
    .1
}

pub struct Server {
    pub url: String,
}

/// Serve the tiny run on an ephemeral loopback port, in the background for the rest of the test.
pub fn serve(
    thresholds: ThresholdSource,
    limits: Limits,
    queue: usize,
    token: Option<&str>,
) -> Server {
    serve_with(thresholds, limits, queue, token, None)
}

/// [`serve`], also showing the evaluation in `eval`.
pub fn serve_with(
    thresholds: ThresholdSource,
    limits: Limits,
    queue: usize,
    token: Option<&str>,
    eval: Option<&Path>,
) -> Server {
    let spec = ModelSpec {
        run: tiny_run().to_path_buf(),
        checkpoint: None,
        device: Device::Cpu,
        thresholds,
        localizer: Localizer::regions(),
    };
    let metrics = Arc::new(Metrics::default());
    let (q, info) = chestx_serve::model::start(spec, queue, 8, Box::new(|_| {})).unwrap();
    let mut state = AppState::new(q, info, limits, token.map(String::from), metrics, None);
    if let Some(dir) = eval {
        state = state.with_eval(chestx_serve::eval_view::load(dir).unwrap());
    }
    let state = Arc::new(state);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, chestx_serve::router(state)).await.unwrap();
        });
    });
    Server { url }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap()
}
