//! Where a finding's box ends: the smallest peak region whose erasure takes the finding away.
//!
//! A class map peaks on the most discriminative part of a finding (an effusion's meniscus, a mass's
//! rim), so a cut at a fixed fraction of its peak outlines that part, and how large a part that is
//! changes from one training run to the next. The network itself can say where the evidence ends:
//! erase what a cut's boxes cover — fill it in from the film around it — and score the film again.
//! While evidence remains outside the boxes the finding stays called; the highest cut whose boxes
//! take it below its operating threshold covers the evidence the network used. Nothing here reads a
//! box annotation: the cuts, the fill and the threshold (Youden's J on the validation split, image
//! labels only) are all label-free.

use crate::heat::{ClassHeat, Localizer};
use crate::{Classifier, Thresholds};
use chestx_core::{BBox, Finding};
use tch::{Device, Kind, Tensor};

/// The cuts tried, relative to the map's peak, highest (smallest region) first.
pub const CUTS: [f32; 7] = [0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2];

/// For every film `k` and class `c` with `probs[k][c] >= thresholds[c]` (and a map), the highest of
/// [`CUTS`] whose boxes, erased from film `k` of `x` (`[B, C, side, side]`), bring class `c`'s
/// probability below its threshold, stored in `heat[k][c].cut`. A finding no cut takes away keeps
/// the recipe's cut (`cut: None`).
pub fn choose_cuts(
    net: &dyn Classifier,
    x: &Tensor,
    probs: &[f32],
    heat: &mut [Vec<ClassHeat>],
    findings: &[Finding],
    thresholds: &[f32],
    loc: &Localizer,
) {
    let nc = findings.len();
    let side = x.size()[3] as usize;
    let _guard = tch::no_grad_guard();
    for (k, film) in heat.iter_mut().enumerate() {
        for (c, ch) in film.iter_mut().enumerate() {
            let p = probs[k * nc + c];
            if !p.is_finite() || p < thresholds[c] || ch.is_empty() {
                continue;
            }
            let (map, rule) = loc.region_map(ch, findings[c], side);
            // Each distinct box set once, highest cut first.
            let mut tried: Vec<(f32, Vec<BBox>)> = Vec::new();
            for cut in CUTS {
                let mut r = rule;
                r.level = cut;
                let boxes = r.boxes_of_smoothed(&map, side as f64, side as f64);
                if !boxes.is_empty() && tried.last().is_none_or(|(_, b)| *b != boxes) {
                    tried.push((cut, boxes));
                }
            }
            if tried.is_empty() {
                continue;
            }
            let masks: Vec<Vec<BBox>> = tried.iter().map(|(_, b)| b.clone()).collect();
            let films = x
                .narrow(0, k as i64, 1)
                .expand([masks.len() as i64, -1, -1, -1], false);
            let erased = erased(&films, &box_masks(&masks, side, x.device()), side);
            let left: Vec<f32> = Vec::try_from(
                net.logits(&erased)
                    .narrow(1, c as i64, 1)
                    .sigmoid()
                    .to_device(Device::Cpu)
                    .flatten(0, -1),
            )
            .unwrap_or_default();
            ch.cut = tried
                .iter()
                .zip(&left)
                .find(|(_, &pc)| pc < thresholds[c])
                .map(|((cut, _), _)| *cut);
        }
    }
}

/// [`choose_cuts`] at a run's operating thresholds, for films of a network whose classes name
/// findings: a class the weights were not trained on is never called, so never erased.
pub fn choose_cuts_at(
    net: &dyn Classifier,
    x: &Tensor,
    probs: &[f32],
    heat: &mut [Vec<ClassHeat>],
    thresholds: &Thresholds,
    loc: &Localizer,
) {
    let findings: Vec<Finding> = net
        .classes()
        .iter()
        .map(|n| n.parse().unwrap_or(Finding::NoFinding))
        .collect();
    let th: Vec<f32> = net
        .classes()
        .iter()
        .zip(&thresholds.values)
        .map(|(n, &t)| match thresholds.untrained.contains(n) {
            true => f32::INFINITY,
            false => t,
        })
        .collect();
    choose_cuts(net, x, probs, heat, &findings, &th, loc);
}

/// `[n, 1, side, side]`, 1 inside any box of set `i` (input pixels a box touches), 0 elsewhere.
fn box_masks(sets: &[Vec<BBox>], side: usize, device: Device) -> Tensor {
    let mut m = vec![0f32; sets.len() * side * side];
    for (i, boxes) in sets.iter().enumerate() {
        let plane = &mut m[i * side * side..(i + 1) * side * side];
        for b in boxes {
            let span = |lo: f64, len: f64| {
                let a = lo.floor().clamp(0.0, side as f64) as usize;
                let z = (lo + len).ceil().clamp(0.0, side as f64) as usize;
                a..z
            };
            for y in span(b.y, b.h) {
                plane[y * side..(y + 1) * side][span(b.x, b.w)].fill(1.0);
            }
        }
    }
    Tensor::from_slice(&m)
        .view([sets.len() as i64, 1, side as i64, side as i64])
        .to_device(device)
}

/// `x` (`[n, C, S, S]`) with the pixels where `mask` (`[n, 1, S, S]`) is 1 filled in from around
/// them: a normalized convolution (the Gaussian-weighted mean of the pixels kept, σ = S/16), which
/// leans on the film's mean of kept pixels deep inside a large hole. Evidence that reaches past a
/// hole's edge is carried into it; a hole that covers all of it leaves what surrounds it.
pub fn erased(x: &Tensor, mask: &Tensor, side: usize) -> Tensor {
    let (n, c) = (x.size()[0], x.size()[1]);
    let keep = Tensor::ones_like(mask) - mask;
    let kept = x * &keep;
    let planes = |t: &Tensor| t.reshape([-1, 1, side as i64, side as i64]);
    let num = blur(&planes(&kept), side as f64 / 16.0).reshape([n, c, side as i64, side as i64]);
    let den = blur(&keep, side as f64 / 16.0);
    let mean = kept.sum_dim_intlist([2i64, 3].as_slice(), true, Kind::Float)
        / keep
            .sum_dim_intlist([2i64, 3].as_slice(), true, Kind::Float)
            .clamp_min(1.0);
    const EPS: f64 = 0.01;
    let fill = (num + &mean * EPS) / (den + EPS);
    kept + fill * mask
}

/// A separable Gaussian blur of `[N, 1, H, W]` with zero padding.
fn blur(x: &Tensor, sigma: f64) -> Tensor {
    let r = (3.0 * sigma).ceil() as i64;
    let taps: Vec<f32> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sigma * sigma)).exp() as f32)
        .collect();
    let total: f32 = taps.iter().sum();
    let k = Tensor::from_slice(&taps.iter().map(|t| t / total).collect::<Vec<_>>())
        .to_device(x.device());
    let kx = k.view([1, 1, 1, 2 * r + 1]);
    let ky = k.view([1, 1, 2 * r + 1, 1]);
    let no_bias: Option<Tensor> = None;
    x.conv2d(&kx, no_bias.as_ref(), [1, 1], [0, r], [1, 1], 1)
        .conv2d(&ky, no_bias.as_ref(), [1, 1], [r, 0], [1, 1], 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn film(side: i64) -> Tensor {
        // A bright disc of radius 10 at (40, 40) on a flat background of 0.2.
        let ys = Tensor::arange(side, (Kind::Float, Device::Cpu)).view([side, 1]);
        let xs = Tensor::arange(side, (Kind::Float, Device::Cpu)).view([1, side]);
        let d2 = (&xs - 40.0).square() + (&ys - 40.0).square();
        let disc = d2.le(100.0).to_kind(Kind::Float);
        (disc * 0.8 + 0.2).view([1, 1, side, side])
    }

    #[test]
    fn erasing_all_of_a_blob_leaves_its_surroundings_and_part_of_it_leaves_it() {
        let side = 64usize;
        let x = film(side as i64);
        let whole = vec![BBox::new(28.0, 28.0, 24.0, 24.0)];
        let part = vec![BBox::new(36.0, 36.0, 8.0, 8.0)];
        let m = box_masks(&[whole, part], side, Device::Cpu);
        let e = erased(&x.expand([2, -1, -1, -1], false), &m, side);
        let at = |i: i64, y: i64, xx: i64| e.double_value(&[i, 0, y, xx]);
        // The whole disc erased: its centre is filled with background (0.2), not the disc (1.0).
        assert!((at(0, 40, 40) - 0.2).abs() < 0.05, "{}", at(0, 40, 40));
        // Only its middle erased: the disc around the hole carries into it.
        assert!(at(1, 40, 40) > 0.8, "{}", at(1, 40, 40));
        // Pixels outside the holes are the film's own.
        assert!((at(0, 5, 5) - 0.2).abs() < 1e-6);
        assert!((at(1, 40, 32) - 1.0).abs() < 1e-6);
    }

    /// A one-class network that calls a film positive while any pixel is brighter than 0.6.
    struct Blob(Vec<String>);

    impl Classifier for Blob {
        fn classes(&self) -> &[String] {
            &self.0
        }
        fn input_size(&self) -> i64 {
            64
        }
        fn preprocess(&self) -> chestx_image::Preprocess {
            unreachable!("the erase test reads logits only")
        }
        fn stages(&self) -> usize {
            1
        }
        fn describe(&self) -> String {
            "bright-pixel detector".into()
        }
        fn logits(&self, images: &Tensor) -> Tensor {
            (images.amax([1i64, 2, 3].as_slice(), false) - 0.6).view([-1, 1]) * 40.0
        }
        fn cams(&self, _: &Tensor) -> (Tensor, Tensor) {
            unreachable!("the erase test reads logits only")
        }
        fn grad_cams(&self, _: &Tensor) -> (Tensor, Tensor) {
            unreachable!("the erase test reads logits only")
        }
        fn layer_cams(&self, _: &Tensor, _: &[usize], _: &[usize]) -> (Tensor, Vec<Tensor>) {
            unreachable!("the erase test reads logits only")
        }
        fn cell_grid(&self) -> chestx_core::CellGrid {
            unreachable!("the erase test reads logits only")
        }
        fn layer_grid(&self, _: usize) -> chestx_core::CellGrid {
            unreachable!("the erase test reads logits only")
        }
    }

    /// The disc of [`film`] is the evidence; the map peaks on it but is narrower than it at its
    /// upper cuts. The cut chosen is the highest whose boxes take in the whole disc: the one above
    /// it leaves an edge of the disc, and the finding, in place.
    #[test]
    fn the_cut_chosen_is_the_highest_whose_boxes_take_all_the_evidence() {
        use crate::heat::{BoxMethod, StageHeat};
        let side = 64usize;
        let x = film(side as i64).repeat([1, 3, 1, 1]);
        let disc = film(side as i64).gt(0.5).to_kind(Kind::Float);
        let map: Vec<f32> = (0..side * side)
            .map(|i| {
                let (px, py) = ((i % side) as f32 - 40.0, (i / side) as f32 - 40.0);
                (-(px * px + py * py) / (2.0 * 64.0)).exp()
            })
            .collect();
        let ch = ClassHeat {
            stages: vec![StageHeat {
                grid: chestx_core::CellGrid {
                    stride: 1.0,
                    origin: 0.5,
                },
                views: vec![(
                    chestx_eval::boxes::Heatmap::new(side, side, map),
                    false,
                    false,
                )],
            }],
            cut: None,
            film: None,
        };
        let mut heat = vec![vec![ch]];
        let net = Blob(vec!["Mass".into()]);
        let loc = Localizer {
            method: BoxMethod::Erase,
            ..Localizer::regions()
        };
        choose_cuts(&net, &x, &[0.99], &mut heat, &[Finding::Mass], &[0.5], &loc);
        let cut = heat[0][0]
            .cut
            .expect("a cut whose boxes take the disc away");
        let covered = |c: f32| {
            let (m, mut rule) = loc.region_map(&heat[0][0], Finding::Mass, side);
            rule.level = c;
            let boxes = rule.boxes_of_smoothed(&m, side as f64, side as f64);
            let mask = box_masks(&[boxes], side, Device::Cpu).view([side as i64, side as i64]);
            let disc = disc.view([side as i64, side as i64]);
            (mask * &disc).sum(Kind::Float).double_value(&[])
                == disc.sum(Kind::Float).double_value(&[])
        };
        assert!(covered(cut), "cut {cut}");
        let above = CUTS
            .iter()
            .rev()
            .find(|&&c| c > cut)
            .copied()
            .expect("a higher cut");
        assert!(
            !covered(above),
            "cut {cut}, yet {above} covers the disc too"
        );
        // The recipe's cut for a mass (0.6) would have boxed only the disc's middle.
        assert!(cut < 0.6 && !covered(0.6));
        let boxes = |m: BoxMethod| {
            let l = Localizer {
                method: m,
                ..Localizer::regions()
            };
            l.class_boxes(&heat[0][0], Finding::Mass, side as u32, 64.0, 64.0)
                .1
        };
        assert!(boxes(BoxMethod::Erase)[0].area() > boxes(BoxMethod::Regions)[0].area());
    }

    #[test]
    fn box_masks_cover_the_pixels_a_box_touches_and_no_others() {
        let m = box_masks(&[vec![BBox::new(1.5, 2.0, 2.0, 1.0)]], 8, Device::Cpu);
        assert_eq!(m.sum(Kind::Float).double_value(&[]), 3.0 * 1.0);
        assert_eq!(m.double_value(&[0, 0, 2, 1]), 1.0);
        assert_eq!(m.double_value(&[0, 0, 2, 3]), 1.0);
        assert_eq!(m.double_value(&[0, 0, 3, 1]), 0.0);
    }
}
