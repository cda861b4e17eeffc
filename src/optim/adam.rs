//! Adam and AdamW (PyTorch's `torch.optim.Adam` / `AdamW`).

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::backend::{AdamParams, Backend};
use crate::error::{Error, Result};
use crate::graph::{Executor, TensorId};
use crate::optim::{upload_buffer, zeros_like, Optimizer, OptimizerEntry, OptimizerState};

/// Adam hyper-parameters; the defaults are PyTorch's (betas 0.9 / 0.999, eps 1e-8).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW's decoupled weight decay.
    pub decoupled_weight_decay: bool,
}

impl AdamConfig {
    /// Adam with learning rate `lr` and PyTorch's other defaults.
    pub fn new(lr: f32) -> Self {
        AdamConfig {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
        }
    }

    /// AdamW with learning rate `lr` and PyTorch's default decay of 0.01.
    pub fn adamw(lr: f32) -> Self {
        AdamConfig {
            weight_decay: 0.01,
            decoupled_weight_decay: true,
            ..AdamConfig::new(lr)
        }
    }

    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

/// Adam with two moment buffers per trainable tensor and a step count per tensor.
pub struct Adam<B: Backend> {
    config: AdamConfig,
    moments: HashMap<TensorId, (B::Buffer, B::Buffer, u64)>,
}

impl<B: Backend> Adam<B> {
    /// Errors on betas outside [0, 1), a negative learning rate or a non-positive eps.
    pub fn new(config: AdamConfig) -> Result<Self> {
        let betas_ok = (0.0..1.0).contains(&config.beta1) && (0.0..1.0).contains(&config.beta2);
        let rates_ok = config.lr >= 0.0 && config.eps > 0.0 && config.weight_decay >= 0.0;
        if !betas_ok || !rates_ok {
            return Err(Error::invalid(
                "adam",
                format!("invalid hyper-parameters {config:?}"),
            ));
        }
        Ok(Adam {
            config,
            moments: HashMap::new(),
        })
    }
}

impl<B: Backend> Optimizer<B> for Adam<B> {
    fn step(&mut self, exec: &mut Executor<B>) -> Result<()> {
        let c = self.config;
        for id in exec.graph().trainable_ids() {
            if let Entry::Vacant(slot) = self.moments.entry(id) {
                slot.insert((zeros_like(exec, id)?, zeros_like(exec, id)?, 0));
            }
            let backend = exec.backend().clone();
            if let Some((param, grad)) = exec.param_and_grad(id)? {
                let (m, v, step) = self.moments.get_mut(&id).expect("inserted above");
                *step += 1;
                let params = AdamParams {
                    lr: c.lr,
                    beta1: c.beta1,
                    beta2: c.beta2,
                    eps: c.eps,
                    weight_decay: c.weight_decay,
                    decoupled_weight_decay: c.decoupled_weight_decay,
                    step: *step,
                };
                backend.adam_step(&params, param, grad, m, v)?;
            }
        }
        Ok(())
    }

    fn learning_rate(&self) -> f32 {
        self.config.lr
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.config.lr = lr;
    }

    fn export_state(&self, exec: &Executor<B>) -> Result<OptimizerState> {
        let mut entries = Vec::with_capacity(self.moments.len());
        for (&id, (m, v, step)) in &self.moments {
            let spec = &exec.graph().tensors()[id.index()];
            let backend = exec.backend();
            entries.push(OptimizerEntry {
                param: spec.name.clone(),
                step: *step,
                buffers: vec![
                    ("exp_avg".into(), backend.to_host(m, &spec.shape)?),
                    ("exp_avg_sq".into(), backend.to_host(v, &spec.shape)?),
                ],
            });
        }
        entries.sort_by(|a, b| a.param.cmp(&b.param));
        Ok(OptimizerState {
            kind: "adam".into(),
            entries,
        })
    }

    fn import_state(&mut self, exec: &Executor<B>, state: &OptimizerState) -> Result<()> {
        state.expect_kind("adam")?;
        let mut moments = HashMap::with_capacity(state.entries.len());
        for entry in &state.entries {
            let id = exec.graph().tensor_id(&entry.param)?;
            let m = upload_buffer(exec, entry, id, "exp_avg")?;
            let v = upload_buffer(exec, entry, id, "exp_avg_sq")?;
            moments.insert(id, (m, v, entry.step));
        }
        self.moments = moments;
        Ok(())
    }
}
