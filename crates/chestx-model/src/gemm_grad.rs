//! A convolution's weight gradient as one matrix product over its unfolded input, for the layer
//! where that beats libtorch's kernel.
//!
//! Why: on a CPU, oneDNN's weight-gradient kernel for the transition layer over a small map — at
//! 224 px a 3×3 convolution 7×7×2048 → 1024 — runs far below its forward speed: measured here (2
//! threads, batch 8) 235 ms against 149 ms for the same sum as a GEMM, about 5% of a ResNet-50
//! training step. Autograd cannot be handed another kernel, so the forward pass returns the layer's
//! input and output ([`GemmWeightGrad`]); the optimizer asks autograd for the output's gradient g in
//! place of the weight's and the bias's (libtorch forms a bias gradient only together with the
//! weight's, so both must be taken over for oneDNN's kernel never to run), and forms
//! `dW = gᵀ · unfold(x)` and `db = Σ g` here. On larger maps oneDNN wins (16×16: 582 vs 597 ms),
//! so this is used only on a CPU, in training, for maps of at most [`MAX_CELLS`] cells.

use tch::{Device, Tensor};

/// Largest map (H·W) for which the GEMM is used (14×14 measured 1.15×, 16×16 0.97×).
pub const MAX_CELLS: i64 = 196;
/// Rows of the unfolded input formed at a time, to bound its memory.
const CHUNK_ROWS: i64 = 4096;

/// One convolution (stride 1, no dilation, one group, "same" padding) whose weight gradient the
/// optimizer computes from the output's gradient.
pub struct GemmWeightGrad {
    weight: Tensor,
    bias: Option<Tensor>,
    input: Tensor,
    output: Tensor,
}

/// Which of the convolution's variables a gradient is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Weight,
    Bias,
}

impl GemmWeightGrad {
    /// `Some` when the GEMM pays for this convolution: a CPU tensor needing gradients, a square
    /// odd kernel with "same" padding, and a map of at most [`MAX_CELLS`] cells. The caller vouches
    /// that the convolution has stride 1, no dilation and one group.
    pub fn when_it_pays(
        weight: &Tensor,
        bias: Option<&Tensor>,
        input: &Tensor,
        output: &Tensor,
    ) -> Option<GemmWeightGrad> {
        let (_, _, h, w) = input.size4().ok()?;
        let (_, _, kh, kw) = weight.size4().ok()?;
        let same_padding = kh == kw && kh % 2 == 1 && output.size()[2..] == input.size()[2..];
        let wanted = weight.requires_grad() && output.requires_grad();
        (input.device() == Device::Cpu && wanted && same_padding && h * w <= MAX_CELLS).then(|| {
            GemmWeightGrad {
                weight: weight.shallow_clone(),
                bias: bias.map(Tensor::shallow_clone),
                input: input.detach(),
                output: output.shallow_clone(),
            }
        })
    }

    /// The convolution's output, whose gradient autograd is asked for in place of its variables'.
    pub fn output(&self) -> &Tensor {
        &self.output
    }

    /// The gradient of `part` from `dL/d(output)`; `buffer` as for [`GemmWeightGrad::weight_grad_into`].
    pub fn grad(&self, part: Part, grad_output: &Tensor, buffer: &mut Option<Tensor>) -> Tensor {
        match part {
            Part::Weight => self.weight_grad_into(grad_output, buffer),
            Part::Bias => {
                tch::no_grad(|| grad_output.sum_dim_intlist(&[0i64, 2, 3][..], false, None))
            }
        }
    }

    /// `dL/dW` from `dL/d(output)`, laid out like the weight, written into `buffer`: the
    /// `[K, kh·kw·C]` product matrix, made on first use and kept by the caller between steps (a
    /// fresh 75 MB output costs page faults and zeroing: measured here ~20 ms of a ~120 ms
    /// product). A channels-last weight's gradient is a view of the buffer, so the optimizer reads
    /// it without a copy.
    pub fn weight_grad_into(&self, grad_output: &Tensor, buffer: &mut Option<Tensor>) -> Tensor {
        tch::no_grad(|| {
            let (k_out, c_in, kh, kw) = self.weight.size4().expect("4-D weight");
            let (n, _, h, w) = self.input.size4().expect("4-D input");
            let pad = kh / 2;
            // NHWC views; the backbone's maps are channels-last on a CPU, so these are free.
            let x = self.input.permute([0, 2, 3, 1]);
            let x = if pad > 0 {
                x.constant_pad_nd([0, 0, pad, pad, pad, pad])
            } else {
                x
            };
            let g = grad_output.permute([0, 2, 3, 1]);
            let per_chunk = (CHUNK_ROWS / (h * w)).max(1);
            // [K, kh·kw·C] in (kh, kw, C) order = the weight's channels-last memory order.
            let shape = [k_out, kh * kw * c_in];
            if buffer.as_ref().is_none_or(|b| b.size() != shape) {
                *buffer = Some(Tensor::empty(shape, (self.weight.kind(), Device::Cpu)));
            }
            let dw = buffer.as_ref().expect("made above");
            let mut start = 0;
            while start < n {
                let len = per_chunk.min(n - start);
                let taps: Vec<Tensor> = (0..kh)
                    .flat_map(|i| (0..kw).map(move |j| (i, j)))
                    .map(|(i, j)| x.narrow(0, start, len).narrow(1, i, h).narrow(2, j, w))
                    .collect();
                let cols = Tensor::stack(&taps, 3).reshape([len * h * w, kh * kw * c_in]);
                let gm = g.narrow(0, start, len).reshape([len * h * w, k_out]).tr();
                if start == 0 {
                    let _ = gm.mm_out(dw, &cols);
                } else {
                    let _ = dw.shallow_clone().addmm_(&gm, &cols);
                }
                start += len;
            }
            laid_like(
                &dw.view([k_out, kh, kw, c_in]).permute([0, 3, 1, 2]),
                &self.weight,
            )
        })
    }

    /// Which of this convolution's variables `t` is, if any (same memory, shape and strides).
    pub fn part_of(&self, t: &Tensor) -> Option<Part> {
        let same = |v: &Tensor| {
            t.data_ptr() == v.data_ptr() && t.size() == v.size() && t.stride() == v.stride()
        };
        if same(&self.weight) {
            Some(Part::Weight)
        } else if self.bias.as_ref().is_some_and(same) {
            Some(Part::Bias)
        } else {
            None
        }
    }
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
