//! Batch normalisation layer.

use crate::backend::Backend;
use crate::error::Result;
use crate::graph::ops::BatchNorm;
use crate::graph::{Graph, Init, NodeId};

/// PyTorch's `BatchNorm2d` defaults: eps 1e-5, momentum 0.1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormConfig {
    pub eps: f32,
    pub momentum: f32,
}

impl Default for BatchNormConfig {
    fn default() -> Self {
        BatchNormConfig {
            eps: 1e-5,
            momentum: 0.1,
        }
    }
}

/// Batch normalisation over the channels of `x` (NHWC, or N×C). Parameters `{name}.weight` (ones)
/// and `{name}.bias` (zeros); state `{name}.running_mean` (zeros) and `{name}.running_var` (ones).
/// Training normalises with the biased batch variance and updates the running variance with the
/// unbiased one, as PyTorch.
pub fn batchnorm2d<B: Backend>(
    g: &mut Graph<B>,
    name: &str,
    x: NodeId,
    cfg: BatchNormConfig,
) -> Result<NodeId> {
    batch_norm(g, name, x, cfg, false)
}

/// [`batchnorm2d`] followed by a ReLU, as one op: one pass over the tensor each way instead of
/// two, and, where the executor keeps only some values, one stored tensor (the input) instead of
/// two (the ReLU's output is recomputed for the backward that reads it).
pub fn batchnorm2d_relu<B: Backend>(
    g: &mut Graph<B>,
    name: &str,
    x: NodeId,
    cfg: BatchNormConfig,
) -> Result<NodeId> {
    batch_norm(g, name, x, cfg, true)
}

fn batch_norm<B: Backend>(
    g: &mut Graph<B>,
    name: &str,
    x: NodeId,
    cfg: BatchNormConfig,
    relu: bool,
) -> Result<NodeId> {
    let channels = g.shape(x)?.last();
    let gamma = g.param(&format!("{name}.weight"), [channels], Init::Ones)?;
    let beta = g.param(&format!("{name}.bias"), [channels], Init::Zeros)?;
    let running_mean = g.state(&format!("{name}.running_mean"), [channels], Init::Zeros)?;
    let running_var = g.state(&format!("{name}.running_var"), [channels], Init::Ones)?;
    let op = BatchNorm {
        eps: cfg.eps,
        momentum: cfg.momentum,
        relu,
        running_mean,
        running_var,
    };
    g.apply(op, &[x, gamma, beta])
}
