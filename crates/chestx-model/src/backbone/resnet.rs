//! ResNet-18/34/50/101 (He et al. 2016) in torchvision's layout: `conv1`, `bn1`, `layer1..4`, blocks
//! with `conv1/bn1/…` and `downsample.0/1`; the bottleneck strides in its 3×3 conv (torchvision v1.5).

use super::{bn, conv, Stages};
use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Block {
    Basic,
    Bottleneck,
}

impl Block {
    fn expansion(self) -> i64 {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

#[derive(Debug)]
struct Residual {
    convs: Vec<(nn::Conv2D, nn::BatchNorm)>,
    downsample: Option<(nn::Conv2D, nn::BatchNorm)>,
}

impl ModuleT for Residual {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        // ReLUs and the residual sum in place, as torchvision's `inplace=True`: each batch-norm
        // output is consumed once, and not writing a new tensor per op saves memory traffic.
        let last = self.convs.len() - 1;
        let mut ys = xs.shallow_clone();
        for (i, (c, b)) in self.convs.iter().enumerate() {
            ys = ys.apply(c).apply_t(b, train);
            if i < last {
                let _ = ys.relu_();
            }
        }
        match &self.downsample {
            Some((c, b)) => {
                let input = if !c.ws.device().is_cuda()
                    && crate::layout::must_run_nchw_on_cpu(&c.ws.size())
                {
                    xs.contiguous()
                } else {
                    xs.shallow_clone()
                };
                let _ = ys.g_add_(&input.apply(c).apply_t(b, train));
            }
            None => {
                let _ = ys.g_add_(xs);
            }
        }
        let _ = ys.relu_();
        ys
    }
}

fn block(p: &nn::Path, kind: Block, c_in: i64, width: i64, stride: i64) -> Residual {
    let c_out = width * kind.expansion();
    let convs = match kind {
        Block::Basic => vec![
            (
                conv(p / "conv1", c_in, width, 3, stride, 1, false),
                bn(p / "bn1", width),
            ),
            (
                conv(p / "conv2", width, width, 3, 1, 1, false),
                bn(p / "bn2", width),
            ),
        ],
        Block::Bottleneck => vec![
            (
                conv(p / "conv1", c_in, width, 1, 1, 0, false),
                bn(p / "bn1", width),
            ),
            (
                conv(p / "conv2", width, width, 3, stride, 1, false),
                bn(p / "bn2", width),
            ),
            (
                conv(p / "conv3", width, c_out, 1, 1, 0, false),
                bn(p / "bn3", c_out),
            ),
        ],
    };
    let downsample = (stride != 1 || c_in != c_out).then(|| {
        let d = p / "downsample";
        (
            conv(&d / "0", c_in, c_out, 1, stride, 0, false),
            bn(&d / "1", c_out),
        )
    });
    Residual { convs, downsample }
}

/// A ResNet whose stages are `base`, 2·`base`, 4·`base`, 8·`base` wide (`base` = 64 in torchvision;
/// smaller for test fixtures). `output_stride` 16 keeps layer4 at layer3's resolution (its first
/// block does not stride), doubling the heatmap side; 8 keeps layer3 at layer2's too. Weights are
/// unchanged, so torchvision weights still load. Returned as four stages (the stem belongs to the
/// first) whose outputs are torchvision's `layer1..layer4`.
pub fn resnet(
    p: &nn::Path,
    kind: Block,
    counts: [i64; 4],
    base: i64,
    output_stride: i64,
    in_channels: i64,
) -> Stages {
    let mut stages = Vec::with_capacity(4);
    let mut seq = nn::seq_t()
        .add(conv(p / "conv1", in_channels, base, 7, 2, 3, false))
        .add(bn(p / "bn1", base))
        .add_fn(|x| x.relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false));
    let mut c_in = base;
    for (i, (&n, width)) in counts
        .iter()
        .zip([base, 2 * base, 4 * base, 8 * base])
        .enumerate()
    {
        let layer = p / format!("layer{}", i + 1);
        for j in 0..n {
            let stride = if j == 0 && strides(i + 1, output_stride) {
                2
            } else {
                1
            };
            seq = seq.add(block(&(&layer / j.to_string()), kind, c_in, width, stride));
            c_in = width * kind.expansion();
        }
        stages.push(std::mem::replace(&mut seq, nn::seq_t()));
    }
    Stages::new(stages)
}

/// Whether torchvision's `layer{layer}` (1–4) halves the resolution at `output_stride`.
pub(crate) fn strides(layer: usize, output_stride: i64) -> bool {
    match layer {
        2 => true,
        3 => output_stride > 8,
        4 => output_stride > 16,
        _ => false,
    }
}
