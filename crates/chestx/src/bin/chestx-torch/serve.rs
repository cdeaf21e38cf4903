//! `chestx serve`: the JSON API and web viewer on a trained run (see the `chestx-serve` crate).

use anyhow::{bail, Context, Result};
use chestx_model::parse_device;
use chestx_serve::metrics::Metrics;
use chestx_serve::{AppState, Limits, ModelSpec, RequestLog, ThresholdSource};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct ServeArgs {
    /// The run folder `chestx train` wrote.
    #[arg(long)]
    run: PathBuf,
    /// Address to listen on. Anything but loopback needs --token-file (or --insecure).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[arg(long, default_value = "auto")]
    device: String,
    /// A file holding the token clients must send as `Authorization: Bearer <token>` on /v1/*.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Serve on a non-loopback address without a token.
    #[arg(long)]
    insecure: bool,
    /// Operating thresholds: a `thresholds.json` from `chestx eval`, or one probability for every
    /// finding. Default: Youden's J on the run's validation split, computed at start-up.
    #[arg(long)]
    thresholds: Option<String>,
    /// Also show an evaluation (`chestx eval`'s output folder): AUC table, ROC, overlay gallery.
    #[arg(long)]
    eval: Option<PathBuf>,
    /// Checkpoint (default: RUN/best.safetensors).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Films waiting for the model at most; past it requests get 503 with Retry-After.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    queue: u32,
    /// Most films the model scores in one pass.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    max_batch: u32,
    /// Largest request body in MiB.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    max_body_mb: u32,
    /// Longest a request may take, in seconds, queueing included.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3600))]
    timeout: u32,
    /// Log one line per request (method, route, status, milliseconds; never bodies or file names).
    #[arg(long)]
    access_log: bool,
    #[command(flatten)]
    boxes: crate::eval::BoxArgs,
}

pub fn run_serve(a: ServeArgs) -> Result<ExitCode> {
    let token = a.token_file.as_deref().map(read_token).transpose()?;
    chestx_serve::check_bind(&a.addr, token.is_some(), a.insecure).map_err(anyhow::Error::msg)?;
    let spec = ModelSpec {
        run: a.run.clone(),
        checkpoint: a.checkpoint.clone(),
        device: parse_device(&a.device).map_err(anyhow::Error::msg)?,
        thresholds: threshold_source(a.thresholds.as_deref())?,
        localizer: a.boxes.localizer()?,
    };
    let eval = a
        .eval
        .as_deref()
        .map(chestx_serve::eval_view::load)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let metrics = Arc::new(Metrics::default());
    let batches = metrics.batch_size.clone();
    eprintln!("loading {} …", a.run.display());
    let (queue, info) = chestx_serve::model::start(
        spec,
        a.queue as usize,
        a.max_batch as usize,
        Box::new(move |n| batches.observe(n as f64)),
    )
    .map_err(anyhow::Error::msg)?;
    let limits = Limits {
        max_body: (a.max_body_mb as usize) << 20,
        timeout: Duration::from_secs(a.timeout as u64),
        max_inflight: (a.queue + 2 * a.max_batch) as usize,
        ..Limits::default()
    };
    let log: Option<chestx_serve::api::RequestObserver> = a.access_log.then(|| {
        Arc::new(|r: &RequestLog| {
            eprintln!(
                "{} {} {} {:.1} ms{}",
                r.method,
                r.route,
                r.status,
                r.millis,
                r.error.map_or_else(String::new, |k| format!(" ({k})"))
            )
        }) as _
    });
    eprintln!(
        "{}: {} findings, thresholds: {}",
        info.architecture,
        info.classes.len(),
        info.thresholds.source
    );
    let mut state = AppState::new(queue, info, limits, token, metrics, log);
    if let Some(view) = eval {
        eprintln!(
            "showing the evaluation in {}",
            a.eval.as_deref().unwrap_or(Path::new("")).display()
        );
        state = state.with_eval(view);
    }
    let state = Arc::new(state);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(a.addr)
            .await
            .with_context(|| format!("cannot listen on {}", a.addr))?;
        let local = listener.local_addr()?;
        eprintln!(
            "serving on http://{local}/ (the viewer), API at http://{local}/v1/; Ctrl-C stops"
        );
        axum::serve(listener, chestx_serve::router(state))
            .with_graceful_shutdown(shutdown())
            .await
            .context("the server stopped")
    })?;
    eprintln!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn read_token(path: &Path) -> Result<String> {
    let t = std::fs::read_to_string(path)
        .with_context(|| format!("--token-file {}", path.display()))?;
    let t = t.trim().to_string();
    if t.len() < 16 {
        bail!(
            "--token-file {}: the token is {} characters; use at least 16",
            path.display(),
            t.len()
        );
    }
    Ok(t)
}

fn threshold_source(arg: Option<&str>) -> Result<ThresholdSource> {
    Ok(match arg {
        None => ThresholdSource::Validation,
        Some(s) => match s.parse::<f32>() {
            Ok(p) if (0.0..=1.0).contains(&p) => ThresholdSource::Fixed(p),
            Ok(p) => bail!("--thresholds {p}: a probability is between 0 and 1"),
            Err(_) => ThresholdSource::File(PathBuf::from(s)),
        },
    })
}
