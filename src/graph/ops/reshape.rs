//! A new shape for the same elements in the same order (`flatten` and friends).

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// `y = x` viewed as `shape` (same number of elements). Inputs: `[x]`.
#[derive(Debug, Clone)]
pub struct Reshape {
    pub shape: Shape,
}

impl<B: Backend> Op<B> for Reshape {
    fn name(&self) -> &'static str {
        "reshape"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs("reshape", inputs, 1)?;
        if inputs[0].numel() != self.shape.numel() {
            return Err(Error::shape(
                "reshape",
                "the new shape must hold as many elements",
                &[inputs[0], &self.shape],
            ));
        }
        Ok(self.shape.clone())
    }

    /// Only shapes.
    fn backward_reads_input(&self, _index: usize) -> bool {
        false
    }

    fn backward_reads_output(&self) -> bool {
        false
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        cx.backend.copy(cx.inputs[0], cx.output)
    }

    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        if let Some(dx) = cx.grad_inputs.into_iter().next().flatten() {
            cx.backend.copy(cx.grad_output, dx)?;
        }
        Ok(())
    }
}
