//! Reading label and prediction tables keyed by image name: NIH `Data_Entry` files (plain or `.gz`,
//! `Finding Labels` joined by `|`) and prediction CSVs with `prob_<Finding>` or `<Finding>` columns.

use chestx_core::Finding;
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{path}: {msg}")]
    Bad { path: String, msg: String },
}

fn bad(path: &Path, msg: impl Into<String>) -> TableError {
    TableError::Bad {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

fn open_csv(path: &Path) -> Result<csv::Reader<Box<dyn Read>>, TableError> {
    let r =
        chestx_core::io::open_maybe_gz(path).map_err(|e| bad(path, format!("cannot open: {e}")))?;
    Ok(csv::ReaderBuilder::new().flexible(true).from_reader(r))
}

/// Multi-hot labels per image from a `Data_Entry` file (or any CSV with `Image Index` and
/// `Finding Labels`).
pub fn read_data_entry_labels(path: &Path) -> Result<HashMap<String, [bool; 15]>, TableError> {
    let mut rdr = open_csv(path)?;
    let h = rdr.headers().map_err(|e| bad(path, e.to_string()))?.clone();
    let col = |name: &str| {
        h.iter()
            .position(|x| x.trim() == name)
            .ok_or_else(|| bad(path, format!("no {name:?} column")))
    };
    let (ci, cl) = (col("Image Index")?, col("Finding Labels")?);
    let mut out = HashMap::new();
    for (n, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(path, e.to_string()))?;
        let row = Finding::parse_labels(rec.get(cl).unwrap_or_default())
            .map_err(|e| bad(path, format!("row {}: {e}", n + 2)))?;
        out.insert(rec.get(ci).unwrap_or_default().trim().to_string(), row);
    }
    Ok(out)
}

/// Predicted probabilities: image name → (finding, score) for each finding column present.
pub struct Predictions {
    pub findings: Vec<Finding>,
    pub rows: Vec<(String, Vec<f64>)>,
}

pub fn read_predictions_table(path: &Path) -> Result<Predictions, TableError> {
    let mut rdr = open_csv(path)?;
    let h = rdr.headers().map_err(|e| bad(path, e.to_string()))?.clone();
    let cols: Vec<(usize, Finding)> = h
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(i, name)| {
            name.trim()
                .strip_prefix("prob_")
                .unwrap_or(name.trim())
                .parse()
                .ok()
                .map(|f| (i, f))
        })
        .filter(|(_, f)| *f != Finding::NoFinding)
        .collect();
    if cols.is_empty() {
        return Err(bad(
            path,
            format!("no prob_<Finding> or <Finding> columns in {h:?}"),
        ));
    }
    let mut rows = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| bad(path, e.to_string()))?;
        let mut v = Vec::with_capacity(cols.len());
        for &(i, f) in &cols {
            let cell = rec.get(i).unwrap_or_default().trim();
            let x: f64 = cell.parse().map_err(|_| {
                bad(
                    path,
                    format!("row {}: {f} score {cell:?} is not a number", n + 2),
                )
            })?;
            if !x.is_finite() {
                return Err(bad(path, format!("row {}: {f} score is {x}", n + 2)));
            }
            v.push(x);
        }
        rows.push((rec.get(0).unwrap_or_default().trim().to_string(), v));
    }
    Ok(Predictions {
        findings: cols.iter().map(|c| c.1).collect(),
        rows,
    })
}
