//! Heatmaps from a trained network, placed on the image, and the boxes drawn from them.
//!
//! Two things decide where a box lands besides the network itself. Cells are resampled onto the input
//! through the backbone's [`CellGrid`], not stretched edge to edge (a ResNet cell looks half a cell
//! up-left of where a plain resize puts it). And a learned detector may fire beside a lesion rather than
//! on it (a filter that answers to "bright blob below-left of here" is as discriminative as a centred
//! one); averaging the map with the maps of the flipped film, flipped back, cancels that offset along
//! each flipped axis ([`Flips`]).

use crate::ChestNet;
use chestx_core::{BBox, CellGrid};
use chestx_eval::boxes::{boxes_from_heatmap, Heatmap};
use tch::{Device, Tensor};

/// The paper's class activation map, or Grad-CAM on the backbone's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum HeatmapKind {
    #[default]
    Cam,
    GradCam,
}

/// Which flipped copies of the image are also run, their maps flipped back and averaged with the
/// image's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum Flips {
    /// The image only (the paper).
    #[default]
    None,
    /// Also the mirror image: cancels left–right offsets.
    Mirror,
    /// Mirror, upside down, and both: cancels offsets in both directions.
    Both,
}

impl Flips {
    /// The views as (flip x, flip y).
    fn views(self) -> &'static [(bool, bool)] {
        match self {
            Flips::None => &[(false, false)],
            Flips::Mirror => &[(false, false), (true, false)],
            Flips::Both => &[(false, false), (true, false), (false, true), (true, true)],
        }
    }
}

/// How heatmaps are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct HeatOptions {
    pub kind: HeatmapKind,
    pub flips: Flips,
}

/// One class's map on one image, in cells, per view: `(map, flipped in x, flipped in y)`, each map
/// already flipped back (its cells then sit on the grid mirrored along the flipped axes).
#[derive(Debug, Clone)]
pub struct ClassHeat {
    pub views: Vec<(Heatmap, bool, bool)>,
}

impl ClassHeat {
    /// The map on the `side × side` input (raw CAM units; views averaged).
    pub fn on_input(&self, grid: CellGrid, side: usize) -> Heatmap {
        let mut sum: Option<Heatmap> = None;
        for (m, fx, fy) in &self.views {
            let gx = if *fx {
                grid.mirrored(side as f64, m.width)
            } else {
                grid
            };
            let gy = if *fy {
                grid.mirrored(side as f64, m.height)
            } else {
                grid
            };
            let up = m.on_input_xy(gx, gy, side);
            match &mut sum {
                None => sum = Some(up),
                Some(s) => s.data.iter_mut().zip(&up.data).for_each(|(a, b)| *a += b),
            }
        }
        let mut out = sum.expect("at least one view");
        let k = 1.0 / self.views.len() as f32;
        out.data.iter_mut().for_each(|v| *v *= k);
        out
    }
}

/// Probabilities `[B, C]` and cell maps `[B, C, S, S]`, both on the CPU, for one view of a batch.
fn probs_and_maps(net: &ChestNet, x: &Tensor, kind: HeatmapKind) -> (Tensor, Tensor) {
    let (logits, maps) = match kind {
        HeatmapKind::Cam => tch::no_grad(|| {
            let f = net.forward(x, false);
            (f.logits, net.cam(&f.transition))
        }),
        HeatmapKind::GradCam => net.grad_cams(x),
    };
    (
        logits.sigmoid().to_device(Device::Cpu),
        maps.to_device(Device::Cpu),
    )
}

/// Split `[B, C, S, S]` into per-image, per-class maps.
fn split_maps(maps: &Tensor) -> Vec<Vec<Heatmap>> {
    let (b, c, h, w) = maps.size4().expect("4-D heatmaps");
    let v: Vec<f32> = Vec::try_from(maps.flatten(0, -1)).unwrap_or_default();
    let n = (h * w) as usize;
    (0..b as usize)
        .map(|k| {
            (0..c as usize)
                .map(|ci| {
                    let off = (k * c as usize + ci) * n;
                    Heatmap::new(w as usize, h as usize, v[off..off + n].to_vec())
                })
                .collect()
        })
        .collect()
}

/// Probabilities (the image's own, row-major `[B, C]`) and per-image, per-class heatmaps of a batch.
pub fn batch_heat(
    net: &ChestNet,
    x: &Tensor,
    opts: HeatOptions,
) -> (Vec<f32>, Vec<Vec<ClassHeat>>) {
    let mut probs = Vec::new();
    let mut heat: Vec<Vec<ClassHeat>> = Vec::new();
    for (v, &(fx, fy)) in opts.flips.views().iter().enumerate() {
        let dims: Vec<i64> = [(fx, 3i64), (fy, 2)]
            .iter()
            .filter(|(f, _)| *f)
            .map(|&(_, d)| d)
            .collect();
        let view = if dims.is_empty() {
            x.shallow_clone()
        } else {
            x.flip(&dims)
        };
        let (p, maps) = probs_and_maps(net, &view, opts.kind);
        let maps = if dims.is_empty() {
            maps
        } else {
            maps.flip(&dims)
        };
        if v == 0 {
            probs = Vec::try_from(p.flatten(0, -1)).unwrap_or_default();
            heat = split_maps(&maps)
                .into_iter()
                .map(|cs| {
                    cs.into_iter()
                        .map(|m| ClassHeat {
                            views: vec![(m, fx, fy)],
                        })
                        .collect()
                })
                .collect();
        } else {
            for (k, cs) in split_maps(&maps).into_iter().enumerate() {
                for (ci, m) in cs.into_iter().enumerate() {
                    heat[k][ci].views.push((m, fx, fy));
                }
            }
        }
    }
    (probs, heat)
}

/// One class's heatmap on the `side²` input and its boxes in `out_w × out_h` (the original image,
/// of which the input is a plain resize): components of the min-max scaled map at each threshold.
pub fn heat_boxes(
    heat: &ClassHeat,
    grid: CellGrid,
    side: u32,
    thresholds: &[u8],
    out_w: f64,
    out_h: f64,
) -> (Heatmap, Vec<BBox>) {
    let hm = heat.on_input(grid, side as usize);
    let boxes = thresholds
        .iter()
        .flat_map(|&t| boxes_from_heatmap(&hm, t, out_w, out_h))
        .map(|d| d.bbox)
        .collect();
    (hm, boxes)
}
