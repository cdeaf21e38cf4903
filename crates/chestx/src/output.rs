//! Output plumbing shared by subcommands: atomic file writes and progress bars.

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::path::Path;

/// Write a file atomically and durably (see [`chestx_core::io::write_atomic_with`]): a crash never
/// leaves a half-written output.
pub fn write_atomic(path: &Path, fill: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    chestx_core::io::write_atomic_stream(path, |w| {
        fill(w).map_err(|e| std::io::Error::other(format!("{e:#}")))
    })
    // The error names the path already: "cannot write PATH: reason".
    .map_err(|e| anyhow::anyhow!("cannot write {e}"))
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
