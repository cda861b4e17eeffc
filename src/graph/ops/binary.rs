//! Elementwise arithmetic of two tensors with NumPy broadcasting.

use crate::backend::{Backend, BinaryOp, ReduceOp, UnaryOp};
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// `y = a + b`, `a − b` or `a · b`, broadcasting. Inputs: `[a, b]`.
#[derive(Debug, Clone)]
pub struct Binary(pub BinaryOp);

impl Binary {
    fn op_name(&self) -> &'static str {
        match self.0 {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
}

impl<B: Backend> Op<B> for Binary {
    fn name(&self) -> &'static str {
        self.op_name()
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs(self.op_name(), inputs, 2)?;
        if self.0 == BinaryOp::Div {
            return Err(Error::invalid(
                "div",
                "division is not a graph op; multiply by a reciprocal",
            ));
        }
        inputs[0]
            .broadcast(inputs[1])
            .ok_or_else(|| Error::shape(self.op_name(), "shapes do not broadcast", inputs))
    }

    /// A temporary of the output's shape for `mul`, of `b`'s shape for `sub`.
    fn workspace(&self, inputs: &[&Shape], output: &Shape) -> Vec<Shape> {
        match self.0 {
            BinaryOp::Mul => vec![output.clone()],
            BinaryOp::Sub => vec![inputs[1].clone()],
            _ => Vec::new(),
        }
    }

    /// Sums and differences need only shapes; a product needs the other factor.
    fn backward_reads_input(&self, _index: usize) -> bool {
        self.0 == BinaryOp::Mul
    }

    fn backward_reads_output(&self) -> bool {
        false
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let (a, b) = (cx.inputs[0], cx.inputs[1]);
        let (sa, sb) = (cx.input_shapes[0], cx.input_shapes[1]);
        cx.backend.binary(self.0, a, sa, b, sb, cx.output)
    }

    /// Broadcast axes are summed back: d(a+b) = (Σdy, Σdy); d(a−b) = (Σdy, −Σdy);
    /// d(a·b) = (Σ dy·b, Σ dy·a).
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        let be = cx.backend;
        let (sa, sb, sy) = (cx.input_shapes[0], cx.input_shapes[1], cx.output_shape);
        let dy = cx.grad_output;
        let mut grads = cx.grad_inputs.into_iter();
        let (da, db) = (grads.next().flatten(), grads.next().flatten());
        match self.0 {
            BinaryOp::Add => {
                if let Some(da) = da {
                    sum_to(be, dy, sy, sa, da)?;
                }
                if let Some(db) = db {
                    sum_to(be, dy, sy, sb, db)?;
                }
            }
            BinaryOp::Sub => {
                if let Some(da) = da {
                    sum_to(be, dy, sy, sa, da)?;
                }
                if let Some(db) = db {
                    let summed = &mut cx.workspace[0];
                    sum_to(be, dy, sy, sb, summed)?;
                    be.unary(UnaryOp::Neg, summed, db)?;
                }
            }
            BinaryOp::Mul => {
                let product = &mut cx.workspace[0];
                if let Some(da) = da {
                    be.binary(BinaryOp::Mul, dy, sy, cx.inputs[1], sb, product)?;
                    sum_to(be, product, sy, sa, da)?;
                }
                if let Some(db) = db {
                    be.binary(BinaryOp::Mul, dy, sy, cx.inputs[0], sa, product)?;
                    sum_to(be, product, sy, sb, db)?;
                }
            }
            BinaryOp::Div => unreachable!("rejected by output_shape"),
        }
        Ok(())
    }
}

/// Sums `x` (of `x_shape`) down to `to` over the broadcast axes; a plain copy when equal.
pub(crate) fn sum_to<B: Backend>(
    b: &B,
    x: &B::Buffer,
    x_shape: &Shape,
    to: &Shape,
    y: &mut B::Buffer,
) -> Result<()> {
    if x_shape == to {
        b.copy(x, y)
    } else {
        b.reduce(ReduceOp::Sum, x, x_shape, to, y)
    }
}
