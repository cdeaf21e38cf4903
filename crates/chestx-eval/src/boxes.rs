//! From a class heatmap to boxes, and the paper's localization scores.
//!
//! ChestX-ray8 scales each heatmap to [0, 255], thresholds it (60 and 180 in the paper), takes the
//! connected components of what survives and draws one box around each. A box is correct when its
//! IoBB (intersection over the *detected* box's area) or IoU with a true box reaches T; detections that
//! hit no true box are false positives, averaged per image (AFP).

use chestx_core::{BBox, CellGrid};

/// A dense heatmap, row-major, `width × height`.
#[derive(Debug, Clone, PartialEq)]
pub struct Heatmap {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

impl Heatmap {
    pub fn new(width: usize, height: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            width * height,
            "heatmap data must be width × height"
        );
        Heatmap {
            width,
            height,
            data,
        }
    }

    /// This map resampled onto the network's `side × side` input, each cell placed where `grid` says
    /// it looks: bilinear between cell centres, held flat beyond the outermost ones.
    pub fn on_input(&self, grid: CellGrid, side: usize) -> Heatmap {
        self.on_input_xy(grid, grid, side)
    }

    /// [`Heatmap::on_input`] with a grid per axis (a map flipped along one axis only).
    pub fn on_input_xy(&self, gx: CellGrid, gy: CellGrid, side: usize) -> Heatmap {
        let taps = |cells: usize, grid: CellGrid| -> Vec<(usize, usize, f32)> {
            (0..side)
                .map(|p| {
                    let u = grid.cell_at(p as f64 + 0.5).clamp(0.0, (cells - 1) as f64);
                    let i0 = u.floor() as usize;
                    let i1 = (i0 + 1).min(cells - 1);
                    (i0, i1, (u - i0 as f64) as f32)
                })
                .collect()
        };
        let (tx, ty) = (taps(self.width, gx), taps(self.height, gy));
        let mut data = Vec::with_capacity(side * side);
        for &(y0, y1, fy) in &ty {
            let (r0, r1) = (y0 * self.width, y1 * self.width);
            for &(x0, x1, fx) in &tx {
                let top = self.data[r0 + x0] * (1.0 - fx) + self.data[r0 + x1] * fx;
                let bottom = self.data[r1 + x0] * (1.0 - fx) + self.data[r1 + x1] * fx;
                data.push(top * (1.0 - fy) + bottom * fy);
            }
        }
        Heatmap::new(side, side, data)
    }

    /// The smallest and largest value, when they are finite and differ (a constant map carries no
    /// location).
    pub fn min_max(&self) -> Option<(f32, f32)> {
        let (lo, hi) = self
            .data
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
                (l.min(v), h.max(v))
            });
        (lo.is_finite() && hi.is_finite() && hi > lo).then_some((lo, hi))
    }

    /// Min-max scaled to [0, 1]; a map without a [`Heatmap::min_max`] becomes all zeros.
    pub fn unit_scaled(mut self) -> Heatmap {
        match self.min_max() {
            Some((lo, hi)) => self
                .data
                .iter_mut()
                .for_each(|v| *v = (*v - lo) / (hi - lo)),
            None => self.data.iter_mut().for_each(|v| *v = 0.0),
        }
        self
    }

    /// Gaussian-smoothed with `sigma` cells (image's separable kernel); `sigma <= 0` keeps the map.
    pub fn smoothed(&self, sigma: f32) -> Heatmap {
        if sigma <= 0.0 {
            return self.clone();
        }
        let buf = image::ImageBuffer::<image::Luma<f32>, Vec<f32>>::from_raw(
            self.width as u32,
            self.height as u32,
            self.data.clone(),
        )
        .expect("width × height values");
        Heatmap::new(
            self.width,
            self.height,
            image::imageops::blur(&buf, sigma).into_raw(),
        )
    }

    /// The hottest cell as (x, y), when the map has a location at all.
    pub fn peak(&self) -> Option<(usize, usize)> {
        self.min_max()?;
        let i = (0..self.data.len()).max_by(|&a, &b| self.data[a].total_cmp(&self.data[b]))?;
        Some((i % self.width, i / self.width))
    }

    /// Min-max scaled to 0..=255 (rounded). A constant map carries no location and scales to zeros.
    pub fn to_u8(&self) -> Vec<u8> {
        let Some((lo, hi)) = self.min_max() else {
            return vec![0; self.data.len()];
        };
        let k = 255.0 / (hi - lo);
        self.data
            .iter()
            .map(|&v| ((v - lo) * k).round().clamp(0.0, 255.0) as u8)
            .collect()
    }
}

/// One detected region.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Detection {
    /// In output-image coordinates.
    pub bbox: BBox,
    /// Peak of the scaled heatmap (0–255) inside the component.
    pub peak: u8,
    /// Component size in heatmap cells.
    pub cells: usize,
}

/// One 8-connected component of a thresholded map, in map cells.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Component {
    x0: usize,
    y0: usize,
    x1: usize,
    y1: usize,
    /// The largest value inside.
    peak: f32,
    cells: usize,
    /// Sums of the cells' x and y, for the centroid.
    sum_x: usize,
    sum_y: usize,
}

impl Component {
    /// Its box in an output image of `out_w × out_h` pixels.
    fn bbox(&self, map: &Heatmap, out_w: f64, out_h: f64) -> BBox {
        let (sx, sy) = (out_w / map.width as f64, out_h / map.height as f64);
        BBox::new(
            self.x0 as f64 * sx,
            self.y0 as f64 * sy,
            (self.x1 - self.x0 + 1) as f64 * sx,
            (self.y1 - self.y0 + 1) as f64 * sy,
        )
    }

    /// The square of the component's area centred on its centroid, in an output image of
    /// `out_w × out_h` pixels: the box of a round lesion whose map is smeared or split (a detector
    /// that fires on a nodule's two edges makes one wide, flat component).
    fn round_bbox(&self, map: &Heatmap, out_w: f64, out_h: f64) -> BBox {
        let (sx, sy) = (out_w / map.width as f64, out_h / map.height as f64);
        let n = self.cells as f64;
        let (cx, cy) = (self.sum_x as f64 / n + 0.5, self.sum_y as f64 / n + 0.5);
        let half = n.sqrt() / 2.0;
        BBox::new(
            (cx - half) * sx,
            (cy - half) * sy,
            2.0 * half * sx,
            2.0 * half * sy,
        )
    }
}

/// The 8-connected components of the cells where `values[i] >= threshold`, in scan order.
fn components<T: Copy + PartialOrd + Into<f32>>(
    values: &[T],
    width: usize,
    threshold: T,
) -> Vec<Component> {
    let height = values.len() / width.max(1);
    let mut seen = vec![false; values.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..values.len() {
        if seen[start] || values[start] < threshold {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let mut c = Component {
            x0: usize::MAX,
            y0: usize::MAX,
            x1: 0,
            y1: 0,
            peak: f32::NEG_INFINITY,
            cells: 0,
            sum_x: 0,
            sum_y: 0,
        };
        while let Some(i) = stack.pop() {
            let (x, y) = (i % width, i / width);
            c.x0 = c.x0.min(x);
            c.x1 = c.x1.max(x);
            c.y0 = c.y0.min(y);
            c.y1 = c.y1.max(y);
            c.peak = c.peak.max(values[i].into());
            c.cells += 1;
            c.sum_x += x;
            c.sum_y += y;
            for ny in y.saturating_sub(1)..=(y + 1).min(height - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(width - 1) {
                    let j = ny * width + nx;
                    if !seen[j] && values[j] >= threshold {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        out.push(c);
    }
    out
}

/// Boxes around the 8-connected components of cells whose scaled value is `>= threshold`, mapped to an
/// output image of `out_w × out_h` (e.g. 1024 × 1024 for NIH). Ordered by peak, strongest first.
pub fn boxes_from_heatmap(h: &Heatmap, threshold: u8, out_w: f64, out_h: f64) -> Vec<Detection> {
    let v = h.to_u8();
    let mut comps = components(&v, h.width, threshold);
    comps.sort_by(|a, b| b.peak.total_cmp(&a.peak).then(b.cells.cmp(&a.cells)));
    comps
        .iter()
        .map(|c| Detection {
            bbox: c.bbox(h, out_w, out_h),
            peak: c.peak as u8,
            cells: c.cells,
        })
        .collect()
}

/// ChestX-ray8's heatmap thresholds on the 0–255 scale.
pub const PAPER_HEAT_THRESHOLDS: [u8; 2] = [60, 180];

/// How a heatmap becomes boxes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum BoxRule {
    /// ChestX-ray8 (Wang et al. 2017): the map min–max scaled to 0–255, a box around every
    /// 8-connected component at each threshold, pooled over thresholds.
    Paper { thresholds: Vec<u8> },
    /// The region around the map's peak, see [`PeakRegions`].
    PeakRegions(PeakRegions),
}

impl BoxRule {
    /// The paper's thresholds, 60 and 180.
    pub fn paper() -> BoxRule {
        BoxRule::Paper {
            thresholds: PAPER_HEAT_THRESHOLDS.to_vec(),
        }
    }

    /// Boxes of `h` in an output image of `out_w × out_h`, strongest first.
    pub fn boxes(&self, h: &Heatmap, out_w: f64, out_h: f64) -> Vec<BBox> {
        match self {
            BoxRule::Paper { thresholds } => thresholds
                .iter()
                .flat_map(|&t| boxes_from_heatmap(h, t, out_w, out_h))
                .map(|d| d.bbox)
                .collect(),
            BoxRule::PeakRegions(r) => r.boxes(h, out_w, out_h),
        }
    }
}

/// Boxes that outline the region a heatmap peaks over, with few false boxes.
///
/// CAM-style maps are noisy at fine strides (a lesion lights up as a scatter of specks, one per
/// texture detail the network uses) and thresholding them at a fixed 0–255 level, as the paper does,
/// draws a box around each speck: high IoBB, no IoU. Here the map is first smoothed at a scale that
/// joins the specks of one lesion (`sigma`, in map cells), scaled to [0, 1], and cut at `level`
/// relative to its peak (0.5: the half-maximum contour, the usual width of a blurred blob). Only
/// components whose own peak reaches `keep` of the map's peak give a box — a second lesion shows
/// as a second peak of similar height, a speck of background as a low one — and at most `max_boxes`.
/// With `round`, a component's box is the square of its area around its centroid (for findings that
/// are round by definition, such as a nodule).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PeakRegions {
    pub sigma: f32,
    pub level: f32,
    pub keep: f32,
    pub max_boxes: usize,
    pub round: bool,
}

impl PeakRegions {
    pub fn boxes(&self, h: &Heatmap, out_w: f64, out_h: f64) -> Vec<BBox> {
        self.boxes_of_smoothed(&h.smoothed(self.sigma), out_w, out_h)
    }

    /// [`PeakRegions::boxes`] of a map already smoothed by `sigma` (the map the boxes are cut
    /// from, for overlays and pointing).
    pub fn boxes_of_smoothed(&self, smoothed: &Heatmap, out_w: f64, out_h: f64) -> Vec<BBox> {
        let unit = smoothed.clone().unit_scaled();
        if unit.min_max().is_none() {
            return Vec::new();
        }
        let mut comps = components(&unit.data, unit.width, self.level);
        comps.retain(|c| c.peak >= self.keep);
        comps.sort_by(|a, b| b.peak.total_cmp(&a.peak).then(b.cells.cmp(&a.cells)));
        comps
            .iter()
            .take(self.max_boxes)
            .map(|c| {
                if self.round {
                    c.round_bbox(&unit, out_w, out_h)
                } else {
                    c.bbox(&unit, out_w, out_h)
                }
            })
            .collect()
    }
}

/// Which overlap decides a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Overlap {
    /// Intersection over the detected box's area (the paper's IoBB).
    IoBB,
    IoU,
}

impl Overlap {
    fn of(self, detected: &BBox, truth: &BBox) -> f64 {
        match self {
            Overlap::IoBB => detected.iobb(truth),
            Overlap::IoU => detected.iou(truth),
        }
    }
}

/// The true and detected boxes of one class on one image.
#[derive(Debug, Clone, Default)]
pub struct LocCase {
    pub truth: Vec<BBox>,
    pub detected: Vec<BBox>,
    /// Where the heatmap peaks, in the same coordinates (none for a flat map).
    pub peak: Option<(f64, f64)>,
}

/// Localization at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct LocScore {
    pub threshold: f64,
    /// True boxes hit by at least one detection with overlap >= threshold, over all true boxes.
    pub accuracy: f64,
    /// Detections that hit no true box, per image.
    pub afp: f64,
    pub truth_boxes: usize,
    pub images: usize,
}

pub fn localization(cases: &[LocCase], overlap: Overlap, threshold: f64) -> LocScore {
    let (mut hits, mut truths, mut fps) = (0usize, 0usize, 0usize);
    for c in cases {
        truths += c.truth.len();
        hits += c
            .truth
            .iter()
            .filter(|t| c.detected.iter().any(|d| overlap.of(d, t) >= threshold))
            .count();
        fps += c
            .detected
            .iter()
            .filter(|d| !c.truth.iter().any(|t| overlap.of(d, t) >= threshold))
            .count();
    }
    LocScore {
        threshold,
        accuracy: if truths == 0 {
            0.0
        } else {
            hits as f64 / truths as f64
        },
        afp: if cases.is_empty() {
            0.0
        } else {
            fps as f64 / cases.len() as f64
        },
        truth_boxes: truths,
        images: cases.len(),
    }
}

/// What an expert asks beside the accuracy tables: do boxes have the lesion's size, does the map
/// point at it, and how many boxes appear on films that do not have the finding at all.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct BoxQuality {
    /// Images whose heatmap peak lies inside one of their true boxes, over images with true boxes
    /// (the pointing game, with no tolerance).
    pub pointing: f64,
    /// Median over true boxes of area(detection with the best IoU) / area(truth): 1 is the right
    /// size, ≪ 1 specks, ≫ 1 sprawl. `None` when no true box has a detection.
    pub median_area_ratio: Option<f64>,
    /// Boxes drawn on films labelled negative for the finding, per such film: the false-alarm rate
    /// a reader meets.
    pub false_boxes_per_negative_film: f64,
    pub negative_films: usize,
}

impl BoxQuality {
    /// From the cases with true boxes, and the box counts on negative films.
    pub fn of(cases: &[LocCase], negative_films: usize, negative_boxes: usize) -> BoxQuality {
        let pointed = cases
            .iter()
            .filter(|c| {
                c.peak.is_some_and(|(x, y)| {
                    c.truth
                        .iter()
                        .any(|t| x >= t.x && x < t.x + t.w && y >= t.y && y < t.y + t.h)
                })
            })
            .count();
        let mut ratios: Vec<f64> = cases
            .iter()
            .flat_map(|c| {
                c.truth.iter().filter_map(|t| {
                    let best = c
                        .detected
                        .iter()
                        .max_by(|a, b| a.iou(t).total_cmp(&b.iou(t)))?;
                    (t.area() > 0.0).then(|| best.area() / t.area())
                })
            })
            .collect();
        ratios.sort_by(f64::total_cmp);
        let median = match ratios.len() {
            0 => None,
            n if n % 2 == 1 => Some(ratios[n / 2]),
            n => Some((ratios[n / 2 - 1] + ratios[n / 2]) / 2.0),
        };
        BoxQuality {
            pointing: if cases.is_empty() {
                0.0
            } else {
                pointed as f64 / cases.len() as f64
            },
            median_area_ratio: median,
            false_boxes_per_negative_film: if negative_films == 0 {
                0.0
            } else {
                negative_boxes as f64 / negative_films as f64
            },
            negative_films,
        }
    }
}

/// The paper's Table 4 thresholds.
pub const IOBB_THRESHOLDS: [f64; 5] = [0.1, 0.25, 0.5, 0.75, 0.9];
pub const IOU_THRESHOLDS: [f64; 7] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7];

/// Otsu's threshold of `values`: the level that best splits them into a dark and a bright class
/// (the greatest between-class variance over a 256-bin histogram). Values at or above it are the
/// bright class. `None` when the values hold no contrast.
pub fn otsu_threshold(values: &[f32]) -> Option<f32> {
    const BINS: usize = 256;
    let (lo, hi) = values
        .iter()
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| {
            (l.min(v), h.max(v))
        });
    if hi <= lo || !(hi - lo).is_finite() {
        return None;
    }
    let k = BINS as f32 / (hi - lo);
    let mut hist = [0f64; BINS];
    for v in values.iter().filter(|v| v.is_finite()) {
        hist[(((v - lo) * k) as usize).min(BINS - 1)] += 1.0;
    }
    let n: f64 = hist.iter().sum();
    let total: f64 = hist.iter().enumerate().map(|(i, c)| i as f64 * c).sum();
    let (mut w0, mut sum0, mut best, mut cut) = (0.0, 0.0, -1.0, 1);
    for (i, c) in hist.iter().enumerate().take(BINS - 1) {
        w0 += c;
        sum0 += i as f64 * c;
        let w1 = n - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let d = sum0 / w0 - (total - sum0) / w1;
        if w0 * w1 * d * d > best {
            best = w0 * w1 * d * d;
            cut = i + 1;
        }
    }
    Some(lo + cut as f32 / k)
}

/// A focal lesion's box drawn from the film itself: inside `region` (a box the class map picked,
/// in `film`'s pixels), the pixels at or above Otsu's threshold of the region, and the box of their
/// largest 8-connected component.
///
/// Why: a class map is the lesion seen through the network's receptive fields and the smoothing
/// before the cut, so a small lesion's region comes out wider than the lesion by a margin the
/// map's blur sets, not the lesion; on the film an opacity is brighter than the lung around it
/// (the film is the network's input, lightly smoothed by the caller so that noise does not split
/// it). No setting is read from any box. Returns `region` when it holds no contrast or no pixel.
pub fn outline_in_film(film: &Heatmap, region: &BBox) -> BBox {
    let (fw, fh) = (film.width as f64, film.height as f64);
    let x0 = region.x.floor().clamp(0.0, fw) as usize;
    let y0 = region.y.floor().clamp(0.0, fh) as usize;
    let x1 = (region.x + region.w).ceil().clamp(0.0, fw) as usize;
    let y1 = (region.y + region.h).ceil().clamp(0.0, fh) as usize;
    if x1 < x0 + 2 || y1 < y0 + 2 {
        return *region;
    }
    let crop: Vec<f32> = (y0..y1)
        .flat_map(|y| {
            film.data[y * film.width + x0..y * film.width + x1]
                .iter()
                .copied()
        })
        .collect();
    let Some(t) = otsu_threshold(&crop) else {
        return *region;
    };
    let Some(c) = components(&crop, x1 - x0, t)
        .into_iter()
        .max_by_key(|c| c.cells)
    else {
        return *region;
    };
    BBox::new(
        (x0 + c.x0) as f64,
        (y0 + c.y0) as f64,
        (c.x1 - c.x0 + 1) as f64,
        (c.y1 - c.y0 + 1) as f64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map from rows of digits, each digit one cell (9 = hottest).
    fn map(rows: &[&str]) -> Heatmap {
        let w = rows[0].len();
        let data = rows
            .iter()
            .flat_map(|r| r.bytes().map(|b| (b - b'0') as f32))
            .collect();
        Heatmap::new(w, rows.len(), data)
    }

    #[test]
    fn resampling_puts_cells_where_the_grid_says() {
        // One hot cell at (1, 2) of a 4×4 map with stride 8.
        let mut data = vec![0.0; 16];
        data[2 * 4 + 1] = 1.0;
        let h = Heatmap::new(4, 4, data);
        let peak = |m: &Heatmap| {
            let i = (0..m.data.len())
                .max_by(|&a, &b| m.data[a].total_cmp(&m.data[b]))
                .unwrap();
            (i % m.width, i / m.width)
        };
        // ResNet-like: cell i centred on pixel 8i → peak at pixel (8, 16).
        let resnet = CellGrid {
            stride: 8.0,
            origin: 0.5,
        };
        let up = h.on_input(resnet, 32);
        assert_eq!(peak(&up), (8, 16));
        assert_eq!(up.data[16 * 32 + 8], 1.0);
        // Halfway to the next centre, half the heat; beyond the last centre, held flat.
        assert!((up.data[16 * 32 + 12] - 0.5).abs() < 0.07);
        let edge = Heatmap::new(4, 4, (0..16).map(|i| (i % 4) as f32).collect());
        let e = edge.on_input(resnet, 32);
        assert_eq!((e.data[31], e.data[30], e.data[0]), (3.0, 3.0, 0.0));
        // Tiled: cell i spans pixels [8i, 8i+8), its centre between pixels 8i+3 and 8i+4.
        let t = h.on_input(CellGrid::tiled(8.0), 32);
        let (x, y) = peak(&t);
        assert!((11..=12).contains(&x) && (19..=20).contains(&y), "{x},{y}");
    }

    fn boxes(h: &Heatmap, t: u8, scale: f64) -> Vec<(f64, f64, f64, f64)> {
        let mut b: Vec<_> =
            boxes_from_heatmap(h, t, h.width as f64 * scale, h.height as f64 * scale)
                .into_iter()
                .map(|d| (d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h))
                .collect();
        b.sort_by(|a, b| a.partial_cmp(b).unwrap());
        b
    }

    #[test]
    fn scaling_spans_0_to_255_and_a_flat_map_is_empty() {
        assert_eq!(map(&["09", "30"]).to_u8(), vec![0, 255, 85, 0]);
        let flat = map(&["555", "555"]);
        assert_eq!(flat.to_u8(), vec![0; 6]);
        assert!(boxes_from_heatmap(&flat, 60, 3.0, 2.0).is_empty());
    }

    #[test]
    fn several_components_give_several_boxes_in_image_coordinates() {
        let h = map(&["90000", "90099", "00099", "00000"]);
        // Left component: column 0, rows 0-1; right: columns 3-4, rows 1-2. Scale 32 (a 32x32 map
        // of a 1024 image).
        assert_eq!(
            boxes(&h, 180, 32.0),
            vec![(0.0, 0.0, 32.0, 64.0), (96.0, 32.0, 64.0, 64.0)]
        );
    }

    #[test]
    fn diagonally_touching_cells_are_one_component() {
        let h = map(&["900", "090", "009"]);
        assert_eq!(boxes(&h, 180, 1.0), vec![(0.0, 0.0, 3.0, 3.0)]);
    }

    #[test]
    fn a_box_at_the_border_stays_inside_the_image() {
        let h = map(&["0000", "0009", "0009"]);
        assert_eq!(boxes(&h, 180, 256.0), vec![(768.0, 256.0, 256.0, 512.0)]);
    }

    #[test]
    fn the_threshold_decides_what_joins() {
        // Values 9, 5, 9 in a row: at 180 (scaled 5 -> 142) two boxes; at 60 one box.
        let h = map(&["959", "000"]);
        assert_eq!(boxes(&h, 180, 1.0).len(), 2);
        assert_eq!(boxes(&h, 60, 1.0), vec![(0.0, 0.0, 3.0, 1.0)]);
    }

    #[test]
    fn localization_accuracy_and_afp_worked_by_hand() {
        let truth = BBox::new(0.0, 0.0, 100.0, 100.0);
        // Image 1: one detection inside the truth (IoBB 1, IoU 0.25) and one far away.
        // Image 2: a detection half outside (IoBB 0.5, IoU 50*100/(10000+5000) = 1/3); truth elsewhere.
        let cases = vec![
            LocCase {
                truth: vec![truth],
                detected: vec![
                    BBox::new(10.0, 10.0, 50.0, 50.0),
                    BBox::new(500.0, 500.0, 10.0, 10.0),
                ],
                peak: None,
            },
            LocCase {
                truth: vec![truth],
                detected: vec![BBox::new(50.0, 0.0, 100.0, 100.0)],
                peak: None,
            },
        ];
        let s = localization(&cases, Overlap::IoBB, 0.5);
        assert_eq!((s.accuracy, s.afp), (1.0, 0.5));
        let s = localization(&cases, Overlap::IoBB, 0.75);
        assert_eq!((s.accuracy, s.afp), (0.5, 1.0));
        let s = localization(&cases, Overlap::IoU, 0.3);
        assert_eq!((s.accuracy, s.afp), (0.5, 1.0));
        let s = localization(&cases, Overlap::IoU, 0.2);
        assert_eq!((s.accuracy, s.afp), (1.0, 0.5));
        // No detections at all: nothing found, no false positives.
        let empty = vec![LocCase {
            truth: vec![truth],
            detected: vec![],
            peak: None,
        }];
        assert_eq!(localization(&empty, Overlap::IoBB, 0.1).accuracy, 0.0);
        assert_eq!(localization(&empty, Overlap::IoBB, 0.1).afp, 0.0);
    }

    /// A disk of radius `r` at (cx, cy) on a `side²` map, with a weak speckle everywhere.
    fn disk_map(side: usize, blobs: &[(f64, f64, f64, f32)]) -> Heatmap {
        let data = (0..side * side)
            .map(|i| {
                let (x, y) = ((i % side) as f64 + 0.5, (i / side) as f64 + 0.5);
                let speck = if (i * 7919) % 13 == 0 { 0.3 } else { 0.0 };
                blobs
                    .iter()
                    .map(
                        |&(cx, cy, r, v)| {
                            if (x - cx).hypot(y - cy) <= r {
                                v
                            } else {
                                0.0
                            }
                        },
                    )
                    .fold(speck, f32::max)
            })
            .collect();
        Heatmap::new(side, side, data)
    }

    #[test]
    fn peak_regions_outline_the_lesion_where_the_paper_boxes_specks() {
        let h = disk_map(64, &[(20.0, 30.0, 8.0, 1.0)]);
        let truth = BBox::new(12.0, 22.0, 16.0, 16.0);
        let rule = PeakRegions {
            sigma: 1.0,
            level: 0.5,
            keep: 0.5,
            max_boxes: 2,
            round: false,
        };
        let b = rule.boxes(&h, 64.0, 64.0);
        assert_eq!(b.len(), 1, "{b:?}");
        assert!(
            b[0].iou(&truth) >= 0.8,
            "{:?} IoU {}",
            b[0],
            b[0].iou(&truth)
        );
        // The paper's rule at 60 boxes each speck above 0.24 of the range too.
        let paper = BoxRule::paper().boxes(&h, 64.0, 64.0);
        assert!(paper.len() > 5, "{}", paper.len());
        // In output coordinates: the same box on a 4× larger image.
        let big = rule.boxes(&h, 256.0, 256.0);
        assert_eq!(big[0], b[0].scaled(4.0, 4.0));
    }

    #[test]
    fn peak_regions_keep_a_second_peak_of_similar_height_and_cap_the_count() {
        let two = disk_map(64, &[(16.0, 16.0, 6.0, 1.0), (46.0, 46.0, 6.0, 0.9)]);
        let rule = PeakRegions {
            sigma: 1.0,
            level: 0.5,
            keep: 0.5,
            max_boxes: 2,
            round: false,
        };
        let b = rule.boxes(&two, 64.0, 64.0);
        assert_eq!(b.len(), 2);
        // Strongest first.
        assert!(b[0].x < 20.0 && b[1].x > 30.0, "{b:?}");
        let one = PeakRegions {
            max_boxes: 1,
            ..rule
        };
        assert_eq!(one.boxes(&two, 64.0, 64.0), vec![b[0]]);
        // A second blob at 0.4 of the peak is not a lesion of its own.
        let weak = disk_map(64, &[(16.0, 16.0, 6.0, 1.0), (46.0, 46.0, 6.0, 0.4)]);
        assert_eq!(rule.boxes(&weak, 64.0, 64.0).len(), 1);
        // A flat map has no peak and no box.
        let flat = Heatmap::new(8, 8, vec![0.5; 64]);
        assert!(rule.boxes(&flat, 8.0, 8.0).is_empty());
        assert_eq!(flat.peak(), None);
    }

    #[test]
    fn smoothing_keeps_mass_and_the_peak_in_place() {
        let h = disk_map(32, &[(16.0, 16.0, 3.0, 1.0)]);
        let s = h.smoothed(2.0);
        let sum = |m: &Heatmap| m.data.iter().map(|&v| v as f64).sum::<f64>();
        assert!(
            (sum(&s) / sum(&h) - 1.0).abs() < 0.05,
            "{} vs {}",
            sum(&s),
            sum(&h)
        );
        assert_eq!(s.peak(), Some((16, 16)));
        assert!(s.data[16 * 32 + 16] < 1.0);
        assert_eq!(h.smoothed(0.0), h);
    }

    #[test]
    fn box_quality_worked_by_hand() {
        let t = BBox::new(0.0, 0.0, 10.0, 10.0);
        let cases = vec![
            // Right size, peak inside.
            LocCase {
                truth: vec![t],
                detected: vec![
                    BBox::new(1.0, 1.0, 10.0, 10.0),
                    BBox::new(50.0, 50.0, 1.0, 1.0),
                ],
                peak: Some((5.0, 5.0)),
            },
            // A speck (area 0.04 of the truth), peak outside.
            LocCase {
                truth: vec![t],
                detected: vec![BBox::new(4.0, 4.0, 2.0, 2.0)],
                peak: Some((20.0, 5.0)),
            },
            // Twice too large; no peak (flat map).
            LocCase {
                truth: vec![t],
                detected: vec![BBox::new(0.0, 0.0, 20.0, 10.0)],
                peak: None,
            },
            // Nothing detected: left out of the area ratio.
            LocCase {
                truth: vec![t],
                detected: vec![],
                peak: Some((9.9, 9.9)),
            },
        ];
        let q = BoxQuality::of(&cases, 40, 6);
        assert_eq!(q.pointing, 0.5);
        assert_eq!(q.median_area_ratio, Some(1.0));
        assert_eq!(q.false_boxes_per_negative_film, 0.15);
        assert_eq!(q.negative_films, 40);
        let none = BoxQuality::of(&[], 0, 0);
        assert_eq!((none.pointing, none.median_area_ratio), (0.0, None));
        assert_eq!(none.false_boxes_per_negative_film, 0.0);
    }

    #[test]
    fn a_round_box_squares_a_split_component_around_its_centre() {
        // A nodule whose map lit its left and right edges: one wide, flat component (14 × 6 cells,
        // joined by a bridge), centred at (20, 20).
        let mut data = vec![0.0f32; 40 * 40];
        for y in 17..23 {
            for x in (13..18).chain(22..27) {
                data[y * 40 + x] = 1.0;
            }
            for x in 18..22 {
                data[y * 40 + x] = 0.7;
            }
        }
        let h = Heatmap::new(40, 40, data);
        let rule = PeakRegions {
            sigma: 0.0,
            level: 0.6,
            keep: 0.5,
            max_boxes: 1,
            round: false,
        };
        let flat = rule.boxes(&h, 40.0, 40.0)[0];
        assert_eq!((flat.w, flat.h), (14.0, 6.0));
        let round = PeakRegions {
            round: true,
            ..rule
        }
        .boxes(&h, 40.0, 40.0)[0];
        let side = (14.0f64 * 6.0).sqrt();
        assert!(
            (round.w - side).abs() < 1e-9 && (round.h - side).abs() < 1e-9,
            "{round:?}"
        );
        assert!((round.x + round.w / 2.0 - 20.0).abs() < 1e-9, "{round:?}");
        assert!((round.y + round.h / 2.0 - 20.0).abs() < 1e-9, "{round:?}");
    }

    /// A 64² film: lung-dark on the left half, soft-tissue bright on the right (a film's own
    /// anatomy), a disc of radius 5 at (20, 30) brighter than the lung, and a little seeded noise.
    fn film_with_disc() -> Heatmap {
        let mut state = 7u32;
        let data = (0..64 * 64)
            .map(|i| {
                let (x, y) = ((i % 64) as f32 + 0.5, (i / 64) as f32 + 0.5);
                let mut v = if x < 40.0 { 0.25 } else { 0.8 };
                if (x - 20.0).powi(2) + (y - 30.0).powi(2) <= 25.0 {
                    v += 0.35;
                }
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                v + 0.02 * ((state >> 8) as f32 / (1u32 << 24) as f32 - 0.5)
            })
            .collect();
        Heatmap::new(64, 64, data)
    }

    #[test]
    fn otsu_splits_two_levels_between_them_and_refuses_a_flat_set() {
        let mut v = vec![0.2f32; 300];
        v.extend(vec![0.9f32; 100]);
        let t = otsu_threshold(&v).unwrap();
        assert!(t > 0.2 && t <= 0.9, "{t}");
        assert_eq!(v.iter().filter(|&&x| x >= t).count(), 100);
        assert_eq!(otsu_threshold(&[0.5; 10]), None);
        assert_eq!(otsu_threshold(&[]), None);
    }

    #[test]
    fn a_wide_region_around_a_disc_is_outlined_to_the_disc() {
        let film = film_with_disc();
        let disc = BBox::new(15.0, 25.0, 10.0, 10.0);
        // The region a blurred map would cut: three times the disc's side, centred on it.
        let wide = BBox::new(5.0, 15.0, 30.0, 30.0);
        assert!(wide.iou(&disc) < 0.15);
        let out = outline_in_film(&film, &wide);
        assert!(out.iou(&disc) > 0.8, "{out:?}");
        // The largest bright part wins: a region that takes in more soft tissue than lesion is
        // outlined to the tissue (reading the film fails where a lesion borders the heart or
        // the diaphragm).
        let into_tissue = BBox::new(10.0, 20.0, 40.0, 20.0);
        let out = outline_in_film(&film, &into_tissue);
        assert!(out.x >= 39.0, "{out:?}");
    }

    #[test]
    fn a_region_without_contrast_or_off_the_film_is_kept() {
        let flat = Heatmap::new(32, 32, vec![0.4; 32 * 32]);
        let b = BBox::new(4.0, 4.0, 10.0, 8.0);
        assert_eq!(outline_in_film(&flat, &b), b);
        let off = BBox::new(40.0, 40.0, 5.0, 5.0);
        assert_eq!(outline_in_film(&flat, &off), off);
        // A box that reaches past the edge is read on the part that is on the film.
        let film = film_with_disc();
        let out = outline_in_film(&film, &BBox::new(-10.0, 15.0, 45.0, 30.0));
        assert!(out.iou(&BBox::new(15.0, 25.0, 10.0, 10.0)) > 0.8, "{out:?}");
    }
}
