//! AlexNet (Krizhevsky et al. 2012), torchvision's single-tower variant: `features.{0,3,6,8,10}`.

use super::conv;
use tch::nn;

pub fn alexnet(p: &nn::Path) -> nn::SequentialT {
    let f = p / "features";
    let pool = |x: &tch::Tensor| x.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
    nn::seq_t()
        .add(conv(&f / "0", 3, 64, 11, 4, 2, true))
        .add_fn(|x| x.relu())
        .add_fn(pool)
        .add(conv(&f / "3", 64, 192, 5, 1, 2, true))
        .add_fn(|x| x.relu())
        .add_fn(pool)
        .add(conv(&f / "6", 192, 384, 3, 1, 1, true))
        .add_fn(|x| x.relu())
        .add(conv(&f / "8", 384, 256, 3, 1, 1, true))
        .add_fn(|x| x.relu())
        .add(conv(&f / "10", 256, 256, 3, 1, 1, true))
        .add_fn(|x| x.relu())
        .add_fn(pool)
}
