//! `chestx ingest` (hospital exports → NIH-layout dataset) and `chestx inspect` (one file's header
//! and a preview).

use crate::output::{progress, write_atomic};
use crate::shards::{self, Job, Manifest, ShardArgs};
use anyhow::{bail, Context, Result};
use chestx_core::ReportLabels;
use chestx_data::ingest::{find_sources, ingest, IngestConfig};
use chestx_image::{dicom, Gray};
use chestx_report::{read_inputs, Labeler, ReadOptions};
use clap::Args;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct IngestArgs {
    /// DICOM/PNG/JPEG files or folders (searched recursively).
    #[arg(required = true)]
    sources: Vec<PathBuf>,
    /// Dataset folder to write (created; re-running resumes, skipping images already written).
    #[arg(short, long)]
    output: PathBuf,
    /// Reports (CSV/OpenI XML/.tgz/.txt) to label; a report labels the image whose file stem is its id.
    #[arg(long)]
    reports: Option<PathBuf>,
    /// Output side in pixels.
    #[arg(long, default_value_t = 1024)]
    size: u32,
    /// Train,validation,test shares of patients.
    #[arg(long, value_delimiter = ',', default_value = "70,10,20")]
    split: Vec<u32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// File holding the pseudonym key (keep it private and reuse it so that later ingests give the same
    /// patients the same ids). Default: the CHESTX_SECRET environment variable.
    #[arg(long)]
    secret_file: Option<PathBuf>,
    /// Where to list failed files (default: beside the dataset, `<output>-failures.csv`, so that
    /// source paths never travel with the dataset).
    #[arg(long)]
    failures: Option<PathBuf>,
    /// Exit 0 even when inputs were skipped (each is still named, with its reason).
    #[arg(long)]
    allow_skips: bool,
    #[command(flatten)]
    shard: ShardArgs,
}

fn secret(a: &IngestArgs) -> Result<Vec<u8>> {
    let s = match &a.secret_file {
        Some(f) => std::fs::read(f).with_context(|| format!("cannot read {}", f.display()))?,
        None => std::env::var("CHESTX_SECRET")
            .map(String::into_bytes)
            .unwrap_or_default(),
    };
    let trimmed = s.trim_ascii().to_vec();
    if trimmed.len() < 16 {
        bail!(
            "a pseudonym key of at least 16 bytes is needed: --secret-file FILE or CHESTX_SECRET \
             (without one, anyone could recompute patient pseudonyms from guessed ids)"
        );
    }
    Ok(trimmed)
}

fn report_labels(path: &PathBuf) -> Result<HashMap<String, ReportLabels>> {
    let labeler = Labeler::with_defaults();
    let mut out = HashMap::new();
    let mut bad = 0;
    for r in read_inputs(std::slice::from_ref(path), &ReadOptions::default()) {
        match r {
            Ok(rep) => {
                out.insert(rep.id.clone(), labeler.label(&rep).labels);
            }
            Err(e) => {
                eprintln!("warning: {e}");
                bad += 1;
            }
        }
    }
    if out.is_empty() {
        bail!("{}: no readable reports", path.display());
    }
    if bad > 0 {
        eprintln!("{bad} report records could not be read (listed above)");
    }
    Ok(out)
}

pub fn run_ingest(a: IngestArgs) -> Result<ExitCode> {
    if a.split.len() != 3 || a.split.iter().sum::<u32>() == 0 {
        bail!("--split takes three shares, e.g. 70,10,20");
    }
    if !(32..=8192).contains(&a.size) {
        bail!("--size {} is outside 32..=8192", a.size);
    }
    let cfg = IngestConfig {
        size: a.size,
        split: [a.split[0], a.split[1], a.split[2]],
        seed: a.seed,
        secret: secret(&a)?,
    };
    let shard = a.shard.resolve()?;
    let merged_failures = a.failures.clone().unwrap_or_else(|| {
        let name = a
            .output
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dataset".into());
        a.output.with_file_name(format!("{name}-failures.csv"))
    });
    let failures_path = shard.map_or(merged_failures.clone(), |s| s.file_name(&merged_failures));
    let sharded = match shard {
        Some(s) => Some(ShardedIngest::new(&a, &cfg, s, &merged_failures)?),
        None => None,
    };
    if let Some(m) = sharded.as_ref().and_then(|s| s.finished.as_ref()) {
        return Ok(shards::status(m, a.allow_skips));
    }
    let labels = match &a.reports {
        Some(p) => report_labels(p)?,
        None => HashMap::new(),
    };
    let n = find_sources(&a.sources).files().len();
    let pb = progress(2 * n as u64, "ingesting", 50);
    let summary = ingest(&a.sources, &a.output, &cfg, &labels, shard, &|| pb.inc(1))
        .map_err(anyhow::Error::msg)?;
    pb.finish_and_clear();
    write_failures(&summary, &failures_path)?;
    eprintln!(
        "{} sources: {} images written, {} already there, {} failed{}; {} patients -> {}",
        summary.sources,
        summary.written,
        summary.skipped_existing,
        summary.failures.len(),
        if summary.failures.is_empty() {
            String::new()
        } else {
            format!(" (listed in {})", failures_path.display())
        },
        summary.patients,
        a.output.display()
    );
    if let Some(s) = sharded {
        let m = s.finish(&summary, &failures_path, &merged_failures)?;
        return Ok(shards::status(&m, a.allow_skips));
    }
    Ok(crate::output::batch_status(
        summary.failures.len(),
        a.allow_skips,
    ))
}

/// The failed sources, listed beside the dataset (never in it: the list names source paths).
fn write_failures(summary: &chestx_data::ingest::IngestSummary, path: &Path) -> Result<()> {
    if summary.failures.is_empty() {
        return Ok(());
    }
    write_atomic(path, |w| {
        writeln!(w, "file,error")?;
        for f in &summary.failures {
            let msg = f.message.replace('"', "'");
            writeln!(w, "\"{}\",\"{msg}\"", f.path.display())?;
        }
        Ok(())
    })?;
    for f in &summary.failures {
        eprintln!("failed: {}: {}", f.path.display(), f.message);
    }
    Ok(())
}

/// One shard of an ingest: its rows go to `OUT/shards/index-….csv` and its manifest beside them.
struct ShardedIngest {
    shard: chestx_core::shard::Shard,
    index: shards::Output,
    manifest: PathBuf,
    settings: String,
    finished: Option<Manifest>,
}

impl ShardedIngest {
    fn new(
        a: &IngestArgs,
        cfg: &IngestConfig,
        shard: chestx_core::shard::Shard,
        failures: &Path,
    ) -> Result<ShardedIngest> {
        let dir = a.output.join("shards");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let mut index = shards::Output::new("index", &shard, &dir.join("index.csv"))?;
        index.merged_file = std::path::absolute(a.output.join("Data_Entry.csv"))?;
        let manifest = shards::manifest_path(&index.shard_file);
        let key =
            chestx_data::ingest::pseudonym(&cfg.secret, "chestx ingest settings fingerprint", 0);
        let settings = [
            "ingest".to_string(),
            format!(
                "size={} split={:?} seed={} key={key}",
                cfg.size, cfg.split, cfg.seed
            ),
            format!("reports={:?} failures={}", a.reports, failures.display()),
        ];
        let mut inputs = a.sources.clone();
        inputs.extend(a.reports.clone());
        let settings = shards::settings_fingerprint(&settings, &inputs);
        let finished = shards::finished(&manifest, &settings)?;
        Ok(ShardedIngest {
            shard,
            index,
            manifest,
            settings,
            finished,
        })
    }

    /// Write the shard's rows, then its manifest.
    fn finish(
        self,
        s: &chestx_data::ingest::IngestSummary,
        failures: &Path,
        merged_failures: &Path,
    ) -> Result<Manifest> {
        chestx_data::ingest::write_index_shard(&self.index.shard_file, &s.rows)
            .map_err(anyhow::Error::msg)?;
        let mut outputs = vec![self.index];
        if !s.failures.is_empty() {
            outputs.push(shards::Output {
                role: "failures".into(),
                shard_file: std::path::absolute(failures)?,
                merged_file: std::path::absolute(merged_failures)?,
            });
        }
        let m = Manifest {
            job: Job::Ingest,
            shard: self.shard,
            settings: self.settings,
            input: s.plan_fingerprint.clone(),
            records: s.planned as u64,
            assigned: s.assigned as u64,
            written: s.rows.len() as u64,
            failed: s.failed_positions.clone(),
            failed_unassigned: s.unplanned_failures as u64,
            outputs,
        };
        shards::write_manifest(&self.manifest, &m)?;
        Ok(m)
    }
}

#[derive(Args)]
pub struct InspectArgs {
    /// A DICOM, PNG or JPEG file.
    file: PathBuf,
    /// Write the decoded image (as training sees it, before resizing) to this PNG.
    #[arg(long)]
    preview: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run_inspect(a: InspectArgs) -> Result<ExitCode> {
    let bytes =
        std::fs::read(&a.file).with_context(|| format!("cannot read {}", a.file.display()))?;
    let is_dicom = dicom::is_dicom(&bytes);
    let (img, info) = if is_dicom {
        let (g, i) =
            dicom::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?;
        (g, Some(i))
    } else {
        (
            Gray::decode(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", a.file.display()))?,
            None,
        )
    };
    let (lo, hi) = img
        .data
        .iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    let mean = img.data.iter().sum::<f32>() / img.data.len().max(1) as f32;
    if a.json {
        let j = serde_json::json!({
            "file": a.file.display().to_string(),
            "format": if is_dicom { "DICOM" } else { "PNG/JPEG" },
            "width": img.width, "height": img.height,
            "display": {"min": lo, "max": hi, "mean": mean},
            "dicom": info,
        });
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        println!("{}", a.file.display());
        println!("  size            {} × {}", img.width, img.height);
        if let Some(i) = &info {
            print_dicom_info(i);
        }
        println!("  display values  min {lo:.3} max {hi:.3} mean {mean:.3} (0 black, 1 white)");
    }
    if let Some(p) = &a.preview {
        img.save_png(p)?;
        eprintln!("preview -> {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The DICOM header fields `inspect` shows (patient identifiers only as present/absent).
fn print_dicom_info(i: &dicom::DicomInfo) {
    let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "-".into());
    println!(
        "  DICOM           {} ({})",
        if i.part10 {
            "Part 10"
        } else {
            "ACR-NEMA, no meta group"
        },
        i.transfer_syntax_name
    );
    println!("  modality        {}", opt(&i.modality));
    println!("  photometric     {}", i.photometric);
    println!(
        "  bits            {} stored in {}, {} sample(s), {} frame(s)",
        i.bits_stored, i.bits_allocated, i.samples_per_pixel, i.frames
    );
    println!(
        "  rescale         slope {} intercept {}",
        i.rescale.0, i.rescale.1
    );
    println!(
        "  window          {}",
        i.window
            .map(|(c, w)| format!("centre {c} width {w}"))
            .unwrap_or_else(|| "none (full range shown)".into())
    );
    println!(
        "  pixel spacing   {}",
        i.pixel_spacing
            .map(|(r, c)| format!("{r} × {c} mm"))
            .unwrap_or_else(|| "-".into())
    );
    println!("  view            {}", opt(&i.view_position));
    println!(
        "  patient         sex {}, age {}; identifiers {} (not shown)",
        opt(&i.patient_sex),
        i.patient_age
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into()),
        if i.patient_id.is_some() {
            "present"
        } else {
            "absent"
        }
    );
}
