//! Optimisers with PyTorch's update rules, each step one fused backend kernel per parameter.

mod adam;
mod schedule;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use schedule::LrSchedule;
pub use sgd::{Sgd, SgdConfig};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::graph::{Executor, TensorId};
use crate::tensor::{HostTensor, TensorDesc};

/// Something that updates an executor's trainable tensors from their gradients.
pub trait Optimizer<B: Backend> {
    /// One update of every trainable tensor the last backward reached.
    fn step(&mut self, exec: &mut Executor<B>) -> Result<()>;

    /// The learning rate used by the next step.
    fn learning_rate(&self) -> f32;

    /// Changes the learning rate (for schedules).
    fn set_learning_rate(&mut self, lr: f32);

    /// The optimiser's per-tensor state (momentum buffers, Adam moments), for checkpoints.
    fn export_state(&self, exec: &Executor<B>) -> Result<OptimizerState>;

    /// Restores state written by [`Optimizer::export_state`] for the same graph, so training
    /// resumes exactly.
    fn import_state(&mut self, exec: &Executor<B>, state: &OptimizerState) -> Result<()>;
}

/// An optimiser's state in host memory, named like PyTorch's optimiser state_dict
/// (`momentum_buffer`; `exp_avg`, `exp_avg_sq`, `step`).
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerState {
    /// `sgd` or `adam`.
    pub kind: String,
    pub entries: Vec<OptimizerEntry>,
}

/// The state of one trainable tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizerEntry {
    /// The parameter's name (`inc.double_conv.0.weight`).
    pub param: String,
    /// Updates applied to this tensor so far.
    pub step: u64,
    /// Buffers by role, shaped like the parameter.
    pub buffers: Vec<(String, HostTensor)>,
}

impl OptimizerState {
    /// Errors unless the state was written by an optimiser of `kind`.
    fn expect_kind(&self, kind: &str) -> Result<()> {
        if self.kind != kind {
            return Err(Error::invalid(
                "optimizer state",
                format!(
                    "state of a '{}' optimiser cannot resume '{kind}'",
                    self.kind
                ),
            ));
        }
        Ok(())
    }
}

/// Buffer `role` of `entry`, uploaded to a new device buffer after checking its shape.
fn upload_buffer<B: Backend>(
    exec: &Executor<B>,
    entry: &OptimizerEntry,
    id: TensorId,
    role: &str,
) -> Result<B::Buffer> {
    let expected = &exec.graph().tensors()[id.index()].shape;
    let (_, host) = entry
        .buffers
        .iter()
        .find(|(name, _)| name == role)
        .ok_or_else(|| {
            Error::invalid(
                "optimizer state",
                format!("'{}' has no {role}", entry.param),
            )
        })?;
    if host.shape() != expected {
        return Err(Error::shape(
            "optimizer state",
            format!("{role} of '{}'", entry.param),
            &[host.shape(), expected],
        ));
    }
    exec.backend().to_device(host)
}

/// A zero buffer shaped like tensor `id` (optimiser state).
fn zeros_like<B: Backend>(exec: &Executor<B>, id: TensorId) -> Result<B::Buffer> {
    let shape = exec.graph().tensors()[id.index()].shape.clone();
    exec.backend().alloc(&TensorDesc::f32(shape))
}
