//! Per-image confusion counts of argmax predictions against labels, for the metrics.

use crate::backend::{Backend, ConfusionParams};
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// `[N, C, C]` counts of (true class, argmax class) per image (first axis) from
/// [`crate::backend::LossOps::confusion_matrix`]. Inputs: `[logits, labels]`, labels of the
/// logits' shape without the class axis. Not differentiable.
#[derive(Debug, Clone)]
pub struct ConfusionCounts {
    pub ignore_index: Option<u32>,
}

fn params(logits: &Shape, ignore_index: Option<u32>) -> Result<ConfusionParams> {
    let (rows, classes) = super::cross_entropy::class_rows("confusion_matrix", logits, &[])?;
    let images = logits.dim(0);
    Ok(ConfusionParams {
        images,
        pixels_per_image: rows.checked_div(images).unwrap_or(0),
        classes,
        ignore_index,
    })
}

impl<B: Backend> Op<B> for ConfusionCounts {
    fn name(&self) -> &'static str {
        "confusion_matrix"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        if inputs.len() != 2 {
            return Err(Error::shape(
                "confusion_matrix",
                "expects [logits, labels]",
                inputs,
            ));
        }
        super::cross_entropy::class_rows("confusion_matrix", inputs[0], &inputs[1..])?;
        let p = params(inputs[0], self.ignore_index)?;
        p.validate("confusion_matrix")?;
        Ok(Shape::new([p.images, p.classes, p.classes]))
    }

    fn differentiable(&self, _index: usize) -> bool {
        false
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let p = params(cx.input_shapes[0], self.ignore_index)?;
        cx.backend
            .confusion_matrix(&p, cx.inputs[0], cx.inputs[1], cx.output)
    }

    /// Counts take no gradient.
    fn backward(&self, _cx: BackwardCtx<'_, B>) -> Result<()> {
        Ok(())
    }
}
