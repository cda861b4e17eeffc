//! 2-D convolution: `y = conv(x, w)`, x NHWC, w `[out, kh, kw, in]`.

use crate::backend::{Backend, Conv2dParams};
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// Convolution geometry shared by [`Conv2d`] and [`super::ConvTranspose2d`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvGeometry {
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl ConvGeometry {
    /// The convolution taking `input` (NHWC) with `weight` (`[out, kh, kw, in]`).
    pub(crate) fn params(
        &self,
        op: &'static str,
        input: &Shape,
        weight: &Shape,
    ) -> Result<Conv2dParams> {
        let [batch, in_h, in_w, in_channels] = input.nhwc(op)?;
        let &[out_channels, kh, kw, w_in] = weight.dims() else {
            return Err(Error::shape(
                op,
                "weights must be [out, kh, kw, in]",
                &[input, weight],
            ));
        };
        if w_in != in_channels {
            return Err(Error::shape(
                op,
                format!("input has {in_channels} channels, weights expect {w_in}"),
                &[input, weight],
            ));
        }
        let p = Conv2dParams {
            batch,
            in_h,
            in_w,
            in_channels,
            out_channels,
            kernel: [kh, kw],
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        };
        p.validate(op)?;
        Ok(p)
    }
}

/// `y = conv(x, w)`. Inputs: `[x, w]`.
#[derive(Debug, Clone)]
pub struct Conv2d(pub ConvGeometry);

impl<B: Backend> Op<B> for Conv2d {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs("conv2d", inputs, 2)?;
        Ok(self
            .0
            .params("conv2d", inputs[0], inputs[1])?
            .output_shape())
    }

    /// `x` for the filter gradient and `w` for the input gradient; not the output.
    fn backward_reads_output(&self) -> bool {
        false
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let p = self
            .0
            .params("conv2d", cx.input_shapes[0], cx.input_shapes[1])?;
        cx.backend
            .conv2d_forward(&p, cx.inputs[0], cx.inputs[1], cx.output)
    }

    /// dx = conv_transpose(dy, w) (backward-data); dw = x ⋆ dy (backward-filter).
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        let p = self
            .0
            .params("conv2d", cx.input_shapes[0], cx.input_shapes[1])?;
        let mut grads = cx.grad_inputs.into_iter();
        let (dx, dw) = (grads.next().flatten(), grads.next().flatten());
        if let Some(dx) = dx {
            cx.backend
                .conv2d_backward_data(&p, cx.grad_output, cx.inputs[1], dx)?;
        }
        if let Some(dw) = dw {
            cx.backend
                .conv2d_backward_filter(&p, cx.inputs[0], cx.grad_output, dw)?;
        }
        Ok(())
    }
}
