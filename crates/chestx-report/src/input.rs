//! Reading reports from the formats hospitals and datasets ship them in: CSV tables, OpenI XML files
//! (loose, in folders, or inside the released `.tgz`), and folders of `.txt` reports.
//!
//! A reader never stops at a bad record: each record comes back as `Ok(Report)` or as a
//! [`RecordError`] naming the file and record, so a batch can report it and carry on.

use crate::text::Section;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

/// One report: an id, where it came from, and its text sources (CSV columns, XML sections, a file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: String,
    /// `file`, `file:line` or `archive:member`, for messages.
    pub origin: String,
    pub sources: Vec<Source>,
}

/// One piece of report text. `section` is known for CSV columns and XML sections named after a
/// section; `None` means free text whose headings are found by [`crate::text::split_sections`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub section: Option<Section>,
    pub text: String,
}

impl Report {
    pub fn text_len(&self) -> usize {
        self.sources.iter().map(|s| s.text.len()).sum()
    }
}

/// A record that could not be read or is not fit to label.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {message}", id.as_ref().map(|i| format!(" (report {i})")).unwrap_or_default())]
pub struct RecordError {
    pub origin: String,
    pub id: Option<String>,
    pub message: String,
}

impl RecordError {
    fn new(origin: impl Into<String>, id: Option<String>, message: impl Into<String>) -> Self {
        RecordError {
            origin: origin.into(),
            id,
            message: message.into(),
        }
    }
}

/// How to read inputs.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// CSV id column; default the first.
    pub id_column: Option<String>,
    /// CSV text columns; default `findings` and `impression` when present, else every other column.
    pub text_columns: Option<Vec<String>>,
    /// Reports longer than this are refused (a 10 MB "report" is a broken export, not a report).
    pub max_report_bytes: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            id_column: None,
            text_columns: None,
            max_report_bytes: 1 << 20,
        }
    }
}

pub type ReadResult = Result<Report, RecordError>;

/// Read every report under the given paths (files or folders, recursively, in sorted order; each
/// file once, link loops cut). Anything passed over that could hold reports — a FIFO, an unreadable
/// folder, a file reached twice — comes back as an error naming it; unrelated files in a folder
/// (README, images) are not reports and are passed over quietly.
pub fn read_inputs(paths: &[PathBuf], opts: &ReadOptions) -> Vec<ReadResult> {
    let mut out = Vec::new();
    for_each_input(paths, opts, &mut |r| out.push(r));
    out
}

/// [`read_inputs`], handing each record to `out` as it is read: CSV files (and `-`, a CSV on
/// standard input, which must then be the only path) stream row by row, so memory stays bounded
/// however large the input; XML, text and archives are read a file at a time.
pub fn for_each_input(paths: &[PathBuf], opts: &ReadOptions, out: &mut dyn FnMut(ReadResult)) {
    use chestx_core::walk::{walk, Found};
    if paths.iter().any(|p| p.as_os_str() == "-") {
        if paths.len() > 1 {
            let msg = "`-` (reports on standard input) must be the only input";
            out(Err(RecordError::new("-", None, msg)));
            return;
        }
        read_csv(std::io::stdin().lock(), "<stdin>", opts, out);
        return;
    }
    for f in walk(paths, &|p| report_kind(p).is_some()).found {
        match f {
            Found::File(p) => read_file(&p, opts, out),
            Found::Skipped(p, why) => {
                out(Err(RecordError::new(p.display().to_string(), None, why)))
            }
        }
    }
}

/// The kind of report file a name says: csv, xml, txt or tar.
fn report_kind(path: &Path) -> Option<&'static str> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".csv") {
        Some("csv")
    } else if name.ends_with(".xml") {
        Some("xml")
    } else if name.ends_with(".txt") {
        Some("txt")
    } else if name.ends_with(".tgz") || name.ends_with(".tar.gz") || name.ends_with(".tar") {
        Some("tar")
    } else {
        None
    }
}

fn read_file(path: &Path, opts: &ReadOptions, out: &mut dyn FnMut(ReadResult)) {
    let shown = path.display().to_string();
    let Some(kind) = report_kind(path) else {
        let msg = "unknown input type (expected .csv, .xml, .txt, .tgz/.tar.gz/.tar or a folder)";
        out(Err(RecordError::new(shown, None, msg)));
        return;
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if kind == "csv" {
        match std::fs::File::open(path) {
            Ok(f) => read_csv(BufReader::with_capacity(1 << 16, f), &shown, opts, out),
            Err(e) => out(Err(RecordError::new(
                shown,
                None,
                format!("cannot read file: {e}"),
            ))),
        }
        return;
    }
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            let msg = format!("cannot read file: {e}");
            out(Err(RecordError::new(shown, None, msg)));
            return;
        }
    };
    let stem = file_stem(&name);
    match kind {
        "xml" => out(parse_openi_xml(&bytes, &shown, &stem).and_then(|r| check(r, opts))),
        "txt" => out(read_txt(&bytes, &shown, &stem).and_then(|r| check(r, opts))),
        _ => read_tar(&bytes, name.ends_with(".tar"), &shown, opts, out),
    }
}

fn file_stem(name: &str) -> String {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.split_once('.').map_or(base, |(s, _)| s).to_string()
}

/// Refuse reports that are empty or implausibly large.
fn check(r: Report, opts: &ReadOptions) -> ReadResult {
    let len = r.text_len();
    if r.sources.iter().all(|s| s.text.trim().is_empty()) {
        return Err(RecordError::new(
            r.origin,
            Some(r.id),
            "empty report: no text in the report's text fields",
        ));
    }
    if len > opts.max_report_bytes {
        return Err(RecordError::new(
            r.origin,
            Some(r.id),
            format!(
                "report is {len} bytes, over the limit of {} bytes (--max-report-bytes)",
                opts.max_report_bytes
            ),
        ));
    }
    Ok(r)
}

fn read_txt(bytes: &[u8], origin: &str, stem: &str) -> ReadResult {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        RecordError::new(
            origin,
            Some(stem.to_string()),
            format!("not UTF-8 text (bad byte at offset {})", e.valid_up_to()),
        )
    })?;
    Ok(Report {
        id: stem.to_string(),
        origin: origin.to_string(),
        sources: vec![Source {
            name: "text".into(),
            section: None,
            text: text.to_string(),
        }],
    })
}

fn read_csv(source: impl Read, origin: &str, opts: &ReadOptions, out: &mut dyn FnMut(ReadResult)) {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(chestx_core::io::CrlfAsLf::new(source));
    let headers: Vec<String> = match rdr.byte_headers() {
        Ok(h) => h
            .iter()
            .map(|f| String::from_utf8_lossy(f).trim().to_string())
            .collect(),
        Err(e) => {
            let msg = format!("cannot read CSV header: {e}");
            out(Err(RecordError::new(origin, None, msg)));
            return;
        }
    };
    if headers.iter().all(|h| h.is_empty()) {
        let msg = "empty CSV: no header row, no reports";
        out(Err(RecordError::new(origin, None, msg)));
        return;
    }
    let (id_col, text_cols) = match csv_columns(&headers, opts) {
        Ok(c) => c,
        Err(msg) => {
            out(Err(RecordError::new(origin, None, msg)));
            return;
        }
    };
    let mut rec = csv::ByteRecord::new();
    loop {
        let here = format!("{origin}:{}", rdr.position().line());
        match rdr.read_byte_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => out(csv_report(&rec, &headers, id_col, &text_cols, here, opts)),
            Err(e) => {
                let fatal = matches!(e.kind(), csv::ErrorKind::Io(_));
                let msg = format!("malformed CSV row: {e}");
                out(Err(RecordError::new(here, None, msg)));
                if fatal {
                    break;
                }
            }
        }
    }
}

/// The id column and the text columns of a report CSV: as asked, else the first column and
/// findings + impression when present, else every other column.
fn csv_columns(headers: &[String], opts: &ReadOptions) -> Result<(usize, Vec<usize>), String> {
    let find = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let id_col = match &opts.id_column {
        Some(c) => find(c).ok_or_else(|| format!("no id column {c:?} in header {headers:?}"))?,
        None => 0,
    };
    if let Some(cols) = &opts.text_columns {
        let v = cols
            .iter()
            .map(|c| find(c).ok_or_else(|| format!("no text column {c:?} in header {headers:?}")))
            .collect::<Result<Vec<usize>, String>>()?;
        return Ok((id_col, v));
    }
    let named: Vec<usize> = ["findings", "impression"]
        .iter()
        .filter_map(|c| find(c))
        .collect();
    if named.is_empty() {
        Ok((
            id_col,
            (0..headers.len()).filter(|&i| i != id_col).collect(),
        ))
    } else {
        Ok((id_col, named))
    }
}

/// One CSV row as a report, or the reason it is not one.
fn csv_report(
    rec: &csv::ByteRecord,
    headers: &[String],
    id_col: usize,
    text_cols: &[usize],
    here: String,
    opts: &ReadOptions,
) -> ReadResult {
    let id = match rec.get(id_col).map(std::str::from_utf8) {
        Some(Ok(s)) if !s.trim().is_empty() => s.trim().to_string(),
        Some(Ok(_)) | None => {
            return Err(RecordError::new(here, None, "row has an empty report id"))
        }
        Some(Err(_)) => return Err(RecordError::new(here, None, "report id is not UTF-8")),
    };
    let mut sources = Vec::with_capacity(text_cols.len());
    for &c in text_cols {
        let raw = rec.get(c).unwrap_or_default();
        match std::str::from_utf8(raw) {
            Ok(t) => sources.push(Source {
                name: headers[c].clone(),
                section: Section::from_heading(&headers[c]).filter(|s| *s != Section::Other),
                text: t.to_string(),
            }),
            Err(e) => {
                let msg = format!(
                    "column {:?} is not UTF-8 (bad byte at offset {})",
                    headers[c],
                    e.valid_up_to()
                );
                return Err(RecordError::new(here, Some(id), msg));
            }
        }
    }
    check(
        Report {
            id,
            origin: here,
            sources,
        },
        opts,
    )
}

/// Parse one OpenI XML report: the id from `<uId id="CXR…"/>` (else the file stem), the text from
/// each `<AbstractText Label="…">`.
pub fn parse_openi_xml(bytes: &[u8], origin: &str, stem: &str) -> ReadResult {
    use quick_xml::events::Event;
    let fail = |msg: String| RecordError::new(origin, Some(stem.to_string()), msg);
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(fail(format!(
            "not UTF-8 (bad byte at offset {})",
            e.valid_up_to()
        )));
    }
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let mut id = None;
    let mut sources = Vec::new();
    let mut current: Option<(String, String)> = None;
    let mut buf = Vec::new();
    let mut saw_root = false;
    loop {
        let ev = reader.read_event_into(&mut buf).map_err(|e| {
            fail(format!(
                "malformed XML at byte {}: {e}",
                reader.buffer_position()
            ))
        })?;
        match ev {
            Event::Start(ref e) | Event::Empty(ref e) => {
                saw_root = true;
                let name = e.name();
                if name.as_ref() == b"uId" {
                    if let Some(a) = e.try_get_attribute("id").ok().flatten() {
                        id = Some(String::from_utf8_lossy(&a.value).into_owned());
                    }
                } else if name.as_ref() == b"AbstractText" && matches!(ev, Event::Start(_)) {
                    let label = e
                        .try_get_attribute("Label")
                        .ok()
                        .flatten()
                        .map(|a| String::from_utf8_lossy(&a.value).into_owned())
                        .unwrap_or_else(|| "text".into());
                    current = Some((label, String::new()));
                }
            }
            Event::Text(t) => {
                if let Some((_, text)) = current.as_mut() {
                    let s = t
                        .unescape()
                        .map_err(|e| fail(format!("bad XML text: {e}")))?;
                    text.push_str(&s);
                }
            }
            Event::CData(t) => {
                if let Some((_, text)) = current.as_mut() {
                    text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::End(e) if e.name().as_ref() == b"AbstractText" => {
                if let Some((label, text)) = current.take() {
                    let section = Section::from_heading(&label).filter(|s| *s != Section::Other);
                    sources.push(Source {
                        name: label.to_ascii_lowercase(),
                        section,
                        text,
                    });
                }
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    if !saw_root {
        return Err(fail("no XML elements in file".into()));
    }
    if current.is_some() {
        return Err(fail("XML ends inside an <AbstractText> element".into()));
    }
    Ok(Report {
        id: id.unwrap_or_else(|| stem.to_string()),
        origin: origin.to_string(),
        sources,
    })
}

fn read_tar(
    bytes: &[u8],
    plain: bool,
    origin: &str,
    opts: &ReadOptions,
    out: &mut dyn FnMut(ReadResult),
) {
    let reader: Box<dyn Read + '_> = if plain {
        Box::new(bytes)
    } else {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(bytes)))
    };
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(e) => e,
        Err(e) => {
            out(Err(RecordError::new(
                origin,
                None,
                format!("cannot read archive: {e}"),
            )));
            return;
        }
    };
    let (mut members, mut broken) = (Vec::new(), false);
    for entry in entries {
        let mut entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let msg = format!("corrupt archive: {e}: reports after this point were not read");
                out(Err(RecordError::new(origin, None, msg)));
                broken = true;
                break;
            }
        };
        let member = entry
            .path()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lower = member.to_ascii_lowercase();
        if !(lower.ends_with(".xml") || lower.ends_with(".txt")) {
            continue;
        }
        let here = format!("{origin}:{member}");
        let mut data = Vec::new();
        if let Err(e) = entry.read_to_end(&mut data) {
            out(Err(RecordError::new(
                here,
                None,
                format!("cannot read archive member: {e}"),
            )));
            continue;
        }
        members.push((member, lower, here, data));
    }
    // The entries end at the first unreadable header, which a truncated archive may not announce:
    // the rest of the stream must then still read cleanly (a cut gzip stream does not).
    let rest = (!broken).then(|| std::io::copy(&mut archive.into_inner(), &mut std::io::sink()));
    if let Some(Err(e)) = rest {
        let msg = format!(
            "archive ends early or is corrupt ({e}): reports after this point were not read"
        );
        out(Err(RecordError::new(origin, None, msg)));
    }
    // Archive order is whatever the packer chose; sort for a stable output order.
    members.sort_by_key(|m| natural_key(&m.0));
    for (_, lower, here, data) in members {
        let stem = file_stem(&lower);
        let r = if lower.ends_with(".xml") {
            parse_openi_xml(&data, &here, &stem)
        } else {
            read_txt(&data, &here, &stem)
        };
        out(r.and_then(|r| check(r, opts)));
    }
}

/// Sort key that orders "2.xml" before "10.xml".
fn natural_key(s: &str) -> (String, u64, String) {
    let base = s.rsplit('/').next().unwrap_or(s);
    let digits: String = base.chars().take_while(|c| c.is_ascii_digit()).collect();
    let dir = s[..s.len() - base.len()].to_string();
    (dir, digits.parse().unwrap_or(u64::MAX), base.to_string())
}
