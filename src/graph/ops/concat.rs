//! Concatenation along the last axis (channels of NHWC): U-Net's skip connections.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::{Shape, TensorDesc};

/// `y = [x0, x1, ...]` along the last axis. Inputs: any number ≥ 1 of tensors that agree on
/// every other axis.
#[derive(Debug, Clone)]
pub struct Concat;

impl<B: Backend> Op<B> for Concat {
    fn name(&self) -> &'static str {
        "concat"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        let Some(first) = inputs.first() else {
            return Err(Error::invalid("concat", "needs at least one input"));
        };
        if first.rank() == 0 {
            return Err(Error::shape("concat", "cannot concatenate scalars", inputs));
        }
        let lead = &first.dims()[..first.rank() - 1];
        if inputs
            .iter()
            .any(|s| s.rank() != first.rank() || &s.dims()[..s.rank() - 1] != lead)
        {
            return Err(Error::shape(
                "concat",
                "inputs must agree on every axis but the last",
                inputs,
            ));
        }
        let mut dims = lead.to_vec();
        dims.push(inputs.iter().map(|s| s.last()).sum());
        Ok(Shape::new(dims))
    }

    /// Only shapes: backward splits the output gradient.
    fn backward_reads_input(&self, _index: usize) -> bool {
        false
    }

    fn backward_reads_output(&self) -> bool {
        false
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let rows = cx.output_shape.numel() / cx.output_shape.last().max(1);
        let parts: Vec<(&B::Buffer, usize)> = cx
            .inputs
            .iter()
            .zip(cx.input_shapes)
            .map(|(buf, shape)| (*buf, shape.last()))
            .collect();
        cx.backend.concat_last(rows, &parts, cx.output)
    }

    /// Each input's gradient is its slice of dy.
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        let rows = cx.output_shape.numel() / cx.output_shape.last().max(1);
        // The split kernel fills every part; inputs without a gradient get a temporary.
        let mut spares: Vec<Option<B::Buffer>> = Vec::with_capacity(cx.grad_inputs.len());
        for (grad, shape) in cx.grad_inputs.iter().zip(cx.input_shapes) {
            spares.push(match grad {
                Some(_) => None,
                None => Some(cx.backend.alloc(&TensorDesc::f32((*shape).clone()))?),
            });
        }
        let mut parts: Vec<(&mut B::Buffer, usize)> = cx
            .grad_inputs
            .into_iter()
            .zip(spares.iter_mut())
            .zip(cx.input_shapes)
            .map(|((grad, spare), shape)| {
                let buf = match grad {
                    Some(g) => g,
                    None => spare.as_mut().expect("allocated above"),
                };
                (buf, shape.last())
            })
            .collect();
        cx.backend.split_last(rows, cx.grad_output, &mut parts)
    }
}
