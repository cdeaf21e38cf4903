//! `chestx._native`: the torch-free crates of chestx for Python. This layer converts and releases
//! the GIL; the science is the crates' own (the labeler of `chestx label`, the decoder of `chestx
//! inspect`, the box rules and scores of `chestx eval`), so Python and the command line agree.
//! The Python package (`python/src/chestx`) shapes the results into NumPy arrays and DataFrames.

use chestx_core::{BBox, Finding, LabelState};
use chestx_eval::boxes::{BoxRule, Heatmap, LocCase, Overlap, PeakRegions};
use chestx_report::{Labeler, Labelled, Report, Rules, Section, SectionPolicy, Source};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rayon::prelude::*;

mod datasets;

create_exception!(
    chestx,
    ChestxError,
    PyValueError,
    "A bad input: the message names the file or record and the problem, as the CLI does."
);

fn err(msg: impl std::fmt::Display) -> PyErr {
    ChestxError::new_err(msg.to_string())
}

/// The 14 findings and No Finding, in the order every label row uses.
#[pyfunction]
fn findings() -> Vec<&'static str> {
    Finding::ALL.iter().map(|f| f.name()).collect()
}

/// A labeler with the compiled-in rules or a rules TOML file, and the sections to read.
#[pyclass(frozen)]
struct NativeLabeler {
    labeler: Labeler,
    max_report_bytes: usize,
}

/// A report's 15 cells: 1, 0, -1 or None (not mentioned).
type Cells = Vec<Option<i8>>;
type Evidence = (
    String,
    &'static str,
    String,
    &'static str,
    String,
    usize,
    usize,
    String,
    Option<String>,
);

#[pymethods]
impl NativeLabeler {
    #[new]
    #[pyo3(signature = (rules=None, sections=None, max_report_bytes=1 << 20))]
    fn new(
        rules: Option<String>,
        sections: Option<Vec<String>>,
        max_report_bytes: usize,
    ) -> PyResult<Self> {
        let rules = match rules {
            Some(p) => {
                let src = std::fs::read_to_string(&p)
                    .map_err(|e| err(format!("cannot read rules file {p}: {e}")))?;
                Rules::from_toml(&src).map_err(|e| err(format!("rules file {p}: {e}")))?
            }
            None => Rules::default_rules(),
        };
        Ok(NativeLabeler {
            labeler: Labeler::new(
                rules,
                SectionPolicy::from_names(sections.as_deref()).map_err(err)?,
            ),
            max_report_bytes,
        })
    }

    /// Label reports given column by column: `ids[i]`, and `texts[j][i]` report i's text in column
    /// `columns[j]` (a column named after a section — findings, impression — is that section; any
    /// other is free text whose headings are found). Work runs on every core without the GIL.
    ///
    /// Returns the ids of the labelled reports (trimmed), their cells column-major (15 findings ×
    /// reports, int8: 1, 0, -1, or with `binary` 0/1 with uncertain mapped by
    /// `uncertain_positive`), the mask of blank cells in the same layout, the refused reports'
    /// messages, and each labelled report's evidence when asked for.
    #[pyo3(signature = (ids, columns, texts, binary=false, uncertain_positive=false, evidence=false))]
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn label_columns<'py>(
        &self,
        py: Python<'py>,
        ids: Vec<String>,
        columns: Vec<String>,
        texts: Vec<Vec<String>>,
        binary: bool,
        uncertain_positive: bool,
        evidence: bool,
    ) -> PyResult<(
        Vec<String>,
        Bound<'py, PyBytes>,
        Bound<'py, PyBytes>,
        Vec<String>,
        Vec<Vec<Evidence>>,
    )> {
        if texts.len() != columns.len() {
            return Err(err(format!(
                "{} text columns for {} column names",
                texts.len(),
                columns.len()
            )));
        }
        if let Some((j, c)) = texts.iter().enumerate().find(|(_, c)| c.len() != ids.len()) {
            return Err(err(format!(
                "column {:?} has {} texts for {} ids",
                columns[j],
                c.len(),
                ids.len()
            )));
        }
        let sections: Vec<Option<Section>> = columns
            .iter()
            .map(|c| Section::from_heading(c).filter(|s| *s != Section::Other))
            .collect();
        let table = py.detach(|| {
            let mut rows: Vec<Vec<String>> = vec![Vec::with_capacity(columns.len()); ids.len()];
            for column in texts {
                for (row, text) in rows.iter_mut().zip(column) {
                    row.push(text);
                }
            }
            let results: Vec<_> = ids
                .into_par_iter()
                .zip(rows)
                .enumerate()
                .map(|(i, (id, row))| self.label_one(i, id, &columns, &sections, row, evidence))
                .collect();
            Table::gather(results, binary, uncertain_positive)
        });
        Ok((
            table.ids,
            PyBytes::new(py, &table.values),
            PyBytes::new(py, &table.blank),
            table.errors,
            table.evidence,
        ))
    }
}

/// Labelled reports gathered for Python: cells column-major so each finding is one array.
struct Table {
    ids: Vec<String>,
    values: Vec<u8>,
    blank: Vec<u8>,
    errors: Vec<String>,
    evidence: Vec<Vec<Evidence>>,
}

impl Table {
    fn gather(results: Vec<Labelled1>, binary: bool, uncertain_positive: bool) -> Table {
        let mut t = Table {
            ids: Vec::new(),
            values: Vec::new(),
            blank: Vec::new(),
            errors: Vec::new(),
            evidence: Vec::new(),
        };
        let mut kept = Vec::new();
        for r in results {
            match r {
                Err(e) => t.errors.push(e),
                Ok((id, cells, ev)) => {
                    t.ids.push(id);
                    kept.push(cells);
                    t.evidence.push(ev);
                }
            }
        }
        for f in 0..Finding::ALL.len() {
            for cells in &kept {
                let (v, blank) = match (cells[f], binary) {
                    (Some(-1), true) => (uncertain_positive as i8, false),
                    (None, true) => (0, false),
                    (Some(v), _) => (v, false),
                    (None, false) => (0, true),
                };
                t.values.push(v as u8);
                t.blank.push(blank as u8);
            }
        }
        t
    }
}

/// One report labelled: its trimmed id, 15 cells (1, 0, -1 or None) and evidence; or why not.
type Labelled1 = Result<(String, Cells, Vec<Evidence>), String>;

impl NativeLabeler {
    fn label_one(
        &self,
        index: usize,
        id: String,
        columns: &[String],
        sections: &[Option<Section>],
        row: Vec<String>,
        evidence: bool,
    ) -> Labelled1 {
        if id.trim().is_empty() {
            return Err(format!("report {index}: empty report id"));
        }
        let report = Report {
            id: id.trim().to_string(),
            origin: format!("report {index}"),
            sources: columns
                .iter()
                .zip(sections)
                .zip(row)
                .map(|((name, section), text)| Source {
                    name: name.clone(),
                    section: *section,
                    text,
                })
                .collect(),
        };
        if report.sources.iter().all(|s| s.text.trim().is_empty()) {
            return Err(format!(
                "report {index} ({}): empty report: no text in the report's text fields",
                report.id
            ));
        }
        let len = report.text_len();
        if len > self.max_report_bytes {
            return Err(format!(
                "report {index} ({}): report is {len} bytes, over the limit of {} bytes",
                report.id, self.max_report_bytes
            ));
        }
        let l = self.labeler.label(&report);
        let cells = Finding::ALL
            .iter()
            .map(|f| match l.labels.get(*f) {
                Some(LabelState::Positive) => Some(1),
                Some(LabelState::Negative) => Some(0),
                Some(LabelState::Uncertain) => Some(-1),
                None => None,
            })
            .collect();
        let ev = if evidence {
            evidence_of(&report, &l)
        } else {
            Vec::new()
        };
        Ok((report.id, cells, ev))
    }
}

/// The evidence lines of `chestx label --evidence`: character offsets into the source text.
fn evidence_of(r: &Report, l: &Labelled) -> Vec<Evidence> {
    l.mentions
        .iter()
        .map(|m| {
            let text = &r.sources[m.source].text;
            let start = text[..m.span.start].chars().count();
            let end = start + text[m.span.clone()].chars().count();
            let status = match m.state {
                LabelState::Positive => "positive",
                LabelState::Negative => "negative",
                LabelState::Uncertain => "uncertain",
            };
            (
                r.sources[m.source].name.clone(),
                m.section.name(),
                m.finding.map_or("Other", |f| f.name()).to_string(),
                status,
                text[m.sentence.clone()].to_string(),
                start,
                end,
                text[m.span.clone()].to_string(),
                m.rule.clone(),
            )
        })
        .collect()
}

/// Decode a PNG, JPEG or DICOM file as `chestx inspect` does: `(float32 bytes, width, height,
/// metadata JSON)`, values in [0, 1], DICOM windowed with MONOCHROME1 inverted. Patient and study
/// identifiers are withheld: the metadata says only whether an id was present.
#[pyfunction]
fn read_image(py: Python<'_>, path: std::path::PathBuf) -> PyResult<(Vec<u8>, u32, u32, String)> {
    py.detach(|| {
        let bytes = std::fs::read(&path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let named = |e: String| err(format!("{}: {e}", path.display()));
        let (img, info) = if chestx_image::dicom::is_dicom(&bytes) {
            let (g, i) = chestx_image::dicom::decode(&bytes).map_err(named)?;
            (g, Some(i))
        } else {
            (chestx_image::Gray::decode(&bytes).map_err(named)?, None)
        };
        let meta = serde_json::json!({
            "format": if info.is_some() { "DICOM" } else { "PNG/JPEG" },
            "width": img.width,
            "height": img.height,
            "dicom": info.map(public_info),
        });
        let raw: Vec<u8> = img.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok((raw, img.width, img.height, meta.to_string()))
    })
}

/// The header fields of a DICOM file, identifiers withheld.
#[pyfunction]
fn read_dicom_info(py: Python<'_>, path: std::path::PathBuf) -> PyResult<String> {
    py.detach(|| {
        let bytes = std::fs::read(&path)
            .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
        let info = chestx_image::dicom::read_info(&bytes)
            .map_err(|e| err(format!("{}: {e}", path.display())))?;
        Ok(public_info(info).to_string())
    })
}

fn public_info(mut i: chestx_image::dicom::DicomInfo) -> serde_json::Value {
    let had_id = i.patient_id.take().is_some();
    i.study_uid = None;
    i.study_date = None;
    i.study_time = None;
    let mut v = serde_json::to_value(&i).expect("DicomInfo serializes");
    if let Some(o) = v.as_object_mut() {
        for k in ["patient_id", "study_uid", "study_date", "study_time"] {
            o.remove(k);
        }
        o.insert("patient_id_present".into(), had_id.into());
    }
    v
}

fn heatmap(data: &[u8], width: usize, height: usize) -> PyResult<Heatmap> {
    if data.len() != width * height * 4 {
        return Err(err(format!(
            "a heatmap of {width} × {height} needs {} float32 values, not {}",
            width * height,
            data.len() / 4
        )));
    }
    let values: Vec<f32> = data
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if values.iter().any(|v| !v.is_finite()) {
        return Err(err("the heatmap holds NaN or infinite values"));
    }
    Ok(Heatmap::new(width, height, values))
}

type Box4 = (f64, f64, f64, f64);

fn tuple(b: &BBox) -> Box4 {
    (b.x, b.y, b.w, b.h)
}

/// The paper's boxes: the map min–max scaled to 0–255, a box around every 8-connected component
/// at each threshold; in an output image of `out_w × out_h`. `(threshold, box, peak, cells)`.
#[pyfunction]
fn paper_boxes(
    data: &[u8],
    width: usize,
    height: usize,
    thresholds: Vec<u8>,
    out_w: f64,
    out_h: f64,
) -> PyResult<Vec<(u8, Box4, u8, usize)>> {
    let h = heatmap(data, width, height)?;
    Ok(thresholds
        .iter()
        .flat_map(|&t| {
            chestx_eval::boxes_from_heatmap(&h, t, out_w, out_h)
                .into_iter()
                .map(move |d| (t, tuple(&d.bbox), d.peak, d.cells))
        })
        .collect())
}

/// `chestx eval`'s default boxes (see chestx_eval::boxes::PeakRegions).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
fn peak_region_boxes(
    data: &[u8],
    width: usize,
    height: usize,
    sigma: f32,
    level: f32,
    keep: f32,
    max_boxes: usize,
    round: bool,
    out_w: f64,
    out_h: f64,
) -> PyResult<Vec<Box4>> {
    let h = heatmap(data, width, height)?;
    let rule = BoxRule::PeakRegions(PeakRegions {
        sigma,
        level,
        keep,
        max_boxes,
        round,
    });
    Ok(rule.boxes(&h, out_w, out_h).iter().map(tuple).collect())
}

fn bbox(b: Box4) -> BBox {
    BBox::new(b.0, b.1, b.2, b.3)
}

#[pyfunction]
fn iou(a: Box4, b: Box4) -> f64 {
    bbox(a).iou(&bbox(b))
}

/// Intersection over the detected box's area (the paper's IoBB).
#[pyfunction]
fn iobb(detected: Box4, truth: Box4) -> f64 {
    bbox(detected).iobb(&bbox(truth))
}

/// One threshold's row of the localization table.
type LocRow = (f64, f64, f64, usize, usize);

/// Accuracy and average false positives at each threshold, over `(truth boxes, detected boxes)`
/// per image: `(threshold, accuracy, afp, truth boxes, images)`.
#[pyfunction]
fn localization_table(
    cases: Vec<(Vec<Box4>, Vec<Box4>)>,
    overlap: &str,
    thresholds: Vec<f64>,
) -> PyResult<Vec<LocRow>> {
    let overlap = match overlap.to_ascii_lowercase().as_str() {
        "iou" => Overlap::IoU,
        "iobb" => Overlap::IoBB,
        o => return Err(err(format!("overlap {o:?}: iou or iobb"))),
    };
    let cases: Vec<LocCase> = cases
        .into_iter()
        .map(|(t, d)| LocCase {
            truth: t.into_iter().map(bbox).collect(),
            detected: d.into_iter().map(bbox).collect(),
            peak: None,
        })
        .collect();
    Ok(thresholds
        .iter()
        .map(|&th| {
            let s = chestx_eval::localization(&cases, overlap, th);
            (s.threshold, s.accuracy, s.afp, s.truth_boxes, s.images)
        })
        .collect())
}

type Interval = (f64, f64);

/// Rank AUC (ties averaged) of `scores` against `truth` (None: unknown, left out), and, with
/// `resamples > 0`, its percentile bootstrap interval resampling `clusters` whole (patients; each
/// film its own cluster when not given). None where a class has no positive or no negative.
#[pyfunction]
#[pyo3(signature = (scores, truth, resamples=0, level=0.95, seed=0, clusters=None))]
fn roc_auc(
    py: Python<'_>,
    scores: Vec<f64>,
    truth: Vec<Option<bool>>,
    resamples: usize,
    level: f64,
    seed: u64,
    clusters: Option<Vec<u64>>,
) -> PyResult<(Option<f64>, Option<Interval>)> {
    if scores.len() != truth.len() || clusters.as_ref().is_some_and(|c| c.len() != scores.len()) {
        return Err(err(
            "scores, truth and clusters must have one value per film",
        ));
    }
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(err("scores hold NaN or infinite values"));
    }
    py.detach(|| {
        let (s, t): (Vec<f64>, Vec<bool>) = scores
            .iter()
            .zip(&truth)
            .filter_map(|(s, t)| t.map(|t| (*s, t)))
            .unzip();
        let auc = chestx_eval::roc_auc(&s, &t);
        let ci = if resamples > 0 && auc.is_some() {
            let clusters = clusters.unwrap_or_else(|| (0..scores.len() as u64).collect());
            chestx_eval::audit::clustered_auc_ci(&scores, &truth, &clusters, resamples, level, seed)
        } else {
            None
        };
        Ok((auc, ci))
    })
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ChestxError", m.py().get_type::<ChestxError>())?;
    m.add_class::<NativeLabeler>()?;
    for f in [
        wrap_pyfunction!(findings, m)?,
        wrap_pyfunction!(read_image, m)?,
        wrap_pyfunction!(read_dicom_info, m)?,
        wrap_pyfunction!(paper_boxes, m)?,
        wrap_pyfunction!(peak_region_boxes, m)?,
        wrap_pyfunction!(iou, m)?,
        wrap_pyfunction!(iobb, m)?,
        wrap_pyfunction!(localization_table, m)?,
        wrap_pyfunction!(roc_auc, m)?,
        wrap_pyfunction!(datasets::nih_open, m)?,
        wrap_pyfunction!(datasets::chexpert_open, m)?,
    ] {
        m.add_function(f)?;
    }
    Ok(())
}
