//! Transposed 2-D convolution, computed as convolution backward-data (as cuDNN and the paper do).
//!
//! The weights are those of the convolution it transposes: `[in, kh, kw, out]`, where `in` is the
//! transposed convolution's input channels (PyTorch's `ConvTranspose2d` weight `[in, out, kh, kw]`
//! permuted).

use crate::backend::{Backend, Conv2dParams};
use crate::error::{Error, Result};
use crate::graph::ops::conv2d::ConvGeometry;
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// `y = conv_transpose(x, w)`. Inputs: `[x, w]`.
#[derive(Debug, Clone)]
pub struct ConvTranspose2d {
    pub geometry: ConvGeometry,
    /// Extra rows / columns on the bottom / right of the output (PyTorch's `output_padding`).
    pub output_padding: [usize; 2],
}

impl ConvTranspose2d {
    /// The convolution whose backward-data this is: its input is our output, its output our input.
    fn params(&self, x: &Shape, w: &Shape) -> Result<Conv2dParams> {
        const OP: &str = "conv_transpose2d";
        let [batch, h, wd, c_in] = x.nhwc(OP)?;
        let &[w_in, kh, kw, c_out] = w.dims() else {
            return Err(Error::shape(
                OP,
                "weights must be [in, kh, kw, out]",
                &[x, w],
            ));
        };
        if w_in != c_in {
            return Err(Error::shape(
                OP,
                format!("input has {c_in} channels, weights expect {w_in}"),
                &[x, w],
            ));
        }
        let g = &self.geometry;
        let bad_output_padding =
            (0..2).any(|a| self.output_padding[a] >= g.stride[a].max(g.dilation[a]));
        if g.stride.contains(&0) || g.dilation.contains(&0) || bad_output_padding {
            return Err(Error::invalid(
                OP,
                "stride and dilation must be at least 1, output padding below stride or dilation",
            ));
        }
        let size = |input: usize, axis: usize, k: usize| -> Result<usize> {
            let full = (input - 1) * g.stride[axis]
                + g.dilation[axis] * (k - 1)
                + 1
                + self.output_padding[axis];
            full.checked_sub(2 * g.padding[axis])
                .filter(|&s| s > 0)
                .ok_or_else(|| Error::shape(OP, "padding removes the whole output", &[x, w]))
        };
        let p = Conv2dParams {
            batch,
            in_h: size(h, 0, kh)?,
            in_w: size(wd, 1, kw)?,
            in_channels: c_out,
            out_channels: c_in,
            kernel: [kh, kw],
            stride: g.stride,
            padding: g.padding,
            dilation: g.dilation,
        };
        p.validate(OP)?;
        Ok(p)
    }
}

impl<B: Backend> Op<B> for ConvTranspose2d {
    fn name(&self) -> &'static str {
        "conv_transpose2d"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs("conv_transpose2d", inputs, 2)?;
        Ok(self.params(inputs[0], inputs[1])?.input_shape())
    }

    /// `x` for the filter gradient and `w` for the input gradient; not the output.
    fn backward_reads_output(&self) -> bool {
        false
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let p = self.params(cx.input_shapes[0], cx.input_shapes[1])?;
        cx.backend
            .conv2d_backward_data(&p, cx.inputs[0], cx.inputs[1], cx.output)
    }

    /// dx = conv(dy, w) (the transposed op's adjoint is the convolution); dw = dy ⋆ x
    /// (backward-filter of that convolution with input dy and output gradient x).
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        let p = self.params(cx.input_shapes[0], cx.input_shapes[1])?;
        let mut grads = cx.grad_inputs.into_iter();
        let (dx, dw) = (grads.next().flatten(), grads.next().flatten());
        if let Some(dx) = dx {
            cx.backend
                .conv2d_forward(&p, cx.grad_output, cx.inputs[1], dx)?;
        }
        if let Some(dw) = dw {
            cx.backend
                .conv2d_backward_filter(&p, cx.grad_output, cx.inputs[0], dw)?;
        }
        Ok(())
    }
}
