//! Lesions: shapes, soft edges, contrast, placement inside the lung fields, and their boxes.

use chestx_core::{BBox, Finding};
use chestx_image::Gray;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LesionKind {
    /// Small, round: 14–25 px across at 256 px (NIH's hand-drawn nodule boxes: 12–25 px, 10th–90th
    /// percentile, at that scale).
    Nodule,
    /// Larger (> 3 cm), lobulated: about 35–60 px across at 256 px (NIH's mass boxes: 19–83 px;
    /// kept clear of the nodules' sizes, the one thing that tells the two apart here).
    Mass,
    /// Basal fluid filling the costophrenic angle up to a meniscus that rises laterally, denser
    /// where it is deeper (layering). About 70 px wide, 40–80 px high at 256 px (NIH's effusion
    /// boxes: 25–80 wide, 22–150 high).
    Effusion,
}

impl LesionKind {
    pub const ALL: [LesionKind; 3] = [LesionKind::Nodule, LesionKind::Mass, LesionKind::Effusion];

    pub fn finding(self) -> Finding {
        match self {
            LesionKind::Nodule => Finding::Nodule,
            LesionKind::Mass => Finding::Mass,
            LesionKind::Effusion => Finding::Effusion,
        }
    }
}

/// An implanted lesion and its box in image coordinates.
#[derive(Debug, Clone, PartialEq)]
pub struct Lesion {
    pub kind: LesionKind,
    pub bbox: BBox,
    /// 0: the lung on the image's left, 1: on its right.
    pub lung: usize,
}

/// Approximate lung fields of a PA radiograph, as fractions of the side: (cx, cy, ax, ay).
const LUNGS: [(f32, f32, f32, f32); 2] = [(0.31, 0.47, 0.14, 0.27), (0.69, 0.47, 0.14, 0.27)];

fn smoothstep(edge: f32, soft: f32, d: f32) -> f32 {
    // 1 inside (d < edge - soft), 0 outside (d > edge + soft), smooth between.
    let t = ((edge + soft - d) / (2.0 * soft)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Mean of `img` in a square of half-side `r` (fractions of the side) around (u, v).
fn local_mean(img: &Gray, u: f32, v: f32, r: f32) -> f32 {
    let s = img.width as f32;
    let (x0, x1) = (
        ((u - r) * s).max(0.0) as u32,
        (((u + r) * s) as u32).min(img.width - 1),
    );
    let (y0, y1) = (
        ((v - r) * s).max(0.0) as u32,
        (((v + r) * s) as u32).min(img.height - 1),
    );
    let (mut sum, mut n) = (0.0, 0.0);
    for y in (y0..=y1).step_by(2) {
        for x in (x0..=x1).step_by(2) {
            sum += img.data[(y * img.width + x) as usize];
            n += 1.0;
        }
    }
    if n > 0.0 {
        sum / n
    } else {
        1.0
    }
}

/// Add one lesion of `kind` to `img` (in place), where the film shows lung (the darkest of a few
/// candidate places inside the usual lung fields: real films differ in framing, and a lesion over
/// the heart or a rib would be invisible, a label no reader could confirm), with
/// `contrast` in [lo, hi], in the given lung or a random one. Returns the lesion with its box
/// (pixels where it adds ≥ 10% of its peak).
pub fn implant(
    img: &mut Gray,
    kind: LesionKind,
    rng: &mut ChaCha8Rng,
    contrast: (f32, f32),
    lung: Option<usize>,
) -> Lesion {
    let lung = lung.unwrap_or_else(|| rng.random_range(0..2)).min(1);
    let c = rng.random_range(contrast.0..=contrast.1);
    let profile = match kind {
        LesionKind::Nodule | LesionKind::Mass => round_profile(img, kind, rng, LUNGS[lung]),
        LesionKind::Effusion => effusion_profile(rng, LUNGS[lung]),
    };
    let bbox = paint(img, &*profile, c);
    Lesion { kind, bbox, lung }
}

/// An opacity profile at (u, v) in [0,1]² coordinates.
type Profile = Box<dyn Fn(f32, f32) -> f32>;

/// A nodule or a lobulated mass, centred on the darkest of a few random places inside the lung
/// ellipse `(cx, cy, ax, ay)` with room for its radius: on lung rather than on heart or bone.
fn round_profile(
    img: &Gray,
    kind: LesionKind,
    rng: &mut ChaCha8Rng,
    (cx, cy, ax, ay): (f32, f32, f32, f32),
) -> Profile {
    let (r0, lobes): (f32, f32) = if kind == LesionKind::Nodule {
        (rng.random_range(0.022..0.04), 0.0)
    } else {
        (rng.random_range(0.06..0.10), rng.random_range(0.12..0.25))
    };
    let mut best = (f32::INFINITY, cx, cy);
    for _ in 0..6 {
        let (t, rr) = (
            rng.random_range(0.0..std::f32::consts::TAU),
            rng.random_range(0.0f32..0.7).sqrt(),
        );
        let (qx, qy) = (
            cx + (ax - r0).max(0.01) * rr * t.cos(),
            cy + (ay - r0).max(0.01) * rr * t.sin(),
        );
        let m = local_mean(img, qx, qy, r0);
        if m < best.0 {
            best = (m, qx, qy);
        }
    }
    let (px, py) = (best.1, best.2);
    let harmonics: Vec<(f32, f32, f32)> = (2..5)
        .map(|k| {
            (
                k as f32,
                rng.random_range(0.0..lobes.max(1e-6)),
                rng.random_range(0.0..std::f32::consts::TAU),
            )
        })
        .collect();
    Box::new(move |u: f32, v: f32| {
        let (dx, dy) = (u - px, v - py);
        let theta = dy.atan2(dx);
        let wobble: f32 = harmonics
            .iter()
            .map(|&(k, a, ph)| a * (k * theta + ph).cos())
            .sum();
        let r = r0 * (1.0 + wobble);
        let d = (dx * dx + dy * dy).sqrt();
        smoothstep(r, 0.25 * r0, d)
    })
}

/// Fluid from the base of the lung `(cx, cy, ax, ay)` up to a level that rises towards the lateral
/// wall (a meniscus), layering denser with depth.
fn effusion_profile(rng: &mut ChaCha8Rng, (cx, cy, ax, ay): (f32, f32, f32, f32)) -> Profile {
    let side_sign = if cx < 0.5 { -1.0 } else { 1.0 }; // lateral direction of this lung
    let base = cy + ay * 0.95;
    let depth = rng.random_range(0.1..0.2);
    let rise = rng.random_range(0.04..0.09);
    Box::new(move |u: f32, v: f32| {
        let lateral = ((u - cx) * side_sign / ax + 1.0) / 2.0; // 0 medial .. 1 lateral
        if !(0.0..=1.0).contains(&lateral) {
            return 0.0;
        }
        let level = base - depth - rise * lateral * lateral;
        let inside_lung = smoothstep(
            1.0,
            0.08,
            ((u - cx) / ax).powi(2) + ((v - cy) / (ay * 1.1)).powi(2),
        );
        // Layering: 80% of the full opacity just under the meniscus, all of it 0.05 deeper.
        let layered = 0.8 + 0.2 * ((v - level) / 0.05).clamp(0.0, 1.0);
        smoothstep(0.0, 0.012, level - v).max(0.0) * inside_lung * layered
    })
}

/// Add `profile` at contrast `c` (a fraction of the headroom to white); returns the box of the
/// pixels where it adds ≥ 10% of its peak.
fn paint(img: &mut Gray, profile: &dyn Fn(f32, f32) -> f32, c: f32) -> BBox {
    let s = img.width as f32;
    let (w, h) = (img.width as usize, img.height as usize);
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for y in 0..h {
        for x in 0..w {
            let p = profile((x as f32 + 0.5) / s, (y as f32 + 0.5) / s);
            if p <= 0.0 {
                continue;
            }
            let v = &mut img.data[y * w + x];
            *v = (*v + c * p * (1.0 - *v)).min(1.0);
            if p >= 0.1 {
                x0 = x0.min(x);
                y0 = y0.min(y);
                x1 = x1.max(x);
                y1 = y1.max(y);
            }
        }
    }
    if x1 >= x0 && y1 >= y0 {
        BBox::new(
            x0 as f64,
            y0 as f64,
            (x1 - x0 + 1) as f64,
            (y1 - y0 + 1) as f64,
        )
    } else {
        BBox::new(0.0, 0.0, 0.0, 0.0)
    }
}
