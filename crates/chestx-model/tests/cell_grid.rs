//! The cell grids the backbones declare are where their cells really look: the input pixels a cell
//! depends on (where its gradient is non-zero) are centred on the grid's cell centre.

use chestx_core::CellGrid;
use chestx_model::backbone::{self, Arch};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// Centre (continuous coordinates) of the columns of a `side`² input on which cell `(i, i)` of the
/// feature map depends.
fn support_centre(net: &nn::SequentialT, side: i64, i: i64) -> f64 {
    tch::manual_seed(3);
    let x = Tensor::rand([1, 3, side, side], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let f = net.forward_t(&x, false);
    let (_, _, s, _) = f.size4().unwrap();
    assert!(i < s, "cell {i} outside a {s}-cell map");
    let score = f.select(2, i).select(2, i).sum(Kind::Float);
    let g = Tensor::run_backward(&[&score], &[&x], false, false);
    let cols: Vec<f32> =
        Vec::try_from(g[0].abs().sum_dim_intlist(&[0i64, 1, 2][..], false, None)).unwrap();
    let nz: Vec<usize> = (0..cols.len()).filter(|&c| cols[c] > 0.0).collect();
    let (lo, hi) = (nz[0], *nz.last().unwrap());
    assert!(
        lo > 0 && hi + 1 < side as usize,
        "support [{lo}, {hi}] touches the border"
    );
    (lo + hi + 1) as f64 / 2.0
}

fn check(arch: Arch, os: i64, net: &nn::SequentialT, side: i64, i: i64) -> f64 {
    let want = arch.cell_grid(os).centre(i as usize);
    let got = support_centre(net, side, i);
    // Max-pooling passes gradient only to each window's maximum, so the support can lose up to a
    // few pixels at one edge; a misplaced grid is off by 7.5 px or more.
    assert!(
        (got - want).abs() <= 3.0,
        "{arch} os {os}: cell {i} looks at columns centred on {got}, grid says {want}"
    );
    got
}

#[test]
fn resnet_grid_at_both_strides() {
    for os in [32, 16, 8] {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = backbone::resnet18_width(&vs.root(), 8, os);
        let i = 256 / os;
        let got = check(Arch::Resnet18, os, &net, 512, i);
        // The grid a plain resize assumes is half a cell off.
        let tiled = CellGrid::tiled(os as f64).centre(i as usize);
        assert!(
            (got - tiled).abs() >= os as f64 / 2.0 - 3.0,
            "{got} vs {tiled}"
        );
    }
}

#[test]
fn alexnet_grid() {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = backbone::build(Arch::Alexnet, &vs.root());
    check(Arch::Alexnet, 32, &net, 320, 4);
}
