//! `chestx label` and `chestx label-eval`.

use crate::output::{emit_report, progress_count, ErrorLog};
use crate::shards::{self, Job, Manifest, ShardArgs};
use anyhow::{bail, Context, Result};
use chestx_core::io::AtomicFile;
use chestx_core::shard::{Fingerprint, Shard};
use chestx_core::{Finding, LabelState};
use chestx_eval::{read_gold, read_predictions, score_labels};
use chestx_report::{
    for_each_input, Labeler, Labelled, ReadOptions, Report, Rules, Section, SectionPolicy,
};
use clap::{Args, ValueEnum};
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct LabelArgs {
    /// Report CSVs, OpenI XML files, the OpenI .tgz, .txt reports, or folders of them; `-` reads a
    /// report CSV from standard input (streamed: memory stays flat however long it is).
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output labels CSV (`-`: standard output), written row by row in input order.
    #[arg(short, long)]
    output: PathBuf,
    /// Also write one JSON line per mention (finding, status, sentence, span, phrase, rule).
    #[arg(long)]
    evidence: Option<PathBuf>,
    /// Also write every report that could not be labelled (origin, report id, problem) to this CSV;
    /// the terminal shows the first 50.
    #[arg(long)]
    errors: Option<PathBuf>,
    /// Exit 0 even when inputs were skipped (each is still named, with its reason).
    #[arg(long)]
    allow_skips: bool,
    /// Write 0/1 only (uncertain mapped by --uncertain).
    #[arg(long)]
    binary: bool,
    /// With --binary: what an uncertain mention becomes.
    #[arg(long, value_enum, default_value_t = Uncertain::Negative, requires = "binary")]
    uncertain: Uncertain,
    /// CSV column holding the report id (default: the first).
    #[arg(long)]
    id_column: Option<String>,
    /// CSV columns holding report text (default: findings and impression when present, else all others).
    #[arg(long, value_delimiter = ',')]
    text_columns: Option<Vec<String>>,
    /// Sections to label from (default: findings,impression). `all` takes every section.
    #[arg(long, value_delimiter = ',')]
    sections: Option<Vec<String>>,
    /// A rules TOML file to use instead of the compiled-in vocabulary and cues.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Refuse reports longer than this many bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_report_bytes: usize,
    #[command(flatten)]
    shard: ShardArgs,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Uncertain {
    Negative,
    Positive,
}

pub fn build_labeler(rules: &Option<PathBuf>, sections: &Option<Vec<String>>) -> Result<Labeler> {
    let rules = match rules {
        Some(p) => {
            let src = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read rules file {}", p.display()))?;
            Rules::from_toml(&src).with_context(|| format!("rules file {}", p.display()))?
        }
        None => Rules::default_rules(),
    };
    let policy = SectionPolicy::from_names(sections.as_deref()).map_err(anyhow::Error::msg)?;
    Ok(Labeler::new(rules, policy))
}

/// One CSV row for a labelled report.
pub fn write_row(
    w: &mut csv::Writer<impl Write>,
    id: &str,
    l: &Labelled,
    binary: Option<bool>,
) -> csv::Result<()> {
    let mut row: Vec<&str> = Vec::with_capacity(16);
    row.push(id);
    for f in Finding::ALL {
        let cell = match binary {
            Some(unc) => {
                if l.labels.binary(f, unc) {
                    "1"
                } else {
                    "0"
                }
            }
            None => match l.labels.get(f) {
                Some(LabelState::Positive) => "1",
                Some(LabelState::Negative) => "0",
                Some(LabelState::Uncertain) => "-1",
                None => "",
            },
        };
        row.push(cell);
    }
    w.write_record(&row)
}

pub fn header() -> Vec<&'static str> {
    std::iter::once("report_id")
        .chain(Finding::ALL.iter().map(|f| f.name()))
        .collect()
}

#[derive(serde::Serialize)]
struct EvidenceLine<'a> {
    report_id: &'a str,
    source: &'a str,
    section: Section,
    finding: &'a str,
    /// positive, negative or uncertain (LabelState's serde form).
    status: LabelState,
    sentence: &'a str,
    /// Character (not byte) offsets of the phrase in the source text.
    start: usize,
    end: usize,
    phrase: &'a str,
    rule: Option<&'a str>,
}

fn write_evidence(w: &mut dyn Write, r: &Report, l: &Labelled) -> Result<()> {
    for m in &l.mentions {
        let text = &r.sources[m.source].text;
        let start = text[..m.span.start].chars().count();
        let end = start + text[m.span.clone()].chars().count();
        let line = EvidenceLine {
            report_id: &r.id,
            source: &r.sources[m.source].name,
            section: m.section,
            finding: m.finding.map_or("Other", |f| f.name()),
            status: m.state,
            sentence: &text[m.sentence.clone()],
            start,
            end,
            phrase: &text[m.span.clone()],
            rule: m.rule.as_deref(),
        };
        serde_json::to_writer(&mut *w, &line)?;
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// Reports labelled together: enough to keep every core busy, few enough that memory stays flat
/// however long the input.
const CHUNK: usize = 4096;

/// Where a stream of rows goes: a file that appears whole when the job ends, or standard output.
enum Out {
    File(AtomicFile),
    Stdout(std::io::BufWriter<std::io::Stdout>),
}

impl Out {
    fn create(path: &Path) -> Result<Out> {
        if path.as_os_str() == "-" {
            return Ok(Out::Stdout(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout(),
            )));
        }
        AtomicFile::create(path)
            .map(Out::File)
            .map_err(|e| anyhow::anyhow!("cannot write {e}"))
    }

    fn finish(self) -> Result<()> {
        match self {
            Out::File(f) => f.commit().map_err(|e| anyhow::anyhow!("cannot write {e}")),
            Out::Stdout(mut w) => Ok(w.flush()?),
        }
    }
}

impl Write for Out {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::File(f) => f.write(buf),
            Out::Stdout(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::File(f) => f.flush(),
            Out::Stdout(w) => w.flush(),
        }
    }
}

/// A labelling job in flight: reports arrive one by one, are labelled a chunk at a time in
/// parallel, and leave in input order.
struct Stream<'a> {
    labeler: &'a Labeler,
    binary: Option<bool>,
    /// Records read so far (every shard reads all of them), and their fingerprint.
    read: u64,
    input: Fingerprint,
    /// The shard whose records are labelled (all of them when `None`), and which of its records
    /// failed, by position in the input.
    shard: Option<Shard>,
    assigned: u64,
    failed: Vec<u64>,
    chunk: Vec<(u64, chestx_report::ReadResult)>,
    rows: csv::Writer<Out>,
    evidence: Option<Out>,
    errors_csv: Option<csv::Writer<Out>>,
    log: ErrorLog,
    labelled: usize,
    ids: IdHashes,
    /// The first write error; once set, the rest of the input is only drained.
    broken: Option<anyhow::Error>,
    progress: indicatif::ProgressBar,
}

impl Stream<'_> {
    fn push(&mut self, r: chestx_report::ReadResult) {
        let k = self.read;
        self.read += 1;
        if let Some(shard) = &self.shard {
            match &r {
                Ok(rep) => self.input.add(&rep.id),
                Err(e) => self.input.add(&format!("{}\x1e{:?}", e.origin, e.id)),
            }
            if !shard.owns(k) {
                return;
            }
        }
        self.assigned += 1;
        self.chunk.push((k, r));
        if self.chunk.len() >= CHUNK {
            self.flush();
        }
    }

    fn flush(&mut self) {
        let chunk = std::mem::take(&mut self.chunk);
        if self.broken.is_none() {
            if let Err(e) = self.write_chunk(&chunk) {
                self.broken = Some(e);
            }
        }
        self.progress.inc(chunk.len() as u64);
    }

    fn write_chunk(&mut self, chunk: &[(u64, chestx_report::ReadResult)]) -> Result<()> {
        let labeler = self.labeler;
        let results: Vec<Option<Labelled>> = chunk
            .par_iter()
            .map(|(_, r)| r.as_ref().ok().map(|rep| labeler.label(rep)))
            .collect();
        for ((k, r), l) in chunk.iter().zip(&results) {
            match (r, l) {
                (Ok(rep), Some(l)) => {
                    write_row(&mut self.rows, &rep.id, l, self.binary)?;
                    if let Some(w) = &mut self.evidence {
                        write_evidence(w, rep, l)?;
                    }
                    self.labelled += 1;
                    self.ids.insert(&rep.id);
                }
                (Err(e), _) => {
                    if self.shard.is_some() {
                        self.failed.push(*k);
                    }
                    self.log.report(&e.to_string());
                    if let Some(w) = &mut self.errors_csv {
                        w.write_record([&e.origin, e.id.as_deref().unwrap_or(""), &e.message])?;
                    }
                }
                (Ok(_), None) => unreachable!("every readable report is labelled"),
            }
        }
        Ok(())
    }
}

/// Where one labelling job writes: the files asked for, or a shard's part of them.
struct Targets {
    output: PathBuf,
    evidence: Option<PathBuf>,
    errors: Option<PathBuf>,
}

pub fn run_label(a: LabelArgs) -> Result<ExitCode> {
    let to_stdout = [Some(&a.output), a.evidence.as_ref(), a.errors.as_ref()]
        .iter()
        .flatten()
        .filter(|p| p.as_os_str() == "-")
        .count();
    if to_stdout > 1 {
        bail!("only one of -o, --evidence and --errors can be `-` (standard output)");
    }
    let Some(shard) = a.shard.resolve()? else {
        let targets = Targets {
            output: a.output.clone(),
            evidence: a.evidence.clone(),
            errors: a.errors.clone(),
        };
        let job = label_stream(&a, &targets, None)?;
        return Ok(crate::output::batch_status(job.failed, a.allow_skips));
    };
    if to_stdout > 0 {
        bail!("a shard writes files for `chestx merge` to join: -o, --evidence and --errors cannot be `-` with --shard");
    }
    let mut outputs = vec![shards::Output::new("labels", &shard, &a.output)?];
    for (role, p) in [("evidence", &a.evidence), ("errors", &a.errors)] {
        if let Some(p) = p {
            outputs.push(shards::Output::new(role, &shard, p)?);
        }
    }
    let file = |role: &str| -> Option<PathBuf> {
        shards::output_in(&outputs, role).map(|o| o.shard_file.clone())
    };
    let targets = Targets {
        output: file("labels").expect("labels output"),
        evidence: file("evidence"),
        errors: file("errors"),
    };
    let manifest_path = shards::manifest_path(&targets.output);
    let settings = label_settings(&a);
    if let Some(m) = shards::finished(&manifest_path, &settings)? {
        return Ok(shards::status(&m, a.allow_skips));
    }
    let done = label_stream(&a, &targets, Some(shard))?;
    let m = Manifest {
        job: Job::Label,
        shard,
        settings,
        input: done.input.hex(),
        records: done.read,
        assigned: done.assigned,
        written: done.labelled as u64,
        failed: done.failed_records,
        failed_unassigned: 0,
        outputs,
    };
    shards::write_manifest(&manifest_path, &m)?;
    Ok(shards::status(&m, a.allow_skips))
}

/// What a labelling shard's output depends on.
fn label_settings(a: &LabelArgs) -> String {
    let settings = [
        "label".to_string(),
        format!(
            "binary={} uncertain_positive={}",
            a.binary,
            a.uncertain == Uncertain::Positive
        ),
        format!(
            "id={:?} text={:?} sections={:?}",
            a.id_column, a.text_columns, a.sections
        ),
        format!("rules={:?} max_bytes={}", a.rules, a.max_report_bytes),
        format!(
            "evidence={} errors={}",
            a.evidence.is_some(),
            a.errors.is_some()
        ),
    ];
    let mut inputs = a.inputs.clone();
    inputs.extend(a.rules.clone());
    shards::settings_fingerprint(&settings, &inputs)
}

/// What one pass over the input did.
struct Pass {
    read: u64,
    input: Fingerprint,
    assigned: u64,
    labelled: usize,
    failed: usize,
    failed_records: Vec<u64>,
}

/// Read every input, label this shard's records (all without a shard) and write them.
fn label_stream(a: &LabelArgs, t: &Targets, shard: Option<Shard>) -> Result<Pass> {
    let labeler = build_labeler(&a.rules, &a.sections)?;
    let opts = ReadOptions {
        id_column: a.id_column.clone(),
        text_columns: a.text_columns.clone(),
        max_report_bytes: a.max_report_bytes,
    };
    let mut rows = csv::Writer::from_writer(Out::create(&t.output)?);
    rows.write_record(header())?;
    let mut errors_csv = match &t.errors {
        Some(p) => Some(csv::Writer::from_writer(Out::create(p)?)),
        None => None,
    };
    if let Some(w) = &mut errors_csv {
        w.write_record(["origin", "report_id", "problem"])?;
    }
    let mut job = Stream {
        labeler: &labeler,
        binary: a.binary.then_some(a.uncertain == Uncertain::Positive),
        read: 0,
        input: Fingerprint::default(),
        shard,
        assigned: 0,
        failed: Vec::new(),
        chunk: Vec::with_capacity(CHUNK),
        rows,
        evidence: t.evidence.as_deref().map(Out::create).transpose()?,
        errors_csv,
        log: ErrorLog::new(50),
        labelled: 0,
        ids: IdHashes::new(),
        broken: None,
        progress: progress_count("labelling", "reports"),
    };
    for_each_input(&a.inputs, &opts, &mut |r| job.push(r));
    job.flush();
    job.progress.finish_and_clear();
    if let Some(e) = job.broken {
        return Err(e); // the temporaries go with the writers: no partial output
    }
    job.log.finish(t.errors.as_deref());
    let failed = job.log.count();
    if let Some(w) = job.errors_csv {
        w.into_inner().map_err(|e| e.into_error())?.finish()?;
    }
    if let Some(w) = job.evidence {
        w.finish()?;
    }
    job.rows
        .into_inner()
        .map_err(|e| e.into_error())?
        .finish()?;
    let duplicates = job.ids.duplicates();
    if duplicates > 0 {
        eprintln!(
            "warning: {duplicates} reports share an id with an earlier report; their rows are all written"
        );
    }
    eprintln!(
        "labelled {} reports, {failed} failed -> {}",
        job.labelled,
        t.output.display()
    );
    Ok(Pass {
        read: job.read,
        input: job.input,
        assigned: job.assigned,
        labelled: job.labelled,
        failed,
        failed_records: job.failed,
    })
}

/// The ids of the reports written, kept as 64-bit hashes (8 bytes a report, not the ids) in 4096
/// buckets grown by a quarter at a time: 10 million reports take ~100 MB, where a hash set's
/// doubling peaks at more than twice that. Duplicates are counted at the end, bucket by bucket.
struct IdHashes {
    buckets: Vec<Vec<u64>>,
}

impl IdHashes {
    fn new() -> IdHashes {
        IdHashes {
            buckets: vec![Vec::new(); 4096],
        }
    }

    fn insert(&mut self, id: &str) {
        use std::hash::BuildHasher;
        let h = std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default().hash_one(id);
        let bucket = &mut self.buckets[(h >> 52) as usize];
        if bucket.len() == bucket.capacity() {
            bucket.reserve_exact((bucket.len() / 4).max(16));
        }
        bucket.push(h);
    }

    /// Ids seen before (exact but for 64-bit hash collisions: ~3 in a million at 10⁷ reports).
    fn duplicates(self) -> usize {
        self.buckets
            .into_iter()
            .map(|mut b| {
                b.sort_unstable();
                b.windows(2).filter(|w| w[0] == w[1]).count()
            })
            .sum()
    }
}

#[derive(Args)]
pub struct LabelEvalArgs {
    /// Gold labels CSV (id column first, finding columns 0/1; `normal` is No Finding).
    #[arg(long)]
    gold: PathBuf,
    /// Predicted labels CSV, as written by `chestx label` (binary or 1/0/-1/blank).
    #[arg(long)]
    pred: PathBuf,
    /// How -1 cells of a non-binary prediction file count.
    #[arg(long, value_enum, default_value_t = Uncertain::Negative)]
    uncertain: Uncertain,
    /// Also write the table as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Also write the table as Markdown.
    #[arg(long)]
    markdown: Option<PathBuf>,
}

pub fn run_label_eval(a: LabelEvalArgs) -> Result<ExitCode> {
    let gold = read_gold(&a.gold)?;
    let pred = read_predictions(&a.pred, a.uncertain == Uncertain::Positive)?;
    let s = score_labels(&gold, &pred);
    println!("{} gold reports", s.reports);
    if !s.missing_predictions.is_empty() {
        let shown: Vec<_> = s.missing_predictions.iter().take(10).cloned().collect();
        println!(
            "warning: {} gold reports have no prediction row (scored as all negative): {}{}",
            s.missing_predictions.len(),
            shown.join(", "),
            if s.missing_predictions.len() > 10 {
                ", ..."
            } else {
                ""
            }
        );
    }
    emit_report(
        &s.to_markdown(),
        &s,
        a.markdown.as_deref(),
        a.json.as_deref(),
    )?;
    Ok(ExitCode::SUCCESS)
}
