//! Calibration: does a predicted 0.3 come true three times in ten? Expected calibration error over
//! equal-width probability bins, and the reliability diagram that shows it.

use plotters::prelude::*;
use std::path::Path;

/// Bins of width 0.1: the convention of the calibration literature (Guo et al. 2017), so that ECEs
/// compare across papers.
pub const BINS: usize = 10;

/// One probability bin: how many cases, their mean prediction, and how often they were positive.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    pub mean_predicted: Option<f64>,
    pub observed: Option<f64>,
}

/// The reliability of one set of predictions.
#[derive(Clone, Debug, serde::Serialize, PartialEq)]
pub struct Reliability {
    /// Σ over bins of (cases in bin / cases) × |observed − mean predicted|.
    pub ece: f64,
    pub bins: Vec<Bin>,
}

/// Reliability of `scores` (probabilities in [0, 1]) against `truth`; `None` without cases or when
/// a score is not a probability (logits have no calibration to measure).
pub fn reliability(scores: &[f64], truth: &[bool]) -> Option<Reliability> {
    if scores.is_empty() || scores.iter().any(|s| !(0.0..=1.0).contains(s)) {
        return None;
    }
    let mut count = [0usize; BINS];
    let mut sum_p = [0.0f64; BINS];
    let mut sum_y = [0.0f64; BINS];
    for (&s, &t) in scores.iter().zip(truth) {
        // Bin b holds [b/10, (b+1)/10); 1.0 falls in the last.
        let b = ((s * BINS as f64) as usize).min(BINS - 1);
        count[b] += 1;
        sum_p[b] += s;
        sum_y[b] += t as u8 as f64;
    }
    let n = scores.len() as f64;
    let ece = (0..BINS).map(|b| (sum_y[b] - sum_p[b]).abs() / n).sum();
    let bins = (0..BINS)
        .map(|b| Bin {
            lo: b as f64 / BINS as f64,
            hi: (b + 1) as f64 / BINS as f64,
            count: count[b],
            mean_predicted: (count[b] > 0).then(|| sum_p[b] / count[b] as f64),
            observed: (count[b] > 0).then(|| sum_y[b] / count[b] as f64),
        })
        .collect();
    Some(Reliability { ece, bins })
}

/// Bins with fewer cases are drawn hollow in the diagram.
pub const FEW: usize = 10;

/// One panel of the diagram.
pub struct Panel<'a> {
    pub title: String,
    pub reliability: &'a Reliability,
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    panels: &[Panel],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let cols = 4;
    let rows = panels.len().div_ceil(cols).max(1);
    for (area, panel) in root.split_evenly((rows, cols)).into_iter().zip(panels) {
        let mut chart = ChartBuilder::on(&area)
            .caption(&panel.title, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(34)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(|x| e(&x))?;
        chart
            .configure_mesh()
            .x_labels(3)
            .y_labels(3)
            .x_desc("predicted")
            .y_desc("observed")
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|x| e(&x))?;
        chart
            .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
            .map_err(|x| e(&x))?;
        // A bar per bin at its observed frequency; the gap to the diagonal is the miscalibration.
        // Bins of fewer than FEW cases are drawn hollow: their frequency is mostly chance.
        let bars = panel.reliability.bins.iter().filter_map(|b| {
            b.observed.map(|o| {
                let style = match b.count < FEW {
                    true => BLUE.stroke_width(1),
                    false => BLUE.mix(0.55).filled(),
                };
                Rectangle::new([(b.lo + 0.01, 0.0), (b.hi - 0.01, o)], style)
            })
        });
        chart.draw_series(bars).map_err(|x| e(&x))?;
        let points = panel.reliability.bins.iter().filter_map(|b| {
            Some(Circle::new(
                (b.mean_predicted?, b.observed?),
                3,
                RED.filled(),
            ))
        });
        chart.draw_series(points).map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))
}

/// Write the diagram, a panel per finding, as `stem.png` and `stem.svg` (each atomically).
pub fn reliability_plots(stem: &Path, panels: &[Panel]) -> Result<(), String> {
    crate::plot::register_fonts()?;
    let rows = panels.len().div_ceil(4).max(1) as u32;
    let (w, h) = (1100u32, 260 * rows);
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    draw(
        BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area(),
        panels,
    )?;
    let png = stem.with_extension("png");
    let img = image::RgbImage::from_raw(w, h, rgb).expect("buffer sized to the image");
    let mut bytes = std::io::Cursor::new(Vec::new());
    img.write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|x| format!("{}: {x}", png.display()))?;
    chestx_core::io::write_atomic(&png, bytes.get_ref())
        .map_err(|x| format!("{}: {x}", png.display()))?;
    let mut svg_text = String::new();
    draw(
        SVGBackend::with_string(&mut svg_text, (w, h)).into_drawing_area(),
        panels,
    )?;
    let svg = stem.with_extension("svg");
    chestx_core::io::write_atomic(&svg, svg_text.as_bytes())
        .map_err(|x| format!("{}: {x}", svg.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ece_is_the_case_weighted_gap_between_prediction_and_outcome() {
        // Bin 0.2–0.3: 0.2, 0.2, 0.2, 0.2 with one positive (observed 0.25, predicted 0.2);
        // bin 0.9–1.0: 0.9, 1.0 both positive (observed 1, predicted 0.95).
        let s = [0.2, 0.2, 0.2, 0.2, 0.9, 1.0];
        let t = [true, false, false, false, true, true];
        let r = reliability(&s, &t).unwrap();
        let want = (4.0 * 0.05 + 2.0 * 0.05) / 6.0;
        assert!((r.ece - want).abs() < 1e-12, "{} vs {want}", r.ece);
        assert_eq!(r.bins[2].count, 4);
        assert_eq!(r.bins[9].count, 2);
        assert_eq!(r.bins[0].observed, None);
        assert!(reliability(&[1.5], &[true]).is_none());
        assert!(reliability(&[], &[]).is_none());
    }

    #[test]
    fn the_diagram_draws_a_panel_per_finding() {
        let s: Vec<f64> = (0..200).map(|i| i as f64 / 200.0).collect();
        let t: Vec<bool> = s.iter().map(|&x| x > 0.5).collect();
        let r = reliability(&s, &t).unwrap();
        let panels: Vec<Panel> = (0..5)
            .map(|i| Panel {
                title: format!("finding {i}"),
                reliability: &r,
            })
            .collect();
        let tmp = tempfile::tempdir().unwrap();
        let stem = tmp.path().join("reliability");
        reliability_plots(&stem, &panels).unwrap();
        let png = image::open(stem.with_extension("png")).unwrap().to_rgb8();
        assert_eq!(png.dimensions(), (1100, 520));
        // Blue bars in the first panel (top left), none in the empty last cells (bottom right).
        let blue = |x0: u32, x1: u32, y0: u32, y1: u32| {
            (y0..y1)
                .flat_map(|y| (x0..x1).map(move |x| (x, y)))
                .filter(|&(x, y)| {
                    let p = png.get_pixel(x, y);
                    p[2] > 150 && p[0] < 150 && p[1] < 150
                })
                .count()
        };
        assert!(blue(0, 275, 0, 260) > 500);
        assert_eq!(blue(550, 1100, 260, 520), 0);
        let svg = std::fs::read_to_string(stem.with_extension("svg")).unwrap();
        assert!(svg.contains("finding 4"));
    }
}
