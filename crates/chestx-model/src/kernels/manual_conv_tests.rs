//! The transition layer's weight (and bias) gradient formed as a GEMM ([`ManualConv`]) against autograd's
//! own, for the layouts, kernels and batch sizes it meets, and when it is (not) used.

use super::manual_conv::{Part, MAX_CELLS};
use super::ManualConv;
use crate::layout::same_layout;
use crate::{Arch, ChestNet, ModelConfig};
use tch::{Device, Kind, Tensor};

fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
}

/// Autograd's dW and db and the GEMM's from the same output gradient, for one convolution.
fn both(
    n: i64,
    c: i64,
    k: i64,
    kernel: i64,
    side: i64,
    channels_last: bool,
) -> [(Tensor, Tensor); 2] {
    let opts = (Kind::Float, Device::Cpu);
    let mut w = Tensor::randn([k, c, kernel, kernel], opts);
    let mut x = Tensor::randn([n, c, side, side], opts);
    if channels_last {
        w = w
            .contiguous()
            .permute([0, 2, 3, 1])
            .contiguous()
            .permute([0, 3, 1, 2]);
        x = x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
    }
    let w = w.set_requires_grad(true);
    let b = Tensor::randn([k], opts).set_requires_grad(true);
    let y = x.conv2d(&w, Some(&b), [1, 1], [kernel / 2, kernel / 2], [1, 1], 1);
    let d = ManualConv::gemm_weight_grad(&w, Some(&b), &x, &y).expect("a small CPU map qualifies");
    assert_eq!(d.part_of(&w), Some(Part::Weight));
    assert_eq!(d.part_of(&b), Some(Part::Bias));
    assert_eq!(d.part_of(&x), None);
    let r = Tensor::randn(y.size(), opts);
    let loss = (&y * &r).sum(Kind::Float);
    let g = Tensor::run_backward(&[&loss], &[&w, &b, &y], false, false);
    // Into a kept buffer still holding an earlier step's numbers: they must be overwritten.
    let mut buffer = Some(Tensor::ones([k, kernel * kernel * c], opts));
    let mine = d.grad(Part::Weight, &g[2], &mut buffer);
    if channels_last {
        let buffer = buffer.as_ref().unwrap();
        assert_eq!(mine.data_ptr(), buffer.data_ptr(), "a view of the buffer");
    }
    assert!(same_layout(&mine, &w), "gradient laid out like its weight");
    [
        (mine, g[0].shallow_clone()),
        (d.grad(Part::Bias, &g[2], &mut None), g[1].shallow_clone()),
    ]
}

#[test]
fn gemm_weight_gradient_equals_autograds() {
    tch::manual_seed(3);
    for (n, c, k, kernel, side, cl) in [
        (2, 16, 8, 3, 7, true),
        (2, 16, 8, 3, 7, false),
        (3, 8, 5, 1, 5, true),
        (2, 6, 4, 5, 6, true),
        // More images than one chunk of the unfolded input holds (4096 rows / 196 cells = 20).
        (25, 4, 3, 3, 14, true),
    ] {
        for (part, (mine, want)) in ["weight", "bias"]
            .iter()
            .zip(both(n, c, k, kernel, side, cl))
        {
            let d = rel_diff(&mine, &want);
            assert!(
                d < 1e-5,
                "{part}, n{n} c{c} k{k} kernel {kernel} side {side} cl {cl}: off by {d}"
            );
        }
    }
}

#[test]
fn used_only_in_training_on_small_maps() {
    let opts = (Kind::Float, Device::Cpu);
    let w = Tensor::randn([4, 3, 3, 3], opts).set_requires_grad(true);
    let conv = |x: &Tensor| x.conv2d(&w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1);
    let small = Tensor::randn([1, 3, 14, 14], opts);
    assert_eq!(14 * 14, MAX_CELLS);
    assert!(ManualConv::gemm_weight_grad(&w, None, &small, &conv(&small)).is_some());
    let big = Tensor::randn([1, 3, 15, 15], opts);
    assert!(ManualConv::gemm_weight_grad(&w, None, &big, &conv(&big)).is_none());
    let y = tch::no_grad(|| conv(&small));
    assert!(ManualConv::gemm_weight_grad(&w, None, &small, &y).is_none());
    // A strided output is not "same" padding.
    let y = small.conv2d(&w, None::<Tensor>, [2, 2], [1, 1], [1, 1], 1);
    assert!(ManualConv::gemm_weight_grad(&w, None, &small, &y).is_none());

    // ChestNet hands over its transition layer in training only.
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let mut cfg = ModelConfig::new(Arch::Resnet18, vec!["a".into(), "b".into()]);
    cfg.width = Some(8);
    cfg.input_size = 64;
    let net = ChestNet::new(&vs.root(), cfg);
    let x = Tensor::randn([2, 3, 64, 64], opts);
    let out = net.forward_with(&x, true, true);
    assert_eq!(out.manual.len(), 1);
    let vars = vs.variables();
    let part = |name: &str| out.manual[0].part_of(&vars[name]);
    assert_eq!(part("transition.weight"), Some(Part::Weight));
    assert_eq!(part("transition.bias"), Some(Part::Bias));
    assert_eq!(part("prediction.weight"), None);
    assert!(tch::no_grad(|| net.forward(&x, false)).manual.is_empty());
}
