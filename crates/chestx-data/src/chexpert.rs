//! The CheXpert layout (Irvin et al., AAAI 2019; MIMIC-CXR-JPG's label files and `chestx label`'s
//! output use the same convention): `train.csv` and `valid.csv` (and `test.csv` where a release has
//! one), a `Path` column, and one column per observation holding `1` positive, `0` negative, `-1`
//! uncertain or blank (not mentioned).
//!
//! Columns are matched to the 14 ChestX-ray14 findings by name (`Pleural Effusion` is Effusion,
//! `Infiltrate` Infiltration, …); CheXpert observations with no ChestX-ray14 counterpart (Lung Opacity,
//! Fracture, Support Devices, …) are reported and left out, and a finding with no column at all is
//! *unknown* for every image (NaN: the losses and AUCs skip it) rather than negative. How uncertain
//! and blank cells count is the caller's choice ([`SampleOptions`]), as in the CheXpert paper's
//! U-Ignore / U-Zeros / U-Ones comparison.

use crate::nih::{bad, NihError};
use crate::samples::{patient_in_val, Sample, Split};
use chestx_core::seed::mix64;
use chestx_core::Finding;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What an uncertain (`-1`) cell counts as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UncertainAs {
    /// Left out of the loss and the AUCs (CheXpert's U-Ignore).
    #[default]
    Ignore,
    /// Negative (U-Zeros).
    Zeros,
    /// Positive (U-Ones).
    Ones,
}

/// What a blank cell (finding not mentioned) counts as.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlankAs {
    /// Negative: not mentioned in the report, as the NIH labels treat it.
    #[default]
    Zeros,
    /// Unknown: left out of the loss and the AUCs.
    Ignore,
}

/// How a CheXpert-layout dataset's rows become samples (the NIH layout has neither uncertain nor
/// blank labels, and only frontal films, so it ignores these).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SampleOptions {
    pub uncertain: UncertainAs,
    pub blank: BlankAs,
    /// Keep only rows whose `Frontal/Lateral` (or `ViewPosition`) says frontal (PA/AP): the
    /// ChestX-ray8 network reads frontal films.
    #[serde(default)]
    pub frontal_only: bool,
}

/// One cell of a label column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mention {
    Positive,
    Negative,
    Uncertain,
    Blank,
}

impl Mention {
    /// `1`, `0`, `-1` (also written `1.0`, `0.0`, `-1.0`) or blank.
    pub fn parse(cell: &str) -> Option<Mention> {
        let cell = cell.trim();
        if cell.is_empty() {
            return Some(Mention::Blank);
        }
        let v = cell.parse::<f64>().ok()?;
        [
            (1.0, Mention::Positive),
            (0.0, Mention::Negative),
            (-1.0, Mention::Uncertain),
        ]
        .into_iter()
        .find_map(|(x, m)| (v == x).then_some(m))
    }

    /// The training target: 1, 0, or NaN for "left out".
    pub fn target(self, o: &SampleOptions) -> f32 {
        match self {
            Mention::Positive => 1.0,
            Mention::Negative => 0.0,
            Mention::Uncertain => match o.uncertain {
                UncertainAs::Ignore => f32::NAN,
                UncertainAs::Zeros => 0.0,
                UncertainAs::Ones => 1.0,
            },
            Mention::Blank => match o.blank {
                BlankAs::Zeros => 0.0,
                BlankAs::Ignore => f32::NAN,
            },
        }
    }
}

/// One row of a CheXpert-layout CSV.
#[derive(Debug, Clone, PartialEq)]
pub struct ChexpertRow {
    /// The `Path` cell as written (the sample's id).
    pub path: String,
    pub patient: u64,
    /// `Some(true)` frontal, `Some(false)` lateral, `None` when the file does not say.
    pub frontal: Option<bool>,
    /// Per finding in [`Finding::DISEASES`] order; `None` where the file has no such column.
    pub mentions: [Option<Mention>; 14],
}

impl ChexpertRow {
    /// Training targets in [`Finding::DISEASES`] order: 1, 0, or NaN where the file has no column
    /// or the options leave the cell out.
    pub fn targets(&self, o: &SampleOptions) -> [f32; 14] {
        self.mentions.map(|m| m.map_or(f32::NAN, |m| m.target(o)))
    }
}

/// The file of the layout a row was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFile {
    Train,
    Valid,
    Test,
}

/// A CheXpert-layout dataset opened from a folder.
#[derive(Debug, Clone)]
pub struct ChexpertDataset {
    pub root: PathBuf,
    pub train: Vec<ChexpertRow>,
    pub valid: Vec<ChexpertRow>,
    pub test: Option<Vec<ChexpertRow>>,
    /// Findings with a column in the files.
    pub columns: Vec<Finding>,
    /// Observation columns with no ChestX-ray14 counterpart (left out).
    pub unmatched: Vec<String>,
    /// Whether patients were read from the files (a `Patient ID`/`subject_id` column or CheXpert's
    /// `patientNNNNN` folders); otherwise each image is its own patient.
    pub patients_known: bool,
}

/// Columns that are not observations (CheXpert's, MIMIC-CXR-JPG's, `chestx label`'s).
const NOT_LABELS: [&str; 12] = [
    "path",
    "image index",
    "sex",
    "age",
    "frontal/lateral",
    "ap/pa",
    "patient id",
    "subject_id",
    "study_id",
    "dicom_id",
    "viewposition",
    "report_id",
];

impl ChexpertDataset {
    /// Whether `root` looks like this layout (`train.csv` beside `valid.csv`).
    pub fn detect(root: &Path) -> bool {
        root.join("train.csv").is_file() && root.join("valid.csv").is_file()
    }

    pub fn open(root: &Path) -> Result<ChexpertDataset, NihError> {
        if !Self::detect(root) {
            return Err(NihError::Missing(
                root.display().to_string(),
                "train.csv and valid.csv".into(),
            ));
        }
        let train = read_label_file(&root.join("train.csv"))?;
        let valid = read_label_file(&root.join("valid.csv"))?;
        let test_path = root.join("test.csv");
        let test = test_path
            .is_file()
            .then(|| read_label_file(&test_path))
            .transpose()?;
        // The training file decides which findings the dataset labels.
        let columns = Finding::DISEASES
            .iter()
            .enumerate()
            .filter(|(i, _)| train.columns[*i])
            .map(|(_, f)| *f)
            .collect();
        Ok(ChexpertDataset {
            root: root.to_path_buf(),
            patients_known: train.patients_known,
            unmatched: train.unmatched,
            columns,
            train: train.rows,
            valid: valid.rows,
            test: test.map(|t| t.rows),
        })
    }

    /// Where a `Path` cell points: relative to the dataset folder, to its parent (CheXpert's paths
    /// start with the release's folder name, e.g. `CheXpert-v1.0-small/train/…`), or to `images/`.
    pub fn image_path(&self, cell: &str) -> Option<PathBuf> {
        let rel = Path::new(cell);
        if rel.is_absolute() {
            return rel.is_file().then(|| rel.to_path_buf());
        }
        let mut bases = vec![self.root.clone()];
        if let Some(parent) = self.root.parent() {
            bases.push(parent.to_path_buf());
        }
        bases.push(self.root.join("images"));
        bases.into_iter().map(|b| b.join(rel)).find(|p| p.is_file())
    }

    /// The file a split's rows come from (see [`ChexpertDataset::samples`]).
    pub fn split_file(&self, split: Split) -> PathBuf {
        let name = match (split, &self.test) {
            (Split::Test, Some(_)) => "test.csv",
            (Split::Test, None) | (Split::Val, Some(_)) => "valid.csv",
            _ => "train.csv",
        };
        self.root.join(name)
    }

    /// Every row with the file it came from: `train.csv`'s, then `valid.csv`'s, then `test.csv`'s.
    pub fn rows(&self) -> impl Iterator<Item = (SourceFile, &ChexpertRow)> {
        let test = self.test.as_deref().unwrap_or_default();
        let train = self.train.iter().map(|r| (SourceFile::Train, r));
        let valid = self.valid.iter().map(|r| (SourceFile::Valid, r));
        train
            .chain(valid)
            .chain(test.iter().map(|r| (SourceFile::Test, r)))
    }

    /// The split a row belongs to (see [`ChexpertDataset::samples`]).
    pub fn split_of(
        &self,
        file: SourceFile,
        row: &ChexpertRow,
        val_fraction: f64,
        seed: u64,
    ) -> Split {
        match (file, self.test.is_some()) {
            (SourceFile::Test, _) | (SourceFile::Valid, false) => Split::Test,
            (SourceFile::Valid, true) => Split::Val,
            (SourceFile::Train, true) => Split::Train,
            (SourceFile::Train, false) if patient_in_val(row.patient, val_fraction, seed) => {
                Split::Val
            }
            (SourceFile::Train, false) => Split::Train,
        }
    }

    /// Samples of one split whose image exists, and how many listed images were not found.
    /// Train and validation come from `train.csv`, validation patients carved out as in the NIH
    /// layout; the test split is `valid.csv` (CheXpert's radiologist-labelled set), unless a
    /// `test.csv` exists: then that is the test split and `valid.csv` the validation split.
    pub fn samples(
        &self,
        split: Split,
        val_fraction: f64,
        seed: u64,
        o: &SampleOptions,
    ) -> (Vec<Sample>, Vec<String>) {
        let (mut out, mut missing) = (Vec::new(), Vec::new());
        for (file, r) in self.rows() {
            if self.split_of(file, r, val_fraction, seed) != split {
                continue;
            }
            if o.frontal_only && r.frontal == Some(false) {
                continue;
            }
            let Some(path) = self.image_path(&r.path) else {
                missing.push(r.path.clone());
                continue;
            };
            out.push(Sample {
                image: r.path.clone(),
                path,
                labels: r.targets(o).to_vec(),
                patient: r.patient,
            });
        }
        (out, missing)
    }

    /// One line for the user: which findings are labelled, what was left out.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|f| f.name()).collect();
        let mut s = format!(
            "CheXpert layout: {} training and {} valid rows{}; findings labelled: {}",
            self.train.len(),
            self.valid.len(),
            self.test
                .as_ref()
                .map_or(String::new(), |t| format!(" and {} test rows", t.len())),
            names.join(", ")
        );
        if !self.unmatched.is_empty() {
            s.push_str(&format!(
                "; columns without a ChestX-ray14 counterpart, left out: {}",
                self.unmatched.join(", ")
            ));
        }
        if !self.patients_known {
            s.push_str(
                "; no patient column or patientNNNNN folders: each image counts as its own patient, \
                 so validation cannot be split by patient",
            );
        }
        s
    }
}

/// One CheXpert-convention label file, read whole.
#[derive(Debug, Clone)]
pub struct LabelFile {
    pub rows: Vec<ChexpertRow>,
    /// Per finding in [`Finding::DISEASES`] order: whether the file has a column for it.
    pub columns: [bool; 14],
    /// Observation columns with no ChestX-ray14 counterpart.
    pub unmatched: Vec<String>,
    /// Whether patients came from the file (column or `patientNNNNN` folders).
    pub patients_known: bool,
}

/// Read one CheXpert-convention label file (`Path` or `Image Index` column, 1/0/-1/blank cells);
/// a bad cell is an error naming the file, line and column.
pub fn read_label_file(path: &Path) -> Result<LabelFile, NihError> {
    let file = std::fs::File::open(path).map_err(|e| bad(path, format!("cannot open: {e}")))?;
    let mut rdr =
        csv::ReaderBuilder::new()
            .flexible(false)
            .from_reader(chestx_core::io::CrlfAsLf::new(std::io::BufReader::new(
                file,
            )));
    let header = rdr.headers().map_err(|e| bad(path, e.to_string()))?.clone();
    let find = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
    };
    let path_col = find(&["Path", "Image Index"])
        .ok_or_else(|| bad(path, "no Path (or Image Index) column"))?;
    let patient_col = find(&["Patient ID", "subject_id"]);
    let view_col = find(&["Frontal/Lateral", "ViewPosition"]);
    let (label_cols, columns, unmatched) = label_columns(path, &header)?;
    let mut rows = Vec::new();
    let mut patients_known = patient_col.is_some();
    for rec in rdr.records() {
        let rec = rec.map_err(|e| bad(path, e.to_string()))?;
        let line = rec.position().map_or(0, |p| p.line());
        let at = |msg: String| bad(path, format!("line {line}: {msg}"));
        let cell_path = rec.get(path_col).unwrap_or("").trim().to_string();
        if cell_path.is_empty() {
            return Err(at("empty Path".into()));
        }
        let patient = match patient_col.map(|c| rec.get(c).unwrap_or("").trim()) {
            Some(id) if !id.is_empty() => id.parse::<u64>().unwrap_or_else(|_| hash_str(id)),
            Some(_) => return Err(at("empty patient id".into())),
            None => match patient_from_path(&cell_path) {
                Some(p) => {
                    patients_known = true;
                    p
                }
                None => hash_str(&cell_path),
            },
        };
        let frontal = view_col.and_then(|c| view_is_frontal(rec.get(c).unwrap_or("")));
        let mut mentions = [None; 14];
        for &(c, k) in &label_cols {
            let cell = rec.get(c).unwrap_or("");
            mentions[k] = Some(Mention::parse(cell).ok_or_else(|| {
                at(format!(
                    "{}: {cell:?} is not 1, 0, -1 or blank",
                    header.get(c).unwrap_or("?")
                ))
            })?);
        }
        rows.push(ChexpertRow {
            path: cell_path,
            patient,
            frontal,
            mentions,
        });
    }
    Ok(LabelFile {
        rows,
        columns,
        unmatched,
        patients_known,
    })
}

/// Label columns of a header: `(csv column, finding index)` pairs, which findings have one, and the
/// observation columns with no ChestX-ray14 counterpart.
#[allow(clippy::type_complexity)]
fn label_columns(
    path: &Path,
    header: &csv::StringRecord,
) -> Result<(Vec<(usize, usize)>, [bool; 14], Vec<String>), NihError> {
    let mut label_cols: Vec<(usize, usize)> = Vec::new(); // (csv column, finding index)
    let mut columns = [false; 14];
    let mut unmatched = Vec::new();
    for (i, h) in header.iter().enumerate() {
        let name = h.trim();
        if NOT_LABELS.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            continue;
        }
        match name.parse::<Finding>() {
            Ok(Finding::NoFinding) => {}
            Ok(f) => {
                let k = f.index();
                if columns[k] {
                    return Err(bad(path, format!("two columns for {}", f.name())));
                }
                columns[k] = true;
                label_cols.push((i, k));
            }
            Err(_) => unmatched.push(name.to_string()),
        }
    }
    Ok((label_cols, columns, unmatched))
}

/// CheXpert keeps each patient's films under `…/patientNNNNN/studyN/`.
pub(crate) fn patient_from_path(p: &str) -> Option<u64> {
    p.split(['/', '\\'])
        .filter_map(|seg| seg.strip_prefix("patient"))
        .find(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse().ok())
}

fn view_is_frontal(cell: &str) -> Option<bool> {
    match cell.trim().to_ascii_lowercase().as_str() {
        "frontal" | "pa" | "ap" | "ap axial" | "pa lld" | "ap lld" => Some(true),
        "lateral" | "ll" | "lao" | "rao" | "lpo" | "rpo" => Some(false),
        _ => None,
    }
}

/// A stable number for a non-numeric patient id (FNV-1a, then mixed).
fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    mix64(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_follow_the_chexpert_convention() {
        assert_eq!(Mention::parse("1.0"), Some(Mention::Positive));
        assert_eq!(Mention::parse("1"), Some(Mention::Positive));
        assert_eq!(Mention::parse(" 0.0 "), Some(Mention::Negative));
        assert_eq!(Mention::parse("-1.0"), Some(Mention::Uncertain));
        assert_eq!(Mention::parse(""), Some(Mention::Blank));
        assert_eq!(Mention::parse("2"), None);
        assert_eq!(Mention::parse("yes"), None);
        let o = SampleOptions::default();
        assert!(Mention::Uncertain.target(&o).is_nan());
        assert_eq!(Mention::Blank.target(&o), 0.0);
        let ones = SampleOptions {
            uncertain: UncertainAs::Ones,
            blank: BlankAs::Ignore,
            frontal_only: false,
        };
        assert_eq!(Mention::Uncertain.target(&ones), 1.0);
        assert!(Mention::Blank.target(&ones).is_nan());
    }

    #[test]
    fn patients_come_from_chexpert_folders() {
        assert_eq!(
            patient_from_path("CheXpert-v1.0-small/train/patient00042/study1/view1_frontal.jpg"),
            Some(42)
        );
        assert_eq!(patient_from_path("images/00000001_000.png"), None);
        assert_eq!(patient_from_path("patients/x.png"), None);
    }
}
