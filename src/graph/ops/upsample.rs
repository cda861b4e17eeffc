//! Bilinear upsampling of NHWC input.

use crate::backend::{Backend, UpsampleParams};
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// `y = bilinear(x)` with the spatial size multiplied by `scale`. Inputs: `[x]`.
#[derive(Debug, Clone)]
pub struct UpsampleBilinear2d {
    pub scale: usize,
    pub align_corners: bool,
}

impl UpsampleBilinear2d {
    fn params(&self, x: &Shape) -> Result<UpsampleParams> {
        let [batch, in_h, in_w, channels] = x.nhwc("upsample_bilinear2d")?;
        if self.scale == 0 {
            return Err(Error::invalid(
                "upsample_bilinear2d",
                "scale must be at least 1",
            ));
        }
        let p = UpsampleParams {
            batch,
            in_h,
            in_w,
            channels,
            out_h: in_h * self.scale,
            out_w: in_w * self.scale,
            align_corners: self.align_corners,
        };
        p.validate("upsample_bilinear2d")?;
        Ok(p)
    }
}

impl<B: Backend> Op<B> for UpsampleBilinear2d {
    fn name(&self) -> &'static str {
        "upsample_bilinear2d"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs("upsample_bilinear2d", inputs, 1)?;
        Ok(self.params(inputs[0])?.output_shape())
    }

    /// Only shapes: the taps depend on them alone.
    fn backward_reads_input(&self, _index: usize) -> bool {
        false
    }

    fn backward_reads_output(&self) -> bool {
        false
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let p = self.params(cx.input_shapes[0])?;
        cx.backend
            .upsample_bilinear2d_forward(&p, cx.inputs[0], cx.output)
    }

    /// dx gathers dy with the interpolation weights (the forward's transpose).
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        let p = self.params(cx.input_shapes[0])?;
        if let Some(dx) = cx.grad_inputs.into_iter().next().flatten() {
            cx.backend
                .upsample_bilinear2d_backward(&p, cx.grad_output, dx)?;
        }
        Ok(())
    }
}
