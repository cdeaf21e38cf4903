//! GoogLeNet / Inception v1 (Szegedy et al. 2015) in torchvision's layout (`conv1.conv`, `conv1.bn`,
//! `inception3a.branch2.1.conv`, …), without the auxiliary heads. As in torchvision, the "5×5" branch
//! uses a 3×3 convolution and batch norm uses eps = 0.001.

use tch::nn::{self, ModuleT};
use tch::Tensor;

#[derive(Debug)]
struct BasicConv {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl ModuleT for BasicConv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.conv).apply_t(&self.bn, train).relu()
    }
}

fn basic(p: &nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, padding: i64) -> BasicConv {
    BasicConv {
        conv: nn::conv2d(
            p / "conv",
            c_in,
            c_out,
            k,
            nn::ConvConfig {
                stride,
                padding,
                bias: false,
                ..Default::default()
            },
        ),
        bn: nn::batch_norm2d(
            p / "bn",
            c_out,
            nn::BatchNormConfig {
                eps: 1e-3,
                ..Default::default()
            },
        ),
    }
}

#[derive(Debug)]
struct Inception {
    b1: BasicConv,
    b2: (BasicConv, BasicConv),
    b3: (BasicConv, BasicConv),
    b4: BasicConv,
}

impl ModuleT for Inception {
    fn forward_t(&self, xs: &Tensor, t: bool) -> Tensor {
        let y1 = self.b1.forward_t(xs, t);
        let y2 = self.b2.1.forward_t(&self.b2.0.forward_t(xs, t), t);
        let y3 = self.b3.1.forward_t(&self.b3.0.forward_t(xs, t), t);
        let y4 = self
            .b4
            .forward_t(&xs.max_pool2d([3, 3], [1, 1], [1, 1], [1, 1], true), t);
        Tensor::cat(&[y1, y2, y3, y4], 1)
    }
}

fn inception(p: &nn::Path, c: [i64; 7]) -> Inception {
    let [c_in, c1, c3r, c3, c5r, c5, pool] = c;
    Inception {
        b1: basic(&(p / "branch1"), c_in, c1, 1, 1, 0),
        b2: (
            basic(&(p / "branch2" / "0"), c_in, c3r, 1, 1, 0),
            basic(&(p / "branch2" / "1"), c3r, c3, 3, 1, 1),
        ),
        b3: (
            basic(&(p / "branch3" / "0"), c_in, c5r, 1, 1, 0),
            basic(&(p / "branch3" / "1"), c5r, c5, 3, 1, 1),
        ),
        b4: basic(&(p / "branch4" / "1"), c_in, pool, 1, 1, 0),
    }
}

pub fn googlenet(p: &nn::Path) -> nn::SequentialT {
    let pool = |x: &Tensor| x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], true);
    #[rustfmt::skip]
    let cfg: [(&str, [i64; 7]); 9] = [
        ("inception3a", [192, 64, 96, 128, 16, 32, 32]),
        ("inception3b", [256, 128, 128, 192, 32, 96, 64]),
        ("inception4a", [480, 192, 96, 208, 16, 48, 64]),
        ("inception4b", [512, 160, 112, 224, 24, 64, 64]),
        ("inception4c", [512, 128, 128, 256, 24, 64, 64]),
        ("inception4d", [512, 112, 144, 288, 32, 64, 64]),
        ("inception4e", [528, 256, 160, 320, 32, 128, 128]),
        ("inception5a", [832, 256, 160, 320, 32, 128, 128]),
        ("inception5b", [832, 384, 192, 384, 48, 128, 128]),
    ];
    let mut seq = nn::seq_t()
        .add(basic(&(p / "conv1"), 3, 64, 7, 2, 3))
        .add_fn(pool)
        .add(basic(&(p / "conv2"), 64, 64, 1, 1, 0))
        .add(basic(&(p / "conv3"), 64, 192, 3, 1, 1))
        .add_fn(pool);
    for (name, c) in cfg {
        seq = seq.add(inception(&(p / name), c));
        match name {
            "inception3b" => seq = seq.add_fn(pool),
            // torchvision's maxpool4 is 2×2.
            "inception4e" => {
                seq = seq.add_fn(|x| x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], true))
            }
            _ => {}
        }
    }
    seq
}
