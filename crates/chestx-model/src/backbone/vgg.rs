//! VGG-16 (Simonyan & Zisserman 2015) without batch norm: torchvision's `features.N` numbering, where
//! N counts convs, ReLUs and pools alike.

use super::conv;
use tch::nn;

pub fn vgg16(p: &nn::Path) -> nn::SequentialT {
    const CFG: [i64; 18] = [
        64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0,
    ];
    let f = p / "features";
    let mut seq = nn::seq_t();
    let (mut idx, mut c_in) = (0, 3);
    for &c in &CFG {
        if c == 0 {
            seq = seq.add_fn(|x| x.max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false));
            idx += 1;
        } else {
            seq = seq
                .add(conv(&f / idx.to_string(), c_in, c, 3, 1, 1, true))
                .add_fn(|x| x.relu());
            c_in = c;
            idx += 2;
        }
    }
    seq
}
