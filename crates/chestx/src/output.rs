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

/// [`progress`] for a stream, whose length is not known ahead: a running count of `unit`s on
/// stderr when it is a terminal; hidden otherwise.
pub fn progress_count(what: &str, unit: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template(&format!(
            "{{msg}} {{pos}} {unit} [{{elapsed_precise}}, {{per_sec}}]"
        ))
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

/// Errors of a batch job on stderr: each with its control characters escaped (a binary file's bytes
/// must not drive the terminal), at most `limit` of them, then one line counting the rest. The
/// complete list belongs in a file the job writes (e.g. `label --errors`).
pub struct ErrorLog {
    limit: usize,
    seen: usize,
}

impl ErrorLog {
    pub fn new(limit: usize) -> ErrorLog {
        ErrorLog { limit, seen: 0 }
    }

    pub fn report(&mut self, msg: &str) {
        self.seen += 1;
        if self.seen <= self.limit {
            eprintln!("error: {}", printable(msg));
        }
    }

    /// Errors reported so far.
    pub fn count(&self) -> usize {
        self.seen
    }

    /// The line for the errors not shown, if any.
    pub fn finish(&self, full_list: Option<&Path>) {
        if self.seen > self.limit {
            let more = self.seen - self.limit;
            match full_list {
                Some(p) => eprintln!("… {more} more errors, all listed in {}", p.display()),
                None => eprintln!("… {more} more errors not shown (--errors FILE lists them all)"),
            }
        }
    }
}

/// `s` with control characters (but tabs) escaped, and at most 500 characters of it.
pub fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(500)
        .flat_map(|c| {
            let esc: Vec<char> = if c.is_control() && c != '\t' {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            esc
        })
        .collect();
    if s.chars().nth(500).is_some() {
        out.push('…');
    }
    out
}

/// The exit status of a batch job: 1 when anything was skipped (each named on stderr), unless the
/// user accepted skips with `--allow-skips`.
pub fn batch_status(skipped: usize, allow_skips: bool) -> std::process::ExitCode {
    if skipped > 0 && !allow_skips {
        eprintln!("{skipped} skipped: exit status 1 (--allow-skips accepts skips)");
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// The global worker pool for `--threads` (all cores when not given); an error message on failure.
pub fn set_threads(threads: Option<usize>) -> Result<(), String> {
    match threads {
        None => Ok(()),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build_global()
            .map_err(|e| format!("error: cannot set up {n} threads: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_are_escaped_and_long_messages_cut() {
        assert_eq!(printable("a\u{1b}[31mb\tc\n"), "a\\u{1b}[31mb\tc\\n");
        let long = "x".repeat(600);
        let p = printable(&long);
        assert_eq!(p.chars().count(), 501);
        assert!(p.ends_with('…'));
    }
}
