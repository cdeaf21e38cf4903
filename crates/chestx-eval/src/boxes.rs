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

/// Boxes around the 8-connected components of cells whose scaled value is `>= threshold`, mapped to an
/// output image of `out_w × out_h` (e.g. 1024 × 1024 for NIH). Ordered by peak, strongest first.
pub fn boxes_from_heatmap(h: &Heatmap, threshold: u8, out_w: f64, out_h: f64) -> Vec<Detection> {
    let v = h.to_u8();
    let (w, ht) = (h.width, h.height);
    let (sx, sy) = (out_w / w as f64, out_h / ht as f64);
    let mut seen = vec![false; v.len()];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    for start in 0..v.len() {
        if seen[start] || v[start] < threshold {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
        let (mut peak, mut cells) = (0u8, 0usize);
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
            peak = peak.max(v[i]);
            cells += 1;
            for dy in -1i64..=1 {
                for dx in -1i64..=1 {
                    let (nx, ny) = (x as i64 + dx, y as i64 + dy);
                    if nx < 0 || ny < 0 || nx >= w as i64 || ny >= ht as i64 {
                        continue;
                    }
                    let j = ny as usize * w + nx as usize;
                    if !seen[j] && v[j] >= threshold {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        let bbox = BBox::new(
            x0 as f64 * sx,
            y0 as f64 * sy,
            (x1 - x0 + 1) as f64 * sx,
            (y1 - y0 + 1) as f64 * sy,
        );
        out.push(Detection { bbox, peak, cells });
    }
    out.sort_by(|a, b| b.peak.cmp(&a.peak).then(b.cells.cmp(&a.cells)));
    out
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

/// The paper's Table 4 thresholds.
pub const IOBB_THRESHOLDS: [f64; 5] = [0.1, 0.25, 0.5, 0.75, 0.9];
pub const IOU_THRESHOLDS: [f64; 7] = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7];

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
            },
            LocCase {
                truth: vec![truth],
                detected: vec![BBox::new(50.0, 0.0, 100.0, 100.0)],
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
        }];
        assert_eq!(localization(&empty, Overlap::IoBB, 0.1).accuracy, 0.0);
        assert_eq!(localization(&empty, Overlap::IoBB, 0.1).afp, 0.0);
    }
}
