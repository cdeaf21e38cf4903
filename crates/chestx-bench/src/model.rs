//! `chestx-bench model`: training-step and inference images/s of the ChestX-ray8 network on tch,
//! next to the same network in PyTorch (benches/model_pytorch.py), same machine, threads, batch.

use crate::Rounds;
use anyhow::{bail, Context, Result};
use chestx_model::layout::{relayout, ConvLayout};
use chestx_model::{parse_device, Arch, ChestNet, GradBuffers, Loss, ModelConfig, Pooling};
use chestx_train::Adam;
use clap::Args;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

#[derive(Args, Clone)]
pub struct ModelBenchArgs {
    #[arg(long, default_value = "resnet50")]
    arch: String,
    #[arg(long, default_value_t = 8)]
    batch: i64,
    #[arg(long, default_value_t = 224)]
    input: i64,
    #[arg(long, default_value_t = 20)]
    steps: usize,
    #[arg(long, default_value_t = 3)]
    warmup: usize,
    /// Alternating rounds of each side, in ABBA order (medians are reported).
    #[arg(long, default_value_t = 4)]
    rounds: usize,
    /// Intra-op threads for both sides.
    #[arg(long = "torch-threads", default_value_t = 2)]
    torch_threads: i32,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// On CUDA, let cuDNN time its algorithms for each shape first (both sides): faster steps at a
    /// fixed input size, at the cost of bitwise run-to-run determinism.
    #[arg(long)]
    cudnn_benchmark: bool,
    /// Memory order of our side's convolution weights while training (auto: what `chestx train`
    /// uses on the device).
    #[arg(long, value_enum, default_value_t = LayoutArg::Auto)]
    layout: LayoutArg,
    /// The same for inference, which runs as `chestx eval`/`predict` do: on a network loaded
    /// afresh, its weights laid out for inference (auto: what they use on the device).
    #[arg(long, value_enum, default_value_t = LayoutArg::Auto)]
    infer_layout: LayoutArg,
    /// Python with torch + torchvision for the reference (default: .venv/bin/python).
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    /// The reference script.
    #[arg(long, default_value = "benches/model_pytorch.py")]
    script: PathBuf,
    /// Run only the Rust side (used internally so each side has its own process and memory peak).
    #[arg(long, hide = true)]
    rust_only: bool,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum LayoutArg {
    Auto,
    Nchw,
    Nhwc,
}

impl LayoutArg {
    fn or(self, auto: ConvLayout) -> ConvLayout {
        match self {
            LayoutArg::Auto => auto,
            LayoutArg::Nchw => ConvLayout::Nchw,
            LayoutArg::Nhwc => ConvLayout::Nhwc,
        }
    }
    fn name(self) -> &'static str {
        match self {
            LayoutArg::Auto => "auto",
            LayoutArg::Nchw => "nchw",
            LayoutArg::Nhwc => "nhwc",
        }
    }
}

#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Side {
    train_images_per_s: f64,
    infer_images_per_s: f64,
    peak_rss_mb: f64,
    /// What the reference's caching allocator handed out at most (torch.cuda.max_memory_allocated).
    #[serde(default)]
    peak_gpu_mb: Option<f64>,
    /// The GPU memory the process holds when it ends, as the driver counts it (nvidia-smi): the
    /// caching allocator keeps its peak, so this is comparable across both sides.
    #[serde(default)]
    held_gpu_mb: Option<f64>,
}

/// This process's GPU memory as nvidia-smi reports it; None without nvidia-smi or when the
/// process is not listed (another PID namespace).
fn held_gpu_mb() -> Option<f64> {
    let out = Command::new("nvidia-smi")
        .args([
            "--query-compute-apps=pid,used_memory",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()?;
    let me = std::process::id().to_string();
    String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
        let (pid, mb) = l.split_once(',')?;
        (pid.trim() == me).then(|| mb.trim().parse().ok())?
    })
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn rust_side(a: &ModelBenchArgs) -> Result<Side> {
    tch::set_num_threads(a.torch_threads);
    tch::manual_seed(0);
    let device = parse_device(&a.device).map_err(anyhow::Error::msg)?;
    if device.is_cuda() {
        tch::Cuda::cudnn_set_benchmark(a.cudnn_benchmark);
    }
    let arch: Arch = a.arch.parse().map_err(anyhow::Error::msg)?;
    let vs = tch::nn::VarStore::new(device);
    let mut cfg = ModelConfig::new(arch, (0..14).map(|i| format!("c{i}")).collect());
    cfg.input_size = a.input;
    cfg.pooling = Pooling::Lse { r: 10.0 };
    let net = ChestNet::new(&vs.root(), cfg.clone());
    let train_layout = a.layout.or(ConvLayout::for_training(device));
    let mut adam = Adam::with_layout(&vs, 1e-4, 0.0, train_layout);
    let x = Tensor::randn([a.batch, 3, a.input, a.input], (Kind::Float, device));
    let y = Tensor::rand([a.batch, 14], (Kind::Float, device))
        .lt(0.2)
        .to_kind(Kind::Float);
    let mut buffers = GradBuffers::default();
    let mut step = || {
        let (_, grads) =
            net.loss_and_gradients(&x, &y, &Loss::Wcel, &adam.parameters(), &mut buffers);
        adam.update(&grads);
    };
    for _ in 0..a.warmup {
        step();
    }
    sync(device);
    let t = Instant::now();
    for _ in 0..a.steps {
        step();
    }
    sync(device);
    let train = (a.steps as i64 * a.batch) as f64 / t.elapsed().as_secs_f64();
    let mut infer_vs = tch::nn::VarStore::new(device);
    let infer_net = ChestNet::new(&infer_vs.root(), cfg);
    infer_vs.copy(&vs)?;
    relayout(
        &infer_vs,
        a.infer_layout.or(ConvLayout::for_inference(device)),
    );
    drop((net, adam, vs));
    let infer = tch::no_grad(|| {
        for _ in 0..a.warmup {
            let _ = infer_net.forward(&x, false);
        }
        sync(device);
        let t = Instant::now();
        for _ in 0..a.steps {
            let _ = infer_net.forward(&x, false);
        }
        sync(device);
        (a.steps as i64 * a.batch) as f64 / t.elapsed().as_secs_f64()
    });
    Ok(Side {
        train_images_per_s: train,
        infer_images_per_s: infer,
        peak_rss_mb: peak_rss_mb(),
        peak_gpu_mb: None,
        held_gpu_mb: device.is_cuda().then(held_gpu_mb).flatten(),
    })
}

pub fn run(a: ModelBenchArgs) -> Result<ExitCode> {
    if a.rust_only {
        println!("{}", serde_json::to_string(&rust_side(&a)?)?);
        return Ok(ExitCode::SUCCESS);
    }
    let device = parse_device(&a.device).map_err(anyhow::Error::msg)?;
    println!(
        "bench model: {} batch {} at {}x{}, f32, {} threads, device {}{}, our weights {:?} to train, {:?} to infer, {} timed steps after {} warm-up",
        a.arch,
        a.batch,
        a.input,
        a.input,
        a.torch_threads,
        a.device,
        if a.cudnn_benchmark { " (cudnn.benchmark)" } else { "" },
        a.layout.or(ConvLayout::for_training(device)),
        a.infer_layout.or(ConvLayout::for_inference(device)),
        a.steps,
        a.warmup
    );
    let mut rust_cmd = rust_command(&a)?;
    let py_args = python_args(&a);
    let rounds = a.rounds.max(1);
    let mut t = Tally::default();
    for round in 0..rounds {
        let reference = || -> Result<Side> {
            serde_json::from_value(crate::python_reference(&a.python, &a.script, &py_args)?)
                .context("PyTorch side: unexpected result line")
        };
        let (rust, py) = crate::abba(
            round,
            || parse_side(rust_cmd.output()?, "chestx (tch)"),
            reference,
        )?;
        eprintln!(
            "round {}/{rounds}: train step {:.2} vs {:.2} img/s, inference {:.2} vs {:.2}",
            round + 1,
            rust.train_images_per_s,
            py.train_images_per_s,
            rust.infer_images_per_s,
            py.infer_images_per_s
        );
        t.add(&rust, &py);
    }
    t.print(rounds);
    Ok(ExitCode::SUCCESS)
}

/// Our side, in its own process (peak memory is then each side's own): this binary again with
/// `--rust-only`.
fn rust_command(a: &ModelBenchArgs) -> Result<Command> {
    let mut rust_cmd = Command::new(std::env::current_exe()?);
    rust_cmd.args([
        "model",
        "--rust-only",
        "--arch",
        &a.arch,
        "--device",
        &a.device,
    ]);
    for (k, v) in [
        ("--batch", a.batch.to_string()),
        ("--input", a.input.to_string()),
        ("--steps", a.steps.to_string()),
        ("--warmup", a.warmup.to_string()),
        ("--torch-threads", a.torch_threads.to_string()),
    ] {
        rust_cmd.args([k, &v]);
    }
    if a.cudnn_benchmark {
        rust_cmd.arg("--cudnn-benchmark");
    }
    rust_cmd.args([
        "--layout",
        a.layout.name(),
        "--infer-layout",
        a.infer_layout.name(),
    ]);
    Ok(rust_cmd)
}

/// The PyTorch reference's arguments for the same network and settings.
fn python_args(a: &ModelBenchArgs) -> Vec<String> {
    let mut py_args = crate::flag_args(&[
        ("--arch", a.arch.to_ascii_lowercase()),
        ("--device", a.device.clone()),
        ("--batch", a.batch.to_string()),
        ("--input", a.input.to_string()),
        ("--steps", a.steps.to_string()),
        ("--warmup", a.warmup.to_string()),
        ("--threads", a.torch_threads.to_string()),
    ]);
    if a.cudnn_benchmark {
        py_args.push("--cudnn-benchmark".into());
    }
    py_args
}

/// One side's JSON result line.
fn parse_side(out: std::process::Output, who: &str) -> Result<Side> {
    if !out.status.success() {
        bail!(
            "{who} side failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("{who} side printed {text:?}"))
}

/// Both sides' numbers over the rounds.
#[derive(Default)]
struct Tally {
    train: Rounds,
    infer: Rounds,
    rss: Rounds,
    gpu: Vec<f64>,
    held: Rounds,
}

impl Tally {
    fn add(&mut self, rust: &Side, py: &Side) {
        for (r, ours, theirs) in [
            (
                &mut self.train,
                rust.train_images_per_s,
                py.train_images_per_s,
            ),
            (
                &mut self.infer,
                rust.infer_images_per_s,
                py.infer_images_per_s,
            ),
            (&mut self.rss, rust.peak_rss_mb, py.peak_rss_mb),
        ] {
            r.ours.push(ours);
            r.theirs.push(theirs);
        }
        self.gpu.extend(py.peak_gpu_mb);
        if let (Some(ours), Some(theirs)) = (rust.held_gpu_mb, py.held_gpu_mb) {
            self.held.ours.push(ours);
            self.held.theirs.push(theirs);
        }
    }

    fn print(&self, rounds: usize) {
        println!("{}", crate::header(rounds));
        println!("{}", self.train.row("train step img/s", 2));
        println!("{}", self.infer.row("inference img/s", 2));
        println!("{}", self.rss.row("peak RSS MB", 0));
        if !self.gpu.is_empty() {
            let g = crate::median(&self.gpu);
            println!("{:<26} {:>14} {:>14.0}", "peak GPU MB (torch)", "-", g);
        }
        if !self.held.ours.is_empty() {
            println!("{}", self.held.row("GPU MB held (nvidia-smi)", 0));
        }
    }
}

#[derive(Args, Clone)]
pub struct TrainBenchArgs {
    /// Folder of PNG radiographs (default: $CHESTX_DATA/nih/images).
    #[arg(long)]
    images: Option<PathBuf>,
    #[arg(long, default_value = "resnet50")]
    arch: String,
    #[arg(long, default_value_t = 8)]
    batch: usize,
    #[arg(long, default_value_t = 224)]
    input: i64,
    #[arg(long, default_value_t = 24)]
    steps: usize,
    /// Alternating rounds of each side, in ABBA order (medians are reported). Per-round ratios
    /// on a shared 2-core machine range ±15%, so a trustworthy figure takes about ten.
    #[arg(long, default_value_t = 6)]
    rounds: usize,
    /// Intra-op threads and decode workers for both sides.
    #[arg(long = "torch-threads", default_value_t = 2)]
    torch_threads: i32,
    /// cpu or cuda: where the step runs (decoding stays on the CPU on both sides).
    #[arg(long, default_value = "cpu")]
    device: String,
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
    #[arg(long, default_value = "benches/train_pytorch.py")]
    script: PathBuf,
    /// Run only the chestx side and print its images/s.
    #[arg(long, hide = true)]
    rust_only: bool,
}

/// Decode + augment + resize + normalize (the chestx loader, prefetching) + a training step.
fn rust_train_side(a: &TrainBenchArgs, dir: &std::path::Path) -> Result<f64> {
    use chestx_data::{epoch_order, Loader, LoaderConfig, Sample};
    tch::set_num_threads(a.torch_threads);
    tch::manual_seed(0);
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("no PNG images in {}", dir.display());
    }
    let samples: Vec<Sample> = files
        .iter()
        .map(|p| Sample {
            image: p.display().to_string(),
            path: p.clone(),
            labels: {
                let mut l = vec![0.0; 14];
                l[0] = 1.0;
                l
            },
            patient: 0,
        })
        .collect();
    let samples = std::sync::Arc::new(samples);
    let arch: Arch = a.arch.parse().map_err(anyhow::Error::msg)?;
    let device = parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let vs = tch::nn::VarStore::new(device);
    let mut cfg = ModelConfig::new(arch, (0..14).map(|i| format!("c{i}")).collect());
    cfg.input_size = a.input;
    let net = ChestNet::new(&vs.root(), cfg);
    let mut adam = Adam::new(&vs, 1e-4, 0.0);
    let mut buffers = GradBuffers::default();
    let columns: Vec<usize> = (0..14).collect();
    let (warm, mut done, mut epoch) = (2usize, 0usize, 0u64);
    let mut t0 = Instant::now();
    while done < a.steps + warm {
        let mut order = epoch_order(samples.len(), 0, epoch, true);
        // drop_last, as the reference does: its DataLoader never reads the films of a short batch.
        order.truncate(order.len() - order.len() % a.batch);
        let lc = LoaderConfig {
            batch_size: a.batch,
            input_size: a.input as u32,
            shuffle: true,
            augment: true,
            seed: 0,
            prefetch: 2,
            preprocess: chestx_image::Preprocess::Imagenet,
        };
        let loader = Loader::start(samples.clone(), order, 0, epoch, lc);
        for b in loader.batches.iter() {
            if b.n < a.batch {
                continue; // a film failed to decode
            }
            let (x, y) = chestx_infer::score::batch_tensors(&b, a.input, &columns, device);
            let (_, grads) =
                net.loss_and_gradients(&x, &y, &Loss::Wcel, &adam.parameters(), &mut buffers);
            adam.update(&grads);
            done += 1;
            if done == warm {
                sync(device);
                t0 = Instant::now();
            }
            if done >= a.steps + warm {
                break;
            }
        }
        epoch += 1;
    }
    sync(device);
    Ok((a.steps * a.batch) as f64 / t0.elapsed().as_secs_f64())
}

pub fn run_train_bench(a: TrainBenchArgs) -> Result<ExitCode> {
    let dir = a
        .images
        .clone()
        .unwrap_or_else(|| crate::data_dir().join("nih/images"));
    // Rayon decodes with the same number of threads the DataLoader gets as workers.
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(a.torch_threads as usize)
        .build_global();
    println!(
        "bench train: {} batch {} at {} px, PNGs from {}, {} threads (tch intra-op + decode workers), device {}, {} timed steps",
        a.arch, a.batch, a.input, dir.display(), a.torch_threads, a.device, a.steps
    );
    let args = crate::flag_args(&[
        ("--images", dir.display().to_string()),
        ("--device", a.device.clone()),
        ("--arch", a.arch.to_ascii_lowercase()),
        ("--batch", a.batch.to_string()),
        ("--input", a.input.to_string()),
        ("--steps", a.steps.to_string()),
        ("--threads", a.torch_threads.to_string()),
    ]);
    let rounds = a.rounds.max(1);
    if a.rust_only {
        for _ in 0..rounds {
            println!("{:.3}", rust_train_side(&a, &dir)?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut ips = Rounds::default();
    for round in 0..rounds {
        let reference = || -> Result<f64> {
            let v = crate::python_reference(&a.python, &a.script, &args)?;
            Ok(v["train_images_per_s"].as_f64().unwrap_or(f64::NAN))
        };
        let (ours, theirs) = crate::abba(round, || rust_train_side(&a, &dir), reference)?;
        eprintln!(
            "round {}/{rounds}: {ours:.2} vs {theirs:.2} img/s ({:.2}x)",
            round + 1,
            ours / theirs
        );
        ips.ours.push(ours);
        ips.theirs.push(theirs);
    }
    println!("{}", crate::header(rounds));
    println!("{}", ips.row("end-to-end train img/s", 2));
    Ok(ExitCode::SUCCESS)
}
