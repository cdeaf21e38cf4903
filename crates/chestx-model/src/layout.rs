//! The memory order of convolution weights. libtorch runs a convolution in its weight's order, so
//! the weights' order sets the order of every feature map in the network too, and the faster one
//! depends on the device and on whether the network trains or only infers.

use tch::{nn::VarStore, Device, Tensor};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConvLayout {
    /// PyTorch's default order, `[O, I, H, W]`.
    Nchw,
    /// Channels-last, `[O, H, W, I]` in memory (PyTorch's `channels_last`).
    Nhwc,
}

impl ConvLayout {
    /// For training, channels-last everywhere. On a CPU it is oneDNN's native order; on a GPU
    /// cuDNN's tensor-core kernels run NHWC without the transposes NCHW costs them (both measured
    /// faster: docs/performance.md, "Weight layouts").
    pub fn for_training(_device: Device) -> ConvLayout {
        ConvLayout::Nhwc
    }

    /// For inference alone (evaluation, prediction): on a GPU the forward pass runs faster NCHW,
    /// the reverse of training (docs/performance.md, "Weight layouts").
    pub fn for_inference(device: Device) -> ConvLayout {
        if device.is_cuda() {
            ConvLayout::Nchw
        } else {
            ConvLayout::Nhwc
        }
    }
}

/// Whether a convolution weight must run NCHW on a CPU whatever the network's layout (and its input
/// be made NCHW-contiguous too, or libtorch still picks channels-last): oneDNN's channels-last weight
/// gradient of a 1×1 stride-2 convolution from fewer than 16 input channels writes past its buffers
/// (libtorch 2.11, AVX-512 machines: heap corruption or SIGSEGV, e.g. 8 → 16 channels on a 16×16 map
/// at batch 3). Reproduced in plain PyTorch with one `Conv2d`; 16 and more input channels, and NCHW
/// at any width, never crashed in the same scan (docs/performance.md, "A oneDNN crash avoided").
/// Only ResNet-18 at `--width` below 16 has such convolutions (its downsamples).
pub fn must_run_nchw_on_cpu(weight_shape: &[i64]) -> bool {
    matches!(weight_shape, &[_, c_in, 1, 1] if c_in < 16)
}

/// Re-lays every 4-D weight of `vs` in `layout`, values unchanged.
pub fn relayout(vs: &VarStore, layout: ConvLayout) {
    tch::no_grad(|| {
        for (_, mut p) in vs.variables() {
            if p.dim() != 4 {
                continue;
            }
            let laid = match layout {
                ConvLayout::Nchw => p.contiguous(),
                ConvLayout::Nhwc => {
                    let s = p.size();
                    let mut dst = Tensor::empty([s[0], s[2], s[3], s[1]], (p.kind(), p.device()))
                        .permute([0, 3, 1, 2]);
                    dst.copy_(&p);
                    dst
                }
            };
            p.set_data(&laid);
        }
    });
}

/// Whether two tensors have one shape and lay their elements out in one order: equal strides on
/// every dimension longer than 1 (a length-1 dimension's stride is arbitrary: libtorch may report
/// a 1×1 kernel's as 1 or as the channel count).
pub fn same_layout(a: &Tensor, b: &Tensor) -> bool {
    let (size, sa, sb) = (a.size(), a.stride(), b.stride());
    size == b.size() && (0..size.len()).all(|d| size[d] == 1 || sa[d] == sb[d])
}

/// `t` itself when it already has `like`'s layout and kind, else a copy laid out like `like`
/// (`empty_like` keeps a dense tensor's strides).
pub fn laid_like(t: &Tensor, like: &Tensor) -> Tensor {
    if same_layout(t, like) && t.kind() == like.kind() {
        t.shallow_clone()
    } else {
        let mut copy = like.empty_like();
        copy.copy_(t);
        copy
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// Whether `t`'s elements lie in `layout`'s order (a 4-D tensor; anything else counts as both).
    fn is_laid(t: &Tensor, layout: ConvLayout) -> bool {
        if t.dim() != 4 {
            return true;
        }
        let (s, st) = (t.size(), t.stride());
        let want = match layout {
            ConvLayout::Nchw => [s[1] * s[2] * s[3], s[2] * s[3], s[3], 1],
            ConvLayout::Nhwc => [s[1] * s[2] * s[3], 1, s[3] * s[1], s[1]],
        };
        (0..4).all(|d| s[d] == 1 || st[d] == want[d])
    }

    /// `conv`'s weight lies in `layout`'s order and holds the values it had `before`.
    fn laid_with_values(conv: &tch::nn::Conv2D, layout: ConvLayout, before: &Tensor) {
        assert!(is_laid(&conv.ws, layout), "{:?}", conv.ws.stride());
        assert_eq!((&conv.ws - before).abs().max().double_value(&[]), 0.0);
    }

    #[test]
    fn relayout_changes_the_order_and_keeps_the_values() {
        tch::manual_seed(3);
        let vs = VarStore::new(Device::Cpu);
        let conv = tch::nn::conv2d(vs.root() / "c", 3, 5, 3, Default::default());
        let before = conv.ws.detach().copy();
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        let y = tch::nn::Module::forward(&conv, &x);
        assert!(is_laid(&conv.ws, ConvLayout::Nchw) && !is_laid(&conv.ws, ConvLayout::Nhwc));
        relayout(&vs, ConvLayout::Nhwc);
        laid_with_values(&conv, ConvLayout::Nhwc, &before);
        let y2 = tch::nn::Module::forward(&conv, &x);
        assert!((&y2 - &y).abs().max().double_value(&[]) < 1e-5);
        relayout(&vs, ConvLayout::Nchw);
        laid_with_values(&conv, ConvLayout::Nchw, &before);
        // The bias (1-D) is left alone.
        assert_eq!(conv.bs.as_ref().unwrap().dim(), 1);
    }
}
