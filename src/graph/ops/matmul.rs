//! The product of a batch of row vectors with a weight matrix: the core of `dense`.

use crate::backend::{Backend, GemmParams};
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// `y[N, O] = x[N, F] · wᵀ` with `w` `[O, F]` (PyTorch's `Linear` layout). Inputs: `[x, w]`.
#[derive(Debug, Clone)]
pub struct MatMulWt;

fn dims(inputs: &[&Shape]) -> Result<(usize, usize, usize)> {
    match (inputs[0].dims(), inputs[1].dims()) {
        (&[n, f], &[o, wf]) if f == wf => Ok((n, f, o)),
        _ => Err(Error::shape(
            "matmul",
            "expected x [N, F] and w [O, F]",
            inputs,
        )),
    }
}

impl<B: Backend> Op<B> for MatMulWt {
    fn name(&self) -> &'static str {
        "matmul"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs("matmul", inputs, 2)?;
        let (n, _, o) = dims(inputs)?;
        Ok(Shape::new([n, o]))
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let (n, f, o) = dims(cx.input_shapes)?;
        let p = GemmParams {
            m: n,
            n: o,
            k: f,
            trans_a: false,
            trans_b: true,
            alpha: 1.0,
            beta: 0.0,
        };
        cx.backend.gemm(&p, cx.inputs[0], cx.inputs[1], cx.output)
    }

    /// dx[N, F] = dy[N, O] · w[O, F]; dw[O, F] = dyᵀ[O, N] · x[N, F].
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        let (n, f, o) = dims(cx.input_shapes)?;
        let mut grads = cx.grad_inputs.into_iter();
        let (dx, dw) = (grads.next().flatten(), grads.next().flatten());
        if let Some(dx) = dx {
            let p = GemmParams {
                m: n,
                n: f,
                k: o,
                trans_a: false,
                trans_b: false,
                alpha: 1.0,
                beta: 0.0,
            };
            cx.backend.gemm(&p, cx.grad_output, cx.inputs[1], dx)?;
        }
        if let Some(dw) = dw {
            let p = GemmParams {
                m: o,
                n: f,
                k: n,
                trans_a: true,
                trans_b: false,
                alpha: 1.0,
                beta: 0.0,
            };
            cx.backend.gemm(&p, cx.grad_output, cx.inputs[0], dw)?;
        }
        Ok(())
    }
}
