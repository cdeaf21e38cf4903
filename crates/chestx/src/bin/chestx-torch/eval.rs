//! `chestx eval`: AUC table, ROC plots, the localization table and overlays for a trained run.

use anyhow::{bail, Result};
use chestx_cli::output::progress;
use chestx_data::Split;
use chestx_infer::evaluate::{evaluate, markdown, EvalOptions};
use chestx_infer::heat::{BoxMethod, CamLayers, Flips, HeatOptions, HeatmapKind, Localizer};
use chestx_infer::Run;
use chestx_model::parse_device;
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

#[derive(Clone, Copy, ValueEnum)]
pub enum BoxMethodArg {
    /// LayerCAM of layer1 + layer2 + layer3 over the film and its flips, smoothed, cut relative to
    /// the peak by the finding's scale, boxes only for findings called present (the default).
    Regions,
    /// Regions cut, film by film, at the highest level whose boxes, erased from the film, take the
    /// finding below its operating threshold.
    Erase,
    /// ChestX-ray8's: the --heatmap map min–max scaled, every component at --heat-thresholds.
    Paper,
}

/// How boxes are drawn, shared by `eval` and `predict`.
#[derive(Args, Clone)]
pub struct BoxArgs {
    /// Localization method.
    #[arg(long = "box-method", value_enum, default_value_t = BoxMethodArg::Regions)]
    method: BoxMethodArg,
    /// With --box-method paper: heatmap thresholds (0–255) whose components are pooled
    /// [default: 60,180].
    #[arg(long, value_delimiter = ',')]
    heat_thresholds: Vec<u8>,
    /// With --box-method paper: the paper's CAM (default), Grad-CAM on the backbone's last feature
    /// map, or LayerCAM on the stages named by --cam-layers.
    #[arg(long, value_enum)]
    heatmap: Option<HeatmapArg>,
    /// With --box-method paper: LayerCAM's backbone stages (1–4: a ResNet's layer1..layer4; other
    /// backbones have one). Several are each scaled to [0, 1] and multiplied: `2,4` keeps layer4's
    /// choice of region with layer2's finer placement. Default: the last stage.
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=8))]
    cam_layers: Vec<u8>,
    /// With --box-method paper: also run flipped copies of each image and average their heatmaps,
    /// flipped back, with its own (mirror: left–right; both: also up–down) [default: none].
    #[arg(long, value_enum)]
    flips: Option<FlipsArg>,
}

impl BoxArgs {
    /// The method asked for; an error when a setting of the paper's method is given with another.
    pub fn localizer(&self) -> Result<Localizer> {
        let paper_only = self.heatmap.is_some()
            || self.flips.is_some()
            || !self.cam_layers.is_empty()
            || !self.heat_thresholds.is_empty();
        let method = match self.method {
            BoxMethodArg::Regions if paper_only => bail!(
                "--heatmap, --cam-layers, --flips and --heat-thresholds set the paper's method: add --box-method paper (peak regions read their own maps)"
            ),
            BoxMethodArg::Regions => BoxMethod::Regions,
            BoxMethodArg::Erase if paper_only => bail!(
                "--heatmap, --cam-layers, --flips and --heat-thresholds set the paper's method: add --box-method paper (erased regions read their own maps)"
            ),
            BoxMethodArg::Erase => BoxMethod::Erase,
            BoxMethodArg::Paper => BoxMethod::Paper,
        };
        let paper = Localizer::paper();
        Ok(Localizer {
            method,
            heat: self.into(),
            heat_thresholds: if self.heat_thresholds.is_empty() {
                paper.heat_thresholds
            } else {
                self.heat_thresholds.clone()
            },
        })
    }
}

impl From<&BoxArgs> for HeatOptions {
    fn from(h: &BoxArgs) -> Self {
        let layers: Vec<usize> = h.cam_layers.iter().map(|&l| l as usize).collect();
        HeatOptions {
            kind: match h.heatmap.unwrap_or(HeatmapArg::Cam) {
                HeatmapArg::Cam => HeatmapKind::Cam,
                HeatmapArg::GradCam => HeatmapKind::GradCam,
                HeatmapArg::LayerCam => HeatmapKind::LayerCam,
            },
            // The parser keeps stages within 1..=8, all CamLayers accepts.
            layers: CamLayers::new(&layers).unwrap_or_default(),
            flips: match h.flips.unwrap_or(FlipsArg::None) {
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
    #[arg(long = "boxes")]
    box_list: Option<PathBuf>,
    /// Checkpoint file (default: RUN/best.safetensors).
    #[arg(long)]
    checkpoint: Option<PathBuf>,
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
    /// Exit 0 even when inputs were skipped (each is still named, with its reason).
    #[arg(long)]
    allow_skips: bool,
    /// Audit subgroups (as `chestx auc --by`: sex, view, age, follow-up, any column): AUC and its
    /// gap to the rest with patient-level intervals, sensitivity/specificity at the validation
    /// thresholds, calibration, and localization by subgroup.
    #[arg(long)]
    by: Vec<String>,
    /// Where the --by columns and patients are read (default: the dataset's Data_Entry or CSV).
    #[arg(long)]
    meta: Option<PathBuf>,
    #[command(flatten)]
    boxes: BoxArgs,
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
        bootstrap: a.bootstrap,
        seed: 0,
        overlays: a.overlays,
        batch_size: a.batch,
        boxes: a.box_list.clone(),
        localizer: a.boxes.localizer()?,
        by: match a.by.is_empty() {
            true => Vec::new(),
            false => chestx_eval::audit::parse_by(&a.by.join(","))
                .map_err(|e| anyhow::anyhow!("--by: {e}"))?,
        },
        meta: a.meta.clone(),
    };
    let pb = progress(0, "evaluating", 0);
    let r = evaluate(&run, &out, &opts, &|i, n| {
        pb.set_length(n as u64);
        pb.set_position(i as u64);
    })?;
    pb.finish_and_clear();
    print!("{}", markdown(&r));
    let mut errors = chestx_cli::output::ErrorLog::new(20);
    for f in &r.failed_images {
        errors.report(&format!("unreadable, left out: {f}"));
    }
    errors.finish(Some(&out.join("results.json")));
    if r.missing_images > 0 {
        eprintln!(
            "error: {} images of the split are listed but not on disk, left out: {}",
            r.missing_images,
            named_list(&r.missing_image_names, 20)
        );
    }
    eprintln!("results in {}", out.display());
    if r.thresholds.is_some() {
        eprintln!(
            "operating thresholds for `chestx predict --thresholds`: {}",
            out.join("thresholds.json").display()
        );
    }
    let skipped = r.failed_images.len() + r.missing_images;
    Ok(chestx_cli::output::batch_status(skipped, a.allow_skips))
}

/// The first `n` names, then how many more (all of them are in the command's JSON output).
pub fn named_list(names: &[String], n: usize) -> String {
    let mut s = names.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > n {
        s.push_str(&format!(" and {} more", names.len() - n));
    }
    s
}
