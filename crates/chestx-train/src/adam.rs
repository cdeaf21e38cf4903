//! Adam with decoupled weight decay (AdamW), written out so that its moment estimates can be saved
//! in a checkpoint and a resumed run continues exactly where it stopped.
//!
//! All trainable parameters are re-pointed into one flat buffer (each variable becomes a view of
//! it), and the moments are flat too. On a GPU an update is then a handful of kernels over one
//! tensor rather than several per parameter — what PyTorch's multi-tensor Adam achieves, and what
//! matters there, where a ResNet-50 step would otherwise launch over a thousand tiny kernels. On a
//! CPU the update is one fused pass over raw memory, split between the intra-op threads (PyTorch's
//! `fused=True`), and convolution weights sit in the buffer channels-last (NHWC): oneDNN then runs
//! every convolution of the network NHWC, forward and backward (PyTorch's `channels_last`). Timings
//! of both choices: docs/performance.md ("CPU kernels", "Weight layouts").
//!
//! The optimizer only updates: gradients come fresh from the network's training step
//! ([`chestx_model::ChestNet::loss_and_gradients`], or [`chestx_model::gradients`]) instead of being
//! summed into zeroed `.grad` buffers, which costs a zeroing and an accumulating pass over every
//! parameter (what PyTorch's `zero_grad(set_to_none=True)` avoids).

use chestx_model::layout::{laid_like, must_run_nchw_on_cpu, ConvLayout};
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
    layout: ConvLayout,
    /// The update by tensor ops over the flat buffers (a GPU's) rather than the fused CPU pass.
    tensor_ops: bool,
}

impl Adam {
    /// An optimizer over every trainable variable of `vs`, convolution weights re-laid in the
    /// device's [`ConvLayout::for_training`] order.
    pub fn new(vs: &tch::nn::VarStore, lr: f64, weight_decay: f64) -> Adam {
        Adam::with_layout(vs, lr, weight_decay, ConvLayout::for_training(vs.device()))
    }

    /// [`Adam::new`] with the convolution weights' memory order chosen by the caller.
    pub fn with_layout(
        vs: &tch::nn::VarStore,
        lr: f64,
        weight_decay: f64,
        layout: ConvLayout,
    ) -> Adam {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let device = vs.device();
        let channels_last = layout == ConvLayout::Nhwc;
        let nchw_anyway = |shape: &[i64]| !device.is_cuda() && must_run_nchw_on_cpu(shape);
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
                        &[o, i, h, w] if channels_last && !nchw_anyway(&shape) => {
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
            layout,
            tensor_ops: device.is_cuda(),
        }
    }

    /// Updates by the GPU's tensor ops on any device, so that a machine without one can check
    /// that update against the formula.
    pub fn with_tensor_op_update(mut self) -> Adam {
        self.tensor_ops = true;
        self
    }

    /// The memory order the convolution weights were given.
    pub fn layout(&self) -> ConvLayout {
        self.layout
    }

    /// The parameters, in the order [`Adam::update`] takes their gradients.
    pub fn parameters(&self) -> Vec<&Tensor> {
        self.params.iter().map(|(_, p)| p).collect()
    }

    /// One AdamW update from fresh gradients, one per [`Adam::parameters`] entry (an undefined one
    /// leaves its parameter and moments as they are).
    pub fn update(&mut self, grads: &[Tensor]) {
        assert_eq!(grads.len(), self.params.len(), "one gradient per parameter");
        self.t += 1;
        if self.tensor_ops {
            self.step_flat(grads);
        } else {
            self.step_fused(grads);
        }
    }

    /// On a CPU the update is memory-bound: one fused pass over the parameters, moments and gradients
    /// (read four arrays, write three), split between the intra-op threads. The same formula as tensor
    /// ops would take eleven passes, and the transition layer alone (19 M weights) is far beyond any cache.
    fn step_fused(&mut self, grads: &[Tensor]) {
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        let k = fused::Coefficients {
            one_minus_b1: (1.0 - b1) as f32,
            b2: b2 as f32,
            one_minus_b2: (1.0 - b2) as f32,
            inv_sqrt_c2: (1.0 / c2.sqrt()) as f32,
            eps: self.eps as f32,
            step: (self.lr / c1) as f32,
            decay: (1.0 - self.lr * self.weight_decay) as f32,
        };
        tch::no_grad(|| {
            let mut slots = Vec::with_capacity(self.params.len());
            // The gradients the slots point into, kept alive until the update is done.
            let mut alive = Vec::with_capacity(self.params.len());
            for ((name, p), g) in self.params.iter().zip(grads) {
                if !g.defined() {
                    continue;
                }
                // Gradients in another memory order are re-laid in their parameter's.
                let g = laid_like(g, p);
                let (m, v) = (&self.m[name], &self.v[name]);
                slots.push(fused::Slot::new(p, m, v, &g));
                alive.push(g);
            }
            fused::update(&slots, &k, tch::get_num_threads().max(1) as usize);
            drop(alive);
        });
    }

    /// On a GPU the update is memory-bound too, and each tensor op is one pass over the 45 M floats
    /// of a ResNet-50 and its transition layer: nine kernels over the flat buffers (twelve before),
    /// the bias corrections and step size folded into scalars rather than given passes of their own.
    fn step_flat(&mut self, grads: &[Tensor]) {
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let sqrt_c2 = (1.0 - b2.powi(self.t as i32)).sqrt();
        let channels_last = self.layout == ConvLayout::Nhwc;
        tch::no_grad(|| {
            // Each gradient in its parameter's buffer order.
            let grads: Vec<Tensor> = self
                .params
                .iter()
                .zip(grads)
                .map(|((_, p), g)| match (g.defined(), p.dim()) {
                    (false, _) => p.zeros_like().reshape([-1]),
                    (true, 4) if channels_last => {
                        laid_like(g, p).permute([0, 2, 3, 1]).reshape([-1])
                    }
                    (true, _) => g.reshape([-1]),
                })
                .collect();
            let g = Tensor::cat(&grads, 0);
            // m = b1·m + (1−b1)·g ; v = b2·v + (1−b2)·g²
            let _ = self.m_flat.lerp_(&g, 1.0 - b1);
            let _ = self.v_flat.lerp_(&g.square(), 1.0 - b2);
            if self.lr <= 0.0 {
                return; // the end of a cosine schedule: nothing moves
            }
            // p −= lr/c1 · m / (√(v/c2) + ε), i.e. p += m / ((√v + ε·√c2) · −c1/(lr·√c2)).
            let mut denom = self.v_flat.sqrt();
            let _ = denom
                .g_add_scalar_(self.eps * sqrt_c2)
                .g_mul_scalar_(-c1 / (self.lr * sqrt_c2));
            if self.weight_decay > 0.0 {
                let _ = self.flat.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
            }
            let _ = self.flat.addcdiv_(&self.m_flat, &denom);
        });
    }
}

/// Adam's update over raw memory: the parameter, its moments and its gradient lie in the same order
/// (each a dense block of `n` floats), so element i of one is element i of the others whatever the
/// logical layout (channels-last convolution weights included).
mod fused {
    use chestx_model::layout::same_layout;
    use tch::{Kind, Tensor};

    pub struct Coefficients {
        pub one_minus_b1: f32,
        pub b2: f32,
        pub one_minus_b2: f32,
        pub inv_sqrt_c2: f32,
        pub eps: f32,
        pub step: f32,
        pub decay: f32,
    }

    pub struct Slot {
        p: *mut f32,
        m: *mut f32,
        v: *mut f32,
        g: *const f32,
        n: usize,
    }

    // SAFETY: a slot only points into tensors that the caller keeps alive for the whole update, and
    // `update` hands each element to exactly one thread.
    unsafe impl Send for Slot {}
    unsafe impl Sync for Slot {}

    impl Slot {
        /// `p`, `m`, `v` and `g` must be f32 CPU tensors of one shape and one dense memory order.
        pub fn new(p: &Tensor, m: &Tensor, v: &Tensor, g: &Tensor) -> Slot {
            let n = p.numel();
            for t in [m, v, g] {
                assert!(same_layout(t, p), "Adam slot: layouts differ");
            }
            for t in [p, m, v, g] {
                assert!(t.kind() == Kind::Float && !t.device().is_cuda());
            }
            assert!(dense(p), "Adam slot: parameter is not one dense block");
            Slot {
                p: p.data_ptr() as *mut f32,
                m: m.data_ptr() as *mut f32,
                v: v.data_ptr() as *mut f32,
                g: g.data_ptr() as *const f32,
                n,
            }
        }
    }

    /// Whether the tensor's elements fill one block of memory with no gaps or overlaps.
    fn dense(t: &Tensor) -> bool {
        let mut dims: Vec<(i64, i64)> = t.size().into_iter().zip(t.stride()).collect();
        dims.retain(|&(size, _)| size != 1);
        dims.sort_by_key(|&(_, stride)| stride);
        let mut expect = 1;
        for (size, stride) in dims {
            if stride != expect {
                return false;
            }
            expect *= size;
        }
        true
    }

    /// Update every slot, the concatenated elements split evenly between `threads` threads.
    pub fn update(slots: &[Slot], k: &Coefficients, threads: usize) {
        let total: usize = slots.iter().map(|s| s.n).sum();
        let share = total.div_ceil(threads.max(1)).max(1);
        std::thread::scope(|scope| {
            let mut start = 0;
            while start < total {
                let end = (start + share).min(total);
                let run = move || update_range(slots, k, start, end);
                if end == total {
                    run(); // the calling thread takes the last share
                } else {
                    scope.spawn(run);
                }
                start = end;
            }
        });
    }

    /// Elements `[start, end)` of the slots' concatenation.
    fn update_range(slots: &[Slot], k: &Coefficients, start: usize, end: usize) {
        let mut offset = 0;
        for s in slots {
            let (lo, hi) = (start.max(offset), end.min(offset + s.n));
            if lo < hi {
                let (a, len) = (lo - offset, hi - lo);
                // SAFETY: [a, a + len) lies inside the slot's block, and no other thread is given
                // these elements (ranges are disjoint).
                unsafe {
                    let p = std::slice::from_raw_parts_mut(s.p.add(a), len);
                    let m = std::slice::from_raw_parts_mut(s.m.add(a), len);
                    let v = std::slice::from_raw_parts_mut(s.v.add(a), len);
                    let g = std::slice::from_raw_parts(s.g.add(a), len);
                    update_block(p, m, v, g, k);
                }
            }
            offset += s.n;
        }
    }

    fn update_block(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], k: &Coefficients) {
        for (((p, m), v), &g) in p.iter_mut().zip(m).zip(v).zip(g) {
            *m += k.one_minus_b1 * (g - *m);
            *v = k.b2 * *v + k.one_minus_b2 * g * g;
            let denom = v.sqrt() * k.inv_sqrt_c2 + k.eps;
            *p = *p * k.decay - k.step * *m / denom;
        }
    }
}
