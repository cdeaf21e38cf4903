//! Hospital exports to a dataset in the NIH layout, the way ChestX-ray8 was built from a PACS:
//! DICOM/PNG/JPEG → windowed 8-bit grayscale PNGs at one size, `Data_Entry.csv`, and a split by
//! patient.
//!
//! Privacy is structural. Patient ids are replaced by keyed-hash pseudonyms (HMAC-SHA-256 with a
//! secret only the hospital holds, so nobody without it can confirm a guessed id); names and birth dates
//! are never read; the PNGs carry pixels only; and the only things written about a source file are the
//! pseudonymous index row and, for files that failed, a list kept *beside* the dataset, not in it.
//!
//! Work is in three passes: headers of every source (parallel), a plan (pseudonyms, follow-up numbers
//! in study order per patient, the split), then pixels (parallel). The plan depends only on the
//! sources, the secret and the seed, so a re-run plans the same names and skips images already written:
//! an interrupted ingest resumes.

use chestx_core::seed::mix64;
use chestx_core::shard::{Fingerprint, Shard};
use chestx_core::walk::{walk, Walk};
use chestx_core::{Finding, ReportLabels};
use chestx_image::dicom::{self, DicomInfo};
use chestx_image::Gray;
use hmac::{Hmac, Mac};
use rayon::prelude::*;
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// Where a source's metadata came from.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Dicom,
    /// PNG/JPEG: no header. The patient is the `NNN` of a `NNN_MMM` file name (NIH style, `MMM` the
    /// order), else the file itself.
    Picture,
}

/// One source image, header read, pixels not yet.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub kind: SourceKind,
    /// Raw patient identifier (never written).
    patient_key: String,
    /// Sort key for follow-up order within a patient (study date/time, study, file).
    order_key: String,
    /// Raw key reports are matched on: the file stem.
    pub report_key: String,
    pub age: Option<u32>,
    pub sex: Option<String>,
    pub view: Option<String>,
    pub size: (u32, u32),
    pub spacing: Option<(f64, f64)>,
}

/// A source that could not be used, and why.
#[derive(Debug, Clone)]
pub struct Failure {
    pub path: PathBuf,
    pub message: String,
}

/// Options of one ingest.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Output side in pixels (square; NIH: 1024).
    pub size: u32,
    /// Train / validation / test shares of patients (any positive weights).
    pub split: [u32; 3],
    pub seed: u64,
    /// Key of the patient pseudonyms.
    pub secret: Vec<u8>,
}

/// The DICOM/PNG/JPEG files (by extension) in folders under `paths`, recursively and sorted, plus
/// every file named directly whatever its extension (it was asked for; if it is not an image, it is
/// reported as a failure rather than passed over). Each file once (a film reached through a link is
/// not ingested twice), link loops cut, FIFOs and other non-files listed in [`Walk::skipped`].
pub fn find_sources(paths: &[PathBuf]) -> Walk {
    walk(paths, &|p| {
        let ext = p
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        matches!(ext.as_str(), "dcm" | "dicom" | "png" | "jpg" | "jpeg")
    })
}

fn stem(p: &Path) -> String {
    p.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Bytes read from each source to tell its kind and, for a PNG or JPEG, its size (a JPEG whose
/// frame header lies further in is then read whole).
const HEAD_LEN: u64 = 64 << 10;

/// Read one source's header: the first [`HEAD_LEN`] bytes, a DICOM file up to its Pixel Data.
pub fn read_source(path: &Path) -> Result<Source, String> {
    use std::io::Read;
    let mut file = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| e.to_string())?);
    let mut bytes = Vec::new();
    (&mut file)
        .take(HEAD_LEN)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    let s = stem(path);
    if dicom::is_dicom(&bytes) {
        // The head already read, then the rest of the file as far as the parser asks.
        let info: DicomInfo = dicom::read_info_from(std::io::Cursor::new(&bytes).chain(file))?;
        let patient_key = info
            .patient_id
            .clone()
            .map(|id| format!("dicom:{id}"))
            .unwrap_or_else(|| format!("file:{}", path.display()));
        let order_key = format!(
            "{}{}|{}|{}",
            info.study_date.as_deref().unwrap_or("99999999"),
            info.study_time.as_deref().unwrap_or(""),
            info.study_uid.as_deref().unwrap_or(""),
            path.display()
        );
        return Ok(Source {
            path: path.to_path_buf(),
            kind: SourceKind::Dicom,
            patient_key,
            order_key,
            report_key: s,
            age: info.patient_age,
            sex: info.patient_sex.clone(),
            view: info.view_position.clone(),
            size: (info.columns, info.rows),
            // DICOM gives (row, column) spacing; NIH lists x (column) first.
            spacing: info.pixel_spacing.map(|(r, c)| (c, r)),
        });
    }
    let dimensions = |bytes: &[u8]| {
        image::ImageReader::new(std::io::Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| e.to_string())?
            .into_dimensions()
            .map_err(|e| format!("not a readable PNG/JPEG/DICOM file: {e}"))
    };
    let (w, h) = match dimensions(&bytes) {
        // Cut short by the prefix (metadata before the frame header): read the whole file.
        Err(_) if bytes.len() as u64 == HEAD_LEN => {
            file.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
            dimensions(&bytes)?
        }
        other => other?,
    };
    let (patient_key, order_key) = match s.split_once('_') {
        Some((p, n)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (format!("nih:{p}"), format!("{n:0>8}|{}", path.display()))
        }
        _ => (format!("file:{}", path.display()), String::new()),
    };
    Ok(Source {
        path: path.to_path_buf(),
        kind: SourceKind::Picture,
        patient_key,
        order_key,
        report_key: s,
        age: None,
        sex: None,
        view: None,
        size: (w, h),
        spacing: None,
    })
}

/// The pseudonym of a raw patient key: HMAC-SHA-256 under `secret`, as a number below 10¹⁰ (never 0).
pub fn pseudonym(secret: &[u8], raw: &str, attempt: u32) -> u64 {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(raw.as_bytes());
    if attempt > 0 {
        mac.update(format!("#{attempt}").as_bytes());
    }
    let d = mac.finalize().into_bytes();
    let v = u64::from_le_bytes(d[..8].try_into().expect("8 bytes"));
    1 + v % 9_999_999_999
}

/// Which side of the split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Train,
    Val,
    Test,
}

/// One planned output image.
#[derive(Debug, Clone)]
pub struct Planned {
    pub source: Source,
    pub patient: u64,
    pub follow_up: u32,
    pub image: String,
    pub part: Part,
}

/// Pseudonyms, follow-up numbers and the patient-wise split. Errors if a source's patient cannot be
/// told apart (never in practice: pseudonym collisions are resolved by re-keying in sorted order).
pub fn plan(sources: Vec<Source>, cfg: &IngestConfig) -> Vec<Planned> {
    let mut by_patient: BTreeMap<String, Vec<Source>> = BTreeMap::new();
    for s in sources {
        by_patient.entry(s.patient_key.clone()).or_default().push(s);
    }
    let total: u64 = cfg.split.iter().map(|&v| v as u64).sum::<u64>().max(1);
    let mut taken: HashMap<u64, String> = HashMap::new();
    let mut out = Vec::new();
    for (key, mut list) in by_patient {
        let mut attempt = 0;
        let patient = loop {
            let p = pseudonym(&cfg.secret, &key, attempt);
            match taken.get(&p) {
                Some(other) if *other != key => attempt += 1,
                _ => break p,
            }
        };
        taken.insert(patient, key);
        let u = mix64(patient ^ mix64(cfg.seed)) % total;
        let part = if u < cfg.split[0] as u64 {
            Part::Train
        } else if u < (cfg.split[0] + cfg.split[1]) as u64 {
            Part::Val
        } else {
            Part::Test
        };
        list.sort_by(|a, b| a.order_key.cmp(&b.order_key));
        for (n, source) in list.into_iter().enumerate() {
            out.push(Planned {
                image: format!("{patient:010}_{n:03}.png"),
                source,
                patient,
                follow_up: n as u32,
                part,
            });
        }
    }
    out.sort_by(|a, b| a.image.cmp(&b.image));
    out
}

/// Decode, resize to `size`², write `images/NAME` atomically; skip when it exists already (resume).
/// Returns whether it was written now.
pub fn convert(p: &Planned, images: &Path, size: u32) -> Result<bool, String> {
    let out = images.join(&p.image);
    if out.is_file() {
        return Ok(false);
    }
    let g = Gray::open(&p.source.path).map_err(|e| e.to_string())?;
    g.resize(size, size)
        .save_png(&out)
        .map_err(|e| e.to_string())?;
    Ok(true)
}

/// The `Finding Labels` cell: definite positives joined by `|`, `No Finding` when the report says
/// so, empty when there is no report (unknown, not normal).
pub fn finding_labels(labels: Option<&ReportLabels>) -> String {
    let Some(l) = labels else {
        return String::new();
    };
    let pos: Vec<&str> = Finding::DISEASES
        .iter()
        .filter(|f| l.binary(**f, false))
        .map(|f| f.name())
        .collect();
    if !pos.is_empty() {
        pos.join("|")
    } else if l.binary(Finding::NoFinding, false) {
        "No Finding".into()
    } else {
        String::new()
    }
}

/// The columns of `Data_Entry.csv`, NIH's spelling.
pub const INDEX_COLUMNS: [&str; 11] = [
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
];

/// One image's `Data_Entry.csv` cells and its side of the split: what a shard of a sharded ingest
/// hands to the merge.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexRow {
    pub cells: [String; 11],
    pub part: Part,
}

impl Part {
    fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Val => "val",
            Part::Test => "test",
        }
    }

    fn from_name(s: &str) -> Option<Part> {
        [Part::Train, Part::Val, Part::Test]
            .into_iter()
            .find(|p| p.name() == s)
    }
}

/// The index rows of planned images, in plan order.
pub fn index_rows(planned: &[Planned], labels: &HashMap<String, ReportLabels>) -> Vec<IndexRow> {
    planned
        .iter()
        .map(|p| {
            let s = &p.source;
            let (sx, sy) = s
                .spacing
                .map(|(x, y)| (x.to_string(), y.to_string()))
                .unwrap_or_default();
            let cells = [
                p.image.clone(),
                finding_labels(labels.get(&s.report_key)),
                p.follow_up.to_string(),
                p.patient.to_string(),
                // Ages above 89 are identifying (HIPAA Safe Harbor): reported as 90.
                s.age.map(|a| a.min(90).to_string()).unwrap_or_default(),
                s.sex.clone().unwrap_or_default(),
                s.view.clone().unwrap_or_default(),
                s.size.0.to_string(),
                s.size.1.to_string(),
                sx,
                sy,
            ];
            IndexRow {
                cells,
                part: p.part,
            }
        })
        .collect()
}

/// Write `Data_Entry.csv` and the split lists into `out` (atomically each).
pub fn write_index(
    out: &Path,
    planned: &[Planned],
    labels: &HashMap<String, ReportLabels>,
) -> Result<(), String> {
    write_index_rows(out, &index_rows(planned, labels))
}

/// [`write_index`] from rows (a merge's, or one ingest's).
pub fn write_index_rows(out: &Path, rows: &[IndexRow]) -> Result<(), String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| e.to_string();
    w.write_record(INDEX_COLUMNS).map_err(err)?;
    for r in rows {
        w.write_record(&r.cells).map_err(err)?;
    }
    let csv = w.into_inner().map_err(|e| e.to_string())?;
    write_atomic(&out.join("Data_Entry.csv"), &csv)?;
    let list = |parts: &[Part]| -> Vec<u8> {
        rows.iter()
            .filter(|r| parts.contains(&r.part))
            .flat_map(|r| format!("{}\n", r.cells[0]).into_bytes())
            .collect()
    };
    write_atomic(
        &out.join("train_val_list.txt"),
        &list(&[Part::Train, Part::Val]),
    )?;
    write_atomic(&out.join("val_list.txt"), &list(&[Part::Val]))?;
    write_atomic(&out.join("test_list.txt"), &list(&[Part::Test]))
}

/// A shard's rows: the `Data_Entry.csv` columns and a `Split` column.
pub fn write_index_shard(path: &Path, rows: &[IndexRow]) -> Result<(), String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let err = |e: csv::Error| e.to_string();
    w.write_record(INDEX_COLUMNS.iter().chain(&["Split"]))
        .map_err(err)?;
    for r in rows {
        w.write_record(r.cells.iter().map(String::as_str).chain([r.part.name()]))
            .map_err(err)?;
    }
    write_atomic(path, &w.into_inner().map_err(|e| e.to_string())?)
}

/// Read back what [`write_index_shard`] wrote.
pub fn read_index_shard(path: &Path) -> Result<Vec<IndexRow>, String> {
    let named = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut r = csv::Reader::from_path(path).map_err(|e| named(&e))?;
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| named(&e))?;
        let bad = || named(&"not a shard index row (12 columns, the last train/val/test)");
        if rec.len() != 12 {
            return Err(bad());
        }
        let part = Part::from_name(&rec[11]).ok_or_else(bad)?;
        let cells = std::array::from_fn(|i| rec[i].to_string());
        rows.push(IndexRow { cells, part });
    }
    Ok(rows)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    chestx_core::io::write_atomic(path, bytes).map_err(|e| e.to_string())
}

/// Outcome counts of one ingest.
#[derive(Debug, Clone, Default)]
pub struct IngestSummary {
    pub sources: usize,
    pub written: usize,
    pub skipped_existing: usize,
    pub patients: usize,
    pub failures: Vec<Failure>,
    /// Images planned over the whole input (a shard converts its block of them).
    pub planned: usize,
    /// The images this run converted or tried to: all of them, or a shard's block.
    pub assigned: usize,
    /// Which of them failed, by position in the plan.
    pub failed_positions: Vec<u64>,
    /// Failures before planning (unreadable headers, link loops): shard 0 reports them.
    pub unplanned_failures: usize,
    /// Fingerprint of the plan (image names and sources, in order): every shard computes the same.
    pub plan_fingerprint: String,
    /// A shard's index rows, for the merge (empty without a shard: the index is written).
    pub rows: Vec<IndexRow>,
}

/// The settings an ingest's outputs depend on, kept in `OUT/ingest.json`: a resumed ingest must use
/// the same ones, or the dataset would mix image sizes (its PNGs are kept, not rewritten) or, with
/// another secret, name new pseudonymous patients and orphan the PNGs already written. The secret is
/// stored only as a keyed fingerprint.
#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Settings {
    size: u32,
    split: [u32; 3],
    seed: u64,
    secret_fingerprint: String,
}

fn check_settings(out: &Path, cfg: &IngestConfig) -> Result<(), String> {
    let fp = pseudonym(&cfg.secret, "chestx ingest settings fingerprint", 0);
    let now = Settings {
        size: cfg.size,
        split: cfg.split,
        seed: cfg.seed,
        secret_fingerprint: format!("{fp:010}"),
    };
    let path = out.join("ingest.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let was: Settings = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not an ingest settings file ({e})", path.display()))?;
        if was != now {
            let what = [
                (
                    was.size != now.size,
                    format!("--size {} (now {})", was.size, now.size),
                ),
                (
                    was.split != now.split,
                    format!("--split {:?} (now {:?})", was.split, now.split),
                ),
                (
                    was.seed != now.seed,
                    format!("--seed {} (now {})", was.seed, now.seed),
                ),
                (
                    was.secret_fingerprint != now.secret_fingerprint,
                    "another secret".to_string(),
                ),
            ];
            let diff: Vec<String> = what
                .into_iter()
                .filter(|(d, _)| *d)
                .map(|(_, w)| w)
                .collect();
            return Err(format!(
                "{} was ingested with {}: resume with the same settings, or write to another --output",
                out.display(),
                diff.join(", ")
            ));
        }
        return Ok(());
    }
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let json = serde_json::to_vec_pretty(&now).expect("settings serialize");
    write_atomic(&path, &json)
}

/// The whole ingest: headers, plan, pixels, index. Failed sources are listed and left out of the
/// index (never silently: see `failures`); `progress` is called once per source per pass.
///
/// With a shard, every shard reads every header and makes the same plan (pseudonyms, follow-up
/// numbers and the split depend on the key, the seed and the patient's films, never on the shard),
/// then converts only its block of the planned images and returns their rows instead of writing
/// the index: shards agree without talking, and their merged rows are the unsharded index.
pub fn ingest(
    paths: &[PathBuf],
    out: &Path,
    cfg: &IngestConfig,
    labels: &HashMap<String, ReportLabels>,
    shard: Option<Shard>,
    progress: &(dyn Fn() + Sync),
) -> Result<IngestSummary, String> {
    let found = find_sources(paths);
    let files = found.files();
    if files.is_empty() {
        return Err("no DICOM/PNG/JPEG files found".into());
    }
    check_settings(out, cfg)?;
    let images = out.join("images");
    std::fs::create_dir_all(&images).map_err(|e| format!("{}: {e}", images.display()))?;
    let (sources, mut failures) = read_headers(&found, progress);
    // Shard 0 answers for what failed before the plan; the other shards saw the same failures.
    if shard.is_some_and(|s| s.index != 0) {
        failures.clear();
    }
    let unplanned_failures = failures.len();
    let n_sources = files.len();
    let planned = plan(sources, cfg);
    let mut fingerprint = Fingerprint::default();
    for p in &planned {
        fingerprint.add(&p.image);
        fingerprint.add(&p.source.path.display().to_string());
    }
    let block = shard.map_or(0..planned.len(), |s| s.block(planned.len()));
    let done: Vec<Result<bool, String>> = planned[block.clone()]
        .par_iter()
        .map(|p| {
            progress();
            convert(p, &images, cfg.size)
        })
        .collect();
    let mut kept = Vec::new();
    let mut failed_positions = Vec::new();
    let (mut written, mut skipped) = (0, 0);
    for (k, (p, r)) in planned[block.clone()].iter().zip(done).enumerate() {
        match r {
            Ok(true) => written += 1,
            Ok(false) => skipped += 1,
            Err(message) => {
                failed_positions.push((block.start + k) as u64);
                failures.push(Failure {
                    path: p.source.path.clone(),
                    message,
                });
                continue;
            }
        }
        kept.push(p.clone());
    }
    let rows = index_rows(&kept, labels);
    let mut patients: Vec<u64> = kept.iter().map(|p| p.patient).collect();
    patients.sort_unstable();
    patients.dedup();
    failures.sort_by(|a, b| a.path.cmp(&b.path));
    let mut summary = IngestSummary {
        sources: n_sources,
        written,
        skipped_existing: skipped,
        patients: patients.len(),
        failures,
        planned: planned.len(),
        assigned: block.len(),
        failed_positions,
        unplanned_failures,
        plan_fingerprint: fingerprint.hex(),
        rows: Vec::new(),
    };
    match shard {
        None => write_index_rows(out, &rows)?,
        Some(_) => summary.rows = rows,
    }
    Ok(summary)
}

/// Pass one: every source's header (in parallel), and what could not be read or was passed over.
fn read_headers(found: &Walk, progress: &(dyn Fn() + Sync)) -> (Vec<Source>, Vec<Failure>) {
    let read: Vec<Result<Source, Failure>> = found
        .files()
        .par_iter()
        .map(|f| {
            progress();
            read_source(f).map_err(|message| Failure {
                path: f.clone(),
                message,
            })
        })
        .collect();
    let mut failures: Vec<Failure> = found
        .skipped()
        .into_iter()
        .map(|(path, message)| Failure { path, message })
        .collect();
    let mut sources = Vec::new();
    for r in read {
        match r {
            Ok(s) => sources.push(s),
            Err(f) => failures.push(f),
        }
    }
    (sources, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_size_is_read_from_the_head_or_the_whole_file_when_metadata_pushes_it_past() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::GrayImage::from_fn(40, 24, |x, y| image::Luma([(x * 5 + y) as u8]));
        let mut jpeg = Vec::new();
        image::DynamicImage::ImageLuma8(img.clone())
            .write_to(
                &mut std::io::Cursor::new(&mut jpeg),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        // Three 64 KB application segments after SOI put the frame header past HEAD_LEN.
        let mut padded = jpeg[..2].to_vec();
        for _ in 0..3 {
            padded.extend_from_slice(&[0xFF, 0xEF, 0xFF, 0xFF]);
            padded.extend(std::iter::repeat_n(0u8, 0xFFFF - 2));
        }
        padded.extend_from_slice(&jpeg[2..]);
        assert!(padded.len() as u64 > 3 * HEAD_LEN);
        let mut png = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        for (name, bytes) in [
            ("00000007_001.jpg", &padded),
            ("00000007_002.jpg", &jpeg),
            ("00000007_000.png", &png),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            let s = read_source(&path).unwrap();
            assert_eq!(s.size, (40, 24), "{name}");
            assert_eq!(
                (s.kind, s.patient_key.as_str()),
                (SourceKind::Picture, "nih:00000007")
            );
        }
        // Cut inside the frame header's metadata: an error naming the problem, not a size.
        let cut = dir.path().join("cut.jpg");
        std::fs::write(&cut, &padded[..100_000]).unwrap();
        let e = read_source(&cut).unwrap_err();
        assert!(e.contains("not a readable PNG/JPEG/DICOM file"), "{e}");
    }

    fn src(key: &str, order: &str) -> Source {
        Source {
            path: PathBuf::from(format!("/x/{key}-{order}.dcm")),
            kind: SourceKind::Dicom,
            patient_key: key.into(),
            order_key: order.into(),
            report_key: String::new(),
            age: None,
            sex: None,
            view: None,
            size: (1, 1),
            spacing: None,
        }
    }

    #[test]
    fn pseudonyms_are_keyed_stable_and_in_range() {
        let a = pseudonym(b"secret", "dicom:123", 0);
        assert_eq!(a, pseudonym(b"secret", "dicom:123", 0));
        assert_ne!(a, pseudonym(b"other", "dicom:123", 0));
        assert_ne!(a, pseudonym(b"secret", "dicom:124", 0));
        assert!((1..10_000_000_000).contains(&a));
    }

    #[test]
    fn plan_orders_follow_ups_and_keeps_patients_on_one_side() {
        let cfg = IngestConfig {
            size: 8,
            split: [1, 1, 1],
            seed: 3,
            secret: b"k".to_vec(),
        };
        let mut sources = Vec::new();
        for p in 0..60 {
            for d in ["20200301", "20190101", "20210101"] {
                sources.push(src(&format!("dicom:{p}"), d));
            }
        }
        let plan = plan(sources, &cfg);
        assert_eq!(plan.len(), 180);
        let mut sides: HashMap<u64, Part> = HashMap::new();
        for p in &plan {
            assert_eq!(*sides.entry(p.patient).or_insert(p.part), p.part);
            // Follow-up 0 is the earliest study.
            let want = match p.source.order_key.as_str() {
                "20190101" => 0,
                "20200301" => 1,
                _ => 2,
            };
            assert_eq!(p.follow_up, want);
            assert_eq!(p.image, format!("{:010}_{want:03}.png", p.patient));
        }
        // All three parts are used at 1:1:1 over 60 patients.
        for part in [Part::Train, Part::Val, Part::Test] {
            let n = sides.values().filter(|&&v| v == part).count();
            assert!((8..=32).contains(&n), "{part:?}: {n}");
        }
    }
}
