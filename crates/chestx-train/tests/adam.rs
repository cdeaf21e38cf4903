//! The optimizer's first update against Adam's formula, for a convolution weight (laid out
//! channels-last in the flat buffer on a CPU) and a linear layer, with gradients taken fresh.

use chestx_train::Adam;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

#[test]
fn first_update_follows_adam_for_channels_last_convolutions_too() {
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let conv = nn::conv2d(vs.root() / "c", 3, 4, 3, Default::default());
    let lin = nn::linear(vs.root() / "l", 4, 2, Default::default());
    let x = Tensor::randn([2, 3, 6, 6], (Kind::Float, Device::Cpu));
    let loss = || {
        lin.forward(&conv.forward(&x).mean_dim(&[2i64, 3][..], false, None))
            .pow_tensor_scalar(2)
            .sum(Kind::Float)
    };
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let before: Vec<Tensor> = vars.iter().map(|(_, t)| t.detach().copy()).collect();
    let refs: Vec<&Tensor> = vars.iter().map(|(_, t)| t).collect();
    let grads = Tensor::run_backward(&[loss()], &refs, false, false);

    let lr = 0.01;
    let mut adam = Adam::new(&vs, lr, 0.0);
    // The convolution weight is now a channels-last view of the optimizer's buffer.
    assert_eq!(
        conv.ws.stride()[1],
        1,
        "conv weight strides {:?}",
        conv.ws.stride()
    );
    adam.backward_step(&loss());

    for (((name, now), was), g) in vars.iter().zip(&before).zip(&grads) {
        // Step 1: bias-corrected moments are g and g², so the update is lr·g / (|g| + eps).
        let want = was - g.abs().g_add_scalar(adam.eps).reciprocal() * g * lr;
        let diff = (now - &want).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{name}: off by {diff}");
        let moved = (now - was).abs().max().double_value(&[]);
        assert!(moved > 0.5 * lr, "{name} barely moved ({moved})");
    }
    assert_eq!(adam.t, 1);
}
