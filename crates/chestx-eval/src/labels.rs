//! Labeler scoring: per-finding precision, recall and F1, and micro averages, against a gold table.

use chestx_core::Finding;
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum LabelsError {
    #[error("{path}: {source}")]
    Csv { path: String, source: csv::Error },
    #[error("{path}: {msg}")]
    Format { path: String, msg: String },
}

/// Binary labels per report id: for each id, one bool per [`Finding::ALL`] column that the file has.
#[derive(Debug, Clone, Default)]
pub struct LabelTable {
    /// Columns present in the file.
    pub findings: Vec<Finding>,
    pub rows: BTreeMap<String, [bool; 15]>,
}

/// Ids are compared without the OpenI `CXR` prefix and without a file extension.
pub fn normalize_id(id: &str) -> String {
    let id = id.trim();
    let id = id.strip_suffix(".xml").unwrap_or(id);
    let id = id
        .strip_prefix("CXR")
        .or_else(|| id.strip_prefix("cxr"))
        .unwrap_or(id);
    id.to_string()
}

fn read_table(
    path: &Path,
    cell: impl Fn(&str) -> Result<bool, String>,
) -> Result<LabelTable, LabelsError> {
    let p = path.display().to_string();
    let mut rdr = csv::Reader::from_path(path).map_err(|e| LabelsError::Csv {
        path: p.clone(),
        source: e,
    })?;
    let headers = rdr
        .headers()
        .map_err(|e| LabelsError::Csv {
            path: p.clone(),
            source: e,
        })?
        .clone();
    let cols: Vec<(usize, Finding)> = headers
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(i, h)| h.parse::<Finding>().ok().map(|f| (i, f)))
        .collect();
    if cols.is_empty() {
        return Err(LabelsError::Format {
            path: p,
            msg: format!(
                "no finding columns in header {:?}",
                headers.iter().collect::<Vec<_>>()
            ),
        });
    }
    let mut table = LabelTable {
        findings: cols.iter().map(|c| c.1).collect(),
        rows: BTreeMap::new(),
    };
    for (n, rec) in rdr.records().enumerate() {
        let rec = rec.map_err(|e| LabelsError::Csv {
            path: p.clone(),
            source: e,
        })?;
        let id = normalize_id(rec.get(0).unwrap_or_default());
        let mut row = [false; 15];
        for &(i, f) in &cols {
            row[f.index()] =
                cell(rec.get(i).unwrap_or_default().trim()).map_err(|msg| LabelsError::Format {
                    path: p.clone(),
                    msg: format!("row {}: {msg}", n + 2),
                })?;
        }
        if table.rows.insert(id.clone(), row).is_some() {
            return Err(LabelsError::Format {
                path: p,
                msg: format!("report id {id} appears twice"),
            });
        }
    }
    Ok(table)
}

/// Read a gold file like `openi/gold.csv`: an id column, then finding columns of 0/1 (`normal` is
/// `No Finding`).
pub fn read_gold(path: &Path) -> Result<LabelTable, LabelsError> {
    read_table(path, |v| match v {
        "1" | "1.0" => Ok(true),
        "0" | "0.0" | "" => Ok(false),
        other => Err(format!("gold cell {other:?} is not 0/1")),
    })
}

/// Read a prediction file in the CheXpert convention (1, 0, -1, blank) or binary; `-1` counts as
/// positive when `uncertain_positive`.
pub fn read_predictions(path: &Path, uncertain_positive: bool) -> Result<LabelTable, LabelsError> {
    read_table(path, |v| match v {
        "1" | "1.0" => Ok(true),
        "0" | "0.0" | "" => Ok(false),
        "-1" | "-1.0" => Ok(uncertain_positive),
        other => Err(format!("label cell {other:?} is not 1, 0, -1 or blank")),
    })
}

#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Counts {
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
}

impl Counts {
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
    fn add(&mut self, o: &Counts) {
        self.tp += o.tp;
        self.fp += o.fp;
        self.fn_ += o.fn_;
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingScore {
    pub finding: String,
    pub gold_positives: u64,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl FindingScore {
    fn new(finding: &str, c: &Counts) -> Self {
        FindingScore {
            finding: finding.to_string(),
            gold_positives: c.tp + c.fn_,
            tp: c.tp,
            fp: c.fp,
            fn_: c.fn_,
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct LabelScores {
    pub reports: usize,
    /// Gold ids with no prediction row (scored as all-negative predictions).
    pub missing_predictions: Vec<String>,
    pub per_finding: Vec<FindingScore>,
    /// Micro average over the diseases that have at least one gold positive.
    pub micro_with_positives: FindingScore,
    /// Micro average over all 14 diseases (the paper's setting).
    pub micro_all14: FindingScore,
    pub no_finding: Option<FindingScore>,
}

/// Score predictions against gold over the gold ids.
pub fn score_labels(gold: &LabelTable, pred: &LabelTable) -> LabelScores {
    let mut counts = [Counts::default(); 15];
    let mut missing = Vec::new();
    let none = [false; 15];
    for (id, g) in &gold.rows {
        let p = match pred.rows.get(id) {
            Some(p) => p,
            None => {
                missing.push(id.clone());
                &none
            }
        };
        for f in &gold.findings {
            let i = f.index();
            let c = &mut counts[i];
            match (g[i], p[i]) {
                (true, true) => c.tp += 1,
                (false, true) => c.fp += 1,
                (true, false) => c.fn_ += 1,
                _ => {}
            }
        }
    }
    let mut micro_pos = Counts::default();
    let mut micro_all = Counts::default();
    let mut per = Vec::new();
    for f in Finding::DISEASES
        .iter()
        .filter(|f| gold.findings.contains(f))
    {
        let c = &counts[f.index()];
        micro_all.add(c);
        if c.tp + c.fn_ > 0 {
            micro_pos.add(c);
        }
        per.push(FindingScore::new(f.name(), c));
    }
    let no_finding = gold.findings.contains(&Finding::NoFinding).then(|| {
        FindingScore::new(
            Finding::NoFinding.name(),
            &counts[Finding::NoFinding.index()],
        )
    });
    LabelScores {
        reports: gold.rows.len(),
        missing_predictions: missing,
        per_finding: per,
        micro_with_positives: FindingScore::new("micro (findings with gold positives)", &micro_pos),
        micro_all14: FindingScore::new("micro (all 14)", &micro_all),
        no_finding,
    }
}

impl LabelScores {
    /// A Markdown table; findings without gold positives are marked.
    pub fn to_markdown(&self) -> String {
        let mut s = String::from("| finding | gold + | TP | FP | FN | precision | recall | F1 |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
        let row = |s: &mut String, f: &FindingScore| {
            let mark = if f.gold_positives == 0 {
                " (no gold positives)"
            } else {
                ""
            };
            s.push_str(&format!(
                "| {}{} | {} | {} | {} | {} | {:.3} | {:.3} | {:.3} |\n",
                f.finding, mark, f.gold_positives, f.tp, f.fp, f.fn_, f.precision, f.recall, f.f1
            ));
        };
        for f in &self.per_finding {
            row(&mut s, f);
        }
        row(&mut s, &self.micro_with_positives);
        row(&mut s, &self.micro_all14);
        if let Some(nf) = &self.no_finding {
            row(&mut s, nf);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(findings: &[Finding], rows: &[(&str, &[Finding])]) -> LabelTable {
        LabelTable {
            findings: findings.to_vec(),
            rows: rows
                .iter()
                .map(|(id, pos)| {
                    let mut r = [false; 15];
                    for f in *pos {
                        r[f.index()] = true;
                    }
                    (id.to_string(), r)
                })
                .collect(),
        }
    }

    #[test]
    fn counts_and_micro_average_worked_by_hand() {
        use Finding::*;
        let cols = [Edema, Mass, Hernia, NoFinding];
        let gold = table(
            &cols,
            &[("1", &[Edema]), ("2", &[Edema, Mass]), ("3", &[NoFinding])],
        );
        let pred = table(
            &cols,
            &[("1", &[Edema, Mass]), ("2", &[Edema]), ("3", &[Hernia])],
        );
        let s = score_labels(&gold, &pred);
        let by = |n: &str| s.per_finding.iter().find(|f| f.finding == n).unwrap();
        let edema = by("Edema");
        assert_eq!((edema.tp, edema.fp, edema.fn_), (2, 0, 0));
        let mass = by("Mass");
        assert_eq!((mass.tp, mass.fp, mass.fn_), (0, 1, 1));
        // Hernia has no gold positives: excluded from the first micro average only.
        assert_eq!(
            (
                s.micro_with_positives.tp,
                s.micro_with_positives.fp,
                s.micro_with_positives.fn_
            ),
            (2, 1, 1)
        );
        assert_eq!(s.micro_all14.fp, 2);
        assert!((s.micro_with_positives.f1 - 4.0 / 6.0).abs() < 1e-12);
        let nf = s.no_finding.unwrap();
        assert_eq!((nf.tp, nf.fn_), (0, 1));
    }

    #[test]
    fn ids_match_with_or_without_prefix() {
        assert_eq!(normalize_id("CXR10"), "10");
        assert_eq!(normalize_id("10"), "10");
        assert_eq!(normalize_id("CXR10.xml"), "10");
    }
}
