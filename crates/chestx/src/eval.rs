//! `chestx eval`: AUC table, ROC plots, the localization table and overlays for a trained run.

use crate::output::progress;
use anyhow::Result;
use chestx_data::Split;
use chestx_model::parse_device;
use chestx_train::evaluate::{evaluate, markdown, EvalOptions};
use chestx_train::heat::{CamLayers, Flips, HeatOptions, HeatmapKind};
use chestx_train::Run;
use clap::{Args, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Clone, Copy, ValueEnum)]
pub enum SplitArg {
    Train,
    Val,
    Test,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum HeatmapArg {
    Cam,
    GradCam,
    LayerCam,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum FlipsArg {
    None,
    Mirror,
    Both,
}

/// How heatmaps are made, shared by `eval` and `predict`.
#[derive(Args, Clone)]
pub struct HeatArgs {
    /// Heatmap for the boxes: the paper's CAM, Grad-CAM on the backbone's last feature map, or
    /// LayerCAM on the stages named by --cam-layers.
    #[arg(long, value_enum, default_value_t = HeatmapArg::Cam)]
    heatmap: HeatmapArg,
    /// LayerCAM's backbone stages (1–4: a ResNet's layer1..layer4; other backbones have one).
    /// Several are each scaled to [0, 1] and multiplied: `2,4` keeps layer4's choice of region with
    /// layer2's finer placement. Default: the last stage.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=8))]
    cam_layers: Vec<u8>,
    /// Also run flipped copies of each image and average their heatmaps, flipped back, with its own:
    /// cancels the offset of detectors that fire beside a lesion rather than on it (mirror: left–right;
    /// both: also up–down).
    #[arg(long, value_enum, default_value_t = FlipsArg::None)]
    flips: FlipsArg,
}

impl From<&HeatArgs> for HeatOptions {
    fn from(h: &HeatArgs) -> Self {
        let layers: Vec<usize> = h.cam_layers.iter().map(|&l| l as usize).collect();
        HeatOptions {
            kind: match h.heatmap {
                HeatmapArg::Cam => HeatmapKind::Cam,
                HeatmapArg::GradCam => HeatmapKind::GradCam,
                HeatmapArg::LayerCam => HeatmapKind::LayerCam,
            },
            // The parser keeps stages within 1..=8, all CamLayers accepts.
            layers: CamLayers::new(&layers).unwrap_or_default(),
            flips: match h.flips {
                FlipsArg::None => Flips::None,
                FlipsArg::Mirror => Flips::Mirror,
                FlipsArg::Both => Flips::Both,
            },
        }
    }
}

#[derive(Args)]
pub struct EvalArgs {
    /// Run folder written by `chestx train`.
    #[arg(long)]
    run: PathBuf,
    /// Dataset to evaluate on (default: the run's own).
    #[arg(long)]
    dataset: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Box list (BBox_List_2017.csv layout) instead of the dataset's own.
    #[arg(long)]
    boxes: Option<PathBuf>,
    /// Checkpoint file (default: RUN/best.safetensors).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Heatmap thresholds (0–255) whose boxes are pooled.
    #[arg(long, value_delimiter = ',', default_value = "60,180")]
    heat_thresholds: Vec<u8>,
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    #[arg(long, default_value_t = 8)]
    overlays: usize,
    /// Output folder (default: RUN/eval-<split>).
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[arg(long, default_value = "auto")]
    device: String,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[command(flatten)]
    heat: HeatArgs,
}

pub fn run_eval(a: EvalArgs) -> Result<ExitCode> {
    let device = parse_device(&a.device).map_err(anyhow::Error::msg)?;
    let mut run = Run::open(&a.run, device)?;
    if let Some(d) = &a.dataset {
        run.config.dataset = d.clone();
    }
    let split = match a.split {
        SplitArg::Train => Split::Train,
        SplitArg::Val => Split::Val,
        SplitArg::Test => Split::Test,
    };
    let out = a.output.clone().unwrap_or_else(|| {
        a.run
            .join(format!("eval-{}", format!("{split:?}").to_lowercase()))
    });
    let opts = EvalOptions {
        split,
        checkpoint: a.checkpoint.clone(),
        heat_thresholds: a.heat_thresholds.clone(),
        bootstrap: a.bootstrap,
        seed: 0,
        overlays: a.overlays,
        batch_size: a.batch,
        boxes: a.boxes.clone(),
        heat: (&a.heat).into(),
    };
    let pb = progress(0, "evaluating", 0);
    let r = evaluate(&run, &out, &opts, &|i, n| {
        pb.set_length(n as u64);
        pb.set_position(i as u64);
    })?;
    pb.finish_and_clear();
    print!("{}", markdown(&r));
    eprintln!("results in {}", out.display());
    Ok(if r.failed_images.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
