//! Winograd F(2×2, 3×3) against libtorch's convolution: the output and the input gradient, for map
//! sizes odd and even (edge tiles past the map), channel counts off the 64-channel blocks, both
//! memory layouts; the kept weight buffer; and when the transition layer uses it.

use super::manual_conv::{winograd_pays, WinogradWeights};
use super::{winograd, ManualConv};
use crate::{Arch, ChestNet, ModelConfig};
use tch::{Device, Kind, Tensor};

const OPTS: (Kind, Device) = (Kind::Float, Device::Cpu);

fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
}

fn channels_last(t: Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

#[test]
fn output_and_input_gradient_equal_libtorchs() {
    tch::manual_seed(5);
    for (n, c, k, h, w, cl, with_bias) in [
        (2, 16, 8, 7, 7, true, true),
        (2, 16, 8, 7, 7, false, false),
        (1, 3, 5, 1, 1, true, true),
        (3, 70, 65, 5, 9, true, true),
        (2, 64, 130, 8, 6, false, true),
        (1, 130, 3, 2, 3, true, false),
    ] {
        let x = Tensor::randn([n, c, h, w], OPTS);
        let wt = Tensor::randn([k, c, 3, 3], OPTS);
        let (x, wt) = if cl {
            (channels_last(x), channels_last(wt))
        } else {
            (x, wt)
        };
        let b = with_bias.then(|| Tensor::randn([k], OPTS));
        let x = x.set_requires_grad(true);
        let want = x.conv2d(&wt, b.as_ref(), [1, 1], [1, 1], [1, 1], 1);
        let g = Tensor::randn(want.size(), OPTS);
        let want_dx = Tensor::run_backward(&[(&want * &g).sum(Kind::Float)], &[&x], false, false)
            .pop()
            .unwrap();

        let mut u = None;
        winograd::transform_weight(&wt, &mut u);
        let u = u.unwrap();
        assert_eq!(u.size(), [k, 16, c]);
        let got = winograd::conv3x3(&x.detach(), &u, b.as_ref());
        assert_eq!(got.size(), want.size());
        let d = rel_diff(&got, &want);
        let case = format!("n{n} c{c} k{k} {h}x{w} channels-last {cl} bias {with_bias}");
        assert!(d < 1e-5, "output, {case}: off by {d}");
        let got_dx = winograd::conv3x3_input_grad(&g, &u);
        assert_eq!(got_dx.size(), x.size());
        let d = rel_diff(&got_dx, &want_dx);
        assert!(d < 1e-5, "input gradient, {case}: off by {d}");
    }
}

#[test]
fn kept_weight_buffer_is_rewritten_unless_still_held() {
    let a = channels_last(Tensor::randn([8, 16, 3, 3], OPTS));
    let b = channels_last(Tensor::randn([8, 16, 3, 3], OPTS));
    let fresh = |w: &Tensor| {
        let mut u = None;
        winograd::transform_weight(w, &mut u);
        u.unwrap()
    };
    // A buffer holding other numbers is fully overwritten.
    let mut stale = Some(Tensor::ones([8, 16, 16], OPTS));
    winograd::transform_weight(&a, &mut stale);
    assert_eq!(rel_diff(stale.as_ref().unwrap(), &fresh(&a)), 0.0);

    let cache = WinogradWeights::default();
    let first = cache.transform(&a);
    let ptr = first.tensor().data_ptr();
    drop(first);
    let second = cache.transform(&b);
    assert_eq!(
        second.tensor().data_ptr(),
        ptr,
        "an unshared buffer is reused"
    );
    // While a backward pass may still read `second`, a new transform goes elsewhere.
    let third = cache.transform(&a);
    assert_ne!(third.tensor().data_ptr(), ptr);
    assert_eq!(rel_diff(second.tensor(), &fresh(&b)), 0.0);
    assert_eq!(rel_diff(third.tensor(), &fresh(&a)), 0.0);
}

#[test]
fn used_where_it_pays_and_recorded_only_when_a_graph_is_wanted() {
    // 9·N·H·W − 16·tiles multiplications saved per channel pair.
    assert!(winograd_pays(8, 2048, 7, 7)); // 1480
    assert!(winograd_pays(2, 2048, 16, 16)); // 2560
    assert!(!winograd_pays(1, 2048, 7, 7)); // 185: the weight transform costs more
    assert!(!winograd_pays(4, 2048, 4, 4));
    assert!(winograd_pays(8, 2048, 32, 32)); // 256 MB of transformed tiles
    assert!(!winograd_pays(8, 2048, 64, 64)); // 1 GB: libtorch's kernel instead

    let cache = WinogradWeights::default();
    let w = Tensor::randn([4, 8, 3, 3], OPTS).set_requires_grad(true);
    let x = Tensor::randn([8, 8, 7, 7], OPTS);
    let (y, record) = ManualConv::winograd(&w, None, &x, &cache).expect("pays at 8×7×7");
    let record = record.expect("the weight needs a gradient");
    assert!(
        y.requires_grad() && y.is_leaf(),
        "the output starts a new graph"
    );
    assert!(
        record.input_grad(&y.ones_like()).is_none(),
        "x needs no gradient"
    );
    let (_, record) = tch::no_grad(|| ManualConv::winograd(&w, None, &x, &cache)).unwrap();
    assert!(record.is_none(), "no graph under no_grad");
    assert!(ManualConv::winograd(&w, None, &x.narrow(0, 0, 1), &cache).is_none());
    let w5 = Tensor::randn([4, 8, 5, 5], OPTS);
    assert!(
        ManualConv::winograd(&w5, None, &x, &cache).is_none(),
        "3×3 only"
    );
}

#[test]
fn chestnet_transition_by_winograd_matches_libtorch_and_hands_back_its_input_gradient() {
    tch::manual_seed(9);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let mut cfg = ModelConfig::new(Arch::Resnet18, vec!["a".into(), "b".into()]);
    // Width 16: at width 8, libtorch 2.11's own backward pass corrupts the heap on this CPU (the
    // 8 → 16 channel 1×1 stride-2 downsample's weight gradient on a 56×56 channels-last map,
    // oneDNN's jit_avx512_common_1x1 kernel; plain PyTorch crashes the same way).
    cfg.width = Some(16);
    cfg.input_size = 224;
    cfg.transition_dim = 16;
    let mut net = ChestNet::new(&vs.root(), cfg);
    let x = Tensor::randn([8, 3, 224, 224], OPTS);
    let out = net.forward_with(&x, true, true);
    assert_eq!(out.manual.len(), 1);
    assert!(
        out.transition.is_leaf(),
        "the transition ran outside autograd"
    );
    let dx = out.manual[0].input_grad(&out.transition.ones_like());
    assert!(dx.is_some_and(|d| d.size() == out.manual[0].input().size()));

    let fast = tch::no_grad(|| net.forward(&x, false));
    assert!(fast.manual.is_empty());
    net.set_manual_kernels(false);
    let plain = tch::no_grad(|| net.forward(&x, false));
    let d = rel_diff(&fast.transition, &plain.transition);
    assert!(d < 1e-5, "transition map off by {d}");
    assert!(rel_diff(&fast.logits, &plain.logits) < 1e-5);
    assert!(net.forward_with(&x, true, true).manual.is_empty());
}
