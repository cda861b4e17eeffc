//! Soft Dice loss over the softmax of logits against class-index labels.

use crate::backend::{Backend, SoftDiceParams};
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// The scalar loss of [`crate::backend::LossOps::soft_dice`]. Inputs: `[logits, labels]`, labels
/// of the logits' shape without the class axis; the labels take no gradient.
#[derive(Debug, Clone)]
pub struct SoftDice {
    /// Sums per image (first axis) and average the Dice terms over images; otherwise one sum
    /// over the whole batch.
    pub per_image: bool,
    pub eps: f32,
    pub include_background: bool,
    pub ignore_index: Option<u32>,
}

impl SoftDice {
    fn params(&self, logits: &Shape) -> Result<SoftDiceParams> {
        let (rows, classes) = super::cross_entropy::class_rows("soft_dice", logits, &[])?;
        let images = if self.per_image { logits.dim(0) } else { 1 };
        Ok(SoftDiceParams {
            images,
            pixels_per_image: rows.checked_div(images).unwrap_or(0),
            classes,
            ignore_index: self.ignore_index,
            eps: self.eps,
            include_background: self.include_background,
        })
    }
}

impl<B: Backend> Op<B> for SoftDice {
    fn name(&self) -> &'static str {
        "soft_dice"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        if inputs.len() != 2 {
            return Err(Error::shape(
                "soft_dice",
                "expects [logits, labels]",
                inputs,
            ));
        }
        super::cross_entropy::class_rows("soft_dice", inputs[0], &inputs[1..])?;
        self.params(inputs[0])?.validate("soft_dice")?;
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
        cx.backend.soft_dice(
            &self.params(cx.input_shapes[0])?,
            cx.inputs[0],
            cx.inputs[1],
            cx.output,
            &mut cx.workspace[0],
        )
    }

    /// dlogits = dL · (the forward's dL/dlogits).
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        super::cross_entropy::scale_saved_grad(cx)
    }
}
