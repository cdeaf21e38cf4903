//! `chestx-bench`: throughput benchmarks that print their numbers on this machine, each next to a
//! Python reference (PyTorch, PIL) run side by side. Kept out of the product: `chestx` ships no
//! benchmark code. Run as `cargo run --release -p chestx-bench -- <model|train|decode|label|serve|audit>`.

mod audit;
mod decode;
mod model;
mod serve;

use anyhow::{bail, Context, Result};
use chestx_cli::label::write_row;
use chestx_report::{read_inputs, Labeler, ReadOptions};
use clap::{Parser, Subcommand};
use rayon::prelude::*;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "chestx-bench",
    about = "chestx benchmarks next to Python references"
)]
struct BenchArgs {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Training-step and inference images/s of the network (tch) next to PyTorch, one invocation.
    Model(crate::model::ModelBenchArgs),
    /// End-to-end training images/s on real PNGs (decode + augment + step) next to PyTorch + DataLoader.
    Train(crate::model::TrainBenchArgs),
    /// Decode + resize + normalize the NIH originals next to PIL + torchvision, same threads.
    Decode(crate::decode::DecodeBenchArgs),
    /// `chestx serve` under load: one client at a time, then several at once (batching, backpressure, memory).
    Serve(crate::serve::ServeBenchArgs),
    /// `chestx auc --by sex,view,age`'s subgroup AUCs next to scikit-learn's roc_auc_score.
    Audit(crate::audit::AuditBenchArgs),
    /// Label the OpenI development reports, repeated, and print reports/s (one thread and all threads).
    Label {
        /// Reports to label (default: $CHESTX_DATA/openi/reports.csv, else ../shared/data/openi/reports.csv).
        #[arg(long)]
        reports: Option<PathBuf>,
        /// Repeat the reports until at least this many are labelled.
        #[arg(long, default_value_t = 200_000)]
        min_reports: usize,
    },
}

/// Run a Python reference script of a side-by-side benchmark and parse the JSON object on the last
/// line of its output.
pub fn python_reference(
    python: &std::path::Path,
    script: &std::path::Path,
    args: &[String],
) -> Result<serde_json::Value> {
    let out = std::process::Command::new(python)
        .arg(script)
        .args(args)
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (make it with scripts/setup-venv.sh)",
                python.display()
            )
        })?;
    if !out.status.success() {
        bail!(
            "Python side ({}) failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or("{}"))
        .with_context(|| format!("{}: no JSON result line", script.display()))
}

/// Side-by-side figures from alternating rounds (ours then theirs, theirs then ours, ...: ABBA, so
/// a drift of the machine's speed favours neither side): on a shared or throttled machine one round
/// of each can differ by ±10% from the next, so each side reports its median and the ratio's spread
/// across rounds is printed with it.
#[derive(Default)]
pub struct Rounds {
    pub ours: Vec<f64>,
    pub theirs: Vec<f64>,
}

impl Rounds {
    /// One table row: each side's median, the ratio of medians, and the per-round ratios' range and
    /// median.
    pub fn row(&self, label: &str, decimals: usize) -> String {
        let (a, b) = (median(&self.ours), median(&self.theirs));
        let ratios: Vec<f64> = self
            .ours
            .iter()
            .zip(&self.theirs)
            .map(|(x, y)| x / y)
            .collect();
        let lo = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
        let hi = ratios.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        // The median of the per-round ratios pairs each round with its neighbour in time, so a slow
        // drift of the machine's speed cancels; the ratio of medians does not pair.
        let spread = if ratios.len() > 1 {
            format!(
                "   (rounds {lo:.2}x to {hi:.2}x, median {:.2}x)",
                median(&ratios)
            )
        } else {
            String::new()
        };
        format!(
            "{label:<26} {a:>14.decimals$} {b:>14.decimals$} {:>7.2}x{spread}",
            a / b
        )
    }
}

/// Both sides of round `round`: ours first in even rounds, theirs first in odd ones (ABBA), so a
/// drift of the machine's speed during a benchmark favours neither side.
pub fn abba<A, B>(
    round: usize,
    ours: impl FnOnce() -> Result<A>,
    theirs: impl FnOnce() -> Result<B>,
) -> Result<(A, B)> {
    if round.is_multiple_of(2) {
        let a = ours()?;
        Ok((a, theirs()?))
    } else {
        let b = theirs()?;
        Ok((ours()?, b))
    }
}

/// The median (mean of the middle two for an even count); NaN for none.
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// The header over [`Rounds::row`] lines.
pub fn header(rounds: usize) -> String {
    format!(
        "{:<26} {:>14} {:>14} {:>8}   medians of {rounds} alternating round(s)",
        "", "chestx (tch)", "PyTorch", "ratio"
    )
}

/// `--flag value` pairs as one argument list (for the Python references).
pub fn flag_args(pairs: &[(&str, String)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| [k.to_string(), v.clone()])
        .collect()
}

pub fn data_dir() -> PathBuf {
    std::env::var_os("CHESTX_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("../shared/data"))
}

fn main() -> ExitCode {
    let a = BenchArgs::parse();
    if let Err(e) = chestx_cli::output::set_threads(a.threads) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    match run(a.what) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(what: BenchWhat) -> Result<ExitCode> {
    match what {
        BenchWhat::Label {
            reports,
            min_reports,
        } => bench_label(reports, min_reports),
        BenchWhat::Model(m) => crate::model::run(m),
        BenchWhat::Decode(d) => crate::decode::run(d),
        BenchWhat::Train(t) => crate::model::run_train_bench(t),
        BenchWhat::Audit(a) => crate::audit::run(a).map(|()| ExitCode::SUCCESS),
        BenchWhat::Serve(s) => crate::serve::run(s).map(|()| ExitCode::SUCCESS),
    }
}

fn bench_label(reports: Option<PathBuf>, min_reports: usize) -> Result<ExitCode> {
    let path = reports.unwrap_or_else(|| data_dir().join("openi/reports.csv"));
    let base: Vec<_> = read_inputs(std::slice::from_ref(&path), &ReadOptions::default())
        .into_iter()
        .filter_map(Result::ok)
        .collect();
    if base.is_empty() {
        bail!("no reports read from {}", path.display());
    }
    let reps = min_reports.div_ceil(base.len());
    let all: Vec<_> = (0..reps).flat_map(|_| base.iter().cloned()).collect();
    let bytes: usize = all.iter().map(|r| r.text_len()).sum();
    let labeler = Labeler::with_defaults();
    // Label and format each CSV row, as `chestx label` does; reading is not timed.
    let work = |r: &chestx_report::Report| -> usize {
        let l = labeler.label(r);
        let mut w = csv::Writer::from_writer(Vec::with_capacity(64));
        write_row(&mut w, &r.id, &l, None).expect("in-memory write");
        w.into_inner().map(|v| v.len()).unwrap_or(0)
    };
    // Warm-up.
    all.iter().take(2_000).for_each(|r| {
        work(r);
    });
    println!(
        "bench label: {} reports ({} distinct from {}), {:.1} MB of text",
        all.len(),
        base.len(),
        path.display(),
        bytes as f64 / 1e6
    );
    let t = Instant::now();
    let n1 = all.len().min(50_000);
    let out1: usize = all[..n1].iter().map(work).sum();
    let one = n1 as f64 / t.elapsed().as_secs_f64();
    let threads = rayon::current_num_threads();
    let t = Instant::now();
    let out: usize = all.par_iter().map(work).sum();
    let secs = t.elapsed().as_secs_f64();
    let many = all.len() as f64 / secs;
    println!("  1 thread : {one:>10.0} reports/s");
    println!("  {threads} threads: {many:>10.0} reports/s  ({:.2} s for {} reports, {:.0} MB/s, {:.2}x one thread)", secs, all.len(), bytes as f64 / secs / 1e6, many / one);
    println!(
        "  goal     : {:>10} reports/s -> {}",
        100_000,
        if many >= 100_000.0 { "met" } else { "NOT met" }
    );
    std::hint::black_box((out, out1));
    Ok(ExitCode::SUCCESS)
}
