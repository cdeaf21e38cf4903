//! LayerCAM as `ChestNet::layer_cams` computes it, against the definition worked out directly with
//! autograd, and the properties heatmaps rely on (per-image maps from a batch, stages independent).

use chestx_model::{Arch, ChestNet, ModelConfig};
use tch::nn;
use tch::{Device, Kind, Tensor};

fn net(vs: &nn::VarStore) -> ChestNet {
    let mut cfg = ModelConfig::new(Arch::Resnet18, vec!["a".into(), "b".into()]);
    cfg.width = Some(8);
    cfg.input_size = 64;
    ChestNet::new(&vs.root(), cfg)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn layer_cam_matches_its_definition_on_the_last_stage() {
    tch::manual_seed(5);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = net(&vs);
    let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    let (logits, maps) = net.layer_cams(&x, &[4]);
    assert_eq!(maps.len(), 1);
    assert_eq!(maps[0].size(), vec![2, 2, 2, 2]);
    let plain = tch::no_grad(|| net.forward(&x, false).logits);
    assert!(max_diff(&logits, &plain) < 1e-5);

    // The definition, for class 1: A = backbone output, ReLU(Σ_k ReLU(∂y/∂A_k)·A_k) per image.
    let a = tch::no_grad(|| net.features(&x)).set_requires_grad(true);
    let y = net.head(&a).select(1, 1).sum(Kind::Float);
    let g = Tensor::run_backward(&[&y], &[&a], false, false);
    let want = (g[0].relu() * a.detach())
        .sum_dim_intlist(&[1i64][..], false, None)
        .relu();
    assert!(max_diff(&maps[0].select(1, 1), &want) < 1e-5);
    assert!(
        want.max().double_value(&[]) > 0.0,
        "an all-zero map proves nothing"
    );
}

#[test]
fn stages_are_independent_and_each_image_gets_its_own_map() {
    tch::manual_seed(6);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = net(&vs);
    let x = Tensor::randn([3, 3, 64, 64], (Kind::Float, Device::Cpu));
    let (_, both) = net.layer_cams(&x, &[2, 4]);
    let (_, last) = net.layer_cams(&x, &[4]);
    // layer2 is at stride 8: 8×8 cells on 64 px.
    assert_eq!(both[0].size(), vec![3, 2, 8, 8]);
    assert!(both[0].min().double_value(&[]) >= 0.0);
    assert!(max_diff(&both[1], &last[0]) < 1e-5);
    // Gradients of the batch's summed score are each image's own (eval mode: no batch statistics).
    let (_, one) = net.layer_cams(&x.narrow(0, 1, 1), &[2, 4]);
    assert!(max_diff(&one[0], &both[0].narrow(0, 1, 1)) < 1e-5);
}

#[test]
#[should_panic(expected = "must ascend")]
fn stages_out_of_range_are_refused() {
    let vs = nn::VarStore::new(Device::Cpu);
    let x = Tensor::zeros([1, 3, 64, 64], (Kind::Float, Device::Cpu));
    let _ = net(&vs).layer_cams(&x, &[5]);
}

#[test]
fn maps_of_listed_classes_are_those_of_the_full_call_in_the_order_listed() {
    tch::manual_seed(7);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = net(&vs);
    let x = Tensor::randn([2, 3, 64, 64], (Kind::Float, Device::Cpu));
    let (logits, full) = net.layer_cams(&x, &[1, 3]);
    let (sub_logits, sub) = net.layer_cams_of(&x, &[1, 3], &[1, 0]);
    assert!(max_diff(&logits, &sub_logits) < 1e-6);
    for (f, s) in full.iter().zip(&sub) {
        assert_eq!(s.size()[1], 2);
        assert!(max_diff(&s.select(1, 0), &f.select(1, 1)) < 1e-6);
        assert!(max_diff(&s.select(1, 1), &f.select(1, 0)) < 1e-6);
        assert!(
            f.max().double_value(&[]) > 0.0,
            "an all-zero map proves nothing"
        );
    }
    let (_, one) = net.layer_cams_of(&x, &[1, 3], &[1]);
    assert!(max_diff(&one[1].select(1, 0), &full[1].select(1, 1)) < 1e-6);
    // No class: logits only, maps with no class channel.
    let (l, none) = net.layer_cams_of(&x, &[1, 3], &[]);
    assert!(max_diff(&l, &logits) < 1e-6);
    assert_eq!(none[0].size(), vec![2, 0, 16, 16]);
}
