//! Softmax cross-entropy (and focal loss) of logits against class-index labels, over the last
//! axis: N×C with labels `[N]`, or NHWC pixels with labels `[N, H, W]`.

use crate::backend::{Backend, BinaryOp, CrossEntropyParams};
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// The scalar loss of [`crate::backend::LossOps::softmax_cross_entropy`]. Inputs: `[logits,
/// labels]` or `[logits, labels, pixel_weights]`; labels and pixel weights have the logits' shape
/// without its last axis (a trailing axis of 1 is accepted) and take no gradient.
#[derive(Debug, Clone)]
pub struct SoftmaxCrossEntropy {
    /// One weight per class (PyTorch's `weight`; the focal loss's α).
    pub class_weights: Option<Vec<f32>>,
    pub ignore_index: Option<u32>,
    /// Focal exponent γ; 0 is cross-entropy.
    pub gamma: f32,
}

/// `(rows, classes)` of `logits` after checking that `others` (labels, weights) hold one value
/// per row: their shape is the logits' without the last axis, optionally followed by a 1.
pub(crate) fn class_rows(
    op: &'static str,
    logits: &Shape,
    others: &[&Shape],
) -> Result<(usize, usize)> {
    if logits.rank() < 2 || logits.last() == 0 {
        return Err(Error::shape(
            op,
            "logits need a batch axis and a non-empty class axis",
            &[logits],
        ));
    }
    let row_dims = &logits.dims()[..logits.rank() - 1];
    for other in others {
        let d = other.dims();
        let fits = d == row_dims
            || (d.len() == row_dims.len() + 1
                && d[..row_dims.len()] == *row_dims
                && d[row_dims.len()] == 1);
        if !fits {
            return Err(Error::shape(
                op,
                "labels and weights need the logits' shape without the class axis",
                &[logits, other],
            ));
        }
    }
    Ok((logits.numel() / logits.last(), logits.last()))
}

impl SoftmaxCrossEntropy {
    fn params(&self, logits: &Shape) -> Result<CrossEntropyParams> {
        let (rows, classes) = class_rows("cross_entropy", logits, &[])?;
        Ok(CrossEntropyParams {
            rows,
            classes,
            ignore_index: self.ignore_index,
            gamma: self.gamma,
        })
    }
}

impl<B: Backend> Op<B> for SoftmaxCrossEntropy {
    fn name(&self) -> &'static str {
        if self.gamma == 0.0 {
            "cross_entropy"
        } else {
            "focal_loss"
        }
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        if !(2..=3).contains(&inputs.len()) {
            return Err(Error::shape(
                "cross_entropy",
                "expects [logits, labels] or [logits, labels, pixel_weights]",
                inputs,
            ));
        }
        let (_, classes) = class_rows("cross_entropy", inputs[0], &inputs[1..])?;
        self.params(inputs[0])?.validate("cross_entropy")?;
        if let Some(w) = &self.class_weights {
            if w.len() != classes {
                return Err(Error::invalid(
                    "cross_entropy",
                    format!("{} class weights for {classes} classes", w.len()),
                ));
            }
        }
        Ok(Shape::new(vec![]))
    }

    fn differentiable(&self, index: usize) -> bool {
        index == 0
    }

    /// `dL/dlogits`, written by the forward; the class weights on the device.
    fn workspace(&self, inputs: &[&Shape], _output: &Shape) -> Vec<Shape> {
        let mut ws = vec![inputs[0].clone()];
        if let Some(w) = &self.class_weights {
            ws.push(Shape::new([w.len()]));
        }
        ws
    }

    /// The gradient is computed by forward and kept in the workspace.
    fn backward_reads_input(&self, _index: usize) -> bool {
        false
    }

    fn backward_reads_output(&self) -> bool {
        false
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let p = self.params(cx.input_shapes[0])?;
        let (grad, rest) = cx.workspace.split_at_mut(1);
        let weights = match (&self.class_weights, rest.first_mut()) {
            (Some(w), Some(buf)) => {
                cx.backend.upload(w, buf)?;
                Some(&*buf)
            }
            _ => None,
        };
        cx.backend.softmax_cross_entropy(
            &p,
            cx.inputs[0],
            cx.inputs[1],
            weights,
            cx.inputs.get(2).copied(),
            cx.output,
            &mut grad[0],
        )
    }

    /// dlogits = dL · (the forward's dL/dlogits).
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        scale_saved_grad(cx)
    }
}

/// `dx[0] = dy · workspace[0]` for a scalar loss whose forward saved its gradient: the backward
/// of every fused loss.
pub(crate) fn scale_saved_grad<B: Backend>(cx: BackwardCtx<'_, B>) -> Result<()> {
    if let Some(dx) = cx.grad_inputs.into_iter().next().flatten() {
        cx.backend.binary(
            BinaryOp::Mul,
            &cx.workspace[0],
            cx.input_shapes[0],
            cx.grad_output,
            cx.output_shape,
            dx,
        )?;
    }
    Ok(())
}
