//! Sharded jobs on the command line: `--shard`, each shard's manifest (written last, so a shard
//! with a manifest finished), reruns that skip finished shards, and the checks `chestx merge` makes
//! before it joins anything. The partitions themselves are `chestx_core::shard`'s.

use anyhow::{bail, Context, Result};
use chestx_core::shard::{Fingerprint, Shard};
use clap::Args;
use std::path::{Path, PathBuf};

/// `--shard`, flattened into the commands that split.
#[derive(Args, Clone, Default)]
pub struct ShardArgs {
    /// Run only shard I of N (`I/N`, 0-based), writing `…-0000I-of-0000N.*` for `chestx merge`.
    /// Default: from the launching engine (Slurm job arrays, Kubernetes Indexed Jobs with
    /// CHESTX_SHARD_COUNT, torchrun's RANK/WORLD_SIZE, or CHESTX_SHARD); `none` ignores them.
    #[arg(long, value_name = "I/N|none")]
    pub shard: Option<String>,
}

impl ShardArgs {
    /// The shard this process runs, if any, said on stderr with where it came from.
    pub fn resolve(&self) -> Result<Option<Shard>> {
        let (shard, from) = match self.shard.as_deref() {
            Some("none") => return Ok(None),
            Some(spec) => (Shard::parse(spec).map_err(anyhow::Error::msg)?, "--shard"),
            None => match Shard::from_env(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)? {
                Some((s, from)) => (Some(s), from),
                None => (None, ""),
            },
        };
        if let Some(s) = shard {
            eprintln!("shard {s} (from {from}; --shard none runs the whole job)");
        }
        Ok(shard)
    }
}

/// Which command wrote a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Job {
    Label,
    Ingest,
    Predict,
}

/// What a finished shard says about itself.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub job: Job,
    pub shard: Shard,
    /// Fingerprint of the arguments and inputs the outputs depend on: a rerun with the same ones
    /// skips a finished shard, and a merge refuses shards that disagree.
    pub settings: String,
    /// Fingerprint of the whole input as this shard read it (every shard reads the same).
    pub input: String,
    /// Records in the whole input.
    pub records: u64,
    /// This shard's records, and of them those written and those that failed.
    pub assigned: u64,
    pub written: u64,
    /// Which of this shard's records failed: positions in the input (label) or in the sorted
    /// work list (ingest, predict).
    pub failed: Vec<u64>,
    /// Inputs that failed before they could be assigned (unreadable headers, link loops): shard 0
    /// carries them, the others say 0.
    #[serde(default)]
    pub failed_unassigned: u64,
    /// This shard's files and the merged file each becomes, by role ("labels", "evidence", …).
    pub outputs: Vec<Output>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Output {
    pub role: String,
    pub shard_file: PathBuf,
    pub merged_file: PathBuf,
}

impl Output {
    /// Paths are kept absolute: a merge may run elsewhere on the shared file system.
    pub fn new(role: &str, shard: &Shard, merged: &Path) -> Result<Output> {
        let merged = std::path::absolute(merged)
            .with_context(|| format!("cannot resolve {}", merged.display()))?;
        Ok(Output {
            role: role.into(),
            shard_file: shard.file_name(&merged),
            merged_file: merged,
        })
    }
}

/// `labels-00003-of-00064.csv` → `labels-00003-of-00064.csv.manifest.json`.
pub fn manifest_path(shard_file: &Path) -> PathBuf {
    let mut name = shard_file.as_os_str().to_os_string();
    name.push(".manifest.json");
    PathBuf::from(name)
}

/// A fingerprint of the settings (in order) and of the inputs named (path, size, modification
/// time): what a finished shard must match to be skipped on a rerun.
pub fn settings_fingerprint(settings: &[String], inputs: &[PathBuf]) -> String {
    let mut fp = Fingerprint::default();
    settings.iter().for_each(|s| fp.add(s));
    for p in inputs {
        fp.add(&p.display().to_string());
        if let Ok(m) = std::fs::metadata(p) {
            fp.add(&m.len().to_string());
            let t = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            fp.add(&t.to_string());
        }
    }
    fp.hex()
}

/// The manifest of a shard that already finished with these settings, if there is one: the rerun
/// then has nothing to do. A manifest with other settings is refused rather than overwritten.
pub fn finished(manifest: &Path, settings: &str) -> Result<Option<Manifest>> {
    let Ok(text) = std::fs::read_to_string(manifest) else {
        return Ok(None);
    };
    let m: Manifest = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a shard manifest", manifest.display()))?;
    if m.settings != settings {
        bail!(
            "{} finished with other arguments or inputs: delete it (and its shard's files) to redo \
             that shard, or write to another output",
            manifest.display()
        );
    }
    eprintln!(
        "shard {} already finished ({}): skipped",
        m.shard,
        manifest.display()
    );
    Ok(Some(m))
}

/// Write a shard's manifest, last, atomically: from then on the shard counts as finished.
pub fn write_manifest(path: &Path, m: &Manifest) -> Result<()> {
    crate::output::write_atomic(path, |w| Ok(serde_json::to_writer_pretty(w, m)?))
}

/// The exit status a finished shard reports, now or on a skipped rerun.
pub fn status(m: &Manifest, allow_skips: bool) -> std::process::ExitCode {
    crate::output::batch_status(m.failed.len() + m.failed_unassigned as usize, allow_skips)
}

/// The manifests in `dir` (of the shards whose first output merges into `merged`, when given),
/// read and checked to describe one job: same job, count, settings and input; every shard there
/// exactly once. Missing shards are an error that names them.
pub fn gather(dir: &Path, merged: Option<&Path>) -> Result<Vec<Manifest>> {
    let merged = merged.map(std::path::absolute).transpose()?;
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut found: Vec<(PathBuf, Manifest)> = Vec::new();
    for e in entries {
        let path = e?.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if !name.ends_with(".manifest.json") {
            continue;
        }
        let m: Manifest = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{}: not a shard manifest", path.display()))?;
        if merged.is_none() || m.outputs.first().map(|o| &o.merged_file) == merged.as_ref() {
            found.push((path, m));
        }
    }
    if found.is_empty() {
        bail!(
            "no finished shards{} in {}: nothing to merge",
            merged
                .map(|m| format!(" of {}", m.display()))
                .unwrap_or_default(),
            dir.display()
        );
    }
    found.sort_by_key(|(_, m)| m.shard.index);
    let (first_path, first) = &found[0];
    for (path, m) in &found[1..] {
        let same = m.job == first.job
            && m.shard.count == first.shard.count
            && m.settings == first.settings
            && m.input == first.input
            && m.records == first.records;
        if !same {
            bail!(
                "{} and {} are shards of different jobs (command, shard count, arguments or input \
                 differ): merge the shards of one job",
                first_path.display(),
                path.display()
            );
        }
    }
    let n = first.shard.count;
    let mut seen = vec![false; n];
    for (_, m) in &found {
        seen[m.shard.index] = true;
    }
    let missing: Vec<usize> = (0..n).filter(|&i| !seen[i]).collect();
    if !missing.is_empty() {
        let list: Vec<String> = missing.iter().map(|i| format!("{i}/{n}")).collect();
        bail!(
            "{} of {n} shards have not finished: {} (rerun them with --shard I/N; finished shards are skipped)",
            missing.len(),
            list.join(", ")
        );
    }
    Ok(found.into_iter().map(|(_, m)| m).collect())
}

/// The checks every merge makes on the counts: each shard wrote or failed each of its records,
/// and the shards' records add up to the input.
pub fn check_counts(shards: &[Manifest], expected_assigned: impl Fn(&Shard) -> u64) -> Result<()> {
    for m in shards {
        let want = expected_assigned(&m.shard);
        if m.assigned != want || m.written + m.failed.len() as u64 != m.assigned {
            bail!(
                "shard {}: {} records assigned ({} written, {} failed) where its part of {} records is {want}",
                m.shard,
                m.assigned,
                m.written,
                m.failed.len(),
                m.records
            );
        }
    }
    Ok(())
}

/// The output in `role`: a shard's file and the merged file it becomes.
pub fn output_in<'a>(outputs: &'a [Output], role: &str) -> Option<&'a Output> {
    outputs.iter().find(|o| o.role == role)
}
