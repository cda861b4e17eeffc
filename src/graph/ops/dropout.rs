//! Inverted dropout with a counter-based mask, the same on every backend for the same seed.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Mode, Op};
use crate::tensor::Shape;

/// Training: zeroes each element with probability `p` and scales the rest by `1/(1−p)`;
/// evaluation: identity. Inputs: `[x]`.
#[derive(Debug, Clone)]
pub struct Dropout {
    pub p: f32,
}

impl<B: Backend> Op<B> for Dropout {
    fn name(&self) -> &'static str {
        "dropout"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs("dropout", inputs, 1)?;
        if !(0.0..1.0).contains(&self.p) {
            return Err(Error::invalid(
                "dropout",
                format!("p = {} is not in [0, 1)", self.p),
            ));
        }
        Ok(inputs[0].clone())
    }

    /// The mask is drawn again from the node's seed.
    fn backward_reads_input(&self, _index: usize) -> bool {
        false
    }

    fn backward_reads_output(&self) -> bool {
        false
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        match cx.mode {
            Mode::Train => cx
                .backend
                .dropout_forward(self.p, cx.seed, cx.inputs[0], cx.output),
            Mode::Eval => cx.backend.copy(cx.inputs[0], cx.output),
        }
    }

    /// dx = dy with the forward's mask (regenerated from the same seed).
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        if let Some(dx) = cx.grad_inputs.into_iter().next().flatten() {
            match cx.mode {
                Mode::Train => cx
                    .backend
                    .dropout_backward(self.p, cx.seed, cx.grad_output, dx)?,
                Mode::Eval => cx.backend.copy(cx.grad_output, dx)?,
            }
        }
        Ok(())
    }
}
