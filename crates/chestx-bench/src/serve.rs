//! `chestx-bench serve`: the service under load. One client sending films one at a time, then
//! several clients at once, against the same in-process server on this machine: throughput,
//! p50/p99 latency, errors, batch sizes and resident memory over the run. Batching pays when the
//! concurrent throughput clearly beats the one-at-a-time client's.

use anyhow::{bail, Context, Result};
use chestx_infer::heat::Localizer;
use chestx_serve::metrics::Metrics;
use chestx_serve::{AppState, Limits, ModelSpec, ThresholdSource};
use clap::Args;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ServeBenchArgs {
    /// A run folder (e.g. the demo's `run/`).
    #[arg(long)]
    run: PathBuf,
    /// Folder of PNG films sent in turn (default: $CHESTX_DATA/nih/images).
    #[arg(long)]
    films: Option<PathBuf>,
    /// Concurrent clients of the second phase.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Requests per concurrent client.
    #[arg(long, default_value_t = 200)]
    requests: usize,
    /// Requests of the one-at-a-time client.
    #[arg(long, default_value_t = 200)]
    sequential: usize,
    /// Most films per model pass.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
}

struct Phase {
    seconds: f64,
    latencies: Vec<f64>,
    errors: usize,
}

impl Phase {
    fn line(&self, name: &str) -> String {
        let mut l = self.latencies.clone();
        l.sort_by(f64::total_cmp);
        let q = |p: f64| {
            l.get(((l.len() as f64 - 1.0) * p).round() as usize)
                .copied()
                .unwrap_or(f64::NAN)
        };
        format!(
            "{name:<28} {:>6} requests {:>7.1} s {:>7.2} films/s   p50 {:>7.1} ms   p99 {:>7.1} ms   errors {}",
            l.len() + self.errors,
            self.seconds,
            l.len() as f64 / self.seconds,
            q(0.5) * 1e3,
            q(0.99) * 1e3,
            self.errors
        )
    }
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

pub fn run(a: ServeBenchArgs) -> Result<()> {
    let bodies = Arc::new(read_films(&a)?);
    let batches = Arc::new(Mutex::new(Vec::new()));
    let url = start_server(&a, bodies.len(), batches.clone())?;
    // Warm-up: the first passes allocate.
    load(&url, &bodies, 1, 4);
    let rss_before = rss_mb();
    batches.lock().unwrap().clear();
    let one = load(&url, &bodies, 1, a.sequential);
    let sequential_batches = std::mem::take(&mut *batches.lock().unwrap());
    let rss_mid = rss_mb();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_rss(stop.clone());
    let many = load(&url, &bodies, a.clients, a.requests);
    stop.store(true, Ordering::Relaxed);
    let (rss_peak, rss_samples) = peak.join().unwrap();
    let concurrent_batches = std::mem::take(&mut *batches.lock().unwrap());
    println!("{}", one.line("one client, one at a time"));
    println!("{}", many.line(&format!("{} clients at once", a.clients)));
    let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len().max(1) as f64;
    println!(
        "mean batch: {:.2} (one client) vs {:.2} ({} clients)",
        mean(&sequential_batches),
        mean(&concurrent_batches),
        a.clients
    );
    let rate = |p: &Phase| p.latencies.len() as f64 / p.seconds;
    println!(
        "throughput ratio (concurrent / one at a time): {:.2}x",
        rate(&many) / rate(&one)
    );
    let quarter = rss_samples.len() / 4;
    println!(
        "resident memory MB: {rss_before:.0} before, {rss_mid:.0} after the one-client phase, {:.0} / {:.0} in the first / last quarter of the concurrent phase (peak {rss_peak:.0})",
        rss_samples.get(quarter).copied().unwrap_or(f64::NAN),
        rss_samples.last().copied().unwrap_or(f64::NAN)
    );
    if one.errors + many.errors > 0 {
        bail!("{} requests failed", one.errors + many.errors);
    }
    Ok(())
}

fn read_films(a: &ServeBenchArgs) -> Result<Vec<Vec<u8>>> {
    let dir = a.films.clone().unwrap_or_else(|| {
        std::env::var_os("CHESTX_DATA")
            .map_or_else(|| PathBuf::from("../shared/data"), PathBuf::from)
            .join("nih/images")
    });
    let mut films: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| dir.display().to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .collect();
    films.sort();
    if films.is_empty() {
        bail!("{}: no PNG films", dir.display());
    }
    println!("{} films from {}", films.len(), dir.display());
    Ok(films.iter().map(std::fs::read).collect::<Result<_, _>>()?)
}

/// The service on an ephemeral loopback port, in this process; its predict URL.
fn start_server(
    a: &ServeBenchArgs,
    films: usize,
    batches: Arc<Mutex<Vec<usize>>>,
) -> Result<String> {
    let spec = ModelSpec {
        run: a.run.clone(),
        checkpoint: None,
        device: tch::Device::Cpu,
        thresholds: ThresholdSource::Validation,
        localizer: Localizer::regions(),
    };
    let observe = Box::new(move |n| batches.lock().unwrap().push(n));
    let (queue, info) =
        chestx_serve::model::start(spec, 64, a.max_batch, observe).map_err(anyhow::Error::msg)?;
    println!(
        "serve bench: {} ({}px), {films} films, {} threads",
        info.architecture,
        info.input_size,
        rayon::current_num_threads()
    );
    let metrics = Arc::new(Metrics::default());
    let state = Arc::new(AppState::new(
        queue,
        info,
        Limits::default(),
        None,
        metrics,
        None,
    ));
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let url = format!("http://{}/v1/predict", listener.local_addr()?);
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
    Ok(url)
}

/// `clients` threads each sending `requests` films, one after another.
fn load(url: &str, bodies: &Arc<Vec<Vec<u8>>>, clients: usize, requests: usize) -> Phase {
    let started = Instant::now();
    let results: Vec<(Vec<f64>, usize)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|c| {
                let bodies = bodies.clone();
                s.spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(300))
                        .build()
                        .unwrap();
                    let (mut lat, mut errors) = (Vec::new(), 0);
                    for i in 0..requests {
                        let body = bodies[(c * 7919 + i) % bodies.len()].clone();
                        let t = Instant::now();
                        let ok = client
                            .post(url)
                            .header("content-type", "image/png")
                            .body(body)
                            .send()
                            .is_ok_and(|r| r.status().is_success() && r.bytes().is_ok());
                        if ok {
                            lat.push(t.elapsed().as_secs_f64());
                        } else {
                            errors += 1;
                        }
                    }
                    (lat, errors)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    Phase {
        seconds: started.elapsed().as_secs_f64(),
        latencies: results.iter().flat_map(|r| r.0.iter().copied()).collect(),
        errors: results.iter().map(|r| r.1).sum(),
    }
}

/// Resident memory every 250 ms until `stop`: (peak, samples).
fn watch_rss(stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(f64, Vec<f64>)> {
    std::thread::spawn(move || {
        let mut samples = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            samples.push(rss_mb());
            std::thread::sleep(Duration::from_millis(250));
        }
        (samples.iter().copied().fold(0.0, f64::max), samples)
    })
}
