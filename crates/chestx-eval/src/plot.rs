//! ROC curves as PNG and SVG.

use plotters::prelude::*;
use std::path::Path;

/// Registers DejaVu Sans, compiled into the binary, as plotters' `sans-serif`: a plot's text
/// then needs no system fonts (a GPU server or container often has none, and fontconfig's
/// failure would fail the whole evaluation) and looks the same on every machine.
pub(crate) fn register_fonts() -> Result<(), String> {
    static FONTS: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    FONTS
        .get_or_init(|| {
            for (style, bytes) in [
                (FontStyle::Normal, dejavu::sans::regular()),
                (FontStyle::Bold, dejavu::sans::bold()),
            ] {
                plotters::style::register_font("sans-serif", style, bytes)
                    .map_err(|_| "the compiled-in DejaVu Sans font did not load".to_string())?;
            }
            Ok(())
        })
        .clone()
}

/// One curve: label (with its AUC) and points.
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    curves: &[Curve],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("false positive rate")
        .y_desc("true positive rate")
        .draw()
        .map_err(|x| e(&x))?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
        .map_err(|x| e(&x))?;
    for (i, c) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                c.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|x| e(&x))?
            .label(c.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))
}

/// Write `stem.png` and `stem.svg` with all curves.
pub fn roc_plots(stem: &Path, title: &str, curves: &[Curve]) -> Result<(), String> {
    register_fonts()?;
    let png = stem.with_extension("png");
    let svg = stem.with_extension("svg");
    draw(
        BitMapBackend::new(&png, (760, 640)).into_drawing_area(),
        title,
        curves,
    )
    .map_err(|m| format!("{}: {m}", png.display()))?;
    draw(
        SVGBackend::new(&svg, (760, 640)).into_drawing_area(),
        title,
        curves,
    )
    .map_err(|m| format!("{}: {m}", svg.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dark pixels in rows `rows` of a grey rendering (text, axes, curves are dark on white).
    fn dark_pixels(img: &image::GrayImage, rows: std::ops::Range<u32>) -> usize {
        rows.flat_map(|y| (0..img.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y)[0] < 128)
            .count()
    }

    #[test]
    fn writes_both_plots_with_their_text_rendered_by_the_compiled_in_font() {
        let tmp = tempfile::tempdir().unwrap();
        let stem = tmp.path().join("roc");
        let curves = [Curve {
            label: "Mass (AUC 0.750)".into(),
            points: vec![(0.0, 0.0), (0.25, 0.75), (1.0, 1.0)],
        }];
        roc_plots(&stem, "ROC, test split", &curves).unwrap();
        let png = image::open(stem.with_extension("png")).unwrap().to_luma8();
        assert_eq!(png.dimensions(), (760, 640));
        // The caption sits in the top strip, above the plot's frame: only its glyphs are dark there.
        let caption = dark_pixels(&png, 0..30);
        assert!(caption > 100, "caption strip has {caption} dark pixels");
        // Without a title, the strip is blank.
        roc_plots(&stem, "", &curves).unwrap();
        let blank = image::open(stem.with_extension("png")).unwrap().to_luma8();
        assert_eq!(dark_pixels(&blank, 0..12), 0);
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        assert!(svg.contains("Mass (AUC 0.750)"));
    }
}
