//! AdamW (Loshchilov & Hutter) with its state in view: libtorch's optimizer keeps its moments
//! out of reach, and a run that resumes must continue with them, so the moments live here as
//! named tensors that a checkpoint saves and loads. Same update and defaults as
//! `torch.optim.AdamW`.

use std::collections::BTreeMap;

use anyhow::bail;
use tch::nn::VarStore;
use tch::Tensor;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// One trainable variable and its two moments.
struct Slot {
    name: String,
    /// Its learning rate as a share of the optimizer's (a parameter group's rate, in
    /// `torch.optim` terms).
    lr_scale: f64,
    variable: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

pub struct AdamW {
    slots: Vec<Slot>,
    lr: f64,
    weight_decay: f64,
    /// Updates taken since the moments were last zero.
    updates: u64,
}

/// The moments of every variable and the update count: what a checkpoint keeps.
pub struct AdamState {
    pub updates: u64,
    /// `exp_avg.<variable>` and `exp_avg_sq.<variable>`.
    pub moments: Vec<(String, Tensor)>,
}

impl AdamW {
    /// An optimizer over every trainable variable of `vs`, with zero moments; `lr_scale` gives
    /// each variable's share of the learning rate by its name.
    pub fn new(vs: &VarStore, weight_decay: f64, lr: f64, lr_scale: impl Fn(&str) -> f64) -> Self {
        let variables: BTreeMap<String, Tensor> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        let slots = variables
            .into_iter()
            .map(|(name, variable)| Slot {
                lr_scale: lr_scale(&name),
                name,
                exp_avg: variable.zeros_like(),
                exp_avg_sq: variable.zeros_like(),
                variable,
            })
            .collect();
        Self {
            slots,
            lr,
            weight_decay,
            updates: 0,
        }
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Clears the gradients, backpropagates `loss` and takes one update.
    pub fn backward_step(&mut self, loss: &Tensor) {
        for slot in &mut self.slots {
            let mut grad = slot.variable.grad();
            if grad.defined() {
                let _ = grad.zero_();
            }
        }
        loss.backward();
        self.step();
    }

    fn step(&mut self) {
        self.updates += 1;
        let t = self.updates as i32;
        let bias1 = 1.0 - BETA1.powi(t);
        let bias2_sqrt = (1.0 - BETA2.powi(t)).sqrt();
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let grad = slot.variable.grad();
                if !grad.defined() {
                    continue;
                }
                let lr = self.lr * slot.lr_scale;
                let step_size = lr / bias1;
                let _ = slot.variable.g_mul_scalar_(1.0 - lr * self.weight_decay);
                let _ = slot.exp_avg.g_mul_scalar_(BETA1);
                let _ = slot.exp_avg.g_add_(&(&grad * (1.0 - BETA1)));
                let _ = slot.exp_avg_sq.g_mul_scalar_(BETA2);
                let _ = slot.exp_avg_sq.g_add_(&(&grad * &grad * (1.0 - BETA2)));
                let denom = slot.exp_avg_sq.sqrt() / bias2_sqrt + EPS;
                let _ = slot.variable.g_sub_(&(&slot.exp_avg / denom * step_size));
            }
        });
    }

    /// A copy of the moments and the update count.
    pub fn state(&self) -> AdamState {
        let moments = self
            .slots
            .iter()
            .flat_map(|s| {
                [
                    (format!("exp_avg.{}", s.name), s.exp_avg.copy()),
                    (format!("exp_avg_sq.{}", s.name), s.exp_avg_sq.copy()),
                ]
            })
            .collect();
        AdamState {
            updates: self.updates,
            moments,
        }
    }

    /// Takes the moments and update count of `state`, which must name every variable.
    pub fn load_state(&mut self, state: &AdamState) -> anyhow::Result<()> {
        let saved: BTreeMap<&str, &Tensor> =
            state.moments.iter().map(|(n, t)| (n.as_str(), t)).collect();
        for slot in &mut self.slots {
            for (prefix, moment) in [
                ("exp_avg", &mut slot.exp_avg),
                ("exp_avg_sq", &mut slot.exp_avg_sq),
            ] {
                let key = format!("{prefix}.{}", slot.name);
                let Some(value) = saved.get(key.as_str()) else {
                    bail!("the optimizer state has no {key}");
                };
                if value.size() != moment.size() {
                    bail!(
                        "the optimizer state's {key} has shape {:?}, the network needs {:?}",
                        value.size(),
                        moment.size()
                    );
                }
                tch::no_grad(|| moment.copy_(value));
            }
        }
        self.updates = state.updates;
        Ok(())
    }
}
