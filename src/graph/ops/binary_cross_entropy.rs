//! Sigmoid binary cross-entropy of logits against targets in `[0, 1]` of the same shape.

use crate::backend::{Backend, BinaryCrossEntropyParams};
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// The scalar loss of [`crate::backend::LossOps::sigmoid_binary_cross_entropy`]. Inputs:
/// `[logits, targets]` or `[logits, targets, pixel_weights]`, all of one shape; targets and
/// weights take no gradient.
#[derive(Debug, Clone)]
pub struct SigmoidBinaryCrossEntropy {
    /// PyTorch's `pos_weight` (one value for all elements); 1 is the plain loss.
    pub pos_weight: f32,
}

impl SigmoidBinaryCrossEntropy {
    fn params(&self, logits: &Shape) -> BinaryCrossEntropyParams {
        BinaryCrossEntropyParams {
            len: logits.numel(),
            pos_weight: self.pos_weight,
        }
    }
}

impl<B: Backend> Op<B> for SigmoidBinaryCrossEntropy {
    fn name(&self) -> &'static str {
        "binary_cross_entropy_with_logits"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        const OP: &str = "binary_cross_entropy_with_logits";
        if !(2..=3).contains(&inputs.len()) || inputs[1..].iter().any(|s| *s != inputs[0]) {
            return Err(Error::shape(
                OP,
                "expects logits, targets and optional pixel weights of one shape",
                inputs,
            ));
        }
        self.params(inputs[0]).validate(OP)?;
        Ok(Shape::new(vec![]))
    }

    fn differentiable(&self, index: usize) -> bool {
        index == 0
    }

    /// `dL/dlogits`, written by the forward.
    fn workspace(&self, inputs: &[&Shape], _output: &Shape) -> Vec<Shape> {
        vec![inputs[0].clone()]
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        cx.backend.sigmoid_binary_cross_entropy(
            &self.params(cx.input_shapes[0]),
            cx.inputs[0],
            cx.inputs[1],
            cx.inputs.get(2).copied(),
            cx.output,
            &mut cx.workspace[0],
        )
    }

    /// dlogits = dL · (the forward's dL/dlogits).
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        super::cross_entropy::scale_saved_grad(cx)
    }
}
