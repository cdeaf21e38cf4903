//! Adam with decoupled weight decay (AdamW), written out so that its moment estimates can be saved
//! in a checkpoint and a resumed run continues exactly where it stopped.
//!
//! All trainable parameters are re-pointed into one flat buffer (each variable becomes a view of
//! it), and the moments are flat too. On a GPU an update is then a handful of kernels over one
//! tensor rather than several per parameter — what PyTorch's multi-tensor Adam achieves, and what
//! matters there, where a ResNet-50 step would otherwise launch over a thousand tiny kernels. On a
//! CPU the same formula runs tensor by tensor in place, which keeps the working set in cache, and
//! convolution weights sit in the buffer channels-last (NHWC): oneDNN then runs every convolution of
//! the network NHWC, forward and backward (PyTorch's `channels_last`; measured here 1.2× on a
//! ResNet-50 training step).
//!
//! Gradients come fresh from each backward pass ([`Adam::backward_step`]) instead of being summed into
//! zeroed `.grad` buffers, which costs a zeroing and an accumulating pass over every parameter (what
//! PyTorch's `zero_grad(set_to_none=True)` avoids; 15% of a CPU ResNet-50 step here).

use std::collections::BTreeMap;
use tch::{Kind, Tensor};

pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Updates done so far (for bias correction).
    pub t: i64,
    params: Vec<(String, Tensor)>,
    flat: Tensor,
    m_flat: Tensor,
    v_flat: Tensor,
    /// Per-parameter views of the first and second moments (for checkpoints).
    pub m: BTreeMap<String, Tensor>,
    pub v: BTreeMap<String, Tensor>,
}

impl Adam {
    pub fn new(vs: &tch::nn::VarStore, lr: f64, weight_decay: f64) -> Adam {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let device = vs.device();
        let channels_last = !device.is_cuda();
        let total: i64 = params.iter().map(|(_, p)| p.numel() as i64).sum();
        let flat = Tensor::zeros([total], (Kind::Float, device));
        let m_flat = Tensor::zeros([total], (Kind::Float, device));
        let v_flat = Tensor::zeros([total], (Kind::Float, device));
        let (mut m, mut v) = (BTreeMap::new(), BTreeMap::new());
        let mut off = 0i64;
        tch::no_grad(|| {
            for (name, p) in params.iter_mut() {
                let n = p.numel() as i64;
                let shape = p.size();
                // The buffer holds NHWC order for convolution weights on a CPU; the variable is the
                // NCHW-shaped, channels-last-strided view of it.
                let view = |buf: &Tensor| {
                    let slot = buf.narrow(0, off, n);
                    match shape.as_slice() {
                        &[o, i, h, w] if channels_last => {
                            slot.view([o, h, w, i]).permute([0, 3, 1, 2])
                        }
                        s => slot.view(s),
                    }
                };
                let mut slot = view(&flat);
                slot.copy_(p);
                p.set_data(&slot);
                m.insert(name.clone(), view(&m_flat));
                v.insert(name.clone(), view(&v_flat));
                off += n;
            }
        });
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            t: 0,
            params,
            flat,
            m_flat,
            v_flat,
            m,
            v,
        }
    }

    /// Backpropagate `loss` to every parameter and update them.
    pub fn backward_step(&mut self, loss: &Tensor) {
        let inputs: Vec<&Tensor> = self.params.iter().map(|(_, p)| p).collect();
        // Fresh gradients, undefined for parameters the loss does not reach.
        let grads = Tensor::run_backward(&[loss], &inputs, false, false);
        self.t += 1;
        if self.flat.device().is_cuda() {
            self.step_flat(&grads);
        } else {
            self.step_per_tensor(&grads);
        }
    }

    /// On a CPU the update is memory-bound: one tensor at a time, in place, stays in cache (what
    /// PyTorch's default CPU Adam does).
    fn step_per_tensor(&mut self, grads: &[Tensor]) {
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        let step_size = self.lr / c1;
        tch::no_grad(|| {
            for ((name, p), g) in self.params.iter_mut().zip(grads) {
                if !g.defined() {
                    continue;
                }
                let m = self.m.get_mut(name).expect("moment for every parameter");
                let v = self.v.get_mut(name).expect("moment for every parameter");
                let _ = m.lerp_(g, 1.0 - b1);
                let _ = v.g_mul_scalar_(b2);
                let _ = v.addcmul_(&(g * (1.0 - b2)), g);
                let mut denom = v.sqrt();
                let _ = denom.g_div_scalar_(c2.sqrt());
                let _ = denom.g_add_scalar_(self.eps);
                if self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
                }
                let _ = denom.reciprocal_();
                let _ = denom.g_mul_(m);
                let _ = denom.g_mul_scalar_(step_size);
                let _ = p.g_sub_(&denom);
            }
        });
    }

    /// On a GPU the update is launch-bound: a few kernels over the flat buffers.
    fn step_flat(&mut self, grads: &[Tensor]) {
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        tch::no_grad(|| {
            // (On a GPU every variable is a plain view of its slot, so logical order is buffer order.)
            let grads: Vec<Tensor> = self
                .params
                .iter()
                .zip(grads)
                .map(|((_, p), g)| {
                    if g.defined() {
                        g.reshape([-1])
                    } else {
                        p.zeros_like().view([-1])
                    }
                })
                .collect();
            let g = Tensor::cat(&grads, 0);
            // m = b1·m + (1−b1)·g ; v = b2·v + (1−b2)·g²
            let _ = self.m_flat.lerp_(&g, 1.0 - b1);
            let _ = self.v_flat.g_mul_scalar_(b2);
            let _ = self.v_flat.addcmul_(&(&g * (1.0 - b2)), &g);
            let mut denom = (&self.v_flat / c2).sqrt();
            let _ = denom.g_add_scalar_(self.eps);
            if self.weight_decay > 0.0 {
                let _ = self.flat.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
            }
            let step = (&self.m_flat / denom) * (self.lr / c1);
            let _ = self.flat.g_sub_(&step);
        });
    }
}
