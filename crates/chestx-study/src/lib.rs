//! The phantom study behind `chestx demo`: its design (lesions implanted into radiographs, example
//! reports, a small network with the paper's head), the whole pipeline run on it (synth → label →
//! train → evaluate both localization methods), and its Markdown report. Boxes are known here, so
//! localization can be scored; they reach evaluation only.

use chestx_core::Finding;
use chestx_data::Split;
use chestx_infer::evaluate::{
    evaluate, localization_markdown, markdown, ClassResult, EvalOptions, EvalResults,
};
use chestx_infer::heat::Localizer;
use chestx_infer::Run;
use chestx_model::{Arch, Loss, ModelConfig, Pooling};
use chestx_report::Labeler;
use chestx_synth::{write_dataset, Backgrounds, SynthConfig, SynthSummary};
use chestx_train::{train, Controls, Observer, Outcome, Start, TrainConfig};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Instant;

/// What went wrong, in words that name the file or step.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StudyError(String);

macro_rules! from_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StudyError {
            fn from(e: $t) -> Self {
                StudyError(e.to_string())
            }
        }
    )*};
}
from_error!(
    chestx_train::TrainError,
    chestx_infer::InferError,
    chestx_synth::SynthError
);

/// The study's settings.
#[derive(Debug, Clone)]
pub struct StudyOptions {
    /// Real radiographs to implant lesions into (PNG/JPEG); procedural chests without them.
    pub backgrounds: Option<PathBuf>,
    pub output: PathBuf,
    /// Phantom images (full study).
    pub n: usize,
    pub epochs: usize,
    /// The smaller study: 3000 images at 192 px, 12 epochs.
    pub quick: bool,
    pub seed: u64,
    pub device: tch::Device,
    /// The network's global pooling. LSE with r = 10 by default; average pooling was tried for
    /// maps that cover a lesion's extent and lost across seeds (docs/localization.md).
    pub pooling: Pooling,
}

/// A finished study: its report (also written to `OUTPUT/report.md`) and how long it took.
pub struct Study {
    pub report: String,
    pub report_path: PathBuf,
    pub minutes: f64,
}

/// Reports written for the demo: what a radiologist might dictate for phantom findings.
const REPORTS: [(&str, &str); 6] = [
    ("demo-1", "FINDINGS: 8 mm nodule in the right upper lobe. No pleural effusion. No pneumothorax.\nIMPRESSION: Right upper lobe pulmonary nodule."),
    ("demo-2", "FINDINGS: Lobulated 4 cm mass in the left midlung. Small left pleural effusion with a meniscus.\nIMPRESSION: Left lung mass and small effusion."),
    ("demo-3", "FINDINGS: Heart size normal. Lungs are clear. No focal consolidation, effusion or pneumothorax.\nIMPRESSION: No acute cardiopulmonary abnormality."),
    ("demo-4", "FINDINGS: Blunting of the right costophrenic angle. Cannot exclude a small effusion.\nIMPRESSION: Possible small right effusion."),
    ("demo-5", "FINDINGS: No suspicious pulmonary nodules or masses. Calcified granuloma in the left upper lobe.\nIMPRESSION: No active disease."),
    ("demo-6", "FINDINGS: Right basilar opacity, atelectasis versus pneumonia. No effusion.\nIMPRESSION: Right basilar opacity, likely atelectasis."),
];

/// Run the study into `opts.output`; `say` hears each step, `obs` the training loop.
pub fn run(
    opts: &StudyOptions,
    obs: &dyn Observer,
    say: &dyn Fn(&str),
) -> Result<Study, StudyError> {
    let t0 = Instant::now();
    let out = &opts.output;
    let run_dir = out.join("run");
    if run_dir.join("latest.safetensors").exists() {
        return Err(StudyError(format!(
            "{} already holds a demo run; choose another --output",
            out.display()
        )));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| StudyError(format!("cannot create {}: {e}", out.display())))?;
    let (bg, s, size) = phantoms(opts, say)?;
    say(&format!(
        "[2/4] labelling {} example reports",
        REPORTS.len()
    ));
    let label_md = labelled_examples();
    let cfg = demo_config(opts, out.join("data"), size);
    say(&format!(
        "[3/4] training ResNet-18 (width 16, stride 8) + transition + {} + W-CEL for {} epochs",
        pooling_name(opts.pooling),
        cfg.epochs
    ));
    let start = Start::New(Box::new(cfg));
    let outcome = train(&run_dir, start, opts.device, obs, &Controls::default())?;
    if !matches!(outcome, Outcome::Finished(_)) {
        return Err(StudyError(format!(
            "training stopped early; resume with chestx train --resume {}",
            run_dir.display()
        )));
    }
    say("[4/4] evaluating on the test split (backgrounds never seen in training)");
    let (r, paper) = evaluate_both(&Run::open(&run_dir, opts.device)?)?;
    let minutes = t0.elapsed().as_secs_f64() / 60.0;
    let intro = format!(
        "{} phantom images ({} clean; Nodule {}, Mass {}, Effusion {}) on {bg} backgrounds, {size} px; {} train/val and {} test images split by background. Whole pipeline: {minutes:.1} minutes.",
        s.images,
        s.clean,
        s.per_class[0],
        s.per_class[1],
        s.per_class[2],
        s.train_images,
        s.test_images,
    );
    let report = demo_report(&intro, &r, &paper, &label_md);
    let report_path = out.join("report.md");
    chestx_core::io::write_atomic(&report_path, report.as_bytes())
        .map_err(|e| StudyError(format!("cannot write {e}")))?;
    Ok(Study {
        report,
        report_path,
        minutes,
    })
}

/// Step 1: the phantom dataset in `OUT/data`; returns (backgrounds, summary, image side).
fn phantoms(
    a: &StudyOptions,
    say: &dyn Fn(&str),
) -> Result<(usize, SynthSummary, u32), StudyError> {
    let bg = match &a.backgrounds {
        Some(d) => Backgrounds::from_dir(d)
            .map_err(|e| StudyError(format!("cannot list {}: {e}", d.display())))?,
        None => Backgrounds::Procedural(if a.quick { 60 } else { 300 }),
    };
    if bg.is_empty() {
        return Err(StudyError("no PNG/JPEG backgrounds found".into()));
    }
    let (n, size) = if a.quick { (3000, 192) } else { (a.n, 256) };
    let scfg = SynthConfig {
        n,
        size,
        seed: a.seed,
        ..Default::default()
    };
    say(&format!(
        "[1/4] writing {n} phantom images ({size} px) on {} backgrounds",
        bg.len()
    ));
    let s = write_dataset(&bg, &a.output.join("data"), &scfg, &|| {})?;
    Ok((bg.len(), s, size))
}

/// The pooling in a few words, for the progress line and the report.
fn pooling_name(p: Pooling) -> String {
    match p {
        Pooling::Avg => "average pooling".into(),
        Pooling::Max => "max pooling".into(),
        Pooling::Lse { r } => format!("LSE (r = {r})"),
    }
}

/// Step 2: the example reports and their labels, as a Markdown table.
fn labelled_examples() -> String {
    let labeler = Labeler::with_defaults();
    let mut label_md = String::from(
        "| report | text | labels (1 positive, 0 negated, -1 uncertain) |\n|---|---|---|\n",
    );
    for (id, text) in REPORTS {
        let l = labeler.label_text(text);
        let cells: Vec<String> = Finding::ALL
            .iter()
            .filter_map(|f| {
                l.labels
                    .get(*f)
                    .map(|st| format!("{} {}", f.name(), st.code()))
            })
            .collect();
        let _ = writeln!(
            label_md,
            "| {id} | {} | {} |",
            text.replace('\n', " "),
            cells.join(", ")
        );
    }
    label_md
}

/// Step 3's run: the paper's head on a small ResNet-18, sized for a CPU.
fn demo_config(a: &StudyOptions, data: PathBuf, size: u32) -> TrainConfig {
    let classes = ["Effusion", "Mass", "Nodule"].map(String::from).to_vec();
    let mut model = ModelConfig::new(Arch::Resnet18, classes);
    model.width = Some(16);
    // Output stride 8 (layer3 and layer4 keep layer2's 8-px cells): twice the training time of
    // stride 16, but a nodule is then a few cells wide instead of one, and the maps that localize
    // it (layer2, see `heat::region_recipe`) carry deep features trained at that resolution.
    model.output_stride = 8;
    model.transition_dim = 128;
    // A 1×1 transition and a sharp LSE (the default of `StudyOptions::pooling`) keep class
    // activation maps as tight as the backbone allows.
    model.transition_kernel = 1;
    model.input_size = size as i64;
    model.pooling = a.pooling;
    TrainConfig {
        model,
        loss: Loss::Wcel,
        dataset: data,
        batch_size: 16,
        epochs: if a.quick { 12 } else { a.epochs },
        lr: 1e-3,
        weight_decay: 1e-4,
        seed: a.seed,
        augment: false,
        val_fraction: 0.1,
        init: None,
        checkpoint_every: 500,
        cosine: true,
        labels: Default::default(),
    }
}

/// Step 4: chestx's boxes, and the paper's method on the same run beside them.
fn evaluate_both(run: &Run) -> Result<(EvalResults, EvalResults), StudyError> {
    let eval = |dir: &str, localizer: Localizer, overlays: usize| {
        evaluate(
            run,
            &run.dir.join(dir),
            &EvalOptions {
                split: Split::Test,
                overlays,
                bootstrap: 500,
                localizer,
                ..Default::default()
            },
            &|_, _| {},
        )
    };
    let r = eval("eval-test", Localizer::regions(), 8)?;
    let paper = eval("eval-test-paper", Localizer::paper(), 0)?;
    Ok((r, paper))
}

/// The demo's report, led by localization (IoU first), then the paper's method on the same run,
/// the model's classification, and the report labelling; paths relative to the demo folder.
fn demo_report(intro: &str, r: &EvalResults, paper: &EvalResults, label_md: &str) -> String {
    let rel = |md: String| {
        md.replace("](roc.png)", "](run/eval-test/roc.png)")
            .replace("](overlays/", "](run/eval-test/overlays/")
    };
    let mut md = format!("# chestx demo\n\n{intro}\n");
    md.push_str(&localization_markdown(r));
    md.push_str(
        "\n### Beside it: the paper's method on the same run\n\n| finding | ours T(IoU)=0.5 acc / AFP | paper's | ours false boxes per negative film | paper's |\n|---|---:|---:|---:|---:|\n",
    );
    for (o, p) in r.classes.iter().zip(&paper.classes) {
        let at = |c: &ClassResult| {
            c.iou
                .iter()
                .find(|l| l.threshold == 0.5)
                .map_or("-".into(), |l| format!("{:.3} / {:.2}", l.accuracy, l.afp))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.2} | {:.2} |",
            o.finding,
            at(o),
            at(p),
            o.quality.false_boxes_per_negative_film,
            p.quality.false_boxes_per_negative_film
        );
    }
    let model = rel(markdown(r));
    // The model section: everything of the evaluation report but its localization (shown above).
    let (head, tail) = model
        .split_once("\n## Localization")
        .unwrap_or((&model, ""));
    let overlays = tail
        .find("\n## Overlays")
        .map_or(String::new(), |i| tail[i..].to_string());
    md.push_str(&head.replacen("# chestx evaluation", "\n## Model", 1));
    md.push_str(&overlays);
    md.push_str(&format!("\n## Report labelling\n\n{label_md}"));
    md
}
