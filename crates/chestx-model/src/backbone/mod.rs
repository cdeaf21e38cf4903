//! ImageNet backbones with their classifier removed, written as plain modules whose variable names
//! follow torchvision's `state_dict()` keys exactly, so released weights load by name.

mod alexnet;
mod densenet;
mod googlenet;
mod resnet;
mod vgg;

use chestx_core::{CellGrid, Window};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// A backbone architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Resnet18,
    Resnet34,
    Resnet50,
    Resnet101,
    Densenet121,
    Alexnet,
    Googlenet,
    Vgg16,
}

impl Arch {
    pub const ALL: [Arch; 8] = [
        Arch::Resnet18,
        Arch::Resnet34,
        Arch::Resnet50,
        Arch::Resnet101,
        Arch::Densenet121,
        Arch::Alexnet,
        Arch::Googlenet,
        Arch::Vgg16,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Arch::Resnet18 => "resnet18",
            Arch::Resnet34 => "resnet34",
            Arch::Resnet50 => "resnet50",
            Arch::Resnet101 => "resnet101",
            Arch::Densenet121 => "densenet121",
            Arch::Alexnet => "alexnet",
            Arch::Googlenet => "googlenet",
            Arch::Vgg16 => "vgg16",
        }
    }

    /// Channels of the last feature map.
    pub fn out_channels(self) -> i64 {
        match self {
            Arch::Resnet18 | Arch::Resnet34 | Arch::Vgg16 => 512,
            Arch::Resnet50 | Arch::Resnet101 => 2048,
            Arch::Densenet121 | Arch::Googlenet => 1024,
            Arch::Alexnet => 256,
        }
    }

    /// Total downsampling from input to feature map (1024 -> 32 for ResNet/DenseNet).
    pub fn stride(self) -> i64 {
        32
    }

    /// Where the cells of the feature map at `output_stride` (32; 16 or 8 for ResNets) sit on the input,
    /// from the downsampling layers each network is built with (see [`CellGrid`]).
    pub fn cell_grid(self, output_stride: i64) -> CellGrid {
        self.layer_grid(self.layers(), output_stride)
    }

    /// How many of the backbone's stages can be tapped for heatmaps ([`Stages`]): torchvision's
    /// `layer1..layer4` of a ResNet, DenseNet-121's four dense blocks; the other backbones have
    /// one, their output.
    pub fn layers(self) -> usize {
        if self.is_resnet() || self == Arch::Densenet121 {
            4
        } else {
            1
        }
    }

    pub fn is_resnet(self) -> bool {
        matches!(
            self,
            Arch::Resnet18 | Arch::Resnet34 | Arch::Resnet50 | Arch::Resnet101
        )
    }

    /// Where the cells of stage `layer` (1-based, see [`Arch::layers`]) sit on the input.
    pub fn layer_grid(self, layer: usize, output_stride: i64) -> CellGrid {
        const CONV1: Window = Window::new(7, 2, 3);
        const HALVE: Window = Window::new(3, 2, 1);
        let layers: Vec<Window> = match self {
            Arch::Resnet18 | Arch::Resnet34 | Arch::Resnet50 | Arch::Resnet101 => {
                // conv1, maxpool, then the strided 3×3 convs of layer2..layer{layer} (at output
                // stride 16 layer4 keeps its input's resolution, at 8 layer3 too).
                [CONV1, HALVE]
                    .into_iter()
                    .chain(
                        (2..=layer)
                            .filter(|&l| resnet::strides(l, output_stride))
                            .map(|_| HALVE),
                    )
                    .collect()
            }
            // conv0, pool0, then the 2×2 average pooling of each transition before block `layer`.
            Arch::Densenet121 => [CONV1, HALVE]
                .into_iter()
                .chain((2..=layer).map(|_| Window::new(2, 2, 0)))
                .collect(),
            // conv 11/4, three unpadded 3×3/2 max-pools (the 5×5 and 3×3 convs keep centres).
            Arch::Alexnet => vec![
                Window::new(11, 4, 2),
                Window::new(3, 2, 0),
                Window::new(3, 2, 0),
                Window::new(3, 2, 0),
            ],
            // conv1, maxpool1..3 (3×3/2 unpadded), maxpool4 (2×2/2).
            Arch::Googlenet => vec![
                CONV1,
                Window::new(3, 2, 0),
                Window::new(3, 2, 0),
                Window::new(3, 2, 0),
                Window::new(2, 2, 0),
            ],
            Arch::Vgg16 => vec![Window::new(2, 2, 0); 5],
        };
        CellGrid::of_layers(&layers)
    }

    /// Key prefixes of a torchvision state dict that belong to the removed classifier.
    pub fn classifier_prefixes(self) -> &'static [&'static str] {
        match self {
            Arch::Resnet18 | Arch::Resnet34 | Arch::Resnet50 | Arch::Resnet101 => &["fc."],
            Arch::Densenet121 | Arch::Alexnet | Arch::Vgg16 => &["classifier."],
            Arch::Googlenet => &["fc.", "aux1.", "aux2."],
        }
    }
}

impl std::str::FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let k = s.trim().to_ascii_lowercase().replace(['-', '_'], "");
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == k)
            .ok_or_else(|| {
                format!(
                    "unknown architecture {s:?} (one of {})",
                    Arch::ALL.map(|a| a.name()).join(", ")
                )
            })
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A feature extractor as consecutive stages, so that the maps between them can be read (LayerCAM
/// on `layer2` of a ResNet, say). Running all of them is the backbone's forward pass.
#[derive(Debug)]
pub struct Stages(Vec<nn::SequentialT>);

impl Stages {
    pub fn new(stages: Vec<nn::SequentialT>) -> Stages {
        assert!(!stages.is_empty(), "a backbone has at least one stage");
        Stages(stages)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Stages `from..to` (0-based, `to` exclusive) applied to `xs`.
    pub fn run(&self, from: usize, to: usize, xs: &Tensor, train: bool) -> Tensor {
        self.0[from..to]
            .iter()
            .fold(xs.shallow_clone(), |x, s| s.forward_t(&x, train))
    }
}

impl ModuleT for Stages {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.run(0, self.0.len(), xs, train)
    }
}

/// Build the feature extractor of `arch` under `p` (its variables are named as in torchvision).
/// `in_channels` is 3 for ImageNet weights; ResNets and DenseNet-121 also take 1 (torchxrayvision).
pub fn build(arch: Arch, p: &nn::Path, in_channels: i64) -> Stages {
    use resnet::Block::{Basic, Bottleneck};
    let c = in_channels;
    match arch {
        Arch::Resnet18 => resnet::resnet(p, Basic, [2, 2, 2, 2], 64, 32, c),
        Arch::Resnet34 => resnet::resnet(p, Basic, [3, 4, 6, 3], 64, 32, c),
        Arch::Resnet50 => resnet::resnet(p, Bottleneck, [3, 4, 6, 3], 64, 32, c),
        Arch::Resnet101 => resnet::resnet(p, Bottleneck, [3, 4, 23, 3], 64, 32, c),
        Arch::Densenet121 => Stages::new(densenet::densenet121(p, c)),
        Arch::Alexnet => Stages::new(vec![alexnet::alexnet(p)]),
        Arch::Googlenet => Stages::new(vec![googlenet::googlenet(p)]),
        Arch::Vgg16 => Stages::new(vec![vgg::vgg16(p)]),
    }
}

/// A ResNet-18-shaped network `base` channels wide at its first stage (8·`base` at the last): for
/// fixtures and CPU-sized experiments. `base` = 64 is ResNet-18. `output_stride` is 32, 16 or 8.
pub fn resnet18_width(p: &nn::Path, base: i64, output_stride: i64, in_channels: i64) -> Stages {
    resnet::resnet(
        p,
        resnet::Block::Basic,
        [2, 2, 2, 2],
        base,
        output_stride,
        in_channels,
    )
}

/// Any ResNet at a finer output stride: 16 (layer4 without its stride) or 8 (layer3 and layer4
/// without theirs). Weights are unchanged, so torchvision weights load.
pub fn build_strided(
    arch: Arch,
    p: &nn::Path,
    output_stride: i64,
    in_channels: i64,
) -> Option<Stages> {
    use resnet::Block::{Basic, Bottleneck};
    let (block, counts) = match arch {
        Arch::Resnet18 => (Basic, [2, 2, 2, 2]),
        Arch::Resnet34 => (Basic, [3, 4, 6, 3]),
        Arch::Resnet50 => (Bottleneck, [3, 4, 6, 3]),
        Arch::Resnet101 => (Bottleneck, [3, 4, 23, 3]),
        _ => return None,
    };
    Some(resnet::resnet(
        p,
        block,
        counts,
        64,
        output_stride,
        in_channels,
    ))
}

pub(crate) fn conv(
    p: nn::Path,
    c_in: i64,
    c_out: i64,
    k: i64,
    stride: i64,
    padding: i64,
    bias: bool,
) -> nn::Conv2D {
    nn::conv2d(
        p,
        c_in,
        c_out,
        k,
        nn::ConvConfig {
            stride,
            padding,
            bias,
            ..Default::default()
        },
    )
}

pub(crate) fn bn(p: nn::Path, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p, c, Default::default())
}
