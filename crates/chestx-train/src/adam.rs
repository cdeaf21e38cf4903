//! Adam with decoupled weight decay (AdamW), written out so that its moment estimates can be saved
//! in a checkpoint and a resumed run continues exactly where it stopped.

use std::collections::BTreeMap;
use tch::Tensor;

pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Updates done so far (for bias correction).
    pub t: i64,
    params: Vec<(String, Tensor)>,
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
        let zeros = |t: &Tensor| t.zeros_like();
        let m = params.iter().map(|(n, t)| (n.clone(), zeros(t))).collect();
        let v = params.iter().map(|(n, t)| (n.clone(), zeros(t))).collect();
        Adam {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay,
            t: 0,
            params,
            m,
            v,
        }
    }

    pub fn zero_grad(&mut self) {
        for (_, p) in &mut self.params {
            p.zero_grad();
        }
    }

    pub fn step(&mut self) {
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        tch::no_grad(|| {
            for (name, p) in &mut self.params {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let m = self.m.get_mut(name).expect("moment for every parameter");
                let v = self.v.get_mut(name).expect("moment for every parameter");
                let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = v.g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                let update = (&*m / c1) / ((&*v / c2).sqrt() + self.eps);
                if self.weight_decay > 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - self.lr * self.weight_decay);
                }
                let _ = p.g_sub_(&(update * self.lr));
            }
        });
    }
}
