//! Per-image metadata for subgroup analyses: the columns asked for (sex, age, view, any other) and
//! each image's patient, read from a labels or metadata CSV (NIH `Data_Entry`, CheXpert, MIMIC).

use crate::chexpert::patient_from_path;
use crate::nih::{bad, NihError};
use std::collections::HashMap;
use std::path::Path;

/// One requested column: a name for messages and the headers it may go by (first found wins).
pub struct Wanted<'a> {
    pub name: &'a str,
    pub headers: &'a [String],
}

/// Metadata keyed by image name (`Image Index`, `Path`, else the first column).
pub struct MetaTable {
    /// The header found for each request, in request order.
    pub columns: Vec<String>,
    rows: HashMap<String, MetaRow>,
    /// Where each image's patient came from, `None` when no patient is known.
    pub patient_source: Option<String>,
}

pub struct MetaRow {
    pub values: Vec<String>,
    pub patient: Option<String>,
}

impl MetaTable {
    pub fn get(&self, image: &str) -> Option<&MetaRow> {
        self.rows.get(image)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// Read the `wanted` columns of `path` (plain or `.gz`); a request no header answers is an error
/// listing the headers there are.
pub fn read_meta(path: &Path, wanted: &[Wanted]) -> Result<MetaTable, NihError> {
    let reader = chestx_core::io::open_maybe_gz(path).map_err(|e| bad(path, e.to_string()))?;
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(chestx_core::io::CrlfAsLf::new(reader));
    let header: Vec<String> = rdr
        .headers()
        .map_err(|e| bad(path, e.to_string()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    let find = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.iter().any(|n| h.eq_ignore_ascii_case(n)))
    };
    let key = find(&["Image Index", "Path"]).unwrap_or(0);
    let patient = find(&["Patient ID", "subject_id", "patient_id"]);
    let mut cols = Vec::with_capacity(wanted.len());
    for w in wanted {
        let names: Vec<&str> = w.headers.iter().map(String::as_str).collect();
        let c = find(&names).ok_or_else(|| {
            bad(
                path,
                format!(
                    "no column for {:?} (looked for {}); its columns are: {}",
                    w.name,
                    names.join(", "),
                    header.join(", ")
                ),
            )
        })?;
        cols.push(c);
    }
    let mut rows = HashMap::new();
    let mut from_path = false;
    for rec in rdr.records() {
        let rec = rec.map_err(|e| bad(path, e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let image = rec.get(key).unwrap_or("").trim().to_string();
        if image.is_empty() {
            return Err(bad(path, format!("line {line}: no image name")));
        }
        let patient = match patient {
            Some(c) => Some(rec.get(c).unwrap_or("").trim().to_string()).filter(|p| !p.is_empty()),
            None => patient_from_path(&image).map(|p| {
                from_path = true;
                p.to_string()
            }),
        };
        let values = cols
            .iter()
            .map(|&c| rec.get(c).unwrap_or("").trim().to_string())
            .collect();
        if rows
            .insert(image.clone(), MetaRow { values, patient })
            .is_some()
        {
            return Err(bad(
                path,
                format!("line {line}: image {image:?} has two rows"),
            ));
        }
    }
    let patient_source = match patient {
        Some(c) => Some(format!("column `{}`", header[c])),
        None if from_path => Some("the `patientNNNNN` folder in each path".into()),
        None => None,
    };
    Ok(MetaTable {
        columns: cols.iter().map(|&c| header[c].clone()).collect(),
        rows,
        patient_source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_asked_columns_and_names_what_is_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("labels.csv");
        std::fs::write(
            &p,
            "Path,Sex,Age,Frontal/Lateral\n\
             train/patient00007/study1/view1_frontal.jpg,Female,68,Frontal\n\
             train/patient00009/study1/view1_frontal.jpg,Male,,Frontal\n",
        )
        .unwrap();
        let sex = vec!["Patient Gender".to_string(), "Sex".to_string()];
        let age = vec!["Age".to_string()];
        let t = read_meta(
            &p,
            &[
                Wanted {
                    name: "sex",
                    headers: &sex,
                },
                Wanted {
                    name: "age",
                    headers: &age,
                },
            ],
        )
        .unwrap();
        assert_eq!(t.columns, vec!["Sex", "Age"]);
        let r = t
            .get("train/patient00009/study1/view1_frontal.jpg")
            .unwrap();
        assert_eq!(r.values, vec!["Male", ""]);
        assert_eq!(r.patient.as_deref(), Some("9"));
        assert!(t.patient_source.unwrap().contains("patientNNNNN"));
        let view = vec!["View Position".to_string()];
        let e = read_meta(
            &p,
            &[Wanted {
                name: "view",
                headers: &view,
            }],
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("labels.csv") && e.contains("\"view\"") && e.contains("Frontal/Lateral"),
            "{e}"
        );
    }

    #[test]
    fn a_second_row_for_an_image_is_refused_with_its_line() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("meta.csv");
        std::fs::write(&p, "Image Index,Patient ID\na.png,1\nb.png,2\na.png,3\n").unwrap();
        let e = read_meta(&p, &[]).err().unwrap().to_string();
        assert!(e.contains("line 4") && e.contains("a.png"), "{e}");
    }
}
