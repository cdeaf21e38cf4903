use chestx_core::io::open_maybe_gz;
use chestx_core::{BBox, Finding};
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum NihError {
    #[error("{0}: not found (looked for {1})")]
    Missing(String, String),
    #[error("{path}: {msg}")]
    Bad { path: String, msg: String },
}

pub(crate) fn bad(path: &Path, msg: impl Into<String>) -> NihError {
    NihError::Bad {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// One row of `Data_Entry`.
#[derive(Debug, Clone, PartialEq)]
pub struct NihEntry {
    pub image: String,
    /// Multi-hot over [`Finding::ALL`]; `No Finding` set for normal images.
    pub labels: [bool; 15],
    pub follow_up: u32,
    /// NIH numbers patients from 1; `chestx ingest` writes keyed-hash pseudonyms up to 10¹².
    pub patient_id: u64,
    pub age: Option<u32>,
    pub gender: String,
    pub view: String,
    pub original_size: (u32, u32),
    /// mm per pixel (x, y); NaN where the source did not say.
    pub pixel_spacing: (f64, f64),
}

/// One hand-drawn box of `BBox_List_2017.csv`, in 1024-pixel coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct NihBox {
    pub image: String,
    pub finding: Finding,
    pub bbox: BBox,
}

/// The NIH release opened from a folder.
#[derive(Debug, Clone)]
pub struct NihDataset {
    pub root: PathBuf,
    pub entries: Vec<NihEntry>,
    index: HashMap<String, usize>,
    pub train_val: Vec<String>,
    pub test: Vec<String>,
    pub boxes: Vec<NihBox>,
}

/// Find a released file in `root` or `root/meta`, plain or gzipped.
fn find(root: &Path, names: &[&str]) -> Option<PathBuf> {
    for dir in [root.to_path_buf(), root.join("meta")] {
        for n in names {
            for cand in [dir.join(n), dir.join(format!("{n}.gz"))] {
                if cand.is_file() {
                    return Some(cand);
                }
            }
        }
    }
    None
}

fn read_text(path: &Path) -> Result<String, NihError> {
    let mut s = String::new();
    open_maybe_gz(path)
        .and_then(|mut r| r.read_to_string(&mut s))
        .map_err(|e| bad(path, format!("cannot read: {e}")))?;
    Ok(s)
}

fn csv_reader(path: &Path) -> Result<csv::Reader<Box<dyn Read>>, NihError> {
    let r = open_maybe_gz(path).map_err(|e| bad(path, format!("cannot open: {e}")))?;
    Ok(csv::ReaderBuilder::new().flexible(true).from_reader(r))
}

/// Parse a `Finding Labels` cell ("Cardiomegaly|Emphysema", "No Finding").
pub fn parse_finding_labels(cell: &str) -> Result<[bool; 15], String> {
    Finding::parse_labels(cell).map_err(|e| e.to_string())
}

/// Ages are numbers in the 2020 release and "058Y"-style strings in the 2017 one.
fn parse_age(s: &str) -> Option<u32> {
    let digits: String = s
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// The index file's names, newest release first.
const ENTRY_NAMES: [&str; 3] = [
    "Data_Entry_2017_v2020.csv",
    "Data_Entry_2017.csv",
    "Data_Entry.csv",
];

impl NihDataset {
    /// The `Data_Entry` file the release was read from.
    pub fn entry_file(&self) -> Option<PathBuf> {
        find(&self.root, &ENTRY_NAMES)
    }

    /// Open the release under `root` (files directly there or in `root/meta`).
    pub fn open(root: &Path) -> Result<NihDataset, NihError> {
        let entry_names = ENTRY_NAMES;
        let de = find(root, &entry_names).ok_or_else(|| {
            NihError::Missing(root.display().to_string(), entry_names.join(" or "))
        })?;
        let entries = read_data_entry(&de)?;
        let index = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.image.clone(), i))
            .collect();
        let list = |name: &str| -> Result<Vec<String>, NihError> {
            match find(root, &[name]) {
                Some(p) => Ok(read_text(&p)?
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .collect()),
                None => Ok(Vec::new()),
            }
        };
        let train_val = list("train_val_list.txt")?;
        let test = list("test_list.txt")?;
        let boxes = match find(root, &["BBox_List_2017.csv", "BBox_List.csv"]) {
            Some(p) => read_boxes(&p)?,
            None => Vec::new(),
        };
        Ok(NihDataset {
            root: root.to_path_buf(),
            entries,
            index,
            train_val,
            test,
            boxes,
        })
    }

    /// Read a box list in the `BBox_List_2017.csv` layout.
    pub fn open_boxes(path: &Path) -> Result<Vec<NihBox>, NihError> {
        read_boxes(path)
    }

    pub fn entry(&self, image: &str) -> Option<&NihEntry> {
        self.index.get(image).map(|&i| &self.entries[i])
    }

    pub fn patients(&self) -> HashSet<u64> {
        self.entries.iter().map(|e| e.patient_id).collect()
    }

    /// The folders images live in: `images/`, or the released `images_NNN/images/`.
    fn image_dirs(&self) -> Vec<PathBuf> {
        let mut dirs = vec![self.root.join("images")];
        dirs.extend((1..=12).map(|i| self.root.join(format!("images_{i:03}")).join("images")));
        dirs
    }

    /// Where an image lives: `images/`, or one of the released `images_NNN/images/` folders.
    pub fn image_path(&self, image: &str) -> Option<PathBuf> {
        self.image_dirs()
            .into_iter()
            .map(|d| d.join(image))
            .find(|p| p.is_file())
    }

    /// Every image file in the image folders by name, from one listing of each folder (what
    /// [`NihDataset::image_path`] finds, without a lookup per image); the first folder wins.
    pub fn image_files(&self) -> HashMap<String, PathBuf> {
        let mut out = HashMap::new();
        for dir in self.image_dirs() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let linked_file = |t: std::fs::FileType| t.is_symlink() && e.path().is_file();
                if e.file_type().is_ok_and(|t| t.is_file() || linked_file(t)) {
                    if let Some(name) = e.file_name().to_str() {
                        out.entry(name.to_string()).or_insert_with(|| e.path());
                    }
                }
            }
        }
        out
    }
}

fn read_data_entry(path: &Path) -> Result<Vec<NihEntry>, NihError> {
    let mut rdr = csv_reader(path)?;
    let h = rdr.headers().map_err(|e| bad(path, e.to_string()))?.clone();
    let col = |name: &str| {
        h.iter()
            .position(|x| x.trim() == name)
            .ok_or_else(|| bad(path, format!("no {name:?} column")))
    };
    let (ci, cl, cf, cp, ca, cg, cv) = (
        col("Image Index")?,
        col("Finding Labels")?,
        col("Follow-up #")?,
        col("Patient ID")?,
        col("Patient Age")?,
        col("Patient Gender")?,
        col("View Position")?,
    );
    // The size and spacing headers hold commas ("OriginalImage[Width,Height]"), so those two values
    // spill into the next unnamed column: read them by position after the view.
    let csize = cv + 1;
    let mut out = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let line = n + 2;
        let rec = rec.map_err(|e| bad(path, format!("line {line}: {e}")))?;
        let get = |i: usize| rec.get(i).unwrap_or_default().trim();
        let num = |i: usize| -> Result<f64, NihError> {
            get(i).parse().map_err(|_| {
                bad(
                    path,
                    format!(
                        "line {line}: column {} is {:?}, not a number",
                        i + 1,
                        get(i)
                    ),
                )
            })
        };
        let spacing = |i: usize| {
            if get(i).is_empty() {
                Ok(f64::NAN)
            } else {
                num(i)
            }
        };
        out.push(NihEntry {
            image: get(ci).to_string(),
            labels: parse_finding_labels(get(cl))
                .map_err(|e| bad(path, format!("line {line}: {e}")))?,
            follow_up: num(cf)? as u32,
            patient_id: num(cp)? as u64,
            age: parse_age(get(ca)),
            gender: get(cg).to_string(),
            view: get(cv).to_string(),
            original_size: (num(csize)? as u32, num(csize + 1)? as u32),
            pixel_spacing: (spacing(csize + 2)?, spacing(csize + 3)?),
        });
    }
    Ok(out)
}

fn read_boxes(path: &Path) -> Result<Vec<NihBox>, NihError> {
    // Header: `Image Index,Finding Label,Bbox [x,y,w,h],,,` — values by position.
    let mut rdr = csv_reader(path)?;
    let mut out = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let line = n + 2;
        let rec = rec.map_err(|e| bad(path, format!("line {line}: {e}")))?;
        let v: Vec<f64> = (2..6)
            .map(|i| rec.get(i).unwrap_or_default().trim().parse::<f64>())
            .collect::<Result<_, _>>()
            .map_err(|_| bad(path, format!("line {line}: box values are not numbers")))?;
        let finding = rec
            .get(1)
            .unwrap_or_default()
            .parse::<Finding>()
            .map_err(|e| bad(path, format!("line {line}: {e}")))?;
        out.push(NihBox {
            image: rec.get(0).unwrap_or_default().trim().to_string(),
            finding,
            bbox: BBox::new(v[0], v[1], v[2], v[3]),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finding_labels_and_ages_parse_both_releases() {
        let l = parse_finding_labels("Cardiomegaly|Infiltrate").unwrap();
        assert!(l[Finding::Cardiomegaly.index()] && l[Finding::Infiltration.index()]);
        assert_eq!(l.iter().filter(|&&x| x).count(), 2);
        assert!(parse_finding_labels("No Finding").unwrap()[Finding::NoFinding.index()]);
        assert!(parse_finding_labels("Fracture").is_err());
        assert_eq!(parse_age("058Y"), Some(58));
        assert_eq!(parse_age("57"), Some(57));
        assert_eq!(parse_age(""), None);
    }
}
