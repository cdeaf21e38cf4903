//! `chestx`: the command line. Commands that need no network run here, in a binary that never
//! loads libtorch; the model commands are handed, arguments untouched, to `chestx-torch` beside it.

use chestx_cli::{auc, ingest, label, merge, synth};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
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

/// The arguments of a model command, read by `chestx-torch` (which prints its help).
#[derive(Args)]
struct ModelArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<OsString>,
}

#[derive(Subcommand)]
enum Command {
    /// Label radiology reports with the 14 findings and No Finding (CheXpert 1/0/-1/blank convention).
    Label(label::LabelArgs),
    /// Score a labels CSV against gold labels: per-finding precision, recall, F1 and micro averages.
    LabelEval(label::LabelEvalArgs),
    /// Per-class ROC AUC with 95% bootstrap intervals for any model's predictions.
    Auc(auc::AucArgs),
    /// Build a dataset from hospital exports: DICOM/PNG/JPEG → PNGs, Data_Entry.csv, patient-wise split,
    /// pseudonymized patients, labels from reports.
    Ingest(ingest::IngestArgs),
    /// Join the shards of a sharded label, ingest or predict (`--shard I/N`) into the unsharded
    /// job's files, after checking that every input was covered exactly once.
    Merge(merge::MergeArgs),
    /// Show a DICOM/PNG/JPEG file's key attributes and write a preview PNG.
    Inspect(ingest::InspectArgs),
    /// Write a phantom dataset: lesions with known boxes implanted into radiographs (NIH layout).
    Synth(synth::SynthArgs),
    /// Train the weakly supervised classifier (backbone + transition + pooling + prediction layer).
    #[command(disable_help_flag = true)]
    Train(ModelArgs),
    /// Convert released weights (.pth/.safetensors) to a backbone safetensors file for --init.
    #[command(disable_help_flag = true)]
    ImportWeights(ModelArgs),
    /// Import a published model (torchxrayvision, CheXNet) whole: a model folder that predict,
    /// eval, serve and train --init accept like a run.
    #[command(disable_help_flag = true)]
    ImportModel(ModelArgs),
    /// Evaluate a trained run: per-class AUC with CIs, ROC plots, localization table, overlays.
    #[command(disable_help_flag = true)]
    Eval(ModelArgs),
    /// Predict findings, heatmap boxes and overlays for new PNG/JPEG/DICOM images.
    #[command(disable_help_flag = true)]
    Predict(ModelArgs),
    /// The whole pipeline on phantoms in minutes: synth, label, train, eval, report.
    #[command(disable_help_flag = true)]
    Demo(ModelArgs),
    /// Serve a trained run: JSON API (predict, label, model, health, metrics) and a web viewer.
    #[command(disable_help_flag = true)]
    Serve(ModelArgs),
}

/// OpenMP's wait policy, read once when libtorch's OpenMP runtime loads.
const OMP_WAIT_POLICY: &str = "OMP_WAIT_POLICY";

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = chestx_cli::output::set_threads(cli.threads) {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::Label(a) => label::run_label(a),
        Command::LabelEval(a) => label::run_label_eval(a),
        Command::Auc(a) => auc::run(a),
        Command::Ingest(a) => ingest::run_ingest(a),
        Command::Merge(a) => merge::run(a),
        Command::Inspect(a) => ingest::run_inspect(a),
        Command::Synth(a) => synth::run_synth(a),
        Command::Train(_)
        | Command::ImportWeights(_)
        | Command::ImportModel(_)
        | Command::Eval(_)
        | Command::Predict(_)
        | Command::Demo(_) => hand_to_torch_binary(false),
        Command::Serve(_) => hand_to_torch_binary(true),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Replace this process by `chestx-torch` (beside this binary) with the same arguments: signals,
/// exit status and output are then that command's own.
///
/// A server shares its cores between the network and the threads around it (decoding uploads,
/// drawing boxes, HTTP). libtorch's OpenMP workers spin between parallel regions by default, which
/// burns the CPU those threads need: with 8 clients on 2 cores the demo model served 21.3 films/s
/// spinning and 23.9 sleeping (`chestx-bench serve`). So `serve` runs with OpenMP's passive wait
/// unless the user chose a policy. It must be set before libtorch loads, hence here.
fn hand_to_torch_binary(serving: bool) -> anyhow::Result<ExitCode> {
    let me = std::env::current_exe()?;
    let torch = me.with_file_name(format!("chestx-torch{}", std::env::consts::EXE_SUFFIX));
    if !torch.is_file() {
        anyhow::bail!(
            "this command runs a network, which {} does: it is not beside {} (build both with `cargo build --release -p chestx`)",
            torch.display(),
            me.display()
        );
    }
    let mut cmd = std::process::Command::new(&torch);
    cmd.args(std::env::args_os().skip(1));
    if serving && std::env::var_os(OMP_WAIT_POLICY).is_none() {
        cmd.env(OMP_WAIT_POLICY, "PASSIVE");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let e = cmd.exec(); // returns only on failure
        anyhow::bail!("cannot start {}: {e}", torch.display())
    }
    #[cfg(not(unix))]
    {
        let status = cmd.status()?;
        Ok(ExitCode::from(
            status.code().unwrap_or(2).clamp(0, 255) as u8
        ))
    }
}
