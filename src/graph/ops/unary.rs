//! Elementwise functions of one tensor (ReLU, sigmoid, tanh, exp, log, ...).

use crate::backend::{Backend, UnaryOp};
use crate::error::Result;
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// `y = f(x)`. Inputs: `[x]`.
#[derive(Debug, Clone)]
pub struct Unary(pub UnaryOp);

impl<B: Backend> Op<B> for Unary {
    fn name(&self) -> &'static str {
        match self.0 {
            UnaryOp::Relu => "relu",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Square => "square",
            UnaryOp::Affine { .. } => "affine",
        }
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs("unary", inputs, 1)?;
        Ok(inputs[0].clone())
    }

    /// The one of input and output the derivative is computed from.
    fn backward_reads_input(&self, _index: usize) -> bool {
        !self.0.backward_from_output()
    }

    fn backward_reads_output(&self) -> bool {
        self.0.backward_from_output()
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        cx.backend.unary(self.0, cx.inputs[0], cx.output)
    }

    /// dx = dy · f'(x).
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        let saved = match self.0.backward_from_output() {
            true => cx.output,
            false => cx.inputs[0],
        };
        if let Some(dx) = cx.grad_inputs.into_iter().next().flatten() {
            cx.backend
                .unary_backward(self.0, saved, cx.grad_output, dx)?;
        }
        Ok(())
    }
}
