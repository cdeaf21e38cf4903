//! The network behind the service: a run opened read-only, loaded on the batcher's thread, scoring
//! batches of prepared films into probabilities and per-class heatmaps.

use crate::batcher::{BatchObserver, Batcher, Reply};
use chestx_infer::erase::choose_cuts_at;
use chestx_infer::heat::{batch_heat_wanted, BoxMethod, ClassHeat, Localizer};
use chestx_infer::{Classifier, Run, Thresholds};
use std::path::PathBuf;
use tch::{Device, Tensor};

/// Where the operating thresholds come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ThresholdSource {
    /// One probability for every finding.
    Fixed(f32),
    /// A `thresholds.json` written by `chestx eval`.
    File(PathBuf),
    /// Computed at start-up as `chestx eval` does: Youden's J on the run's validation split.
    Validation,
}

/// What to serve.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    pub run: PathBuf,
    /// Default: the run's best checkpoint.
    pub checkpoint: Option<PathBuf>,
    pub device: Device,
    pub thresholds: ThresholdSource,
    pub localizer: Localizer,
}

/// What the service knows about its model (`GET /v1/model` and every prediction).
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub classes: Vec<String>,
    pub input_size: u32,
    /// How an upload becomes the input (an imported model's source chain, else ImageNet's).
    pub preprocess: chestx_image::Preprocess,
    pub architecture: String,
    pub thresholds: Thresholds,
    pub localizer: Localizer,
    /// How boxes are drawn, in words.
    pub boxes: String,
    pub checkpoint: String,
    /// The training run in brief (dataset folder name, epochs, best validation AUC, settings).
    pub training: serde_json::Value,
    pub device: String,
}

impl ModelInfo {
    /// Whether class `ci` at probability `p` is called present: at or over its operating threshold,
    /// and never for an output the weights were not trained on.
    pub fn positive(&self, ci: usize, p: f32) -> bool {
        calls(&self.thresholds, &self.classes, ci, p)
    }
}

fn calls(t: &Thresholds, classes: &[String], ci: usize, p: f32) -> bool {
    p >= t.values[ci] && !t.untrained.contains(&classes[ci])
}

/// One prepared film for the model (`channels × S × S` floats, as the model's preprocessing makes
/// them), and whether the caller wants every class's heatmap or only those of findings called present.
pub struct FilmInput {
    pub input: Vec<f32>,
    pub all_maps: bool,
}

/// One film's scores: a probability per class, and a heatmap for each class called present (and for
/// every class when [`FilmInput::all_maps`]); the others' are empty ([`ClassHeat::is_empty`]).
#[derive(Clone)]
pub struct Scores {
    pub probs: Vec<f32>,
    pub heat: Vec<ClassHeat>,
}

/// Films in, scores out.
pub type ModelQueue = Batcher<FilmInput, Scores>;

/// Load the run on the model thread and start serving it.
pub fn start(
    spec: ModelSpec,
    queue: usize,
    max_batch: usize,
    observe: BatchObserver,
) -> Result<(ModelQueue, ModelInfo), String> {
    Batcher::start(queue, max_batch, observe, move || load(spec))
}

/// A loaded model's batch function: prepared films in, one reply per film out, in order.
pub type ScoreFn = Box<dyn FnMut(Vec<FilmInput>) -> Vec<Reply<Scores>>>;

/// Load the run on this thread (what the batcher's worker runs; also the bench's profile).
pub fn load(spec: ModelSpec) -> Result<(ScoreFn, ModelInfo), String> {
    let run = Run::open(&spec.run, spec.device).map_err(|e| e.to_string())?;
    let ckpt = run.checkpoint_or_best(spec.checkpoint.as_deref());
    let (vs, net) = run.load_model(&ckpt).map_err(|e| e.to_string())?;
    let opts = spec.localizer.heat_options(&net);
    opts.stages(&net)?;
    let mut thresholds = match &spec.thresholds {
        ThresholdSource::Fixed(p) => Thresholds::fixed(net.classes(), *p),
        ThresholdSource::File(f) => {
            Thresholds::read(f, net.classes()).map_err(|e| e.to_string())?
        }
        // An imported model's folder carries its source's operating points.
        ThresholdSource::Validation if spec.run.join("thresholds.json").is_file() => {
            Thresholds::read(&spec.run.join("thresholds.json"), net.classes())
                .map_err(|e| e.to_string())?
        }
        ThresholdSource::Validation => {
            chestx_infer::evaluate::validation_thresholds(&run, &net, run.config.batch_size)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| {
                    format!(
                        "{}: the run's dataset has no validation films to choose thresholds on; \
                         give --thresholds (a thresholds.json from `chestx eval`, or a probability)",
                        spec.run.display()
                    )
                })?
        }
    };
    thresholds.untrained = run.untrained_classes();
    let info = ModelInfo {
        classes: net.classes().to_vec(),
        input_size: net.input_size() as u32,
        preprocess: net.preprocess(),
        architecture: net.describe(),
        thresholds,
        boxes: spec.localizer.describe(&net),
        localizer: spec.localizer.clone(),
        checkpoint: ckpt
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        training: training_summary(&run, &ckpt),
        device: format!("{:?}", spec.device),
    };
    let (size, device) = (net.input_size(), spec.device);
    let channels = net.preprocess().channels() as i64;
    let (thresholds, names) = (info.thresholds.clone(), info.classes.clone());
    let localizer = info.localizer.clone();
    let score = move |films: Vec<FilmInput>| -> Vec<Reply<Scores>> {
        let _keep = &vs; // the variables behind `net`
        let b = films.len();
        let pixels: Vec<f32> = films.iter().flat_map(|f| f.input.iter().copied()).collect();
        let x = Tensor::from_slice(&pixels)
            .view([b as i64, channels, size, size])
            .to_device(device);
        // Heatmaps cost a backward pass per class and view: only the maps a response will use.
        let wanted = |k: usize, p: &[f32]| -> Vec<bool> {
            (0..p.len())
                .map(|ci| films[k].all_maps || calls(&thresholds, &names, ci, p[ci]))
                .collect()
        };
        match batch_heat_wanted(&net, &x, opts, &wanted) {
            Err(e) => (0..b).map(|_| Err(e.clone())).collect(),
            Ok((p, mut heat)) => {
                if localizer.method == BoxMethod::Erase {
                    choose_cuts_at(&net, &x, &p, &mut heat, &thresholds, &localizer);
                }
                replies(&net, &p, heat)
            }
        }
    };
    Ok((Box::new(score), info))
}

/// One reply per film: its probabilities and maps, or an error when the network gave a
/// non-finite probability.
fn replies(net: &dyn Classifier, p: &[f32], heat: Vec<Vec<ClassHeat>>) -> Vec<Reply<Scores>> {
    let classes = net.classes().len();
    heat.into_iter()
        .enumerate()
        .map(|(k, heat)| {
            let probs = p[k * classes..(k + 1) * classes].to_vec();
            match probs.iter().position(|v| !v.is_finite()) {
                Some(i) => Err(format!(
                    "the model's {} probability is {} (non-finite network output)",
                    info_class(net, i),
                    probs[i]
                )),
                None => Ok(Scores { probs, heat }),
            }
        })
        .collect()
}

fn info_class(net: &dyn Classifier, i: usize) -> String {
    net.classes().get(i).cloned().unwrap_or_default()
}

/// The run in brief; the dataset by its folder name only (no server paths in responses).
fn training_summary(run: &Run, ckpt: &std::path::Path) -> serde_json::Value {
    let c = &run.config;
    let state = chestx_infer::Checkpoint::read(ckpt)
        .ok()
        .and_then(|k| k.state().ok());
    serde_json::json!({
        "dataset": c.dataset.file_name().map(|n| n.to_string_lossy().into_owned()),
        "epochs": c.epochs,
        "batch_size": c.batch_size,
        "learning_rate": c.lr,
        "seed": c.seed,
        "loss": format!("{:?}", c.loss),
        "pooling": format!("{:?}", c.model.pooling),
        "input_size": c.model.input_size,
        "validation_fraction": c.val_fraction,
        "best_validation_auc": state.as_ref().and_then(|(s, _)| s.best_auc),
        "best_epoch": state.as_ref().and_then(|(s, _)| s.best_epoch),
    })
}
