//! The ChestX-ray8 network: backbone → transition layer (conv to D channels, the S×S×D map) →
//! global pooling → prediction layer (D×C) → one logit per finding.

use crate::backbone::{self, Arch};
use crate::kernels::{self, GradBuffers, ManualConv, WinogradWeights};
use crate::loss::Loss;
use crate::pool::Pooling;
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Everything needed to rebuild a model (written as `config.json` in a run folder).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub arch: Arch,
    /// Class names, in output order.
    pub classes: Vec<String>,
    /// Channels D of the transition layer.
    pub transition_dim: i64,
    /// Kernel of the transition conv (3 keeps some spatial context; 1 is a pure projection).
    pub transition_kernel: i64,
    pub pooling: Pooling,
    /// Square input side in pixels.
    pub input_size: i64,
    /// ResNet-18 only: first-stage width when not 64 (tiny models for tests and CPU demos).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    /// Input-to-heatmap stride: 32 (standard), 16 or 8 (ResNets only; 2× or 4× the heatmap side).
    #[serde(default = "default_stride")]
    pub output_stride: i64,
    /// Input channels: 3 (ImageNet backbones, our runs) or 1 (torchxrayvision's models).
    #[serde(default = "default_channels")]
    pub in_channels: i64,
    /// Whether the paper's transition layer sits between backbone and pooling. Published
    /// classifiers (torchxrayvision, CheXNet) pool the backbone's map directly: without it the
    /// prediction layer reads the backbone's channels, and the CAM is Zhou et al.'s original.
    #[serde(default = "yes")]
    pub transition: bool,
    /// What the network's input is made of (the source's chain for an imported model).
    #[serde(default)]
    pub preprocess: chestx_image::Preprocess,
}

fn default_stride() -> i64 {
    32
}

fn default_channels() -> i64 {
    3
}

fn yes() -> bool {
    true
}

impl ModelConfig {
    pub fn new(arch: Arch, classes: Vec<String>) -> Self {
        ModelConfig {
            arch,
            classes,
            transition_dim: 1024,
            transition_kernel: 3,
            pooling: Pooling::Lse { r: 10.0 },
            input_size: 512,
            width: None,
            output_stride: 32,
            in_channels: 3,
            transition: true,
            preprocess: chestx_image::Preprocess::Imagenet,
        }
    }

    /// Channels the prediction layer reads: the transition layer's, or the backbone's without one.
    pub fn head_channels(&self) -> i64 {
        if self.transition {
            self.transition_dim
        } else {
            self.backbone_channels()
        }
    }

    fn backbone_channels(&self) -> i64 {
        match (self.arch, self.width) {
            (Arch::Resnet18, Some(w)) => 8 * w,
            (a, _) => a.out_channels(),
        }
    }
}

/// The outputs of one forward pass.
pub struct Forward {
    /// `[B, C]` logits.
    pub logits: Tensor,
    /// `[B, D, S, S]` transition-layer activations (the backbone's map without one), for CAM.
    pub transition: Tensor,
    /// Convolutions run by this crate's kernels, whose gradients [`kernels::gradients`] forms
    /// (recorded only by [`ChestNet::loss_and_gradients`]'s forward pass).
    pub(crate) manual: Vec<ManualConv>,
}

#[derive(Debug)]
pub struct ChestNet {
    pub config: ModelConfig,
    backbone: backbone::Stages,
    /// The paper's transition conv; `None` for published classifiers (see [`ModelConfig::transition`]).
    transition: Option<nn::Conv2D>,
    prediction: nn::Linear,
    /// The transition kernel in the Winograd domain, reused between CPU passes.
    winograd: WinogradWeights,
    /// Whether the transition layer may use this crate's CPU kernels ([`crate::kernels`]).
    manual_kernels: bool,
}

impl ChestNet {
    /// Build under `p`: the backbone's variables live under `backbone.` with torchvision's names,
    /// then `transition.` and `prediction.`.
    pub fn new(p: &nn::Path, config: ModelConfig) -> ChestNet {
        let bp = p / "backbone";
        let c_in = config.in_channels;
        let backbone = match (config.arch, config.width, config.output_stride) {
            (Arch::Resnet18, Some(w), os) => backbone::resnet18_width(&bp, w, os, c_in),
            (a, _, os @ (8 | 16)) => backbone::build_strided(a, &bp, os, c_in)
                .expect("output strides 8 and 16 are for ResNets (checked by the caller)"),
            (a, _, _) => backbone::build(a, &bp, c_in),
        };
        let k = config.transition_kernel;
        let transition = config.transition.then(|| {
            nn::conv2d(
                p / "transition",
                config.backbone_channels(),
                config.transition_dim,
                k,
                nn::ConvConfig {
                    padding: k / 2,
                    ..Default::default()
                },
            )
        });
        let prediction = nn::linear(
            p / "prediction",
            config.head_channels(),
            config.classes.len() as i64,
            Default::default(),
        );
        ChestNet {
            config,
            backbone,
            transition,
            prediction,
            winograd: WinogradWeights::default(),
            manual_kernels: true,
        }
    }

    /// Use libtorch's kernels (and autograd) for every layer, never [`crate::kernels`]': for
    /// comparisons against the plain computation.
    pub fn set_manual_kernels(&mut self, on: bool) {
        self.manual_kernels = on;
    }

    /// Logits from a backbone feature map: transition, pooling, prediction.
    pub fn head(&self, features: &Tensor) -> Tensor {
        let map = match &self.transition {
            Some(t) => features.apply(t),
            None => features.shallow_clone(),
        };
        self.config.pooling.apply(&map).apply(&self.prediction)
    }

    /// The forward pass (`train`: batch norms in training mode) with autograd's graph complete, so
    /// any gradient a caller takes of it is right (Grad-CAM, LayerCAM, a plain training loop).
    /// Without gradients (`no_grad`) the transition layer may run by this crate's CPU kernels.
    /// Training steps go through [`ChestNet::loss_and_gradients`], which uses them with gradients.
    pub fn forward(&self, images: &Tensor, train: bool) -> Forward {
        self.forward_with(images, train, false)
    }

    /// One training step's forward pass (batch norms in training mode), its `loss` against
    /// `targets`, and the fresh gradient of each of `params` (undefined where the loss does not
    /// reach). On a CPU the transition layer runs by this crate's kernels where they pay, and forms
    /// its own gradients; `buffers` carries their scratch memory from one step to the next.
    pub fn loss_and_gradients(
        &self,
        images: &Tensor,
        targets: &Tensor,
        loss: &Loss,
        params: &[&Tensor],
        buffers: &mut GradBuffers,
    ) -> (Tensor, Vec<Tensor>) {
        let out = self.forward_with(images, true, true);
        let value = loss.compute(&out.logits, targets);
        let grads = kernels::gradients(&value, params, &out.manual, buffers);
        (value, grads)
    }

    /// [`ChestNet::forward`]; with `record`, in training, the transition layer may run by this
    /// crate's kernels and is then listed in [`Forward::manual`].
    pub(crate) fn forward_with(&self, images: &Tensor, train: bool, record: bool) -> Forward {
        let features = self.backbone.forward_t(images, train);
        let (transition, manual) = self.transition_map(&features, train && record);
        let pooled = self.config.pooling.apply(&transition);
        Forward {
            logits: pooled.apply(&self.prediction),
            transition,
            manual,
        }
    }

    /// The transition layer. On a CPU, by Winograd where that pays (in a recorded training step, or
    /// whenever no gradient is wanted); else libtorch's kernel, with its weight gradient by GEMM in
    /// a recorded training step on small maps.
    fn transition_map(&self, features: &Tensor, recorded: bool) -> (Tensor, Vec<ManualConv>) {
        let Some(t) = &self.transition else {
            return (features.shallow_clone(), Vec::new());
        };
        if !self.manual_kernels {
            return (features.apply(t), Vec::new());
        }
        if self.config.transition_kernel == 3 && (recorded || !kernels::grad_mode()) {
            if let Some((y, manual)) =
                ManualConv::winograd(&t.ws, t.bs.as_ref(), features, &self.winograd)
            {
                return (y, manual.into_iter().collect());
            }
        }
        let y = features.apply(t);
        let manual = recorded
            .then(|| ManualConv::gemm_weight_grad(&t.ws, t.bs.as_ref(), features, &y))
            .flatten();
        (y, manual.into_iter().collect())
    }

    /// Where heatmap cells sit on the input (the transition conv keeps centres: odd kernel, same padding).
    pub fn cell_grid(&self) -> chestx_core::CellGrid {
        self.config.arch.cell_grid(self.config.output_stride)
    }

    /// Backbone feature map only (for parity checks against torchvision).
    pub fn features(&self, images: &Tensor) -> Tensor {
        self.backbone.forward_t(images, false)
    }

    /// Grad-CAM (Selvaraju et al. 2017) on the backbone's output feature map, for class `class`:
    /// channel weights are the spatial mean of d(logit)/d(feature), the map is ReLU(Σ w·feature).
    /// Works for any pooling and transition; `[B, S, S]`.
    pub fn grad_cam(&self, images: &Tensor, class: i64) -> Tensor {
        self.grad_cams(images).1.select(1, class)
    }

    /// Logits `[B, C]` (detached) and Grad-CAM maps of every class `[B, C, S, S]`, from one backbone
    /// pass: the head is differentiated once per class, the backbone is not re-run.
    pub fn grad_cams(&self, images: &Tensor) -> (Tensor, Tensor) {
        let feats = tch::no_grad(|| self.backbone.forward_t(images, false))
            .detach()
            .set_requires_grad(true);
        let logits = self.head(&feats);
        let n = self.config.classes.len() as i64;
        let maps: Vec<Tensor> = (0..n)
            .map(|c| {
                let score = logits.select(1, c).sum(tch::Kind::Float);
                let grads = Tensor::run_backward(&[&score], &[&feats], c + 1 < n, false);
                let w = grads[0].mean_dim(&[2i64, 3][..], true, None);
                (w * feats.detach())
                    .sum_dim_intlist(&[1i64][..], false, None)
                    .relu()
            })
            .collect();
        (logits.detach(), Tensor::stack(&maps, 1))
    }

    /// Where the cells of backbone stage `layer` (1-based; see [`Arch::layers`]) sit on the input.
    pub fn layer_grid(&self, layer: usize) -> chestx_core::CellGrid {
        self.config
            .arch
            .layer_grid(layer, self.config.output_stride)
    }

    /// LayerCAM (Jiang et al., IEEE TIP 2021) on the given backbone stages (1-based, ascending, each
    /// at most [`Arch::layers`]): for class c and stage map A, `ReLU(Σ_k ReLU(∂y_c/∂A_k) · A_k)`, the
    /// activation weighted cell by cell by its positive gradient. Unlike Grad-CAM's one weight per
    /// channel this stays faithful on early, fine stages, where the evidence for a small lesion
    /// sits at its own position rather than wherever a deep cell chose to answer for it.
    /// Returns logits `[B, C]` (detached) and one `[B, C, h, w]` map per stage; one backbone pass,
    /// one backward per class from the logits down to the first stage asked for.
    pub fn layer_cams(&self, images: &Tensor, layers: &[usize]) -> (Tensor, Vec<Tensor>) {
        let all: Vec<usize> = (0..self.config.classes.len()).collect();
        self.layer_cams_of(images, layers, &all)
    }

    /// [`ChestNet::layer_cams`] for the classes listed only (maps `[B, classes.len(), h, w]`, in that
    /// order; logits of every class): one backward pass per class listed, so a caller that needs a
    /// few classes' maps pays for those alone.
    pub fn layer_cams_of(
        &self,
        images: &Tensor,
        layers: &[usize],
        classes: &[usize],
    ) -> (Tensor, Vec<Tensor>) {
        let n = self.backbone.len();
        assert!(
            !layers.is_empty()
                && layers.windows(2).all(|w| w[0] < w[1])
                && layers[0] >= 1
                && *layers.last().unwrap() <= n,
            "LayerCAM stages {layers:?} must ascend within 1..={n}"
        );
        let first = layers[0];
        let start = tch::no_grad(|| self.backbone.run(0, first, images, false))
            .detach()
            .set_requires_grad(true);
        let mut taps = vec![start.shallow_clone()];
        let mut x = start;
        for l in first + 1..=n {
            x = self.backbone.run(l - 1, l, &x, false);
            if layers.contains(&l) {
                taps.push(x.shallow_clone());
            }
        }
        let logits = self.head(&x);
        let tap_refs: Vec<&Tensor> = taps.iter().collect();
        let mut maps: Vec<Vec<Tensor>> = taps.iter().map(|_| Vec::new()).collect();
        for (i, &c) in classes.iter().enumerate() {
            let score = logits.select(1, c as i64).sum(tch::Kind::Float);
            let grads = Tensor::run_backward(&[&score], &tap_refs, i + 1 < classes.len(), false);
            for (k, (g, a)) in grads.iter().zip(&taps).enumerate() {
                maps[k].push(
                    (g.relu() * a.detach())
                        .sum_dim_intlist(&[1i64][..], false, None)
                        .relu(),
                );
            }
        }
        let maps = match classes.is_empty() {
            false => maps.iter().map(|m| Tensor::stack(m, 1)).collect(),
            true => taps
                .iter()
                .map(|a| {
                    let (b, _, h, w) = a.size4().expect("4-D stage map");
                    Tensor::zeros([b, 0, h, w], (a.kind(), a.device()))
                })
                .collect(),
        };
        (logits.detach(), maps)
    }

    /// Class activation maps `[B, C, S, S]`: the transition map weighted by each class's
    /// prediction-layer weights (the bias, constant over space, is left out).
    pub fn cam(&self, transition: &Tensor) -> Tensor {
        // [C, D] x [B, D, S*S] -> [B, C, S*S]
        let (b, d, h, w) = transition.size4().expect("transition map is 4-D");
        let flat = transition.reshape([b, d, h * w]);
        self.prediction.ws.matmul(&flat).reshape([b, -1, h, w])
    }
}
