//! `chestx merge`: join the parts of a sharded `label`, `ingest` or `predict` into exactly the
//! files the unsharded job writes, after proving that every input was covered once: all shards
//! finished, read the same input with the same arguments, and each wrote or failed each of its
//! records (checked against the manifests and against the rows actually in the files).

use crate::shards::{check_counts, gather, output_in, Job, Manifest, Output};
use anyhow::{bail, Context, Result};
use chestx_core::io::AtomicFile;
use clap::Args;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct MergeArgs {
    /// What the shards were told to write: the labels CSV of `label -o`, or the output folder of
    /// `ingest` or `predict`.
    path: PathBuf,
}

pub fn run(a: MergeArgs) -> Result<ExitCode> {
    let shards = if a.path.is_dir() {
        gather(&a.path.join("shards"), None)?
    } else {
        let parent = match a.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        gather(&parent, Some(&a.path))?
    };
    let written = match shards[0].job {
        Job::Label => merge_label(&shards)?,
        Job::Ingest => merge_ingest(&shards)?,
        Job::Predict => merge_table(&shards, "predictions")?,
    };
    let m = &shards[0];
    let failed: u64 = shards
        .iter()
        .map(|m| m.failed.len() as u64 + m.failed_unassigned)
        .sum();
    eprintln!(
        "merged {} shards of {:?}: {} records, {} written, {failed} failed; each record exactly once \
         (every shard read the same input, fingerprint {}) -> {}",
        m.shard.count,
        m.job,
        m.records,
        written,
        m.input,
        written_files(m).join(", ")
    );
    Ok(ExitCode::SUCCESS)
}

fn written_files(m: &Manifest) -> Vec<String> {
    m.outputs
        .iter()
        .map(|o| o.merged_file.display().to_string())
        .collect()
}

/// The output in `role` of every shard, in shard order (all or none of them have it).
fn role_files<'a>(shards: &'a [Manifest], role: &str) -> Result<Option<Vec<&'a Output>>> {
    let found: Vec<&Output> = shards
        .iter()
        .filter_map(|m| output_in(&m.outputs, role))
        .collect();
    match found.len() {
        0 => Ok(None),
        n if n == shards.len() => Ok(Some(found)),
        _ => bail!("only some shards wrote their {role} output: the shards differ"),
    }
}

fn open_csv(path: &Path) -> Result<csv::Reader<std::fs::File>> {
    csv::Reader::from_path(path)
        .with_context(|| format!("cannot read shard file {}", path.display()))
}

/// One labelling shard's files, read in step with the merged order.
struct LabelShard {
    rows: csv::Reader<std::fs::File>,
    errors: Option<csv::Reader<std::fs::File>>,
    evidence: Option<std::iter::Peekable<std::io::Lines<std::io::BufReader<std::fs::File>>>>,
    failed: std::iter::Peekable<std::vec::IntoIter<u64>>,
}

/// Round-robin shards back into input order: record k came from shard k mod n, as a row or, when
/// it is among that shard's failed records, as an error.
fn merge_label(shards: &[Manifest]) -> Result<u64> {
    let n = shards[0].shard.count as u64;
    let records = shards[0].records;
    check_counts(shards, |s| (records + n - 1 - s.index as u64) / n)?;
    let labels = role_files(shards, "labels")?.context("labelling shards without labels")?;
    let errors = role_files(shards, "errors")?;
    let evidence = role_files(shards, "evidence")?;
    let mut parts = Vec::new();
    for (i, m) in shards.iter().enumerate() {
        let lines = |o: &Output| -> Result<_> {
            let f = std::fs::File::open(&o.shard_file)
                .with_context(|| format!("cannot read shard file {}", o.shard_file.display()))?;
            Ok(std::io::BufReader::new(f).lines().peekable())
        };
        parts.push(LabelShard {
            rows: open_csv(&labels[i].shard_file)?,
            errors: errors
                .as_ref()
                .map(|e| open_csv(&e[i].shard_file))
                .transpose()?,
            evidence: evidence.as_ref().map(|e| lines(e[i])).transpose()?,
            failed: m.failed.clone().into_iter().peekable(),
        });
    }
    let mut out = csv::Writer::from_writer(create(&labels[0].merged_file)?);
    out.write_byte_record(parts[0].rows.byte_headers()?)?;
    let mut err_out = match &errors {
        Some(e) => {
            let mut w = csv::Writer::from_writer(create(&e[0].merged_file)?);
            w.write_byte_record(parts[0].errors.as_mut().expect("errors").byte_headers()?)?;
            Some(w)
        }
        None => None,
    };
    let mut ev_out = evidence
        .as_ref()
        .map(|e| create(&e[0].merged_file))
        .transpose()?;
    let mut written = 0;
    let mut row = csv::ByteRecord::new();
    for k in 0..records {
        let s = (k % n) as usize;
        let part = &mut parts[s];
        if part.failed.next_if_eq(&k).is_some() {
            if let (Some(r), Some(w)) = (&mut part.errors, &mut err_out) {
                if !r.read_byte_record(&mut row)? {
                    bail!("shard {s}/{n}: its errors file ends before record {k}");
                }
                w.write_byte_record(&row)?;
            }
            continue;
        }
        if !part.rows.read_byte_record(&mut row)? {
            bail!(
                "shard {s}/{n}: its labels end before record {k}, which its manifest says it wrote"
            );
        }
        out.write_byte_record(&row)?;
        written += 1;
        if let (Some(lines), Some(w)) = (&mut part.evidence, &mut ev_out) {
            copy_evidence(lines, &row[0], w)?;
        }
    }
    check_drained(&mut parts, n)?;
    finish(out.into_inner().map_err(|e| e.into_error())?)?;
    if let Some(w) = err_out {
        finish(w.into_inner().map_err(|e| e.into_error())?)?;
    }
    if let Some(w) = ev_out {
        finish(w)?;
    }
    Ok(written)
}

/// After the last record every shard file must be used up: anything left was not accounted for.
fn check_drained(parts: &mut [LabelShard], n: u64) -> Result<()> {
    let mut row = csv::ByteRecord::new();
    for (s, part) in parts.iter_mut().enumerate() {
        let extra_rows = part.rows.read_byte_record(&mut row)?;
        let extra_errors = match &mut part.errors {
            Some(r) => r.read_byte_record(&mut row)?,
            None => false,
        };
        let extra_evidence = part.evidence.as_mut().is_some_and(|l| l.next().is_some());
        if extra_rows || extra_errors || extra_evidence {
            bail!("shard {s}/{n} holds more than its manifest accounts for: it was written by another run");
        }
    }
    Ok(())
}

/// The evidence lines of report `id`: they follow one another in its shard's evidence file.
fn copy_evidence(
    lines: &mut std::iter::Peekable<std::io::Lines<std::io::BufReader<std::fs::File>>>,
    id: &[u8],
    w: &mut AtomicFile,
) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Line {
        report_id: String,
    }
    while let Some(Ok(line)) = lines.peek() {
        let l: Line = serde_json::from_str(line).context("an evidence line without report_id")?;
        if l.report_id.as_bytes() != id {
            break;
        }
        w.write_all(line.as_bytes())?;
        w.write_all(b"\n")?;
        lines.next();
    }
    if let Some(Err(_)) = lines.peek() {
        let e = lines.next().expect("peeked").expect_err("peeked an error");
        return Err(e).context("cannot read an evidence shard");
    }
    Ok(())
}

fn create(path: &Path) -> Result<AtomicFile> {
    AtomicFile::create(path).map_err(|e| anyhow::anyhow!("cannot write {e}"))
}

fn finish(f: AtomicFile) -> Result<()> {
    f.commit().map_err(|e| anyhow::anyhow!("cannot write {e}"))
}

/// Contiguous blocks back into one index, and the failure lists into one, sorted as one ingest
/// sorts them.
fn merge_ingest(shards: &[Manifest]) -> Result<u64> {
    let records = shards[0].records as usize;
    check_counts(shards, |s| s.block(records).len() as u64)?;
    if let Some(m) = shards
        .iter()
        .find(|m| m.shard.index != 0 && m.failed_unassigned != 0)
    {
        bail!(
            "shard {} reports failures before planning, which shard 0 alone reports",
            m.shard
        );
    }
    let index = role_files(shards, "index")?.context("ingest shards without an index")?;
    let mut rows = Vec::new();
    for (m, o) in shards.iter().zip(&index) {
        let part =
            chestx_data::ingest::read_index_shard(&o.shard_file).map_err(anyhow::Error::msg)?;
        if part.len() as u64 != m.written {
            bail!(
                "{}: {} rows where its manifest says {}",
                o.shard_file.display(),
                part.len(),
                m.written
            );
        }
        rows.extend(part);
    }
    let out = index[0]
        .merged_file
        .parent()
        .context("the index has a folder")?;
    chestx_data::ingest::write_index_rows(out, &rows).map_err(anyhow::Error::msg)?;
    merge_failures(shards)?;
    Ok(rows.len() as u64)
}

/// The shards' failure lists (those that have one) as one list, sorted by source path.
fn merge_failures(shards: &[Manifest]) -> Result<()> {
    let lists: Vec<&Output> = shards
        .iter()
        .filter_map(|m| output_in(&m.outputs, "failures"))
        .collect();
    let Some(first) = lists.first() else {
        return Ok(());
    };
    let mut rows: Vec<(PathBuf, String)> = Vec::new();
    for o in &lists {
        for rec in open_csv(&o.shard_file)?.records() {
            let rec = rec.with_context(|| format!("{}", o.shard_file.display()))?;
            rows.push((PathBuf::from(&rec[0]), rec[1].to_string()));
        }
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    crate::output::write_atomic(&first.merged_file, |w| {
        writeln!(w, "file,error")?;
        for (path, msg) in &rows {
            writeln!(w, "\"{}\",\"{msg}\"", path.display())?;
        }
        Ok(())
    })
}

/// Contiguous blocks of one CSV back into one file: the header once, then each shard's rows.
fn merge_table(shards: &[Manifest], role: &str) -> Result<u64> {
    let records = shards[0].records as usize;
    check_counts(shards, |s| s.block(records).len() as u64)?;
    let files = role_files(shards, role)?.with_context(|| format!("shards without {role}"))?;
    let mut out = csv::Writer::from_writer(create(&files[0].merged_file)?);
    let mut row = csv::ByteRecord::new();
    let mut written = 0;
    for (i, (m, o)) in shards.iter().zip(&files).enumerate() {
        let mut r = open_csv(&o.shard_file)?;
        if i == 0 {
            out.write_byte_record(r.byte_headers()?)?;
        }
        let mut rows = 0;
        while r.read_byte_record(&mut row)? {
            out.write_byte_record(&row)?;
            rows += 1;
        }
        if rows != m.written {
            bail!(
                "{}: {rows} rows where its manifest says {}",
                o.shard_file.display(),
                m.written
            );
        }
        written += rows;
    }
    finish(out.into_inner().map_err(|e| e.into_error())?)?;
    Ok(written)
}
