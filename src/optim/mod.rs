//! Optimisers with PyTorch's update rules, each step one fused backend kernel per parameter.

mod adam;
mod sgd;

pub use adam::{Adam, AdamConfig};
pub use sgd::{Sgd, SgdConfig};

use crate::backend::Backend;
use crate::error::Result;
use crate::graph::{Executor, TensorId};
use crate::tensor::TensorDesc;

/// Something that updates an executor's trainable tensors from their gradients.
pub trait Optimizer<B: Backend> {
    /// One update of every trainable tensor the last backward reached.
    fn step(&mut self, exec: &mut Executor<B>) -> Result<()>;

    /// The learning rate used by the next step.
    fn learning_rate(&self) -> f32;

    /// Changes the learning rate (for schedules).
    fn set_learning_rate(&mut self, lr: f32);
}

/// A zero buffer shaped like tensor `id` (optimiser state).
fn zeros_like<B: Backend>(exec: &Executor<B>, id: TensorId) -> Result<B::Buffer> {
    let shape = exec.graph().tensors()[id.index()].shape.clone();
    exec.backend().alloc(&TensorDesc::f32(shape))
}
