//! DenseNet-121 (Huang et al. 2017), CheXNet's backbone, in torchvision's layout:
//! `features.conv0/norm0`, `features.denseblockN.denselayerM.{norm1,conv1,norm2,conv2}`,
//! `features.transitionN.{norm,conv}`, `features.norm5`; ReLU after `norm5` as torchvision does.

use super::{bn, conv};
use tch::nn::{self, ModuleT};
use tch::Tensor;

const GROWTH: i64 = 32;
const BN_SIZE: i64 = 4;

#[derive(Debug)]
struct DenseLayer {
    norm1: nn::BatchNorm,
    conv1: nn::Conv2D,
    norm2: nn::BatchNorm,
    conv2: nn::Conv2D,
}

impl ModuleT for DenseLayer {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs
            .apply_t(&self.norm1, train)
            .relu()
            .apply(&self.conv1)
            .apply_t(&self.norm2, train)
            .relu()
            .apply(&self.conv2);
        Tensor::cat(&[xs, &ys], 1)
    }
}

/// DenseNet-121 as four stages, as a ResNet's `layer1..4`: the stem and dense block 1 (stride 4),
/// then each transition with the next block (strides 8, 16, 32), `norm5` and its ReLU closing the
/// last. LayerCAM can then read the finer blocks, as it reads a ResNet's early layers.
pub fn densenet121(p: &nn::Path, in_channels: i64) -> Vec<nn::SequentialT> {
    let f = p / "features";
    let mut stages = Vec::with_capacity(4);
    let mut seq = nn::seq_t()
        .add(conv(&f / "conv0", in_channels, 64, 7, 2, 3, false))
        .add(bn(&f / "norm0", 64))
        .add_fn(|x| x.relu().max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false));
    let mut c = 64;
    for (i, &layers) in [6i64, 12, 24, 16].iter().enumerate() {
        if i > 0 {
            let t = &f / format!("transition{i}");
            seq = seq
                .add(bn(&t / "norm", c))
                .add_fn(|x| x.relu())
                .add(conv(&t / "conv", c, c / 2, 1, 1, 0, false))
                .add_fn(|x| x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>));
            c /= 2;
        }
        let block = &f / format!("denseblock{}", i + 1);
        for j in 0..layers {
            let l = &block / format!("denselayer{}", j + 1);
            seq = seq.add(DenseLayer {
                norm1: bn(&l / "norm1", c),
                conv1: conv(&l / "conv1", c, BN_SIZE * GROWTH, 1, 1, 0, false),
                norm2: bn(&l / "norm2", BN_SIZE * GROWTH),
                conv2: conv(&l / "conv2", BN_SIZE * GROWTH, GROWTH, 3, 1, 1, false),
            });
            c += GROWTH;
        }
        if i == 3 {
            seq = seq.add(bn(&f / "norm5", c)).add_fn(|x| x.relu());
        }
        stages.push(std::mem::replace(&mut seq, nn::seq_t()));
    }
    stages
}
