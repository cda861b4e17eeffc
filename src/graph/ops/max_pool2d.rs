//! Max pooling over NHWC input.

use crate::backend::{Backend, Pool2dParams};
use crate::error::Result;
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// `y = max_pool(x)`. Inputs: `[x]`.
#[derive(Debug, Clone)]
pub struct MaxPool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl MaxPool2d {
    fn params(&self, x: &Shape) -> Result<Pool2dParams> {
        let [batch, in_h, in_w, channels] = x.nhwc("max_pool2d")?;
        let p = Pool2dParams {
            batch,
            in_h,
            in_w,
            channels,
            kernel: self.kernel,
            stride: self.stride,
            padding: self.padding,
        };
        p.validate("max_pool2d")?;
        Ok(p)
    }
}

impl<B: Backend> Op<B> for MaxPool2d {
    fn name(&self) -> &'static str {
        "max_pool2d"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs("max_pool2d", inputs, 1)?;
        Ok(self.params(inputs[0])?.output_shape())
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let p = self.params(cx.input_shapes[0])?;
        cx.backend.max_pool2d_forward(&p, cx.inputs[0], cx.output)
    }

    /// dx routes each dy to the first maximum of its window.
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        let p = self.params(cx.input_shapes[0])?;
        if let Some(dx) = cx.grad_inputs.into_iter().next().flatten() {
            cx.backend
                .max_pool2d_backward(&p, cx.inputs[0], cx.output, cx.grad_output, dx)?;
        }
        Ok(())
    }
}
