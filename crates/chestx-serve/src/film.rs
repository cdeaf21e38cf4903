//! One uploaded film through the model: decoded and prepared (before the queue), then turned into
//! findings, boxes and heatmap PNGs (after it). Both halves are plain CPU work, run off the async
//! threads; neither touches the filesystem.

use crate::error::ApiError;
use crate::model::{ModelInfo, Scores};
use base64::Engine;
use chestx_core::{BBox, Finding};
use chestx_image::{dicom, Gray, Preprocess};

/// The technical DICOM attributes a viewer needs. Patient and study identifiers, dates, sex and age
/// are withheld by construction: they have no field here.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DicomAttributes {
    pub transfer_syntax: String,
    pub modality: Option<String>,
    pub rows: u32,
    pub columns: u32,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub photometric: String,
    pub frames: u32,
    /// The window applied (centre, width), if the file had one.
    pub window: Option<(f64, f64)>,
    /// Row, column spacing in mm.
    pub pixel_spacing: Option<(f64, f64)>,
    pub view_position: Option<String>,
}

impl From<&dicom::DicomInfo> for DicomAttributes {
    fn from(d: &dicom::DicomInfo) -> Self {
        DicomAttributes {
            transfer_syntax: d.transfer_syntax_name.clone(),
            modality: d.modality.clone(),
            rows: d.rows,
            columns: d.columns,
            bits_allocated: d.bits_allocated,
            bits_stored: d.bits_stored,
            photometric: d.photometric.clone(),
            frames: d.frames,
            window: d.window,
            pixel_spacing: d.pixel_spacing,
            view_position: d.view_position.clone(),
        }
    }
}

/// The decoded film, as the response describes it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FilmInfo {
    pub format: &'static str,
    pub width: u32,
    pub height: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dicom: Option<DicomAttributes>,
    /// Where the model's input square lies on the film (x, y, width, height in film pixels): the
    /// whole film for our runs, a centre crop for some published models' preprocessing.
    pub input_region: [f64; 4],
}

/// A film ready for the queue: the model's input and, if asked, a display PNG of the film.
pub struct Prepared {
    pub info: FilmInfo,
    pub input: Vec<f32>,
    pub display: Option<String>,
}

/// Longest side of the display copy the viewer gets (`film=true`).
const DISPLAY_SIDE: u32 = 1024;

/// Decode `bytes` (PNG, JPEG or DICOM, sniffed from the bytes) and prepare the model input.
pub fn prepare(
    bytes: &[u8],
    input_size: u32,
    preprocess: Preprocess,
    display: bool,
) -> Result<Prepared, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "empty_body",
            "the request has no body: send a PNG, JPEG or DICOM file",
        ));
    }
    let undecodable = |e: String| ApiError::unprocessable("undecodable_image", e);
    let (img, info, input_img) = if dicom::is_dicom(bytes) {
        let (img, d) = dicom::decode(bytes).map_err(undecodable)?;
        // A chain that reads DICOM its own way (torchxrayvision: stored values, no window) gets
        // its input from that reading; the viewer keeps the windowed film.
        let input_img = match preprocess.reads_dicom_as_stored() {
            true => Some(preprocess.decode(bytes).map_err(undecodable)?),
            false => None,
        };
        let info = FilmInfo {
            format: "dicom",
            width: img.width,
            height: img.height,
            dicom: Some(DicomAttributes::from(&d)),
            input_region: [0.0; 4],
        };
        (img, info, input_img)
    } else {
        let format = match image::guess_format(bytes) {
            Ok(image::ImageFormat::Png) => "png",
            Ok(image::ImageFormat::Jpeg) => "jpeg",
            Ok(f) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_format",
                    format!("{f:?} images are not read: send a PNG, JPEG or DICOM file"),
                ))
            }
            Err(_) => {
                return Err(ApiError::new(
                    axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_format",
                    "the body is not a PNG, JPEG or DICOM file",
                ))
            }
        };
        let img = Gray::decode(bytes).map_err(undecodable)?;
        let info = FilmInfo {
            format,
            width: img.width,
            height: img.height,
            dicom: None,
            input_region: [0.0; 4],
        };
        (img, info, None)
    };
    let prepared = preprocess.prepare(input_img.as_ref().unwrap_or(&img), input_size);
    let display = display.then(|| display_png(&img));
    let v = prepared.view;
    Ok(Prepared {
        info: FilmInfo {
            input_region: [v.x0, v.y0, v.width, v.height],
            ..info
        },
        input: prepared.data,
        display,
    })
}

/// The film as an 8-bit PNG data URL, its longest side at most [`DISPLAY_SIDE`].
fn display_png(img: &Gray) -> String {
    let scale = (DISPLAY_SIDE as f64 / img.width.max(img.height) as f64).min(1.0);
    let (w, h) = (
        ((img.width as f64 * scale).round() as u32).max(1),
        ((img.height as f64 * scale).round() as u32).max(1),
    );
    let small = if (w, h) == (img.width, img.height) {
        img.clone()
    } else {
        img.resize(w, h)
    };
    png_data_url(&small.to_u8(), w, h)
}

fn png_data_url(gray: &[u8], w: u32, h: u32) -> String {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(gray, w, h, image::ExtendedColorType::L8)
        .expect("encoding a PNG into memory cannot fail");
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(out)
    )
}

/// Which findings' heatmaps a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeatmapChoice {
    None,
    /// Findings called present (the default).
    #[default]
    Positive,
    All,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingOut {
    pub finding: String,
    pub probability: f32,
    pub threshold: f32,
    pub positive: bool,
    /// Boxes in the uploaded film's pixel coordinates (x, y of the top-left corner, width, height).
    pub boxes: Vec<BBox>,
    /// An 8-bit grayscale PNG (data URL) of the map the boxes were cut from, on the model input
    /// (`input_size²`), to be stretched over the film's `input_region`: 0 is the map's minimum,
    /// 255 its maximum.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heatmap: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PredictResponse {
    pub film: FilmInfo,
    pub findings: Vec<FindingOut>,
    pub model: String,
    pub thresholds: String,
    pub boxes: String,
    /// The display copy of the film (data URL), when asked for with `film=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// Findings, boxes (only for findings called present) and the heatmaps asked for.
pub fn finish(
    model: &ModelInfo,
    film: FilmInfo,
    display: Option<String>,
    scores: Scores,
    heatmaps: HeatmapChoice,
) -> PredictResponse {
    let side = model.input_size;
    let findings = model
        .classes
        .iter()
        .zip(scores.heat.iter().zip(&scores.probs))
        .enumerate()
        .map(|(ci, (name, (heat, &p)))| {
            let threshold = model.thresholds.values[ci];
            let positive = model.positive(ci, p);
            let want = match heatmaps {
                HeatmapChoice::None => false,
                HeatmapChoice::Positive => positive,
                HeatmapChoice::All => true,
            };
            let finding = name.parse().unwrap_or(Finding::NoFinding);
            let [x0, y0, width, height] = film.input_region;
            let view = chestx_image::View {
                x0,
                y0,
                width,
                height,
            };
            // The model computed a map for every class called present or asked for (and only
            // those: the rest cost nothing here either).
            let (hm, boxes) = match (positive || want) && !heat.is_empty() {
                true => {
                    let (hm, boxes) = model.localizer.film_boxes(heat, finding, side, view);
                    (Some(hm), boxes)
                }
                false => (None, Vec::new()),
            };
            FindingOut {
                finding: name.clone(),
                probability: p,
                threshold,
                positive,
                boxes: if positive { boxes } else { Vec::new() },
                heatmap: hm
                    .filter(|_| want)
                    .map(|hm| png_data_url(&hm.to_u8(), hm.width as u32, hm.height as u32)),
            }
        })
        .collect();
    PredictResponse {
        film,
        findings,
        model: model.architecture.clone(),
        thresholds: model.thresholds.source.clone(),
        boxes: model.boxes.clone(),
        display,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(w: u32, h: u32) -> Vec<u8> {
        use image::ImageEncoder;
        let px: Vec<u8> = (0..w * h).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&px, w, h, image::ExtendedColorType::L8)
            .unwrap();
        out
    }

    #[test]
    fn a_png_becomes_a_normalized_input_and_a_bounded_display_copy() {
        let p = prepare(&png(1500, 300), 64, Preprocess::Imagenet, true).unwrap();
        assert_eq!(
            (p.info.width, p.info.height, p.info.format),
            (1500, 300, "png")
        );
        assert_eq!(p.input.len(), 3 * 64 * 64);
        assert!(p.input.iter().all(|v| v.is_finite()));
        let url = p.display.unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(url.trim_start_matches("data:image/png;base64,"))
            .unwrap();
        let shown = image::load_from_memory(&bytes).unwrap();
        assert_eq!((shown.width(), shown.height()), (1024, 205));
    }

    #[test]
    fn a_published_models_chain_makes_its_input_and_says_where_it_lies() {
        let whole = prepare(&png(1500, 300), 64, Preprocess::Imagenet, false).unwrap();
        assert_eq!(whole.info.input_region, [0.0, 0.0, 1500.0, 300.0]);
        // torchxrayvision: one channel in [-1024, 1024] from the centred 300-px square.
        let p = prepare(&png(1500, 300), 64, Preprocess::Xrv, false).unwrap();
        assert_eq!(p.input.len(), 64 * 64);
        assert!(p.input.iter().all(|v| (-1024.0..=1024.0).contains(v)));
        assert_eq!(p.info.input_region, [600.0, 0.0, 300.0, 300.0]);
    }

    #[test]
    fn bad_bodies_are_client_errors_with_a_kind() {
        let cases: [(&[u8], &str); 4] = [
            (b"", "empty_body"),
            (b"hello, this is text", "unsupported_format"),
            (b"GIF89a\x01\x00\x01\x00\x00\x00\x00", "unsupported_format"),
            (&png(32, 32)[..40], "undecodable_image"),
        ];
        for (body, kind) in cases {
            let e = prepare(body, 64, Preprocess::Imagenet, false)
                .err()
                .unwrap();
            assert_eq!(e.kind, kind, "{e:?}");
            assert!(e.status.is_client_error(), "{e:?}");
        }
    }
}
