//! Stochastic gradient descent with momentum, dampening, Nesterov and weight decay (PyTorch's
//! `torch.optim.SGD`).

use std::collections::HashMap;

use crate::backend::{Backend, SgdParams};
use crate::error::{Error, Result};
use crate::graph::{Executor, TensorId};
use crate::optim::{upload_buffer, zeros_like, Optimizer, OptimizerEntry, OptimizerState};

/// SGD hyper-parameters; the defaults are PyTorch's (momentum 0, no decay).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdConfig {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

impl SgdConfig {
    /// Plain SGD with learning rate `lr`.
    pub fn new(lr: f32) -> Self {
        SgdConfig {
            lr,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }

    pub fn momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }

    pub fn weight_decay(mut self, weight_decay: f32) -> Self {
        self.weight_decay = weight_decay;
        self
    }
}

/// SGD with one momentum buffer per trainable tensor.
pub struct Sgd<B: Backend> {
    config: SgdConfig,
    momentum: HashMap<TensorId, B::Buffer>,
}

impl<B: Backend> Sgd<B> {
    /// Errors on a negative learning rate or momentum, or Nesterov without momentum.
    pub fn new(config: SgdConfig) -> Result<Self> {
        if !(config.lr >= 0.0 && config.momentum >= 0.0 && config.weight_decay >= 0.0) {
            return Err(Error::invalid(
                "sgd",
                "lr, momentum and weight decay must be ≥ 0",
            ));
        }
        if config.nesterov && (config.momentum <= 0.0 || config.dampening != 0.0) {
            return Err(Error::invalid(
                "sgd",
                "Nesterov needs momentum > 0 and no dampening",
            ));
        }
        Ok(Sgd {
            config,
            momentum: HashMap::new(),
        })
    }
}

impl<B: Backend> Optimizer<B> for Sgd<B> {
    fn step(&mut self, exec: &mut Executor<B>) -> Result<()> {
        let c = self.config;
        for id in exec.graph().trainable_ids() {
            // PyTorch starts the momentum buffer at the first gradient a tensor receives.
            let first_step = !self.momentum.contains_key(&id);
            let fresh = if first_step {
                Some(zeros_like(exec, id)?)
            } else {
                None
            };
            let params = SgdParams {
                lr: c.lr,
                momentum: c.momentum,
                dampening: c.dampening,
                weight_decay: c.weight_decay,
                nesterov: c.nesterov,
                first_step,
            };
            let backend = exec.backend().clone();
            let Some((param, grad)) = exec.param_and_grad(id)? else {
                continue;
            };
            let buf = match fresh {
                Some(zeros) => self.momentum.entry(id).or_insert(zeros),
                None => self.momentum.get_mut(&id).expect("present when not fresh"),
            };
            backend.sgd_step(&params, param, grad, buf)?;
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
        let mut entries = Vec::with_capacity(self.momentum.len());
        for (&id, buf) in &self.momentum {
            let spec = &exec.graph().tensors()[id.index()];
            entries.push(OptimizerEntry {
                param: spec.name.clone(),
                step: 0,
                buffers: vec![(
                    "momentum_buffer".into(),
                    exec.backend().to_host(buf, &spec.shape)?,
                )],
            });
        }
        entries.sort_by(|a, b| a.param.cmp(&b.param));
        Ok(OptimizerState {
            kind: "sgd".into(),
            entries,
        })
    }

    fn import_state(&mut self, exec: &Executor<B>, state: &OptimizerState) -> Result<()> {
        state.expect_kind("sgd")?;
        let mut momentum = HashMap::with_capacity(state.entries.len());
        for entry in &state.entries {
            let id = exec.graph().tensor_id(&entry.param)?;
            momentum.insert(id, upload_buffer(exec, entry, id, "momentum_buffer")?);
        }
        self.momentum = momentum;
        Ok(())
    }
}
