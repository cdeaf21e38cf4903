//! Dataset indexes for `chestx.nih.open` and `chestx.chexpert.open`: chestx-data reads the files
//! exactly as `chestx train` and `eval` do (same columns, same checks, same patient-wise split),
//! and hands Python one list per column, which pandas turns into a DataFrame without a copy per row.

use crate::err;
use chestx_core::Finding;
use chestx_data::chexpert::Mention;
use chestx_data::{check_val_fraction, ChexpertDataset, NihDataset, SourceFile, Split};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::path::PathBuf;

fn split_name(s: Split) -> &'static str {
    match s {
        Split::Train => "train",
        Split::Val => "val",
        Split::Test => "test",
    }
}

fn path_str(p: Option<&PathBuf>) -> Option<String> {
    p.map(|p| p.display().to_string())
}

/// `d[name] = [f(r) for r in rows]`: one column of a table, as one Python list.
fn column<'a, 'py, R, T: IntoPyObject<'py>>(
    d: &Bound<'py, PyDict>,
    name: &str,
    rows: &'a [R],
    f: impl Fn(&'a R) -> T,
) -> PyResult<()> {
    d.set_item(name, rows.iter().map(f).collect::<Vec<T>>())
}

/// The NIH release under `root`: `(entries, boxes)` as dicts of columns. `split` is what `chestx
/// train --val-fraction F --seed S` uses (None: on neither list); `path` the file, None when the
/// image is not on disk.
#[pyfunction]
pub fn nih_open<'py>(
    py: Python<'py>,
    root: PathBuf,
    val_fraction: f64,
    seed: u64,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyDict>)> {
    check_val_fraction(val_fraction).map_err(err)?;
    let (ds, files) = py.detach(|| {
        let ds = NihDataset::open(&root).map_err(err)?;
        let files = ds.image_files();
        Ok::<_, PyErr>((ds, files))
    })?;
    let splits = ds.split_of(val_fraction, seed);
    let e = &ds.entries;
    let entries = PyDict::new(py);
    column(&entries, "Image Index", e, |r| r.image.as_str())?;
    column(&entries, "Finding Labels", e, |r| {
        let names: Vec<&str> = Finding::ALL
            .iter()
            .filter(|f| r.labels[f.index()])
            .map(|f| f.name())
            .collect();
        names.join("|")
    })?;
    for f in Finding::ALL {
        column(&entries, f.name(), e, |r| r.labels[f.index()])?;
    }
    column(&entries, "Follow-up #", e, |r| r.follow_up)?;
    column(&entries, "Patient ID", e, |r| r.patient_id)?;
    column(&entries, "Patient Age", e, |r| r.age)?;
    column(&entries, "Patient Gender", e, |r| r.gender.as_str())?;
    column(&entries, "View Position", e, |r| r.view.as_str())?;
    column(&entries, "Width", e, |r| r.original_size.0)?;
    column(&entries, "Height", e, |r| r.original_size.1)?;
    column(&entries, "Spacing X", e, |r| r.pixel_spacing.0)?;
    column(&entries, "Spacing Y", e, |r| r.pixel_spacing.1)?;
    column(&entries, "split", e, |r| {
        splits.get(r.image.as_str()).map(|s| split_name(*s))
    })?;
    column(&entries, "path", e, |r| path_str(files.get(&r.image)))?;

    let boxes = PyDict::new(py);
    let b = &ds.boxes;
    column(&boxes, "Image Index", b, |r| r.image.as_str())?;
    column(&boxes, "Finding", b, |r| r.finding.name())?;
    column(&boxes, "x", b, |r| r.bbox.x)?;
    column(&boxes, "y", b, |r| r.bbox.y)?;
    column(&boxes, "w", b, |r| r.bbox.w)?;
    column(&boxes, "h", b, |r| r.bbox.h)?;
    Ok((entries, boxes))
}

fn cell(m: Option<Mention>) -> Option<i8> {
    match m? {
        Mention::Positive => Some(1),
        Mention::Negative => Some(0),
        Mention::Uncertain => Some(-1),
        Mention::Blank => None,
    }
}

/// A CheXpert-layout folder (`train.csv`, `valid.csv`, optional `test.csv`): one dict of columns
/// for every row of the three files, cells in the CheXpert convention (1/0/-1, None for blank), the
/// findings the training file has a column for, the split `chestx train` gives the row and the
/// image file (None when not found, or when `resolve_paths` is false); and a one-line description.
#[pyfunction]
pub fn chexpert_open<'py>(
    py: Python<'py>,
    root: PathBuf,
    val_fraction: f64,
    seed: u64,
    resolve_paths: bool,
) -> PyResult<(Bound<'py, PyDict>, String)> {
    check_val_fraction(val_fraction).map_err(err)?;
    let (ds, paths) = py.detach(|| {
        let ds = ChexpertDataset::open(&root).map_err(err)?;
        let paths: Vec<Option<String>> = ds
            .rows()
            .map(|(_, r)| {
                resolve_paths
                    .then(|| ds.image_path(&r.path))
                    .flatten()
                    .map(|p| p.display().to_string())
            })
            .collect();
        Ok::<_, PyErr>((ds, paths))
    })?;
    let rows: Vec<_> = ds.rows().collect();
    let d = PyDict::new(py);
    column(&d, "Path", &rows, |(_, r)| r.path.as_str())?;
    column(&d, "patient", &rows, |(_, r)| r.patient)?;
    column(&d, "frontal", &rows, |(_, r)| r.frontal)?;
    for f in &ds.columns {
        column(&d, f.name(), &rows, |(_, r)| cell(r.mentions[f.index()]))?;
    }
    column(&d, "file", &rows, |(f, _)| match f {
        SourceFile::Train => "train.csv",
        SourceFile::Valid => "valid.csv",
        SourceFile::Test => "test.csv",
    })?;
    column(&d, "split", &rows, |(f, r)| {
        split_name(ds.split_of(*f, r, val_fraction, seed))
    })?;
    d.set_item("path", paths)?;
    Ok((d, ds.describe()))
}
