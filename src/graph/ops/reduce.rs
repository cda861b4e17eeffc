//! Sum and mean over axes, down to a shape that broadcasts back to the input.

use crate::backend::{Backend, ReduceOp, UnaryOp};
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// `y = Σ x` or `mean x` over the axes where `shape` has 1 (or is missing). Inputs: `[x]`.
#[derive(Debug, Clone)]
pub struct Reduce {
    pub mean: bool,
    pub shape: Shape,
}

impl Reduce {
    fn kind(&self) -> ReduceOp {
        if self.mean {
            ReduceOp::Mean
        } else {
            ReduceOp::Sum
        }
    }
}

impl<B: Backend> Op<B> for Reduce {
    fn name(&self) -> &'static str {
        if self.mean {
            "mean"
        } else {
            "sum"
        }
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs("reduce", inputs, 1)?;
        if self.shape.broadcast(inputs[0]).as_ref() != Some(inputs[0]) {
            return Err(Error::shape(
                "reduce",
                "the reduced shape must broadcast back to the input",
                &[inputs[0], &self.shape],
            ));
        }
        Ok(self.shape.clone())
    }

    /// The scaled output gradient for `mean`.
    fn workspace(&self, _inputs: &[&Shape], output: &Shape) -> Vec<Shape> {
        if self.mean {
            vec![output.clone()]
        } else {
            Vec::new()
        }
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        cx.backend.reduce(
            self.kind(),
            cx.inputs[0],
            cx.input_shapes[0],
            cx.output_shape,
            cx.output,
        )
    }

    /// dx = dy repeated over the reduced axes (divided by their size for the mean).
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        let (sx, sy) = (cx.input_shapes[0], cx.output_shape);
        let Some(dx) = cx.grad_inputs.into_iter().next().flatten() else {
            return Ok(());
        };
        if self.mean {
            let count = (sx.numel() / sy.numel().max(1)) as f32;
            let scaled = &mut cx.workspace[0];
            let scale = UnaryOp::Affine {
                scale: 1.0 / count,
                shift: 0.0,
            };
            cx.backend.unary(scale, cx.grad_output, scaled)?;
            cx.backend.broadcast_to(scaled, sy, sx, dx)
        } else {
            cx.backend.broadcast_to(cx.grad_output, sy, sx, dx)
        }
    }
}
