//! The CPU kernels of the transition layer (Winograd F(2×2, 3×3), the GEMM weight gradient), private
//! to this crate behind one entry point: [`gradients`], called by [`crate::ChestNet::loss_and_gradients`].
//!
//! Why private: a convolution run by these kernels is not (wholly) in autograd's graph, so its
//! gradients exist only if the step that takes gradients knows about it. Keeping the forward pass
//! that records them and the gradient step that consumes them in one place means no caller can
//! forget to hand one to the other (a layer would silently get no gradient).

mod manual_conv;
mod winograd;

#[cfg(test)]
mod manual_conv_tests;
#[cfg(test)]
mod winograd_tests;

pub(crate) use manual_conv::{grad_mode, ManualConv, WinogradWeights};

use manual_conv::Part;
use tch::{Kind, Tensor};

/// Buffers kept between training steps: the GEMM weight gradient's output, per parameter (a fresh
/// one every step would cost page faults and zeroing over tens of MB).
#[derive(Default)]
pub struct GradBuffers(Vec<Option<Tensor>>);

/// The gradient of `loss` for each of `params` (undefined where the loss does not reach it), fresh
/// (nothing accumulated into `.grad`). Convolutions in `manual` (recorded by the forward pass) form
/// their own gradients: autograd is asked for each one's output gradient in place of its weight's
/// and bias's; one that ran outside autograd also forms its input's gradient, and a second backward
/// pass carries that on to the layers before it.
pub(crate) fn gradients(
    loss: &Tensor,
    params: &[&Tensor],
    manual: &[ManualConv],
    buffers: &mut GradBuffers,
) -> Vec<Tensor> {
    let by_manual: Vec<Option<(usize, Part)>> = params
        .iter()
        .map(|p| {
            manual
                .iter()
                .enumerate()
                .find_map(|(j, d)| Some((j, d.part_of(p)?)))
        })
        .collect();
    let mut inputs: Vec<&Tensor> = params
        .iter()
        .zip(&by_manual)
        .filter(|(_, d)| d.is_none())
        .map(|(p, _)| *p)
        .collect();
    let own = inputs.len();
    inputs.extend(manual.iter().map(ManualConv::output));
    let mut raw = Tensor::run_backward(&[loss], &inputs, false, false);
    let outputs = raw.split_off(own);
    hand_back_input_gradients(manual, &outputs, &inputs, &mut raw);
    let mut own = raw.into_iter();
    buffers.0.resize_with(params.len(), || None);
    by_manual
        .iter()
        .enumerate()
        .map(|(i, d)| match *d {
            None => own.next().expect("one gradient per input"),
            Some((j, part)) if outputs[j].defined() => {
                manual[j].grad(part, &outputs[j], &mut buffers.0[i])
            }
            Some(_) => Tensor::new(),
        })
        .collect()
}

/// Convolutions outside the graph hand their input gradients back: backpropagating
/// Σ ⟨input, dL/d(input)⟩ (the gradient held constant) reaches the earlier layers with exactly those
/// gradients, filling the entries of `raw` the first pass could not reach.
fn hand_back_input_gradients(
    manual: &[ManualConv],
    outputs: &[Tensor],
    inputs: &[&Tensor],
    raw: &mut [Tensor],
) {
    let handed_back: Vec<Tensor> = manual
        .iter()
        .zip(outputs)
        .filter(|(_, g)| g.defined())
        .filter_map(|(m, g)| Some((m.input() * m.input_grad(g)?).sum(Kind::Float)))
        .collect();
    let missing: Vec<usize> = (0..raw.len()).filter(|&i| !raw[i].defined()).collect();
    if handed_back.is_empty() || missing.is_empty() {
        return;
    }
    let surrogate = handed_back
        .iter()
        .skip(1)
        .fold(handed_back[0].shallow_clone(), |acc, t| acc + t);
    let targets: Vec<&Tensor> = missing.iter().map(|&i| inputs[i]).collect();
    let more = Tensor::run_backward(&[&surrogate], &targets, false, false);
    for (i, g) in missing.into_iter().zip(more) {
        raw[i] = g;
    }
}
