//! `chestx label` and `chestx label-eval`.

use crate::output::{emit_report, progress, write_atomic, ErrorLog};
use anyhow::{bail, Context, Result};
use chestx_core::{Finding, LabelState};
use chestx_eval::{read_gold, read_predictions, score_labels};
use chestx_report::{
    read_inputs, Labeler, Labelled, ReadOptions, Report, Rules, Section, SectionPolicy,
};
use clap::{Args, ValueEnum};
use indicatif::ParallelProgressIterator;
use rayon::prelude::*;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Args)]
pub struct LabelArgs {
    /// Report CSVs, OpenI XML files, the OpenI .tgz, .txt reports, or folders of them.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Output labels CSV.
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
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Uncertain {
    Negative,
    Positive,
}

fn section_policy(names: &Option<Vec<String>>) -> Result<SectionPolicy> {
    let Some(names) = names else {
        return Ok(SectionPolicy::default());
    };
    if names.iter().any(|n| n.eq_ignore_ascii_case("all")) {
        return Ok(SectionPolicy {
            wanted: Section::ALL.to_vec(),
            fallback_to_unheaded: false,
        });
    }
    let mut wanted = Vec::new();
    for n in names {
        match Section::ALL
            .iter()
            .find(|s| s.name().eq_ignore_ascii_case(n.trim()))
        {
            Some(s) => wanted.push(*s),
            None => {
                let known: Vec<_> = Section::ALL.iter().map(|s| s.name()).collect();
                bail!(
                    "unknown section {n:?}; known sections: {}, all",
                    known.join(", ")
                )
            }
        }
    }
    Ok(SectionPolicy {
        wanted,
        fallback_to_unheaded: false,
    })
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
    Ok(Labeler::new(rules, section_policy(sections)?))
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

pub fn run_label(a: LabelArgs) -> Result<ExitCode> {
    let labeler = build_labeler(&a.rules, &a.sections)?;
    let opts = ReadOptions {
        id_column: a.id_column.clone(),
        text_columns: a.text_columns.clone(),
        max_report_bytes: a.max_report_bytes,
    };
    let records = read_inputs(&a.inputs, &opts);
    let pb = progress(records.len() as u64, "labelling", 5_000);
    let results: Vec<Option<Labelled>> = records
        .par_iter()
        .progress_with(pb.clone())
        .map(|r| r.as_ref().ok().map(|rep| labeler.label(rep)))
        .collect();
    pb.finish_and_clear();

    let binary = a.binary.then_some(a.uncertain == Uncertain::Positive);
    let mut labelled = 0usize;
    let mut errors = ErrorLog::new(50);
    for e in records.iter().filter_map(|r| r.as_ref().err()) {
        errors.report(&e.to_string());
    }
    errors.finish(a.errors.as_deref());
    let failed = errors.count();
    if let Some(p) = &a.errors {
        write_atomic(p, |w| {
            let mut csv = csv::Writer::from_writer(w);
            csv.write_record(["origin", "report_id", "problem"])?;
            for e in records.iter().filter_map(|r| r.as_ref().err()) {
                csv.write_record([&e.origin, e.id.as_deref().unwrap_or(""), &e.message])?;
            }
            csv.flush()?;
            Ok(())
        })?;
    }
    write_atomic(&a.output, |w| {
        let mut csv = csv::Writer::from_writer(w);
        csv.write_record(header())?;
        for (r, l) in records.iter().zip(&results) {
            if let (Ok(rep), Some(l)) = (r, l) {
                write_row(&mut csv, &rep.id, l, binary)?;
                labelled += 1;
            }
        }
        csv.flush()?;
        Ok(())
    })?;
    if let Some(ev) = &a.evidence {
        write_atomic(ev, |w| {
            for (r, l) in records.iter().zip(&results) {
                if let (Ok(rep), Some(l)) = (r, l) {
                    write_evidence(w, rep, l)?;
                }
            }
            Ok(())
        })?;
    }
    let mut ids = std::collections::HashSet::new();
    let dups = records
        .iter()
        .flatten()
        .filter(|r| !ids.insert(r.id.as_str()))
        .count();
    if dups > 0 {
        eprintln!("warning: {dups} reports share an id with an earlier report; their rows are all written");
    }
    eprintln!(
        "labelled {labelled} reports, {failed} failed -> {}",
        a.output.display()
    );
    Ok(crate::output::batch_status(failed, a.allow_skips))
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
