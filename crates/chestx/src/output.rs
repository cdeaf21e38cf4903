//! Output plumbing shared by subcommands: atomic file writes and progress bars.

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::Path;

/// Write a file atomically: into a temporary file beside it, then renamed over it, so a crash never
/// leaves a half-written output.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create folder {}", dir.display()))?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut w).with_context(|| format!("cannot write {}", path.display()))?;
        w.flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    tmp.as_file().sync_all().ok();
    tmp.persist(path)
        .with_context(|| format!("cannot move the finished file to {}", path.display()))?;
    Ok(())
}

/// A progress bar on stderr when it is a terminal and the job is large enough to be worth one;
/// hidden otherwise (piped output, CI logs).
pub fn progress(len: u64, what: &str, min_len: u64) -> ProgressBar {
    if len < min_len || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(len);
    pb.set_style(
        ProgressStyle::with_template(
            "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("valid template"),
    );
    pb.set_message(what.to_string());
    pb
}

/// Print a Markdown table and write it, and its JSON form, where asked.
pub fn emit_report(
    markdown: &str,
    value: &impl serde::Serialize,
    md_path: Option<&Path>,
    json_path: Option<&Path>,
) -> Result<()> {
    print!("{markdown}");
    if let Some(p) = md_path {
        write_atomic(p, |w| Ok(w.write_all(markdown.as_bytes())?))?;
    }
    if let Some(p) = json_path {
        write_atomic(p, |w| Ok(serde_json::to_writer_pretty(w, value)?))?;
    }
    Ok(())
}
