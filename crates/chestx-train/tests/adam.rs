//! The optimizer's first update against Adam's formula, for a convolution weight (laid out
//! channels-last in the flat buffer on a CPU) and a linear layer, with gradients taken fresh.

use chestx_model::layout::ConvLayout;
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
    let vars = sorted_variables(&vs);
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
    let step = chestx_model::gradients(&loss(), &adam.parameters());
    adam.update(&step);

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

/// Several AdamW steps with weight decay against the formula evaluated in double precision, with
/// gradients taken independently before each step (the fused CPU update walks raw memory, so a
/// layout slip would show here as a wrong element).
#[test]
fn later_steps_follow_adamw_in_double_precision() {
    later_steps_follow_adamw(Adam::new);
}

/// The same for the update a GPU runs (tensor ops over the flat buffers, scalars folded), in both
/// weight layouts: channels-last gradients must be re-laid in buffer order before the update.
#[test]
fn the_gpu_update_follows_adamw_in_either_weight_layout() {
    for layout in [ConvLayout::Nchw, ConvLayout::Nhwc] {
        later_steps_follow_adamw(|vs, lr, wd| {
            let adam = Adam::with_layout(vs, lr, wd, layout).with_tensor_op_update();
            assert_eq!(adam.layout(), layout);
            adam
        });
    }
}

fn later_steps_follow_adamw(make: impl Fn(&nn::VarStore, f64, f64) -> Adam) {
    tch::manual_seed(12);
    let vs = nn::VarStore::new(Device::Cpu);
    let conv = nn::conv2d(vs.root() / "c", 3, 5, 3, Default::default());
    let lin = nn::linear(vs.root() / "l", 5, 2, Default::default());
    let x = Tensor::randn([2, 3, 7, 7], (Kind::Float, Device::Cpu));
    let loss = || {
        lin.forward(
            &conv
                .forward(&x)
                .relu()
                .mean_dim(&[2i64, 3][..], false, None),
        )
        .pow_tensor_scalar(2)
        .sum(Kind::Float)
    };
    let (lr, wd) = (0.02, 0.1);
    let mut adam = make(&vs, lr, wd);
    let vars = sorted_variables(&vs);
    let double = |t: &Tensor| t.detach().to_kind(Kind::Double);
    let mut m: Vec<Tensor> = vars.iter().map(|(_, p)| double(p).zeros_like()).collect();
    let mut v: Vec<Tensor> = m.iter().map(|t| t.zeros_like()).collect();
    for t in 1..=4 {
        let refs: Vec<&Tensor> = vars.iter().map(|(_, p)| p).collect();
        let grads = Tensor::run_backward(&[loss()], &refs, false, false);
        let want: Vec<Tensor> = vars
            .iter()
            .zip(&grads)
            .enumerate()
            .map(|(i, ((_, p), g))| {
                let g = double(g);
                m[i] = &m[i] * adam.beta1 + &g * (1.0 - adam.beta1);
                v[i] = &v[i] * adam.beta2 + &g * &g * (1.0 - adam.beta2);
                let m_hat = &m[i] / (1.0 - adam.beta1.powi(t));
                let v_hat = &v[i] / (1.0 - adam.beta2.powi(t));
                double(p) * (1.0 - lr * wd) - m_hat / (v_hat.sqrt() + adam.eps) * lr
            })
            .collect();
        let grads = chestx_model::gradients(&loss(), &adam.parameters());
        adam.update(&grads);
        for ((name, now), want) in vars.iter().zip(&want) {
            let diff = (double(now) - want).abs().max().double_value(&[]);
            assert!(diff < 1e-6, "step {t}, {name}: off by {diff}");
        }
    }
    assert_eq!(adam.t, 4);
}

/// A step with the transition layer's weight gradient formed by its GEMM is the step taken with
/// autograd's (eps raised so Adam's near-sign update of tiny gradients cannot magnify rounding; one
/// step, as this tiny network's batch norms over 2×2 maps amplify any rounding in later ones).
#[test]
fn gemm_weight_gradient_trains_like_autograd() {
    use chestx_model::Loss;
    let build = || small_resnet18(8, 64, 1024);
    // One initial state and batch for both runs (copied, not re-seeded: tests share torch's RNG).
    let (vs0, _) = build();
    let x = Tensor::randn([4, 3, 64, 64], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[1f32, 0., 0., 1., 1., 1., 0., 0.]).view([4, 2]);
    let run = |gemm: bool| {
        let (mut vs, net) = build();
        vs.copy(&vs0).unwrap();
        let mut adam = Adam::new(&vs, 1e-2, 0.0);
        adam.eps = 1e-3;
        let grads = if gemm {
            let mut buffers = chestx_model::GradBuffers::default();
            net.loss_and_gradients(&x, &y, &Loss::Wcel, &adam.parameters(), &mut buffers)
                .1
        } else {
            let loss = Loss::Wcel.compute(&net.forward(&x, true).logits, &y);
            chestx_model::gradients(&loss, &adam.parameters())
        };
        adam.update(&grads);
        sorted_variables(&vs)
    };
    let (with, without) = (run(true), run(false));
    for ((name, a), (_, b)) in with.iter().zip(&without) {
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{name}: off by {diff}");
    }
    let (_, now) = with.iter().find(|(n, _)| n == "transition.weight").unwrap();
    let moved = (now - &vs0.variables()["transition.weight"])
        .abs()
        .max()
        .double_value(&[]);
    assert!(moved > 1e-3, "transition weight barely moved ({moved})");
}

/// A step with the transition layer run by Winograd outside autograd — its weight gradient by GEMM,
/// its input gradient handed back to the backbone by a second backward pass — is the step taken
/// with libtorch's kernels and autograd throughout.
#[test]
fn winograd_transition_trains_like_autograd() {
    use chestx_model::Loss;
    // Width 16: at width 8, libtorch 2.11's own backward pass corrupts the heap on this CPU (the
    // 8 → 16 channel 1×1 stride-2 downsample's weight gradient on a 56×56 channels-last map,
    // oneDNN's jit_avx512_common_1x1 kernel; plain PyTorch crashes the same way).
    let build = || small_resnet18(16, 224, 16);
    let (vs0, _) = build();
    let x = Tensor::randn([8, 3, 224, 224], (Kind::Float, Device::Cpu));
    let y = Tensor::from_slice(&[1f32, 0., 0., 1., 1., 1., 0., 0.])
        .view([4, 2])
        .repeat([2, 1]);
    let run = |manual: bool| {
        let (mut vs, mut net) = build();
        vs.copy(&vs0).unwrap();
        net.set_manual_kernels(manual);
        // eps far above every gradient: the update is then g / eps, linear in the gradient, so
        // the comparison below is one of gradients.
        let mut adam = Adam::new(&vs, 1.0, 0.0);
        adam.eps = 1e3;
        let mut buffers = chestx_model::GradBuffers::default();
        let (_, grads) =
            net.loss_and_gradients(&x, &y, &Loss::Wcel, &adam.parameters(), &mut buffers);
        adam.update(&grads);
        sorted_variables(&vs)
    };
    let (with, without) = (run(true), run(false));
    for ((name, a), (_, b)) in with.iter().zip(&without) {
        let diff = (a - b).abs().max().double_value(&[]);
        let start = &vs0.variables()[name];
        let step = (b - start).abs().max().double_value(&[]);
        // Gradients agree to ~5e-5 of each tensor's largest (float rounding, amplified by the
        // batch norms on the way back); the update itself is rounded to the parameter's precision.
        let ulp = f64::from(f32::EPSILON) * start.abs().max().double_value(&[]);
        assert!(
            diff <= 1e-3 * step + ulp,
            "{name}: off by {diff:.2e} for a step of {step:.2e}"
        );
    }
    for name in [
        "backbone.conv1.weight",
        "transition.weight",
        "transition.bias",
    ] {
        let (_, now) = with.iter().find(|(n, _)| n == name).unwrap();
        let moved = (now - &vs0.variables()[name]).abs().max().double_value(&[]);
        assert!(moved > 1e-6, "{name} did not move ({moved})");
    }
}

/// A ResNet-18 of first-stage `width` at `input` px with a `dim`-channel transition layer, two classes.
fn small_resnet18(width: i64, input: i64, dim: i64) -> (nn::VarStore, chestx_model::ChestNet) {
    use chestx_model::{Arch, ChestNet, ModelConfig};
    let vs = nn::VarStore::new(Device::Cpu);
    let mut cfg = ModelConfig::new(Arch::Resnet18, vec!["a".into(), "b".into()]);
    cfg.width = Some(width);
    cfg.input_size = input;
    cfg.transition_dim = dim;
    let net = ChestNet::new(&vs.root(), cfg);
    (vs, net)
}

/// The store's variables in name order.
fn sorted_variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}
