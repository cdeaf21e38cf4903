//! DICOM radiographs to display-ready grayscale, and the header fields a chest X-ray database needs.
//!
//! Parsing and the compressed codecs (JPEG baseline/extended/lossless, JPEG-LS, JPEG 2000, RLE) are
//! dicom-rs's; [`pixels`] turns a frame's stored samples into numbers for every layout a PACS sends.
//! The display pipeline is ours and follows PS3.3 C.11: stored values → modality LUT
//! (rescale slope/intercept) → VOI (the file's first window centre/width with the linear function of
//! C.11.2.1.2.1, or, when the file has none, the full range of its values) → MONOCHROME1 inverted so that
//! air is dark in every output, as on a film.
//!
//! Old ACR-NEMA files without preamble or file meta group are read as implicit VR little endian (the
//! only encoding that standard had); anything else that is not DICOM fails with a message naming why.

mod pixels;

use crate::Gray;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::transfer_syntax::TransferSyntaxIndex;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use std::io::Read;
use std::path::Path;

/// The header of one DICOM image: what `inspect` shows and `ingest` indexes.
///
/// Identifiers (`patient_id`, `study_uid`) are kept only so a caller can pseudonymize and group them;
/// nothing in this crate writes them anywhere.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct DicomInfo {
    /// The file had a preamble and file meta group (Part 10); false for old ACR-NEMA files.
    pub part10: bool,
    pub transfer_syntax: String,
    pub transfer_syntax_name: String,
    pub modality: Option<String>,
    pub rows: u32,
    pub columns: u32,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub samples_per_pixel: u16,
    pub photometric: String,
    pub frames: u32,
    pub rescale: (f64, f64),
    /// First window (centre, width), if the file has one.
    pub window: Option<(f64, f64)>,
    /// Row, column spacing in mm: Pixel Spacing, else Imager Pixel Spacing.
    pub pixel_spacing: Option<(f64, f64)>,
    pub view_position: Option<String>,
    pub patient_sex: Option<String>,
    /// Age in whole years (from Patient's Age), if given.
    pub patient_age: Option<u32>,
    pub study_date: Option<String>,
    pub study_time: Option<String>,
    #[serde(skip)]
    pub patient_id: Option<String>,
    #[serde(skip)]
    pub study_uid: Option<String>,
}

/// Whether a file starting with `bytes` is read as DICOM rather than as a picture: a Part 10 file
/// (`DICM` at 128) always, whatever its 128-byte preamble resembles (a TIFF-compatible preamble is
/// valid DICOM); otherwise when no picture format matches and it [`looks_like_dicom`].
pub fn is_dicom(bytes: &[u8]) -> bool {
    bytes.get(128..132) == Some(b"DICM".as_slice())
        || (image::guess_format(bytes).is_err() && looks_like_dicom(bytes))
}

/// Whether `bytes` start like a DICOM file: the Part-10 magic at 128, or (ACR-NEMA) an implicit-VR
/// element of group 0008 first.
pub fn looks_like_dicom(bytes: &[u8]) -> bool {
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        return true;
    }
    if bytes.len() >= 4 && &bytes[..4] == b"DICM" {
        return true;
    }
    // Implicit VR LE: group (u16), element (u16), length (u32). Old files start in group 0008.
    bytes.len() >= 8 && bytes[0] == 0x08 && bytes[1] == 0x00 && bytes[3] == 0x00
}

/// Leading bytes that tell a file's form: the Part-10 magic sits at 128..132.
const MAGIC_LEN: usize = 132;

/// The most a file meta group may claim (a few hundred bytes in practice).
const META_MAX: u64 = 64 * 1024;

fn open(bytes: &[u8], header_only: bool) -> Result<(DefaultDicomObject, bool), String> {
    open_from(bytes, bytes, header_only)
}

/// Parse a DICOM file whose first bytes are `head` (the file meta group at least, where the file
/// has one: enough to tell its form) and which `data` reads from its start, as far as needed.
fn open_from(
    head: &[u8],
    data: impl std::io::Read,
    header_only: bool,
) -> Result<(DefaultDicomObject, bool), String> {
    use dicom_object::file::ReadPreamble;
    let opts = || {
        let o = OpenFileOptions::new();
        if header_only {
            o.read_until(tags::PIXEL_DATA)
        } else {
            o
        }
    };
    if let Some((meta, start)) = implicit_despite_meta(head) {
        let mut data = data;
        let skip: &mut dyn std::io::Read = &mut data;
        std::io::copy(&mut skip.take(start as u64), &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        let ts = IMPLICIT_VR_LITTLE_ENDIAN.erased();
        let obj = InMemDicomObject::read_dataset_with_ts(data, &ts).map_err(|e| {
            format!("the data set is implicit VR although the file meta says explicit, and not readable so either: {e}")
        })?;
        return Ok((obj.with_exact_meta(meta), true));
    }
    if head.len() >= MAGIC_LEN && &head[128..MAGIC_LEN] == b"DICM" {
        let obj = opts()
            .read_preamble(ReadPreamble::Always)
            .from_reader(data)
            .map_err(|e| format!("not a readable DICOM file: {e}"))?;
        return Ok((obj, true));
    }
    if head.len() >= 4 && &head[..4] == b"DICM" {
        let obj = opts()
            .read_preamble(ReadPreamble::Never)
            .from_reader(data)
            .map_err(|e| format!("not a readable DICOM file: {e}"))?;
        return Ok((obj, true));
    }
    if !looks_like_dicom(head) {
        return Err(
            "not a DICOM file (no DICM marker, and no ACR-NEMA data set at the start)".into(),
        );
    }
    // ACR-NEMA: a bare data set, implicit VR little endian (read whole: legacy files are small).
    let ts = IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let obj = InMemDicomObject::read_dataset_with_ts(data, &ts).map_err(|e| {
        format!("no DICOM file meta group, and not readable as an implicit-VR data set: {e}")
    })?;
    let meta = FileMetaTableBuilder::new()
        .transfer_syntax(ts.uid())
        .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.1") // CR Image Storage
        .media_storage_sop_instance_uid("2.25.0");
    let obj = obj
        .with_meta(meta)
        .map_err(|e| format!("cannot wrap the ACR-NEMA data set: {e}"))?;
    Ok((obj, false))
}

/// A Part 10 file whose meta group names an explicit-VR little-endian transfer syntax but whose data
/// set is written implicit VR (some writers do this; dcmtk and pydicom read them by looking at the
/// first element): its meta group and where its data set starts. `None` for every other file.
fn implicit_despite_meta(head: &[u8]) -> Option<(dicom_object::FileMetaTable, usize)> {
    if head.get(128..MAGIC_LEN)? != b"DICM" {
        return None;
    }
    let mut rest = &head[128..];
    let before = rest.len();
    let meta = dicom_object::FileMetaTable::from_reader(&mut rest).ok()?;
    let start = 128 + before - rest.len();
    // Implicit, big-endian and deflated data sets are what their meta says; only explicit VR
    // little endian (native or encapsulated pixel data) is second-guessed.
    if matches!(
        meta.transfer_syntax(),
        "1.2.840.10008.1.2" | "1.2.840.10008.1.2.2" | "1.2.840.10008.1.2.1.99"
    ) {
        return None;
    }
    let mut first = [0u8; 6];
    (&head[start..]).read_exact(&mut first).ok()?;
    let explicit_vr = first[4..6].iter().all(u8::is_ascii_uppercase);
    (!explicit_vr).then_some((meta, start))
}

/// Every length the data set declares, up to and including the Pixel Data's, must fit in the file.
/// dicom-rs sets aside a value's declared length before reading it, so without this check a 1 KB
/// file whose Pixel Data claims 4 GB takes 4 GB of memory before failing. Only element and item
/// headers are read here, up to the Pixel Data; a file this walk cannot parse is left to the real
/// parser, whose message names the problem.
fn check_declared_lengths(bytes: &[u8]) -> Result<(), String> {
    use dicom_core::header::HasLength;
    use dicom_parser::dataset::{DataSetReader, DataToken};
    use std::cell::Cell;
    use std::rc::Rc;
    let pos = Rc::new(Cell::new(0usize));
    let (start, ts) = if let Some((_, start)) = implicit_despite_meta(bytes) {
        (
            start,
            TransferSyntaxRegistry
                .get(IMPLICIT_VR_LITTLE_ENDIAN.uid())
                .expect("registered"),
        )
    } else if bytes.starts_with(b"DICM") || bytes.get(128..MAGIC_LEN) == Some(b"DICM") {
        let at = if bytes.starts_with(b"DICM") { 0 } else { 128 };
        let mut meta_reader = Counting::new(&bytes[at..], pos.clone());
        let Ok(meta) = dicom_object::FileMetaTable::from_reader(&mut meta_reader) else {
            return Ok(());
        };
        let uid = meta.transfer_syntax().trim_end_matches('\0').to_string();
        let Some(ts) = TransferSyntaxRegistry.get(&uid) else {
            return Ok(());
        };
        (at + pos.get(), ts)
    } else if looks_like_dicom(bytes) {
        (
            0,
            TransferSyntaxRegistry
                .get(IMPLICIT_VR_LITTLE_ENDIAN.uid())
                .expect("registered"),
        )
    } else {
        return Ok(()); // not DICOM at all: the parser says so
    };
    if ts.uid() == "1.2.840.10008.1.2.1.99" {
        return Ok(()); // a deflated data set's lengths are those of the inflated stream
    }
    pos.set(0);
    let data = &bytes[start..];
    let Ok(reader) = DataSetReader::new_with_ts(Counting::new(data, pos.clone()), ts) else {
        return Ok(());
    };
    for token in reader {
        let Ok(token) = token else { return Ok(()) };
        let (what, declared) = match &token {
            DataToken::ElementHeader(h) => (format!("element {}", h.tag), h.length().get()),
            DataToken::ItemStart { len } => ("an item".to_string(), len.get()),
            _ => continue,
        };
        let left = data.len() - pos.get().min(data.len());
        if let Some(n) = declared.filter(|&n| n as usize > left) {
            return Err(format!(
                "{what} declares {n} bytes, but only {left} bytes of the file follow it (a truncated or corrupt file)"
            ));
        }
        if matches!(&token, DataToken::ElementHeader(h) if h.tag == tags::PIXEL_DATA) {
            return Ok(());
        }
    }
    Ok(())
}

/// A reader over bytes that shares how far it has read.
struct Counting<'a> {
    data: &'a [u8],
    pos: std::rc::Rc<std::cell::Cell<usize>>,
}

impl<'a> Counting<'a> {
    fn new(data: &'a [u8], pos: std::rc::Rc<std::cell::Cell<usize>>) -> Self {
        pos.set(0);
        Counting { data, pos }
    }
}

impl std::io::Read for Counting<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let at = self.pos.get().min(self.data.len());
        let n = buf.len().min(self.data.len() - at);
        buf[..n].copy_from_slice(&self.data[at..at + n]);
        self.pos.set(at + n);
        Ok(n)
    }
}

fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    obj.get(tag)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().trim_end_matches('\0').trim().to_string())
        .filter(|s| !s.is_empty())
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Vec<f64> {
    obj.get(tag)
        .and_then(|e| e.to_multi_float64().ok())
        .unwrap_or_default()
}

fn int(obj: &InMemDicomObject, tag: Tag) -> Option<u32> {
    obj.get(tag).and_then(|e| e.to_int::<u32>().ok())
}

/// Years from an Age String: `058Y`, `010M`, `003W`, `012D`.
pub fn parse_age(s: &str) -> Option<u32> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.len().checked_sub(1)?);
    let n: u32 = num.trim().parse().ok()?;
    match unit.to_ascii_uppercase().as_str() {
        "Y" => Some(n),
        "M" => Some(n / 12),
        "W" => Some(n / 52),
        "D" => Some(n / 365),
        _ => s.parse().ok(),
    }
}

fn info_of(obj: &DefaultDicomObject, part10: bool) -> Result<DicomInfo, String> {
    let ts_uid = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let ts_name = TransferSyntaxRegistry
        .get(&ts_uid)
        .map(|t| t.name().to_string())
        .unwrap_or_else(|| "unknown".into());
    let o: &InMemDicomObject = obj;
    let rows = int(o, tags::ROWS).ok_or("no Rows (0028,0010): not an image")?;
    let columns = int(o, tags::COLUMNS).ok_or("no Columns (0028,0011): not an image")?;
    let slope = floats(o, tags::RESCALE_SLOPE)
        .first()
        .copied()
        .unwrap_or(1.0);
    let intercept = floats(o, tags::RESCALE_INTERCEPT)
        .first()
        .copied()
        .unwrap_or(0.0);
    let (c, w) = (
        floats(o, tags::WINDOW_CENTER),
        floats(o, tags::WINDOW_WIDTH),
    );
    let window = match (c.first(), w.first()) {
        (Some(&c), Some(&w)) if w >= 1.0 => Some((c, w)),
        _ => None,
    };
    let spacing = |tag| {
        let v = floats(o, tag);
        (v.len() >= 2 && v[0] > 0.0 && v[1] > 0.0).then(|| (v[0], v[1]))
    };
    Ok(DicomInfo {
        part10,
        transfer_syntax: ts_uid,
        transfer_syntax_name: ts_name,
        modality: text(o, tags::MODALITY),
        rows,
        columns,
        bits_allocated: int(o, tags::BITS_ALLOCATED).unwrap_or(0) as u16,
        bits_stored: int(o, tags::BITS_STORED).unwrap_or(0) as u16,
        samples_per_pixel: int(o, tags::SAMPLES_PER_PIXEL).unwrap_or(1) as u16,
        photometric: text(o, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_default(),
        frames: int(o, tags::NUMBER_OF_FRAMES).unwrap_or(1),
        rescale: (slope, intercept),
        window,
        pixel_spacing: spacing(tags::PIXEL_SPACING).or_else(|| spacing(tags::IMAGER_PIXEL_SPACING)),
        view_position: text(o, tags::VIEW_POSITION),
        patient_sex: text(o, tags::PATIENT_SEX),
        patient_age: text(o, tags::PATIENT_AGE).and_then(|a| parse_age(&a)),
        study_date: text(o, tags::STUDY_DATE),
        study_time: text(o, tags::STUDY_TIME),
        patient_id: text(o, tags::PATIENT_ID),
        study_uid: text(o, tags::STUDY_INSTANCE_UID),
    })
}

/// The header only (pixel data is not read).
pub fn read_info(bytes: &[u8]) -> Result<DicomInfo, String> {
    let (obj, part10) = open(bytes, true)?;
    info_of(&obj, part10)
}

/// The header of the DICOM file that `data` reads from its start, reading no further than its
/// Pixel Data element's header (ACR-NEMA data sets excepted, which are read whole): a header pass
/// over a hospital export reads kilobytes per file, not the images.
pub fn read_info_from(mut data: impl std::io::Read) -> Result<DicomInfo, String> {
    let mut head = Vec::with_capacity(1024);
    let mut more = |head: &mut Vec<u8>, n: u64| {
        (&mut data)
            .take(n)
            .read_to_end(head)
            .map_err(|e| e.to_string())
    };
    more(&mut head, MAGIC_LEN as u64)?;
    if head.get(128..MAGIC_LEN) == Some(b"DICM".as_slice()) {
        // The meta group: its length element (tag, VR, length, value), the rest of the group, then
        // the data set's first element header, whose VR shows how the data set is really encoded.
        more(&mut head, 12)?;
        if head.get(MAGIC_LEN..MAGIC_LEN + 6) == Some([2, 0, 0, 0, b'U', b'L'].as_slice()) {
            let len = u32::from_le_bytes(head[MAGIC_LEN + 8..MAGIC_LEN + 12].try_into().unwrap());
            more(&mut head, u64::from(len).min(META_MAX))?;
        }
        more(&mut head, 8)?;
    }
    let (obj, part10) = open_from(&head, std::io::Cursor::new(&head).chain(data), true)?;
    info_of(&obj, part10)
}

/// PS3.3 C.11.2.1.2.1, the linear VOI function, to [0, 1].
fn window_linear(x: f64, c: f64, w: f64) -> f32 {
    let (lo, hi) = (c - 0.5 - (w - 1.0) / 2.0, c - 0.5 + (w - 1.0) / 2.0);
    if x <= lo {
        0.0
    } else if x > hi {
        1.0
    } else {
        (((x - (c - 0.5)) / (w - 1.0).max(1e-9)) + 0.5).clamp(0.0, 1.0) as f32
    }
}

/// The largest side accepted: detectors are at most ~4300 px; a corrupt header claiming more must not
/// make the decoder allocate gigabytes.
pub use crate::MAX_SIDE;

/// Decode the first frame to display grayscale in [0, 1] (air dark), with its header. Corrupt input
/// gives an error, never a panic (a decoder panic is caught and reported as an error).
pub fn decode(bytes: &[u8]) -> Result<(Gray, DicomInfo), String> {
    decode_as(bytes, Scaling::Display)
}

/// How stored sample values become [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// Modality LUT, the file's VOI window (else the range of values), MONOCHROME1 inverted: what a
    /// viewer shows, and what chestx trains on.
    Display,
    /// The stored value over its largest possible value (2^BitsStored − 1), MONOCHROME1 inverted,
    /// no rescale and no window: torchxrayvision's `read_xray_dcm`, which its models were trained on.
    StoredRange,
}

/// [`decode`] with the scaling given (colour frames are luminance either way).
pub fn decode_as(bytes: &[u8], scaling: Scaling) -> Result<(Gray, DicomInfo), String> {
    std::panic::catch_unwind(|| decode_unguarded(bytes, scaling))
        .unwrap_or_else(|_| Err("the DICOM decoder failed on malformed data".into()))
}

fn decode_unguarded(bytes: &[u8], scaling: Scaling) -> Result<(Gray, DicomInfo), String> {
    check_declared_lengths(bytes)?;
    let (obj, part10) = open(bytes, false)?;
    let info = info_of(&obj, part10)?;
    crate::check_size(info.columns, info.rows)?;
    if obj.get(tags::PIXEL_DATA).is_none() {
        return Err("no Pixel Data (7FE0,0010)".into());
    }
    let layout = pixels::Layout {
        width: info.columns as usize,
        height: info.rows as usize,
        samples_per_pixel: info.samples_per_pixel as usize,
        bits_allocated: info.bits_allocated,
        bits_stored: match info.bits_stored {
            0 => info.bits_allocated,
            b => b.min(info.bits_allocated.max(1)),
        },
        signed: int(&obj, tags::PIXEL_REPRESENTATION) == Some(1),
        planar: int(&obj, tags::PLANAR_CONFIGURATION) == Some(1),
        photometric: info.photometric.to_ascii_uppercase(),
    };
    let big_endian = info.transfer_syntax == "1.2.840.10008.1.2.2";
    let (frame, layout) = pixels::first_frame(&obj, layout, big_endian)
        .map_err(|e| format!("{e} ({})", info.transfer_syntax_name))?;
    let (w, h) = (layout.width as u32, layout.height as u32);
    let data = match layout.samples_per_pixel {
        1 if scaling == Scaling::StoredRange => {
            stored_range(&pixels::gray_values(&frame, &layout), &layout)
        }
        1 => display(&pixels::gray_values(&frame, &layout), &info),
        3 => pixels::luminance(&frame, &layout),
        spp => return Err(format!("{spp} samples per pixel is not a radiograph")),
    };
    Ok((Gray::new(w, h, data), info))
}

/// Stored values to display: modality LUT (rescale), then the VOI window (the file's first, else
/// the full range of values), then MONOCHROME1 inverted.
fn display(stored: &[f64], info: &DicomInfo) -> Vec<f32> {
    let (slope, intercept) = info.rescale;
    let v = stored.iter().map(|&x| x * slope + intercept);
    let mut out: Vec<f32> = match info.window {
        Some((c, ww)) => v.map(|x| window_linear(x, c, ww)).collect(),
        None => {
            let (lo, hi) = v
                .clone()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
                    (l.min(x), h.max(x))
                });
            let span = if hi > lo { hi - lo } else { 1.0 };
            v.map(|x| ((x - lo) / span) as f32).collect()
        }
    };
    if info.photometric.eq_ignore_ascii_case("MONOCHROME1") {
        out.iter_mut().for_each(|x| *x = 1.0 - *x);
    }
    out
}

/// Stored values over 2^BitsStored − 1, MONOCHROME1 inverted as `max − value` (as pydicom users do).
fn stored_range(stored: &[f64], layout: &pixels::Layout) -> Vec<f32> {
    let max = ((1u64 << layout.bits_stored.clamp(1, 32)) - 1) as f64;
    let invert = layout.photometric == "MONOCHROME1";
    stored
        .iter()
        .map(|&v| (if invert { max - v } else { v } / max) as f32)
        .collect()
}

/// Decode a DICOM file (see [`decode`]).
pub fn open_file(path: &Path) -> Result<(Gray, DicomInfo), crate::ImageError> {
    crate::decode_file(path, decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_in_years() {
        assert_eq!(parse_age("058Y"), Some(58));
        assert_eq!(parse_age("018M"), Some(1));
        assert_eq!(parse_age("003W"), Some(0));
        assert_eq!(parse_age("45"), Some(45));
        assert_eq!(parse_age(""), None);
        assert_eq!(parse_age("abcY"), None);
    }

    #[test]
    fn linear_window_matches_the_standard() {
        // c = 2048, w = 4096: the full 12-bit range maps linearly.
        assert_eq!(window_linear(-1.0, 2048.0, 4096.0), 0.0);
        assert!((window_linear(2047.5, 2048.0, 4096.0) - 0.5).abs() < 1e-6);
        assert_eq!(window_linear(5000.0, 2048.0, 4096.0), 1.0);
    }

    #[test]
    fn non_dicom_bytes_are_refused_by_name() {
        let e = decode(b"\x89PNG\r\n\x1a\n....").unwrap_err();
        assert!(e.contains("not a DICOM file"), "{e}");
    }
}
