//! Who is in which subgroup: `--by` specs (`sex`, `view`, `follow-up`, `age:0-20,20-40,…`, or any
//! column of the labels file) turned into partitions of the scored images.

use chestx_data::meta::{read_meta, Wanted};
use std::collections::BTreeMap;
use std::path::Path;

/// A half-open numeric band `[lo, hi)`; `hi = None` is open-ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Band {
    pub lo: f64,
    pub hi: Option<f64>,
}

impl Band {
    fn contains(&self, x: f64) -> bool {
        x >= self.lo && self.hi.is_none_or(|h| x < h)
    }

    /// "20–39" for `[20, 40)`, "0" for `[0, 1)`, "80+" for `[80, ∞)`: what a reader expects for ages
    /// and follow-up numbers, which are whole.
    fn label(&self) -> String {
        let whole = |x: f64| x.fract() == 0.0;
        match self.hi {
            None => format!("{}+", self.lo),
            Some(h) if whole(self.lo) && whole(h) && h == self.lo + 1.0 => format!("{}", self.lo),
            Some(h) if whole(self.lo) && whole(h) => format!("{}–{}", self.lo, h - 1.0),
            Some(h) => format!("{}–{h}", self.lo),
        }
    }
}

/// One `--by` item: a name for the report, the columns it may be read from (first found wins), and
/// numeric bands when the column is a number to be bucketed.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    pub columns: Vec<String>,
    pub bands: Option<Vec<Band>>,
}

/// What the usual names mean: NIH `Data_Entry`, CheXpert and MIMIC spell them differently.
fn known(name: &str) -> Option<(&'static str, &'static [&'static str], Option<&'static str>)> {
    Some(match name.to_ascii_lowercase().as_str() {
        "sex" | "gender" => ("sex", &["Patient Gender", "Sex", "gender"], None),
        "view" => ("view", &["View Position", "AP/PA", "ViewPosition"], None),
        "frontal" => ("frontal", &["Frontal/Lateral"], None),
        "age" => (
            "age",
            &["Patient Age", "Age", "anchor_age"],
            Some("0-20,20-40,40-60,60-80,80-"),
        ),
        "follow-up" | "followup" => ("follow-up", &["Follow-up #"], Some("0-1,1-5,5-20,20-")),
        _ => return None,
    })
}

fn parse_band(text: &str) -> Result<Band, String> {
    let bad = || format!("{text:?} is not a band like 20-40 or 80-");
    let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
    let lo: f64 = lo.trim().parse().map_err(|_| bad())?;
    let hi = match hi.trim() {
        "" => None,
        h => Some(h.parse::<f64>().map_err(|_| bad())?),
    };
    if hi.is_some_and(|h| h <= lo) {
        return Err(format!("band {text:?} is empty"));
    }
    Ok(Band { lo, hi })
}

fn is_band(token: &str) -> bool {
    token.trim().starts_with(|c: char| c.is_ascii_digit()) && token.contains('-')
}

/// Parse `--by`: comma-separated items; `name:bands` gives numeric bands, and the bands' own commas
/// are read as part of it (`age:0-20,20-40,sex` is age in two bands, then sex).
pub fn parse_by(text: &str) -> Result<Vec<GroupSpec>, String> {
    let mut specs: Vec<GroupSpec> = Vec::new();
    let mut in_bands = false;
    for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if in_bands && is_band(token) {
            let spec = specs.last_mut().expect("bands follow a spec");
            spec.bands
                .get_or_insert_with(Vec::new)
                .push(parse_band(token)?);
            continue;
        }
        let (name, bands) = match token.split_once(':') {
            Some((n, b)) => (n.trim(), Some(b.trim())),
            None => (token, None),
        };
        let spec = match known(name) {
            Some((n, cols, default_bands)) => GroupSpec {
                name: n.to_string(),
                columns: cols.iter().map(|c| c.to_string()).collect(),
                bands: bands
                    .or(default_bands)
                    .map(|b| b.split(',').map(parse_band).collect())
                    .transpose()?,
            },
            None => GroupSpec {
                name: name.to_string(),
                columns: vec![name.to_string()],
                bands: bands.map(|b| parse_band(b).map(|x| vec![x])).transpose()?,
            },
        };
        in_bands = spec.bands.is_some();
        if specs.iter().any(|s| s.name == spec.name) {
            return Err(format!("{:?} is asked for twice", spec.name));
        }
        specs.push(spec);
    }
    if specs.is_empty() {
        return Err("no subgroup column given".into());
    }
    for s in &specs {
        if let Some(b) = &s.bands {
            check_bands(&s.name, b)?;
        }
    }
    Ok(specs)
}

fn check_bands(name: &str, bands: &[Band]) -> Result<(), String> {
    for (i, a) in bands.iter().enumerate() {
        for b in &bands[i + 1..] {
            let overlap = a.hi.is_none_or(|h| b.lo < h) && b.hi.is_none_or(|h| a.lo < h);
            if overlap {
                return Err(format!(
                    "{name}: bands {} and {} overlap",
                    a.label(),
                    b.label()
                ));
            }
        }
    }
    Ok(())
}

/// The name given to images whose value is blank, unparseable or outside every band: they are a
/// subgroup of their own, shown like any other, never dropped.
pub const UNKNOWN: &str = "unknown";

/// A partition of the scored images: every image is in exactly one group.
#[derive(Clone, Debug)]
pub struct Partition {
    pub name: String,
    /// The column it was read from.
    pub column: String,
    pub groups: Vec<String>,
    /// Group index of each image.
    pub of_image: Vec<u16>,
}

impl GroupSpec {
    /// Group the images by their `values` in this spec's column (one per image, blank when absent).
    pub fn partition(&self, column: &str, values: &[&str]) -> Result<Partition, String> {
        let keys: Vec<String> = match &self.bands {
            Some(bands) => values.iter().map(|v| band_of(bands, v)).collect(),
            None => values
                .iter()
                .map(|v| match v.trim() {
                    "" => UNKNOWN.to_string(),
                    v => v.to_string(),
                })
                .collect(),
        };
        // Order: bands in the order given, categories alphabetically; unknown last.
        let mut order: BTreeMap<(usize, String), ()> = BTreeMap::new();
        for k in &keys {
            let rank = match &self.bands {
                _ if k == UNKNOWN => usize::MAX,
                Some(bands) => bands.iter().position(|b| b.label() == *k).unwrap_or(0),
                None => 0,
            };
            order.insert((rank, k.clone()), ());
        }
        let groups: Vec<String> = order.into_keys().map(|(_, k)| k).collect();
        if groups.len() > 64 {
            return Err(format!(
                "{}: column {column:?} has {} distinct values; give numeric bands ({}:0-20,20-40,…) \
                 or choose a categorical column",
                self.name,
                groups.len(),
                self.name
            ));
        }
        let index: std::collections::HashMap<&str, u16> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.as_str(), i as u16))
            .collect();
        Ok(Partition {
            name: self.name.clone(),
            column: column.to_string(),
            of_image: keys.iter().map(|k| index[k.as_str()]).collect(),
            groups,
        })
    }
}

/// The band a cell falls in; ages written the DICOM way ("058Y") are read as years.
fn band_of(bands: &[Band], cell: &str) -> String {
    let cell = cell.trim();
    let number = cell.strip_suffix(['Y', 'y']).unwrap_or(cell).trim();
    match number.parse::<f64>() {
        Ok(x) if x.is_finite() => bands
            .iter()
            .find(|b| b.contains(x))
            .map_or(UNKNOWN.to_string(), Band::label),
        _ => UNKNOWN.to_string(),
    }
}

/// The partitions `specs` ask for, and each image's patient (dense numbers), from `meta`.
pub fn subgroups(
    meta: &Path,
    specs: &[GroupSpec],
    images: &[&str],
) -> Result<(Vec<Partition>, Option<Vec<u32>>), String> {
    let wanted: Vec<Wanted> = specs
        .iter()
        .map(|s| Wanted {
            name: &s.name,
            headers: &s.columns,
        })
        .collect();
    let table = read_meta(meta, &wanted).map_err(|e| e.to_string())?;
    let mut rows = Vec::with_capacity(images.len());
    for (n, id) in images.iter().enumerate() {
        match table.get(id) {
            Some(r) => rows.push(r),
            None => {
                let more = images[n..]
                    .iter()
                    .filter(|i| table.get(i).is_none())
                    .count()
                    - 1;
                return Err(format!(
                    "{}: no row for image {id:?} (and {more} more of the {} scored images)",
                    meta.display(),
                    images.len()
                ));
            }
        }
    }
    let mut partitions = Vec::with_capacity(specs.len());
    for (k, spec) in specs.iter().enumerate() {
        let values: Vec<&str> = rows.iter().map(|r| r.values[k].as_str()).collect();
        partitions.push(
            spec.partition(&table.columns[k], &values)
                .map_err(|e| format!("{}: {e}", meta.display()))?,
        );
    }
    let patients = match table.patient_source {
        Some(_) if rows.iter().all(|r| r.patient.is_some()) => {
            let mut ids: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
            Some(
                rows.iter()
                    .map(|r| {
                        let next = ids.len() as u32;
                        *ids.entry(r.patient.as_deref().unwrap()).or_insert(next)
                    })
                    .collect(),
            )
        }
        _ => None,
    };
    Ok((partitions, patients))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn age_bands_keep_their_commas_and_other_items_follow() {
        let s = parse_by("age:0-20,20-40,40-,sex,View Position").unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s[0].name, "age");
        assert_eq!(
            s[0].bands.as_deref().unwrap(),
            &[
                Band {
                    lo: 0.0,
                    hi: Some(20.0)
                },
                Band {
                    lo: 20.0,
                    hi: Some(40.0)
                },
                Band { lo: 40.0, hi: None }
            ]
        );
        assert_eq!(s[1].columns[0], "Patient Gender");
        assert_eq!(s[2].columns, vec!["View Position".to_string()]);
        assert_eq!(parse_by("age").unwrap()[0].bands.as_ref().unwrap().len(), 5);
    }

    #[test]
    fn bad_specs_are_refused_with_the_reason() {
        assert!(parse_by("age:0-20,10-30").unwrap_err().contains("overlap"));
        assert!(parse_by("age:20-10").unwrap_err().contains("empty"));
        assert!(parse_by("sex,sex").unwrap_err().contains("twice"));
        assert!(parse_by(" , ").is_err());
    }

    #[test]
    fn images_fall_into_bands_and_unknowns_are_a_group_of_their_own() {
        let spec = &parse_by("age:0-20,20-40,40-").unwrap()[0];
        let p = spec
            .partition("Patient Age", &["5", "20", "039Y", "40", "", "x", "-3"])
            .unwrap();
        assert_eq!(p.groups, vec!["0–19", "20–39", "40+", UNKNOWN]);
        assert_eq!(p.of_image, vec![0, 1, 1, 2, 3, 3, 3]);
        let f = &parse_by("follow-up").unwrap()[0];
        let p = f.partition("Follow-up #", &["0", "3", "25"]).unwrap();
        assert_eq!(p.groups, vec!["0", "1–4", "20+"]);
    }

    #[test]
    fn categories_sort_and_too_many_are_refused() {
        let spec = &parse_by("sex").unwrap()[0];
        let p = spec
            .partition("Patient Gender", &["M", "F", "", "M"])
            .unwrap();
        assert_eq!(p.groups, vec!["F", "M", UNKNOWN]);
        assert_eq!(p.of_image, vec![1, 0, 2, 1]);
        let ids: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        assert!(spec
            .partition("x", &refs)
            .unwrap_err()
            .contains("100 distinct"));
    }
}
