//! Heatmaps from a trained network, placed on the image, and the boxes drawn from them.
//!
//! Two things decide where a box lands besides the network itself. Cells are resampled onto the input
//! through the backbone's [`CellGrid`], not stretched edge to edge (a ResNet cell looks half a cell
//! up-left of where a plain resize puts it). And a learned detector may fire beside a lesion rather than
//! on it (a filter that answers to "bright blob below-left of here" is as discriminative as a centred
//! one); averaging the map with the maps of the flipped film, flipped back, cancels that offset along
//! each flipped axis ([`Flips`]). And the deepest map is coarse (16-px cells at output stride 16,
//! the size of a nodule): LayerCAM reads finer stages too, and a fine stage's map multiplied by a deep
//! one's ([`ClassHeat::on_input`]) keeps the deep map's choice of region with the fine map's
//! placement inside it.

use crate::Classifier;
use chestx_core::{BBox, CellGrid, Finding};
use chestx_eval::boxes::{outline_in_film, BoxRule, Heatmap, PeakRegions, PAPER_HEAT_THRESHOLDS};
use std::sync::Arc;
use tch::{Device, Kind, Tensor};

/// The paper's class activation map, Grad-CAM on the backbone's output, or LayerCAM on one or more
/// backbone stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum HeatmapKind {
    #[default]
    Cam,
    GradCam,
    LayerCam,
}

/// The backbone stages LayerCAM reads (1-based: `layer1..layer4` of a ResNet), as a set; empty means
/// the last stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CamLayers(u8);

impl CamLayers {
    /// From stage numbers 1..=8 (order and repeats do not matter).
    pub fn new(layers: &[usize]) -> Result<CamLayers, String> {
        let mut bits = 0u8;
        for &l in layers {
            if !(1..=8).contains(&l) {
                return Err(format!(
                    "backbone stage {l} does not exist (stages count from 1)"
                ));
            }
            bits |= 1 << (l - 1);
        }
        Ok(CamLayers(bits))
    }

    /// The stages in the set, ascending.
    fn members(self) -> Vec<usize> {
        (1..=8).filter(|i| self.0 & (1 << (i - 1)) != 0).collect()
    }

    /// The stages in ascending order, for a backbone with `stages` of them.
    pub fn list(self, stages: usize) -> Result<Vec<usize>, String> {
        let l = self.members();
        if l.is_empty() {
            return Ok(vec![stages]);
        }
        match l.iter().find(|&&i| i > stages) {
            Some(i) => Err(format!(
                "this backbone has {stages} stage(s) for LayerCAM; stage {i} was asked for"
            )),
            None => Ok(l),
        }
    }
}

impl serde::Serialize for CamLayers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.members().serialize(s)
    }
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
    /// Stages for [`HeatmapKind::LayerCam`] (the others read the last).
    pub layers: CamLayers,
}

impl HeatOptions {
    /// The stages this reads on `net`: an error names a stage the backbone lacks.
    pub fn stages(&self, net: &dyn Classifier) -> Result<Vec<usize>, String> {
        let n = net.stages();
        match self.kind {
            HeatmapKind::LayerCam => self.layers.list(n),
            _ => Ok(vec![n]),
        }
    }

    /// How the report names the maps, e.g. "LayerCAM maps of layer2 × layer4".
    pub fn describe(&self, net: &dyn Classifier) -> String {
        match self.kind {
            HeatmapKind::Cam => "class activation maps".into(),
            HeatmapKind::GradCam => "Grad-CAM maps".into(),
            HeatmapKind::LayerCam => {
                let l = self.stages(net).unwrap_or_default();
                let names: Vec<String> = l.iter().map(|i| format!("layer{i}")).collect();
                let fused = if l.len() > 1 {
                    " (each scaled to [0, 1], multiplied)"
                } else {
                    ""
                };
                format!("LayerCAM maps of {}{fused}", names.join(" × "))
            }
        }
    }
}

/// One backbone stage's map of one class on one image, in cells, per view: `(map, flipped in x,
/// flipped in y)`, each map already flipped back (its cells then sit on `grid` mirrored along the
/// flipped axes).
#[derive(Debug, Clone)]
pub struct StageHeat {
    pub grid: CellGrid,
    pub views: Vec<(Heatmap, bool, bool)>,
}

impl StageHeat {
    /// The map on the `side × side` input (raw units; views averaged).
    pub fn on_input(&self, side: usize) -> Heatmap {
        self.views_on_input(side, false)
    }

    /// [`StageHeat::on_input`] of the upright views only (the film and its mirror image, not the
    /// upside-down ones) when `upright` and there is one; else of every view.
    fn views_on_input(&self, side: usize, upright: bool) -> Heatmap {
        let upright = upright && self.views.iter().any(|v| !v.2);
        let views: Vec<_> = self.views.iter().filter(|v| !(upright && v.2)).collect();
        let mut sum: Option<Heatmap> = None;
        for (m, fx, fy) in views.iter().copied() {
            let gx = if *fx {
                self.grid.mirrored(side as f64, m.width)
            } else {
                self.grid
            };
            let gy = if *fy {
                self.grid.mirrored(side as f64, m.height)
            } else {
                self.grid
            };
            let up = m.on_input_xy(gx, gy, side);
            match &mut sum {
                None => sum = Some(up),
                Some(s) => s.data.iter_mut().zip(&up.data).for_each(|(a, b)| *a += b),
            }
        }
        let mut out = sum.expect("at least one view");
        let k = 1.0 / views.len() as f32;
        out.data.iter_mut().for_each(|v| *v *= k);
        out
    }
}

/// One class's heatmap on one image: one [`StageHeat`] per backbone stage read.
#[derive(Debug, Clone)]
pub struct ClassHeat {
    pub stages: Vec<StageHeat>,
    /// The cut (relative to the map's peak) chosen for this film by erasure
    /// ([`crate::erase::choose_cuts`]); `None`: the finding's recipe's.
    pub cut: Option<f32>,
    /// The network's input the maps were computed on (its first channel, `side × side`; any
    /// normalization is affine, which [`outline_in_film`] does not see), smoothed at
    /// [`FILM_SIGMA`] once and shared by the film's classes: focal findings' boxes are outlined on
    /// it. `None`: boxes from the map alone.
    pub film: Option<Arc<Heatmap>>,
}

impl ClassHeat {
    /// No map was computed (see [`batch_heat_wanted`]).
    pub fn is_empty(&self) -> bool {
        self.stages.iter().all(|s| s.views.is_empty())
    }

    /// The map on the `side × side` input. One stage: its map as is. Several: each scaled to
    /// [0, 1] and multiplied — high only where every stage is, so a fine stage's scattered
    /// responses away from the region the deep stage picked drop out, and the deep stage's coarse
    /// blob is narrowed to where the fine one places the evidence.
    pub fn on_input(&self, side: usize) -> Heatmap {
        let mut maps = self.stages.iter().map(|s| s.on_input(side));
        let first = maps.next().expect("at least one stage");
        if self.stages.len() == 1 {
            return first;
        }
        maps.fold(first.unit_scaled(), |mut acc, m| {
            let m = m.unit_scaled();
            acc.data.iter_mut().zip(&m.data).for_each(|(a, b)| *a *= b);
            acc
        })
    }
}

/// Where the cells of each stage read sit on the input.
fn stage_grids(net: &dyn Classifier, kind: HeatmapKind, stages: &[usize]) -> Vec<CellGrid> {
    match kind {
        HeatmapKind::LayerCam => stages.iter().map(|&l| net.layer_grid(l)).collect(),
        _ => vec![net.cell_grid()],
    }
}

/// Probabilities `[B, C]` and one `[B, classes.len(), h, w]` map per stage read (of the classes
/// listed, in that order), all on the CPU, for one view of a batch.
fn probs_and_maps(
    net: &dyn Classifier,
    x: &Tensor,
    kind: HeatmapKind,
    stages: &[usize],
    classes: &[usize],
) -> (Tensor, Vec<Tensor>) {
    let pick = |m: Tensor| {
        let index: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
        m.index_select(1, &Tensor::from_slice(&index).to_device(m.device()))
    };
    let (logits, maps) = match kind {
        HeatmapKind::Cam => {
            let (l, m) = net.cams(x);
            (l, vec![pick(m)])
        }
        HeatmapKind::GradCam => {
            let (l, m) = net.grad_cams(x);
            (l, vec![pick(m)])
        }
        HeatmapKind::LayerCam => net.layer_cams(x, stages, classes),
    };
    (
        logits.sigmoid().to_device(Device::Cpu),
        maps.into_iter().map(|m| m.to_device(Device::Cpu)).collect(),
    )
}

/// Films a heatmap pass may hold when it stacks a small batch's flipped views.
const VIEW_PASS_FILMS: usize = 8;

/// `x` (`[B, C, H, W]`) mirrored left–right (`fx`) and/or upside down (`fy`); flipping twice is
/// the identity, so the same call maps a flipped view's heatmaps back.
fn flip(x: &Tensor, fx: bool, fy: bool) -> Tensor {
    let dims: Vec<i64> = [(fx, 3i64), (fy, 2)]
        .iter()
        .filter(|(f, _)| *f)
        .map(|&(_, d)| d)
        .collect();
    match dims.is_empty() {
        true => x.shallow_clone(),
        false => x.flip(&dims),
    }
}

/// Each film's first input channel (`[B, C, H, W]` → B maps of `H × W`); none when the input
/// cannot be read back.
fn input_films(x: &Tensor) -> Vec<Heatmap> {
    let g = x.select(1, 0).to_device(Device::Cpu).to_kind(Kind::Float);
    let Ok((b, h, w)) = g.size3() else {
        return Vec::new();
    };
    let v: Vec<f32> = Vec::try_from(g.flatten(0, -1)).unwrap_or_default();
    let n = (h * w) as usize;
    if v.len() != b as usize * n {
        return Vec::new();
    }
    v.chunks(n)
        .map(|f| Heatmap::new(w as usize, h as usize, f.to_vec()))
        .collect()
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
/// Fails only when `opts` asks for a stage the backbone lacks.
pub fn batch_heat(
    net: &dyn Classifier,
    x: &Tensor,
    opts: HeatOptions,
) -> Result<(Vec<f32>, Vec<Vec<ClassHeat>>), String> {
    let all: Vec<usize> = (0..net.classes().len()).collect();
    batch_heat_of(net, x, opts, &all)
}

/// [`batch_heat`] with maps for the listed classes only; the others' are empty.
fn batch_heat_of(
    net: &dyn Classifier,
    x: &Tensor,
    opts: HeatOptions,
    of: &[usize],
) -> Result<(Vec<f32>, Vec<Vec<ClassHeat>>), String> {
    let stages = opts.stages(net)?;
    let grids = stage_grids(net, opts.kind, &stages);
    let empty = ClassHeat {
        stages: grids
            .iter()
            .map(|&grid| StageHeat {
                grid,
                views: Vec::new(),
            })
            .collect(),
        cut: None,
        film: None,
    };
    let (batch, classes) = (x.size()[0] as usize, net.classes().len());
    let mut heat = vec![vec![empty; classes]; batch];
    for (film, classes) in input_films(x).into_iter().zip(&mut heat) {
        let film = Arc::new(film.smoothed(FILM_SIGMA));
        classes.iter_mut().for_each(|c| c.film = Some(film.clone()));
    }
    let mut probs = Vec::new();
    let views = opts.flips.views();
    // A small batch's views share one pass: on a CPU a pass of four films costs markedly less per
    // film than four passes of one. No pass holds more than max(batch, VIEW_PASS_FILMS) films, so
    // memory stays what such a batch needs.
    let per_pass = (VIEW_PASS_FILMS / batch.max(1)).clamp(1, views.len());
    for (g, group) in views.chunks(per_pass).enumerate() {
        let inputs: Vec<Tensor> = group.iter().map(|&(fx, fy)| flip(x, fx, fy)).collect();
        let (p, per_stage) = probs_and_maps(net, &Tensor::cat(&inputs, 0), opts.kind, &stages, of);
        if g == 0 {
            probs = Vec::try_from(p.narrow(0, 0, batch as i64).flatten(0, -1)).unwrap_or_default();
        }
        for (si, maps) in per_stage.into_iter().enumerate() {
            for (vi, &(fx, fy)) in group.iter().enumerate() {
                let maps = flip(&maps.narrow(0, (vi * batch) as i64, batch as i64), fx, fy);
                for (k, cs) in split_maps(&maps).into_iter().enumerate() {
                    for (&ci, m) in of.iter().zip(cs) {
                        heat[k][ci].stages[si].views.push((m, fx, fy));
                    }
                }
            }
        }
    }
    Ok((probs, heat))
}

/// [`batch_heat`] for the maps a caller will use. `wanted(k, probs)` says, from film `k`'s
/// probabilities, which classes need a map; a film that needs none costs one plain forward pass,
/// and only the films that need some go through the (far dearer) heatmap passes, for the classes
/// some film of the batch wants. A class that film did not want may still carry a map (another
/// film wanted it); one no film wanted carries none ([`ClassHeat::is_empty`]).
/// Probabilities are the plain pass's, the same numbers [`batch_heat`] returns.
pub fn batch_heat_wanted(
    net: &dyn Classifier,
    x: &Tensor,
    opts: HeatOptions,
    wanted: &dyn Fn(usize, &[f32]) -> Vec<bool>,
) -> Result<(Vec<f32>, Vec<Vec<ClassHeat>>), String> {
    let stages = opts.stages(net)?;
    let classes = net.classes().len();
    let probs: Vec<f32> = Vec::try_from(
        net.logits(x)
            .sigmoid()
            .to_device(Device::Cpu)
            .flatten(0, -1),
    )
    .map_err(|e: tch::TchError| e.to_string())?;
    let empty = ClassHeat {
        stages: stage_grids(net, opts.kind, &stages)
            .into_iter()
            .map(|grid| StageHeat {
                grid,
                views: Vec::new(),
            })
            .collect(),
        cut: None,
        film: None,
    };
    let batch = x.size()[0] as usize;
    let mut heat = vec![vec![empty; classes]; batch];
    let wants: Vec<Vec<bool>> = (0..batch)
        .map(|k| wanted(k, &probs[k * classes..(k + 1) * classes]))
        .collect();
    let films: Vec<i64> = (0..batch as i64)
        .filter(|&k| wants[k as usize].contains(&true))
        .collect();
    // One backward pass per class and view: the classes any of these films wants.
    let of: Vec<usize> = (0..classes)
        .filter(|&c| wants.iter().any(|w| w.get(c) == Some(&true)))
        .collect();
    if !films.is_empty() {
        let index = Tensor::from_slice(&films).to_device(x.device());
        let (_, maps) = batch_heat_of(net, &x.index_select(0, &index), opts, &of)?;
        for (&k, m) in films.iter().zip(maps) {
            heat[k as usize] = m;
        }
    }
    Ok((probs, heat))
}

/// The smoothing (input pixels) of the film before a box is outlined on it: enough that pixel
/// noise does not split a lesion, far less than the map's.
const FILM_SIGMA: f32 = 1.0;

/// How findings are localized: the maps read and how each class's map becomes boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum BoxMethod {
    /// ChestX-ray8 as published: the [`HeatOptions`] map (CAM by default), min–max scaled to 0–255,
    /// a box around every connected component at each heat threshold (60 and 180), on every film.
    Paper,
    /// chestx's peak regions: LayerCAM on the first three backbone stages, averaged over the film
    /// and its flips, summed, smoothed and cut relative to the peak at a level set by the finding's
    /// scale ([`region_recipe`], [`PeakRegions`]); boxes only for findings the model calls present.
    #[default]
    Regions,
    /// Peak regions cut, film by film, at the highest level whose boxes, erased from the film, take
    /// the finding below its operating threshold ([`crate::erase`]).
    Erase,
}

/// A localization method with its settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Localizer {
    pub method: BoxMethod,
    /// The maps of [`BoxMethod::Paper`] (ignored by `Regions`, which reads its own).
    pub heat: HeatOptions,
    /// [`BoxMethod::Paper`]'s thresholds on the 0–255 scale.
    pub heat_thresholds: Vec<u8>,
}

impl Default for Localizer {
    fn default() -> Self {
        Localizer::regions()
    }
}

/// One finding's recipe under [`BoxMethod::Regions`]: which backbone stages' maps (1-based) are
/// summed, each scaled to [0, 1], and how that map becomes boxes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct RegionRecipe {
    pub stages: &'static [usize],
    pub rule: PeakRegions,
    /// Each box is then outlined on the film ([`outline_in_film`]), where the film is at hand.
    pub outline: bool,
    /// Only the upright views are averaged: the film and its mirror image, not the upside-down
    /// ones ([`Flips::Both`] computes all four).
    pub upright: bool,
}

/// The stages and cut of a finding's boxes on a `side`-px input, from the finding's scale.
///
/// The first three stages of a ResNet (4-, 8- and 16- or 8-px cells), each scaled to [0, 1], summed:
/// `layer1` places a small lesion to a few pixels but lights up as specks, the deeper stages answer
/// to the finding as a whole but blur it, and which one points at a nodule best changes from one
/// training run to the next — the sum is high where they agree. Smoothed at 1/64 of the side
/// (4 px at 256), which joins the specks of one lesion and no more, and cut relative to the peak:
/// at 0.6 for focal findings (a nodule, a mass: one blob, which the stages' receptive fields
/// widen), at 0.3 for the rest (an effusion or an opacity lights up unevenly over its extent, and
/// two views averaged instead of four leave a peakier map; 0.3 was chosen on the boxes of the full
/// demo's seeds 0 and 2, where it beat 0.4 on both).
/// A nodule is round by definition: its box is the square of its component's area around the
/// component's centroid, since detectors that fire on its edges (averaged over mirrored views)
/// leave one wide, flat component where the lesion is round.
///
/// A focal finding's box is then outlined on the film: the map says where, the film how far. Its
/// blur widens a small lesion's region by a margin set by the map, not the lesion (on the quick
/// study's development seed, nodule boxes at the cut were three times the lesion's area); an
/// effusion's region is instead too small as often as too large, and its fluid borders the
/// diaphragm, as bright as the fluid, so it is left to the map.
///
/// Only a focal finding's map averages all four views. Turned upside down a nodule is still a
/// nodule, and the upside-down views cancel a detector's vertical offset; an effusion is not: fluid
/// lies at the base under a meniscus, an upside-down film is not a chest film, and the network's
/// map of it points elsewhere, often at a nodule or mass on the same film (on the full demo's seed 0
/// the effusion map's peak lay in the fluid on 66% of films with all four views, 90% with the
/// film and its mirror image; on seed 2, 45% and 98%). The other findings keep the upright views.
pub fn region_recipe(finding: Finding, side: usize) -> RegionRecipe {
    let focal = matches!(finding, Finding::Nodule | Finding::Mass);
    RegionRecipe {
        outline: focal,
        upright: !focal,
        stages: &[1, 2, 3],
        rule: PeakRegions {
            sigma: side as f32 / 64.0,
            level: if focal { 0.6 } else { 0.3 },
            keep: 0.5,
            max_boxes: 2,
            round: finding == Finding::Nodule,
        },
    }
}

impl Localizer {
    /// ChestX-ray8's method: CAM, thresholds 60 and 180, every component, no gating.
    pub fn paper() -> Localizer {
        Localizer {
            method: BoxMethod::Paper,
            heat: HeatOptions::default(),
            heat_thresholds: PAPER_HEAT_THRESHOLDS.to_vec(),
        }
    }

    pub fn regions() -> Localizer {
        Localizer {
            method: BoxMethod::Regions,
            ..Localizer::paper()
        }
    }

    /// Whether boxes are drawn only for findings the model calls present.
    pub fn gated(&self) -> bool {
        self.method != BoxMethod::Paper
    }

    /// The maps to compute on `net`.
    pub fn heat_options(&self, net: &dyn Classifier) -> HeatOptions {
        match self.method {
            BoxMethod::Paper => self.heat,
            BoxMethod::Regions | BoxMethod::Erase => {
                let n = net.stages();
                let layers: Vec<usize> = (1..=n.min(3)).collect();
                HeatOptions {
                    kind: HeatmapKind::LayerCam,
                    flips: Flips::Both,
                    layers: CamLayers::new(&layers).expect("stages 1..=3"),
                }
            }
        }
    }

    /// How the report names the method.
    pub fn describe(&self, net: &dyn Classifier) -> String {
        match self.method {
            BoxMethod::Paper => {
                let ths: Vec<String> = self.heat_thresholds.iter().map(u8::to_string).collect();
                let views = match self.heat.flips {
                    Flips::None => "",
                    Flips::Mirror => ", averaged with the mirrored film's (flipped back),",
                    Flips::Both => ", averaged over the film and its three flips (flipped back),",
                };
                format!(
                    "the paper's method: {}{views} min–max scaled to 0–255, a box around every connected component at {} (pooled), on every film",
                    self.heat.describe(net),
                    ths.join(" and ")
                )
            }
            BoxMethod::Regions => "peak regions: LayerCAM of layer1 + layer2 + layer3 (each scaled \
                 to [0, 1]), averaged over the film and its three flips (focal findings: Nodule, Mass) \
                 or the film and its mirror image (other findings), smoothed (σ = side/64), cut at \
                 0.6 (focal) or 0.3 (other findings) of the peak, a box per component \
                 peaking at ≥ 0.5 of the map's peak (for a Nodule the square of its area at its \
                 centroid), at most 2, each focal box then outlined on the film (the largest \
                 component at or above Otsu's threshold of the film inside it), only for findings \
                 called present (probability ≥ the validation split's Youden threshold)"
                .into(),
            BoxMethod::Erase => format!(
                "{}; each finding's cut chosen film by film: the highest of {:?} of the peak whose \
                 boxes, erased from the film (filled in from around them) and scored again, take the \
                 finding below its threshold (else the cut above)",
                Localizer::regions().describe(net),
                crate::erase::CUTS
            ),
        }
    }

    /// One class's map on the `side²` input and its boxes on the film, placed through `view` (the
    /// part of the film the preprocessing made the input from: all of it for our runs, a centre
    /// crop for some published models).
    pub fn film_boxes(
        &self,
        heat: &ClassHeat,
        finding: Finding,
        side: u32,
        view: chestx_image::View,
    ) -> (Heatmap, Vec<BBox>) {
        let (map, boxes) = self.class_boxes(heat, finding, side, view.width, view.height);
        let boxes = boxes
            .into_iter()
            .map(|b| BBox::new(b.x + view.x0, b.y + view.y0, b.w, b.h))
            .collect();
        (map, boxes)
    }

    /// One class's map on the `side²` input and its boxes in `out_w × out_h` (the original image, of
    /// which the input is a plain resize).
    pub fn class_boxes(
        &self,
        heat: &ClassHeat,
        finding: Finding,
        side: u32,
        out_w: f64,
        out_h: f64,
    ) -> (Heatmap, Vec<BBox>) {
        let side = side as usize;
        match self.method {
            BoxMethod::Paper => {
                let hm = heat.on_input(side);
                let rule = BoxRule::Paper {
                    thresholds: self.heat_thresholds.clone(),
                };
                let boxes = rule.boxes(&hm, out_w, out_h);
                (hm, boxes)
            }
            BoxMethod::Regions | BoxMethod::Erase => {
                let (hm, mut rule) = self.region_map(heat, finding, side);
                if let Some(cut) = heat.cut.filter(|_| self.method == BoxMethod::Erase) {
                    rule.level = cut;
                }
                let film = heat
                    .film
                    .as_deref()
                    .filter(|f| region_recipe(finding, side).outline && f.width == side);
                let (sx, sy) = (out_w / side as f64, out_h / side as f64);
                // A finding's least box size may reach past the film's edge: keep what is on it.
                let boxes = rule
                    .boxes_of_smoothed(&hm, side as f64, side as f64)
                    .into_iter()
                    .map(|b| film.map_or(b, |f| outline_in_film(f, &b)))
                    .filter_map(|b| b.scaled(sx, sy).clipped(out_w, out_h))
                    .collect();
                (hm, boxes)
            }
        }
    }
}

impl Localizer {
    /// Peak regions' map of one class on the `side²` input (its recipe's stages summed, smoothed:
    /// the map the boxes are cut from, shown and pointed with) and the rule that cuts it.
    pub fn region_map(
        &self,
        heat: &ClassHeat,
        finding: Finding,
        side: usize,
    ) -> (Heatmap, PeakRegions) {
        let recipe = region_recipe(finding, side);
        // Stage k of the recipe is map k - 1 here (the maps are of stages 1, 2, 3); a backbone
        // with fewer stages gives what it has.
        let picked: Vec<&StageHeat> = recipe
            .stages
            .iter()
            .filter_map(|&k| heat.stages.get(k - 1))
            .collect();
        let picked = if picked.is_empty() {
            heat.stages.iter().collect()
        } else {
            picked
        };
        (
            summed_unit_maps(&picked, side, recipe.upright).smoothed(recipe.rule.sigma),
            recipe.rule,
        )
    }
}

/// The stages' maps on the input (their upright views only, with `upright`), each scaled to
/// [0, 1], summed: a region lit on any stage counts, more where several agree.
fn summed_unit_maps(stages: &[&StageHeat], side: usize, upright: bool) -> Heatmap {
    let mut maps = stages
        .iter()
        .map(|s| s.views_on_input(side, upright).unit_scaled());
    let first = maps.next().expect("at least one stage");
    maps.fold(first, |mut acc, m| {
        acc.data.iter_mut().zip(&m.data).for_each(|(a, b)| *a += b);
        acc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(stride: f64, cells: usize, hot: &[(usize, usize, f32)]) -> StageHeat {
        let mut data = vec![0.0; cells * cells];
        for &(x, y, v) in hot {
            data[y * cells + x] = v;
        }
        StageHeat {
            grid: CellGrid {
                stride,
                origin: 0.5,
            },
            views: vec![(Heatmap::new(cells, cells, data), false, false)],
        }
    }

    fn argmax(h: &Heatmap) -> (usize, usize) {
        let i = (0..h.data.len())
            .max_by(|&a, &b| h.data[a].total_cmp(&h.data[b]))
            .unwrap();
        (i % h.width, i / h.width)
    }

    #[test]
    fn stage_sets_parse_and_check_against_the_backbone() {
        let l = CamLayers::new(&[4, 2, 2]).unwrap();
        assert_eq!(l.list(4).unwrap(), vec![2, 4]);
        assert_eq!(CamLayers::default().list(4).unwrap(), vec![4]);
        assert_eq!(CamLayers::default().list(1).unwrap(), vec![1]);
        let err = l.list(1).unwrap_err();
        assert!(err.contains("stage 2"), "{err}");
        assert!(CamLayers::new(&[0]).is_err());
        assert!(CamLayers::new(&[9]).is_err());
        assert_eq!(serde_json::to_string(&l).unwrap(), "[2,4]");
    }

    #[test]
    fn one_stage_is_its_own_map_unscaled() {
        let h = ClassHeat {
            cut: None,
            film: None,
            stages: vec![stage(16.0, 4, &[(1, 2, 3.0)])],
        };
        let m = h.on_input(64);
        assert_eq!(argmax(&m), (16, 32));
        assert!((m.data.iter().cloned().fold(f32::MIN, f32::max) - 3.0).abs() < 1e-6);
    }

    /// A deep stage picks the region, the fine stage places the peak inside it: the fine stage's
    /// stronger response elsewhere is gated out, and the fused peak sits on the fine cell, not on
    /// the deep cell's centre.
    #[test]
    fn fused_stages_keep_the_deep_region_and_the_fine_position() {
        // Deep: 16-px cells, one hot cell centred at (32.5, 32.5).
        let deep = stage(16.0, 4, &[(2, 2, 1.0)]);
        // Fine: 8-px cells; a response at (40.5, 40.5) inside the deep blob, a stronger one at
        // (8.5, 56.5) outside it.
        let fine = stage(8.0, 8, &[(5, 5, 0.6), (1, 7, 1.0)]);
        let fused = ClassHeat {
            stages: vec![fine.clone(), deep],
            cut: None,
            film: None,
        }
        .on_input(64);
        assert_eq!(argmax(&fused), (40, 40));
        let outside = fused.data[56 * 64 + 8];
        let peak = fused.data[40 * 64 + 40];
        assert!(outside < 0.05 * peak, "outside {outside} vs peak {peak}");
        // The fine stage alone would have put its peak outside.
        let alone = ClassHeat {
            stages: vec![fine],
            cut: None,
            film: None,
        }
        .on_input(64);
        let top = alone.data.iter().cloned().fold(f32::MIN, f32::max);
        assert_eq!(alone.data[56 * 64 + 8], top);
    }

    fn centre(b: &BBox) -> (f64, f64) {
        (b.x + b.w / 2.0, b.y + b.h / 2.0)
    }

    /// Peak regions box where the stages agree, not where one stage alone lights up; a focal
    /// finding is cut closer to the peak than a regional one on the same maps.
    #[test]
    fn regions_box_where_the_stages_agree_and_cut_focal_findings_tighter() {
        // layer1 (4-px cells): a strong speck at pixel ~12 and a weaker response at ~44; layer2
        // (8-px) and layer3 (16-px) agree on ~44–48.
        let h = ClassHeat {
            cut: None,
            film: None,
            stages: vec![
                stage(4.0, 16, &[(3, 3, 1.0), (11, 11, 0.8)]),
                stage(
                    8.0,
                    8,
                    &[(5, 5, 0.6), (6, 5, 0.8), (5, 6, 0.8), (6, 6, 1.0)],
                ),
                stage(16.0, 4, &[(3, 3, 1.0)]),
            ],
        };
        let loc = Localizer::regions();
        let boxes = |f| loc.class_boxes(&h, f, 64, 64.0, 64.0).1;
        let (nodule, mass, effusion) = (
            boxes(Finding::Nodule),
            boxes(Finding::Mass),
            boxes(Finding::Effusion),
        );
        assert_eq!(
            (nodule.len(), mass.len(), effusion.len()),
            (1, 1, 1),
            "{nodule:?} {mass:?} {effusion:?}"
        );
        for b in [nodule[0], mass[0], effusion[0]] {
            let (x, y) = centre(&b);
            assert!(x > 35.0 && y > 35.0, "{b:?}");
        }
        // A focal finding is cut higher: its box lies inside the regional one's.
        assert!(mass[0].area() < effusion[0].area(), "{mass:?} {effusion:?}");
        assert_eq!(effusion[0].intersection(&mass[0]), mass[0].area());
        // A nodule's box is the square of the same component's area: no larger than its box.
        assert!((nodule[0].w - nodule[0].h).abs() < 1e-9, "{nodule:?}");
        assert!(
            nodule[0].area() <= mass[0].area() + 1e-9,
            "{nodule:?} {mass:?}"
        );
        // Boxes in the original image's coordinates (a 1024-px film behind a 64-px input).
        let (_, big) = loc.class_boxes(&h, Finding::Nodule, 64, 1024.0, 1024.0);
        assert_eq!(big[0], nodule[0].scaled(16.0, 16.0));
        assert!(loc.gated() && !Localizer::paper().gated());
    }

    /// An effusion's map is the upright views' alone; a focal finding's averages all four. Here the
    /// upright views light the base and the upside-down ones a spot elsewhere, more strongly.
    #[test]
    fn effusion_maps_leave_out_the_upside_down_views() {
        let views = |cells: usize, stride: f64, base: (usize, usize), spot: (usize, usize)| {
            let one = |(x, y): (usize, usize), v: f32| {
                let mut data = vec![0.0; cells * cells];
                data[y * cells + x] = v;
                Heatmap::new(cells, cells, data)
            };
            StageHeat {
                grid: CellGrid {
                    stride,
                    origin: 0.5,
                },
                views: vec![
                    (one(base, 0.8), false, false),
                    (one(base, 0.8), true, false),
                    (one(spot, 1.0), false, true),
                    (one(spot, 1.0), true, true),
                ],
            }
        };
        let h = ClassHeat {
            cut: None,
            film: None,
            stages: vec![
                views(16, 4.0, (4, 13), (10, 4)),
                views(8, 8.0, (2, 6), (5, 2)),
                views(4, 16.0, (1, 3), (2, 1)),
            ],
        };
        let loc = Localizer::regions();
        let peak = |f| loc.region_map(&h, f, 64).0.peak().unwrap();
        let (ex, ey) = peak(Finding::Effusion);
        assert!(ey > 40, "effusion's peak at the base: {:?}", (ex, ey));
        let effusion = loc.class_boxes(&h, Finding::Effusion, 64, 64.0, 64.0).1;
        assert!(!effusion.is_empty());
        for b in &effusion {
            let (cx, cy) = centre(b);
            assert!(cy > 40.0, "{effusion:?} centred at {:?}", (cx, cy));
        }
        let keep = |range: std::ops::Range<usize>| ClassHeat {
            stages: h
                .stages
                .iter()
                .map(|s| StageHeat {
                    grid: s.grid,
                    views: s.views[range.clone()].to_vec(),
                })
                .collect(),
            ..h.clone()
        };
        let map = |h: &ClassHeat, f| loc.region_map(h, f, 64).0.data;
        // The effusion map is the upright views' map; a nodule's reads the upside-down ones too.
        let upright = keep(0..2);
        assert_eq!(map(&h, Finding::Effusion), map(&upright, Finding::Effusion));
        assert_ne!(map(&h, Finding::Nodule), map(&upright, Finding::Nodule));
        // With no upright view to keep, all views are read.
        let flipped = keep(2..4);
        assert_eq!(
            map(&flipped, Finding::Effusion),
            map(&flipped, Finding::Nodule)
        );
        assert!(loc
            .region_map(&flipped, Finding::Effusion, 64)
            .0
            .peak()
            .is_some());
    }

    /// With the film at hand, a focal finding's box is drawn in to the opacity the map points at;
    /// an effusion's stays the map's.
    #[test]
    fn focal_boxes_are_outlined_on_the_film_and_regional_ones_are_not() {
        let maps = vec![
            stage(4.0, 16, &[(11, 11, 1.0)]),
            stage(8.0, 8, &[(5, 5, 1.0)]),
            stage(16.0, 4, &[(2, 2, 1.0)]),
        ];
        let bare = ClassHeat {
            stages: maps,
            cut: None,
            film: None,
        };
        let loc = Localizer::regions();
        // Dark lung with a bright disc of radius 4 where the maps peak.
        let (px, py) = loc.region_map(&bare, Finding::Nodule, 64).0.peak().unwrap();
        let (cx, cy) = (px as f32 + 0.5, py as f32 + 0.5);
        let film: Vec<f32> = (0..64 * 64)
            .map(|i| {
                let (x, y) = ((i % 64) as f32 + 0.5 - cx, (i / 64) as f32 + 0.5 - cy);
                if x * x + y * y <= 16.0 {
                    0.8
                } else {
                    0.2
                }
            })
            .collect();
        let seen = ClassHeat {
            film: Some(Arc::new(Heatmap::new(64, 64, film).smoothed(FILM_SIGMA))),
            ..bare.clone()
        };
        let disc = BBox::new(cx as f64 - 4.0, cy as f64 - 4.0, 8.0, 8.0);
        for f in [Finding::Nodule, Finding::Mass] {
            let map_only = loc.class_boxes(&bare, f, 64, 64.0, 64.0).1[0];
            let outlined = loc.class_boxes(&seen, f, 64, 64.0, 64.0).1[0];
            assert!(map_only.iou(&disc) < 0.5, "{f:?} {map_only:?}");
            assert!(outlined.iou(&disc) > 0.7, "{f:?} {outlined:?}");
            // On a 1024-px film behind the 64-px input, the same box scaled.
            let big = loc.class_boxes(&seen, f, 64, 1024.0, 1024.0).1[0];
            assert_eq!(big, outlined.scaled(16.0, 16.0));
        }
        let effusion = |h: &ClassHeat| loc.class_boxes(h, Finding::Effusion, 64, 64.0, 64.0).1;
        assert_eq!(effusion(&bare), effusion(&seen));
    }

    #[test]
    fn the_paper_method_boxes_every_component_of_its_map() {
        // One stage (the paper reads the last), two hot cells far apart: two boxes at 180.
        let h = ClassHeat {
            cut: None,
            film: None,
            stages: vec![stage(16.0, 4, &[(0, 0, 1.0), (3, 3, 1.0)])],
        };
        let paper = Localizer {
            heat_thresholds: vec![180],
            ..Localizer::paper()
        };
        let (_, b) = paper.class_boxes(&h, Finding::Mass, 64, 64.0, 64.0);
        assert_eq!(b.len(), 2, "{b:?}");
        let recipe = region_recipe(Finding::Nodule, 256);
        assert_eq!(
            (recipe.stages, recipe.rule.sigma),
            (&[1usize, 2, 3][..], 4.0)
        );
        assert_eq!(
            recipe.rule.level,
            region_recipe(Finding::Mass, 256).rule.level
        );
        assert!(region_recipe(Finding::Effusion, 512).rule.level < recipe.rule.level);
    }

    #[test]
    fn only_wanted_films_and_classes_get_maps_and_they_equal_the_full_ones() {
        use chestx_model::{Arch, ChestNet, ModelConfig};
        tch::manual_seed(11);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let mut cfg = ModelConfig::new(Arch::Resnet18, ["a", "b", "c"].map(String::from).to_vec());
        cfg.width = Some(8);
        cfg.input_size = 64;
        let net = ChestNet::new(&vs.root(), cfg);
        let x = Tensor::randn([3, 3, 64, 64], (tch::Kind::Float, Device::Cpu));
        let opts = Localizer::regions().heat_options(&net);
        let (p_all, full) = batch_heat(&net, &x, opts).unwrap();
        // Film 0 wants class 2, film 1 nothing, film 2 class 0 when its probability says so.
        let wanted = |k: usize, p: &[f32]| -> Vec<bool> {
            (0..3)
                .map(|c| (k == 0 && c == 2) || (k == 2 && c == 0 && p[0] >= 0.0))
                .collect()
        };
        let (p, heat) = batch_heat_wanted(&net, &x, opts, &wanted).unwrap();
        assert!(p.iter().zip(&p_all).all(|(a, b)| (a - b).abs() < 1e-6));
        let side = 64;
        let same = |a: &ClassHeat, b: &ClassHeat| {
            let (a, b) = (a.on_input(side), b.on_input(side));
            a.data
                .iter()
                .zip(&b.data)
                .all(|(u, v)| (u - v).abs() < 1e-5)
                && a.data.iter().any(|&v| v > 0.0)
        };
        assert!(same(&heat[0][2], &full[0][2]) && same(&heat[2][0], &full[2][0]));
        // A class another film wanted is computed for both; one no film wanted, for none.
        assert!(same(&heat[0][0], &full[0][0]));
        assert!(heat[0][1].is_empty() && heat[2][1].is_empty());
        assert!(heat[1].iter().all(ClassHeat::is_empty));
        assert!(!full[1][1].is_empty());
    }

    #[test]
    fn a_films_maps_are_the_same_whether_its_views_share_a_pass_or_not() {
        use chestx_model::{Arch, ChestNet, ModelConfig};
        tch::manual_seed(12);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let mut cfg = ModelConfig::new(Arch::Resnet18, ["a", "b"].map(String::from).to_vec());
        cfg.width = Some(8);
        cfg.input_size = 64;
        let net = ChestNet::new(&vs.root(), cfg);
        let x = Tensor::randn([8, 3, 64, 64], (tch::Kind::Float, Device::Cpu));
        let opts = Localizer::regions().heat_options(&net);
        assert_eq!(opts.flips.views().len(), 4);
        // Eight films: one view per pass. Film 5 alone: its four views in one pass of four.
        let (p8, batch) = batch_heat(&net, &x, opts).unwrap();
        let (p1, alone) = batch_heat(&net, &x.narrow(0, 5, 1), opts).unwrap();
        assert!((0..2).all(|c| (p8[5 * 2 + c] - p1[c]).abs() < 1e-5));
        for c in 0..2 {
            for (sb, sa) in batch[5][c].stages.iter().zip(&alone[0][c].stages) {
                assert_eq!(sb.views.len(), 4);
                for ((mb, fxb, fyb), (ma, fxa, fya)) in sb.views.iter().zip(&sa.views) {
                    assert_eq!((fxb, fyb), (fxa, fya));
                    let top = mb.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                    assert!(top > 0.0, "an all-zero map proves nothing");
                    let worst = mb.data.iter().zip(&ma.data).map(|(u, v)| (u - v).abs());
                    assert!(worst.fold(0.0f32, f32::max) <= 1e-4 * top);
                }
            }
        }
    }
}
