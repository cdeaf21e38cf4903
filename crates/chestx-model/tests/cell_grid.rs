//! The cell grids the backbones declare are where their cells really look: the input pixels a cell
//! depends on (where its gradient is non-zero) are centred on the grid's cell centre.

use chestx_core::CellGrid;
use chestx_model::backbone::{self, Arch, Stages};
use tch::nn;
use tch::{Device, Kind, Tensor};

/// Centre (continuous coordinates) of the columns of a `side`² input on which cell `(i, i)` of the
/// feature map after the first `stages` stages depends.
fn support_centre(net: &Stages, stages: usize, side: i64, i: i64) -> f64 {
    tch::manual_seed(3);
    let x = Tensor::rand([1, 3, side, side], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let f = net.run(0, stages, &x, false);
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

fn check(arch: Arch, os: i64, net: &Stages, layer: usize, side: i64, i: i64) -> f64 {
    let want = arch.layer_grid(layer, os).centre(i as usize);
    let got = support_centre(net, layer, side, i);
    // Max-pooling passes gradient only to each window's maximum, so the support can lose up to a
    // few pixels at one edge; a misplaced grid is off by 7.5 px or more.
    assert!(
        (got - want).abs() <= 3.0,
        "{arch} os {os} layer{layer}: cell {i} looks at columns centred on {got}, grid says {want}"
    );
    got
}

#[test]
fn resnet_grid_at_both_strides() {
    for os in [32, 16, 8] {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = backbone::resnet18_width(&vs.root(), 8, os, 3);
        let i = 256 / os;
        assert_eq!(net.len(), Arch::Resnet18.layers());
        let got = check(Arch::Resnet18, os, &net, 4, 512, i);
        assert_eq!(
            Arch::Resnet18.layer_grid(4, os),
            Arch::Resnet18.cell_grid(os)
        );
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
    let net = backbone::build(Arch::Alexnet, &vs.root(), 3);
    assert_eq!(net.len(), 1);
    check(Arch::Alexnet, 32, &net, 1, 320, 4);
}

/// The inner stages LayerCAM reads: layer1 at stride 4, layer2 at 8, layer3 at 16 (8 at output
/// stride 8) — each where its own grid says.
#[test]
fn resnet_inner_stage_grids() {
    for (os, layer, stride) in [(32, 1, 4), (32, 2, 8), (32, 3, 16), (8, 3, 8)] {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = backbone::resnet18_width(&vs.root(), 8, os, 3);
        assert_eq!(Arch::Resnet18.layer_grid(layer, os).stride, stride as f64);
        check(Arch::Resnet18, os, &net, layer, 256, 128 / stride);
    }
}

/// DenseNet-121's four dense blocks, tapped as stages (strides 4, 8, 16, 32): each where its grid
/// says, and the last its whole-network grid.
#[test]
fn densenet_stage_grids() {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = backbone::build(Arch::Densenet121, &vs.root(), 3);
    assert_eq!(net.len(), Arch::Densenet121.layers());
    assert_eq!(
        Arch::Densenet121.layer_grid(4, 32),
        Arch::Densenet121.cell_grid(32)
    );
    for (layer, stride) in [(1, 4), (2, 8), (3, 16), (4, 32)] {
        assert_eq!(
            Arch::Densenet121.layer_grid(layer, 32).stride,
            stride as f64
        );
    }
    // Two stages suffice to check the placement; the deeper ones' supports reach the border.
    for (layer, stride) in [(1, 4), (2, 8)] {
        check(Arch::Densenet121, 32, &net, layer, 384, 192 / stride);
    }
}
