//! Softmax and log-softmax over the last axis (classes of N×C or of NHWC pixels).

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// `y = softmax(x)` (or `log_softmax` when `log`) over the last axis. Inputs: `[x]`.
#[derive(Debug, Clone)]
pub struct Softmax {
    pub log: bool,
}

fn rows_cols(x: &Shape) -> (usize, usize) {
    let cols = x.last();
    (x.numel() / cols.max(1), cols)
}

impl<B: Backend> Op<B> for Softmax {
    fn name(&self) -> &'static str {
        if self.log {
            "log_softmax"
        } else {
            "softmax"
        }
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs("softmax", inputs, 1)?;
        if inputs[0].rank() == 0 || inputs[0].last() == 0 {
            return Err(Error::shape(
                "softmax",
                "needs a non-empty last axis",
                inputs,
            ));
        }
        Ok(inputs[0].clone())
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let (rows, cols) = rows_cols(cx.input_shapes[0]);
        cx.backend
            .softmax(rows, cols, self.log, cx.inputs[0], cx.output)
    }

    /// softmax: dx = y·(dy − Σ dy·y); log-softmax: dx = dy − softmax(x)·Σ dy.
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        let (rows, cols) = rows_cols(cx.input_shapes[0]);
        if let Some(dx) = cx.grad_inputs.into_iter().next().flatten() {
            cx.backend
                .softmax_backward(rows, cols, self.log, cx.output, cx.grad_output, dx)?;
        }
        Ok(())
    }
}
