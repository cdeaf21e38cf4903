//! `chestx-torch`: the commands of `chestx` that run a network (train, import-weights,
//! import-model, eval, predict, demo, serve). `chestx` hands these commands here with their arguments untouched; this binary,
//! unlike `chestx`, links libtorch.

mod demo;
mod eval;
mod import;
mod predict;
mod serve;
mod train;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "chestx",
    bin_name = "chestx",
    version,
    about = "ChestX-ray8, rebuilt: the commands that run a network"
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
    /// Train the weakly supervised classifier (backbone + transition + pooling + prediction layer).
    Train(train::TrainArgs),
    /// Convert released weights (.pth/.safetensors) to a backbone safetensors file for --init.
    ImportWeights(import::ImportArgs),
    /// Import a published model (torchxrayvision, CheXNet) whole: a model folder that predict,
    /// eval, serve and train --init accept like a run.
    ImportModel(import::ImportModelArgs),
    /// Evaluate a trained run: per-class AUC with CIs, ROC plots, localization table, overlays.
    Eval(eval::EvalArgs),
    /// Predict findings, heatmap boxes and overlays for new PNG/JPEG/DICOM images.
    Predict(predict::PredictArgs),
    /// The whole pipeline on phantoms in minutes: synth, label, train, eval, report.
    Demo(demo::DemoArgs),
    /// Serve a trained run: JSON API (predict, label, model, health, metrics) and a web viewer.
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    keep_freed_memory();
    let cli = Cli::parse();
    if let Err(e) = chestx_cli::output::set_threads(cli.threads) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Train(a) => train::run_train(a),
        Command::ImportWeights(a) => import::run_import(a),
        Command::ImportModel(a) => import::run_import_model(a),
        Command::Eval(a) => eval::run_eval(a),
        Command::Predict(a) => predict::run_predict(a),
        Command::Demo(a) => demo::run_demo(a),
        Command::Serve(a) => serve::run_serve(a),
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
