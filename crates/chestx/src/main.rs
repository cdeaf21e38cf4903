//! `chestx`: the command line. It parses arguments, wires the library crates together and reports
//! progress and errors; the science lives in the library crates.

mod auc;
mod bench;
mod bench_decode;
mod bench_model;
mod demo;
mod eval;
mod ingest;
mod label;
mod output;
mod predict;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "chestx",
    version,
    about = "ChestX-ray8, rebuilt: report mining, datasets, weakly supervised localization"
)]
struct Cli {
    /// Worker threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Label radiology reports with the 14 findings and No Finding (CheXpert 1/0/-1/blank convention).
    Label(label::LabelArgs),
    /// Score a labels CSV against gold labels: per-finding precision, recall, F1 and micro averages.
    LabelEval(label::LabelEvalArgs),
    /// Per-class ROC AUC with 95% bootstrap intervals for any model's predictions.
    Auc(auc::AucArgs),
    /// Train the weakly supervised classifier (backbone + transition + pooling + prediction layer).
    Train(train::TrainArgs),
    /// Convert released weights (.pth/.safetensors) to a backbone safetensors file for --init.
    ImportWeights(train::ImportArgs),
    /// Build a dataset from hospital exports: DICOM/PNG/JPEG → PNGs, Data_Entry.csv, patient-wise split,
    /// pseudonymized patients, labels from reports.
    Ingest(ingest::IngestArgs),
    /// Show a DICOM/PNG/JPEG file's key attributes and write a preview PNG.
    Inspect(ingest::InspectArgs),
    /// Write a phantom dataset: lesions with known boxes implanted into radiographs (NIH layout).
    Synth(train::SynthArgs),
    /// Evaluate a trained run: per-class AUC with CIs, ROC plots, localization table, overlays.
    Eval(eval::EvalArgs),
    /// Predict findings, heatmap boxes and overlays for new PNG/JPEG/DICOM images.
    Predict(predict::PredictArgs),
    /// The whole pipeline on phantoms in minutes: synth, label, train, eval, report.
    Demo(demo::DemoArgs),
    /// Benchmarks that print throughput on this machine.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    if let Some(n) = cli.threads {
        if let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
        {
            eprintln!("error: cannot set up {n} threads: {e}");
            return ExitCode::from(2);
        }
    }
    let result = match cli.command {
        Command::Label(a) => label::run_label(a),
        Command::LabelEval(a) => label::run_label_eval(a),
        Command::Auc(a) => auc::run(a),
        Command::Train(a) => train::run_train(a),
        Command::ImportWeights(a) => train::run_import(a),
        Command::Synth(a) => train::run_synth(a),
        Command::Ingest(a) => ingest::run_ingest(a),
        Command::Inspect(a) => ingest::run_inspect(a),
        Command::Eval(a) => eval::run_eval(a),
        Command::Predict(a) => predict::run_predict(a),
        Command::Demo(a) => demo::run_demo(a),
        Command::Bench(a) => bench::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// libtorch allocates each training step's activations (hundreds of MB for a ResNet-50 on a CPU) with
/// plain `malloc` and frees them when the step ends. glibc returns blocks above its mmap threshold to
/// the kernel at once, so the next step page-faults and zero-fills them all again. A fixed threshold
/// of 32 MiB (glibc's largest) and a high trim threshold keep freed blocks in the heap for reuse.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    // SAFETY: mallopt only sets allocator parameters; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}
