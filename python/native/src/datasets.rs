//! Dataset indexes for `chestx.nih.open` and `chestx.chexpert.open`: chestx-data reads the files
//! exactly as `chestx train` and `eval` do (same columns, same checks, same patient-wise split),
//! and hands Python one list per column, which pandas turns into a DataFrame without a copy per row.

use crate::err;
use chestx_core::Finding;
use chestx_data::chexpert::Mention;
use chestx_data::{ChexpertDataset, NihDataset, Split};
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
    if !(val_fraction.is_finite() && (0.0..1.0).contains(&val_fraction)) {
        return Err(err(format!("val_fraction {val_fraction}: from 0 up to 1")));
    }
    let (ds, files) = py.detach(|| {
        let ds = NihDataset::open(&root).map_err(err)?;
        let files = ds.image_files();
        Ok::<_, PyErr>((ds, files))
    })?;
    let splits = ds.split_of(val_fraction, seed);
    let e = &ds.entries;
    let entries = PyDict::new(py);
    entries.set_item(
        "Image Index",
        e.iter().map(|r| &r.image).collect::<Vec<_>>(),
    )?;
    let labels: Vec<String> = e
        .iter()
        .map(|r| {
            let names: Vec<&str> = Finding::ALL
                .iter()
                .filter(|f| r.labels[f.index()])
                .map(|f| f.name())
                .collect();
            names.join("|")
        })
        .collect();
    entries.set_item("Finding Labels", labels)?;
    for f in Finding::ALL {
        let col: Vec<bool> = e.iter().map(|r| r.labels[f.index()]).collect();
        entries.set_item(f.name(), col)?;
    }
    entries.set_item(
        "Follow-up #",
        e.iter().map(|r| r.follow_up).collect::<Vec<_>>(),
    )?;
    entries.set_item(
        "Patient ID",
        e.iter().map(|r| r.patient_id).collect::<Vec<_>>(),
    )?;
    entries.set_item("Patient Age", e.iter().map(|r| r.age).collect::<Vec<_>>())?;
    entries.set_item(
        "Patient Gender",
        e.iter().map(|r| &r.gender).collect::<Vec<_>>(),
    )?;
    entries.set_item(
        "View Position",
        e.iter().map(|r| &r.view).collect::<Vec<_>>(),
    )?;
    entries.set_item(
        "Width",
        e.iter().map(|r| r.original_size.0).collect::<Vec<_>>(),
    )?;
    entries.set_item(
        "Height",
        e.iter().map(|r| r.original_size.1).collect::<Vec<_>>(),
    )?;
    entries.set_item(
        "Spacing X",
        e.iter().map(|r| r.pixel_spacing.0).collect::<Vec<_>>(),
    )?;
    entries.set_item(
        "Spacing Y",
        e.iter().map(|r| r.pixel_spacing.1).collect::<Vec<_>>(),
    )?;
    let split: Vec<Option<&str>> = e
        .iter()
        .map(|r| splits.get(r.image.as_str()).map(|s| split_name(*s)))
        .collect();
    entries.set_item("split", split)?;
    let paths: Vec<Option<String>> = e.iter().map(|r| path_str(files.get(&r.image))).collect();
    entries.set_item("path", paths)?;

    let boxes = PyDict::new(py);
    let b = &ds.boxes;
    boxes.set_item(
        "Image Index",
        b.iter().map(|r| &r.image).collect::<Vec<_>>(),
    )?;
    boxes.set_item(
        "Finding",
        b.iter().map(|r| r.finding.name()).collect::<Vec<_>>(),
    )?;
    boxes.set_item("x", b.iter().map(|r| r.bbox.x).collect::<Vec<_>>())?;
    boxes.set_item("y", b.iter().map(|r| r.bbox.y).collect::<Vec<_>>())?;
    boxes.set_item("w", b.iter().map(|r| r.bbox.w).collect::<Vec<_>>())?;
    boxes.set_item("h", b.iter().map(|r| r.bbox.h).collect::<Vec<_>>())?;
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
    if !(val_fraction.is_finite() && (0.0..1.0).contains(&val_fraction)) {
        return Err(err(format!("val_fraction {val_fraction}: from 0 up to 1")));
    }
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
    d.set_item(
        "Path",
        rows.iter().map(|(_, r)| &r.path).collect::<Vec<_>>(),
    )?;
    d.set_item(
        "patient",
        rows.iter().map(|(_, r)| r.patient).collect::<Vec<_>>(),
    )?;
    d.set_item(
        "frontal",
        rows.iter().map(|(_, r)| r.frontal).collect::<Vec<_>>(),
    )?;
    for f in &ds.columns {
        let i = f.index();
        let col: Vec<Option<i8>> = rows.iter().map(|(_, r)| cell(r.mentions[i])).collect();
        d.set_item(f.name(), col)?;
    }
    let file = |f: chestx_data::SourceFile| match f {
        chestx_data::SourceFile::Train => "train.csv",
        chestx_data::SourceFile::Valid => "valid.csv",
        chestx_data::SourceFile::Test => "test.csv",
    };
    d.set_item(
        "file",
        rows.iter().map(|(f, _)| file(*f)).collect::<Vec<_>>(),
    )?;
    let split: Vec<&str> = rows
        .iter()
        .map(|(f, r)| split_name(ds.split_of(*f, r, val_fraction, seed)))
        .collect();
    d.set_item("split", split)?;
    d.set_item("path", paths)?;
    Ok((d, ds.describe()))
}
