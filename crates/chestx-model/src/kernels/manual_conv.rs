//! Convolutions whose gradients this crate forms itself, for the layer where that beats
//! libtorch's kernels on a CPU: the transition layer, a 3×3 convolution from 2048 channels on a
//! small map (~18% of a ResNet-50 training step's arithmetic at 224 px).
//!
//! Autograd cannot be handed another kernel, so the forward pass returns a [`ManualConv`] and the
//! gradient step ([`super::gradients`]) asks
//! autograd for the convolution's *output* gradient g in place of its weight's and bias's
//! (libtorch forms a bias gradient only together with the weight's, so both are taken over), then
//! forms them here. Two kinds:
//! - **Winograd** ([`ManualConv::winograd`], [`super::winograd`]): the forward pass and the input
//!   gradient by F(2×2, 3×3), with 16 multiplications per 2×2 outputs instead of 36. The output
//!   is a leaf (the convolution is not in autograd's graph); the input gradient is formed here and
//!   handed back to autograd for the backbone.
//! - **GEMM weight gradient only** ([`ManualConv::gemm_weight_grad`]): autograd runs the
//!   convolution and its input gradient; only `dW = gᵀ · unfold(x)` (and `db = Σ g`) are formed
//!   here, because oneDNN's weight-gradient kernel runs far below its forward speed on small maps
//!   (only up to [`MAX_CELLS`] cells).
//!
//! Both kinds form the weight gradient by the GEMM (on larger maps it is as fast as oneDNN's). The
//! measurements behind each choice are in `docs/performance.md` ("CPU kernels").

use crate::layout::laid_like;
use std::sync::{Arc, Mutex};
use tch::{Device, Kind, Tensor};

/// Largest map (H·W) for which the GEMM weight gradient alone is taken over (14×14 gains, 16×16
/// loses: see docs/performance.md).
pub const MAX_CELLS: i64 = 196;
/// Rows of the unfolded input formed at a time, to bound its memory.
const CHUNK_ROWS: i64 = 4096;

/// One convolution (stride 1, no dilation, one group, "same" padding) whose gradients the
/// optimizer forms from its output's gradient.
pub struct ManualConv {
    weight: Tensor,
    bias: Option<Tensor>,
    input: Tensor,
    output: Tensor,
    /// Winograd-domain weights when the convolution ran outside autograd (its input gradient is
    /// then formed here).
    winograd: Option<Arc<Transformed>>,
}

/// Which of the convolution's variables a gradient is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Weight,
    Bias,
}

impl ManualConv {
    /// Autograd ran the convolution (`output` from `input`); take over its weight gradient when the
    /// GEMM pays: a CPU tensor needing gradients, a square odd kernel with "same" padding, and a
    /// map of at most [`MAX_CELLS`] cells. The caller vouches that the convolution has stride 1,
    /// no dilation and one group.
    pub fn gemm_weight_grad(
        weight: &Tensor,
        bias: Option<&Tensor>,
        input: &Tensor,
        output: &Tensor,
    ) -> Option<ManualConv> {
        let (_, _, h, w) = input.size4().ok()?;
        let (_, _, kh, kw) = weight.size4().ok()?;
        let same_padding = kh == kw && kh % 2 == 1 && output.size()[2..] == input.size()[2..];
        let wanted = weight.requires_grad() && output.requires_grad();
        (input.device() == Device::Cpu && wanted && same_padding && h * w <= MAX_CELLS).then(|| {
            ManualConv {
                weight: weight.shallow_clone(),
                bias: bias.map(Tensor::shallow_clone),
                input: input.detach(),
                output: output.shallow_clone(),
                winograd: None,
            }
        })
    }

    /// Run a 3×3 convolution (stride 1, padding 1, no dilation, one group: the caller vouches)
    /// by Winograd outside autograd, when [`winograd_pays`]. Returns the output and, when a graph
    /// is wanted (autograd on and the weight or input needing gradients), the record through which
    /// the optimizer forms the gradients; with no graph wanted this is a plain faster forward.
    pub fn winograd(
        weight: &Tensor,
        bias: Option<&Tensor>,
        input: &Tensor,
        cache: &WinogradWeights,
    ) -> Option<(Tensor, Option<ManualConv>)> {
        if !super::winograd::supports(weight, input) {
            return None;
        }
        let (n, c, h, w) = input.size4().ok()?;
        if !winograd_pays(n, c, h, w) {
            return None;
        }
        let graph = grad_mode() && (weight.requires_grad() || input.requires_grad());
        let u = cache.transform(weight);
        let output = super::winograd::conv3x3(input, &u.0, bias);
        if !graph {
            return Some((output, None));
        }
        let output = output.set_requires_grad(true);
        let manual = ManualConv {
            weight: weight.shallow_clone(),
            bias: bias.map(Tensor::shallow_clone),
            input: input.shallow_clone(),
            output: output.shallow_clone(),
            winograd: Some(u),
        };
        Some((output, Some(manual)))
    }

    /// The convolution's output, whose gradient autograd is asked for in place of its variables'.
    pub fn output(&self) -> &Tensor {
        &self.output
    }

    /// The convolution's input (with its graph when the convolution ran outside autograd).
    pub fn input(&self) -> &Tensor {
        &self.input
    }

    /// `dL/d(input)` from `dL/d(output)` when the convolution ran outside autograd and its input
    /// needs one; `None` when autograd forms it (or nothing upstream learns).
    pub fn input_grad(&self, grad_output: &Tensor) -> Option<Tensor> {
        let u = self.winograd.as_ref()?;
        self.input
            .requires_grad()
            .then(|| super::winograd::conv3x3_input_grad(grad_output, &u.0))
    }

    /// The gradient of `part` from `dL/d(output)`; `buffer` as for [`ManualConv::weight_grad_into`].
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
    /// fresh 75 MB output costs page faults and zeroing every step). A channels-last weight's gradient is a view of the buffer, so the optimizer reads
    /// it without a copy.
    pub fn weight_grad_into(&self, grad_output: &Tensor, buffer: &mut Option<Tensor>) -> Tensor {
        tch::no_grad(|| {
            let (k_out, c_in, kh, kw) = self.weight.size4().expect("4-D weight");
            let (n, _, h, w) = self.input.size4().expect("4-D input");
            let pad = kh / 2;
            // NHWC views; the backbone's maps are channels-last on a CPU, so these are free.
            let x = self.input.detach().permute([0, 2, 3, 1]);
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

/// Largest transformed input (16 floats per tile and channel) formed in one piece: 512 MB. Past it
/// (e.g. ResNet-50 at output stride 8) libtorch's kernel, which needs no such copy, is used.
const MAX_TRANSFORMED: i64 = 1 << 27;

/// Whether F(2×2, 3×3) beats oneDNN for `n` maps of `c` channels and `h × w`: the multiplications
/// it saves (9 per output against 16 per 2×2 tile, padded maps wasting part of the edge tiles)
/// must outweigh transforming the weights, a fixed ~2 passes over 16/9 of the kernel's memory
/// (the break-even of 1024 saved products per channel pair is measured: docs/performance.md).
pub fn winograd_pays(n: i64, c: i64, h: i64, w: i64) -> bool {
    let tiles = super::winograd::tile_count(n, h, w);
    9 * n * h * w - 16 * tiles >= 1024 && 16 * tiles * c <= MAX_TRANSFORMED
}

/// Whether autograd records operations now (off inside `tch::no_grad`).
pub fn grad_mode() -> bool {
    let leaf = Tensor::zeros([1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    (&leaf * 1.0).requires_grad()
}

/// The Winograd-domain weights of one layer (~130 MB for the transition layer), kept between
/// passes: rewritten in place when no earlier pass still holds them, since fresh pages for that
/// much memory cost about as much as the transform itself.
#[derive(Debug, Default)]
pub struct WinogradWeights(Mutex<Option<Arc<Transformed>>>);

/// Winograd-domain weights `[K, 16, C]`, shared read-only between a forward pass and the
/// backward pass that uses them.
#[derive(Debug)]
pub struct Transformed(Tensor);

// SAFETY: shared only for reading (libtorch reads of one tensor from several threads are safe);
// the buffer is written only after `Arc::try_unwrap` proved it unshared.
unsafe impl Sync for Transformed {}

impl Transformed {
    #[cfg(test)]
    pub fn tensor(&self) -> &Tensor {
        &self.0
    }
}

impl WinogradWeights {
    /// The transform of `weight`'s current values.
    pub fn transform(&self, weight: &Tensor) -> Arc<Transformed> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Reuse the buffer only when no earlier pass's ManualConv still reads it.
        let mut buffer = slot
            .take()
            .and_then(|u| Arc::try_unwrap(u).ok())
            .map(|t| t.0);
        super::winograd::transform_weight(weight, &mut buffer);
        let u = Arc::new(Transformed(
            buffer.expect("transform_weight fills the buffer"),
        ));
        *slot = Some(u.clone());
        u
    }
}
