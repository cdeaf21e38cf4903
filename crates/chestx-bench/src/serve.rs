//! `chestx-bench serve`: the service under load. One client sending films one at a time, then
//! several clients at once, against the same in-process server on this machine: throughput,
//! p50/p99 latency, errors, batch sizes and resident memory over the run. Batching pays when the
//! concurrent throughput clearly beats the one-at-a-time client's.

use anyhow::{bail, Context, Result};
use chestx_infer::heat::Localizer;
use chestx_serve::film::HeatmapChoice;
use chestx_serve::metrics::Metrics;
use chestx_serve::model::FilmInput;
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
    /// Heatmaps asked for: `positive` (the API's default: findings called present) or `all` (what
    /// the viewer asks for).
    #[arg(long, default_value = "positive", value_parser = ["positive", "all", "none"])]
    heatmaps: String,
}

struct Phase {
    seconds: f64,
    latencies: Vec<f64>,
    errors: usize,
    /// Answers with at least one finding called present.
    positive: usize,
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
            "{name:<28} {:>6} requests {:>7.1} s {:>7.2} films/s   p50 {:>7.1} ms   p99 {:>7.1} ms   errors {}   with a finding called {}",
            l.len() + self.errors,
            self.seconds,
            l.len() as f64 / self.seconds,
            q(0.5) * 1e3,
            q(0.99) * 1e3,
            self.errors,
            self.positive
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
    as_chestx_serve_runs()?;
    let bodies = Arc::new(read_films(&a)?);
    profile(&a, &bodies)?;
    let batches = Arc::new(Mutex::new(Vec::new()));
    let url = start_server(&a, bodies.len(), batches.clone())?;
    // Warm-up: the first passes allocate.
    load(&url, &bodies, 1, 4);
    let rss_before = rss_mb();
    batches.lock().unwrap().clear();
    let cpu = cpu_by_thread();
    let one = load(&url, &bodies, 1, a.sequential);
    println!("one at a time: {}", cpu_line(&cpu));
    let cpu = cpu_by_thread();
    let sequential_batches = std::mem::take(&mut *batches.lock().unwrap());
    let rss_mid = rss_mb();
    let stop = Arc::new(AtomicBool::new(false));
    let peak = watch_rss(stop.clone());
    let many = load(&url, &bodies, a.clients, a.requests);
    stop.store(true, Ordering::Relaxed);
    println!("{} clients: {}", a.clients, cpu_line(&cpu));
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

/// `chestx serve` runs libtorch's OpenMP with the passive wait policy unless the user chose one
/// (see the `chestx` binary); the policy is read when libtorch loads, so this bench re-runs itself
/// with it set, to measure the server as it runs.
fn as_chestx_serve_runs() -> Result<()> {
    const POLICY: &str = "OMP_WAIT_POLICY";
    match std::env::var(POLICY) {
        Ok(p) => {
            println!("{POLICY}={p}");
            Ok(())
        }
        Err(_) => {
            use std::os::unix::process::CommandExt;
            let e = std::process::Command::new(std::env::current_exe()?)
                .args(std::env::args_os().skip(1))
                .env(POLICY, "PASSIVE")
                .exec();
            bail!("cannot re-run the bench with {POLICY} set: {e}")
        }
    }
}

/// Where one prediction's time goes, outside the server: decoding and preparing a film, the model's
/// pass per film alone and per film in a full batch (what batching can save), and turning scores into
/// the response, both for every class's heatmap (what the viewer asks for) and for the maps of
/// findings called present only (the API's default). Medians of several passes, wall milliseconds.
fn profile(a: &ServeBenchArgs, bodies: &[Vec<u8>]) -> Result<()> {
    let (mut score, info) = chestx_serve::model::load(spec(a)).map_err(anyhow::Error::msg)?;
    let prepare = |b: &[u8]| {
        chestx_serve::film::prepare(b, info.input_size, info.preprocess, false)
            .map_err(|e| anyhow::anyhow!("{e:?}"))
    };
    let films: Vec<_> = (bodies.iter().take(a.max_batch.max(1)))
        .map(|b| prepare(b))
        .collect::<Result<_>>()?;
    let n = films.len();
    let ms = |f: &mut dyn FnMut(), times: usize| {
        let mut v: Vec<f64> = (0..times)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut i = 0;
    let decode = ms(
        &mut || {
            i += 1;
            drop(prepare(&bodies[i % bodies.len()]));
        },
        5,
    );
    println!("per film, ms: prepare {decode:.1}");
    for all_maps in [true, false] {
        let inputs = |k: usize| -> Vec<FilmInput> {
            (films.iter().take(k))
                .map(|f| FilmInput {
                    input: f.input.clone(),
                    all_maps,
                })
                .collect()
        };
        let _ = score(inputs(1)); // warm-up
        let one = ms(&mut || drop(score(inputs(1))), 5);
        let full = ms(&mut || drop(score(inputs(n))), 3) / n as f64;
        let scored = score(inputs(1))
            .pop()
            .unwrap()
            .map_err(anyhow::Error::msg)?;
        let choice = match all_maps {
            true => HeatmapChoice::All,
            false => HeatmapChoice::Positive,
        };
        let finish = ms(
            &mut || {
                let (film, s) = (films[0].info.clone(), scored.clone());
                drop(chestx_serve::film::finish(&info, film, None, s, choice));
            },
            5,
        );
        println!(
            "  {:<34} model alone {one:.1}, in a batch of {n} {full:.1} ({:.2}x) | finish {finish:.1}",
            match all_maps {
                true => "every class's heatmap (viewer):",
                false => "maps of findings called present:",
            },
            one / full
        );
    }
    Ok(())
}

fn spec(a: &ServeBenchArgs) -> ModelSpec {
    ModelSpec {
        run: a.run.clone(),
        checkpoint: None,
        device: tch::Device::Cpu,
        thresholds: ThresholdSource::Validation,
        localizer: Localizer::regions(),
    }
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
    let spec = spec(a);
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
    let url = format!(
        "http://{}/v1/predict?heatmaps={}",
        listener.local_addr()?,
        a.heatmaps
    );
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
    let results: Vec<(Vec<f64>, usize, usize)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..clients)
            .map(|c| {
                let bodies = bodies.clone();
                s.spawn(move || {
                    let client = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(300))
                        .build()
                        .unwrap();
                    let (mut lat, mut errors, mut positive) = (Vec::new(), 0, 0);
                    for i in 0..requests {
                        let body = bodies[(c * 7919 + i) % bodies.len()].clone();
                        let t = Instant::now();
                        let answer = client
                            .post(url)
                            .header("content-type", "image/png")
                            .body(body)
                            .send()
                            .ok()
                            .filter(|r| r.status().is_success())
                            .and_then(|r| r.bytes().ok());
                        match answer {
                            Some(json) => {
                                lat.push(t.elapsed().as_secs_f64());
                                let called = br#""positive":true"#;
                                positive +=
                                    json.windows(called.len()).any(|w| w == called) as usize;
                            }
                            None => errors += 1,
                        }
                    }
                    (lat, errors, positive)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    Phase {
        seconds: started.elapsed().as_secs_f64(),
        latencies: results.iter().flat_map(|r| r.0.iter().copied()).collect(),
        errors: results.iter().map(|r| r.1).sum(),
        positive: results.iter().map(|r| r.2).sum(),
    }
}

/// CPU seconds used so far by each of this process's threads, summed by thread name.
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let tick = 100.0; // USER_HZ, fixed at 100 on Linux
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let read = |f: &str| std::fs::read_to_string(task.path().join(f)).unwrap_or_default();
        let (comm, stat) = (read("comm"), read("stat"));
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(vec![], |(_, r)| r.split_whitespace().collect());
        let t = |i: usize| {
            rest.get(i - 3)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        *out.entry(comm.trim().to_string()).or_insert(0.0) += (t(14) + t(15)) / tick;
    }
    out
}

/// CPU seconds by thread name between two readings, largest first.
fn cpu_line(before: &std::collections::BTreeMap<String, f64>) -> String {
    let after = cpu_by_thread();
    let mut d: Vec<(String, f64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v >= 0.05)
        .collect();
    d.sort_by(|a, b| b.1.total_cmp(&a.1));
    let parts: Vec<String> = d.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
    format!("CPU s by thread: {}", parts.join(", "))
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
