//! Convolution forward, backward-data and backward-filter as implicit GEMMs
//! (`shaders/gemm.wgsl`, modes 1–3): the column matrix is gathered tile by tile in workgroup
//! memory, never stored.
//!
//! - forward: `Y[P, out] = cols(x)[P, K] × Wᵀ[K, out]`, `K = kh·kw·in`
//! - backward-data: `dX[pixels, in] = dYcols[pixels, kh·kw·out] × Wflip[kh·kw·out, in]`, where a
//!   row gathers the output gradients whose windows cover the input pixel (any stride)
//! - backward-filter: `dW[out, K] = dYᵀ[out, P] × cols(x)[P, K]`

use super::matmul::GemmDispatch;
use super::{check_len, WgpuBackend, WgpuBuffer};
use crate::backend::*;
use crate::error::Result;

/// Validates `p` and the buffer lengths (input, weights, output) and returns the geometry words.
fn check(
    op: &'static str,
    p: &Conv2dParams,
    x: &WgpuBuffer,
    w: &WgpuBuffer,
    y: &WgpuBuffer,
) -> Result<[usize; 15]> {
    p.validate(op)?;
    check_len(op, x, super::product(op, p.input_shape().dims())?)?;
    check_len(op, w, super::product(op, p.weight_shape().dims())?)?;
    check_len(op, y, super::product(op, p.output_shape().dims())?)?;
    Ok([
        p.batch,
        p.in_h,
        p.in_w,
        p.in_channels,
        p.out_channels,
        p.kernel[0],
        p.kernel[1],
        p.stride[0],
        p.stride[1],
        p.padding[0],
        p.padding[1],
        p.dilation[0],
        p.dilation[1],
        p.out_h(),
        p.out_w(),
    ])
}

impl ConvOps for WgpuBackend {
    fn conv2d_forward(
        &self,
        p: &Conv2dParams,
        x: &WgpuBuffer,
        w: &WgpuBuffer,
        y: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "conv2d_forward";
        let conv = check(OP, p, x, w, y)?;
        let g = GemmDispatch {
            m: p.batch * p.out_h() * p.out_w(),
            n: p.out_channels,
            k: p.kernel[0] * p.kernel[1] * p.in_channels,
            alpha: 1.0,
            beta: 0.0,
            conv,
        };
        self.gemm_dispatch(OP, 1, [false; 2], &g, &x.buf, &w.buf, &y.buf)
    }

    fn conv2d_backward_data(
        &self,
        p: &Conv2dParams,
        dy: &WgpuBuffer,
        w: &WgpuBuffer,
        dx: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "conv2d_backward_data";
        let conv = check(OP, p, dx, w, dy)?;
        let g = GemmDispatch {
            m: p.batch * p.in_h * p.in_w,
            n: p.in_channels,
            k: p.kernel[0] * p.kernel[1] * p.out_channels,
            alpha: 1.0,
            beta: 0.0,
            conv,
        };
        self.gemm_dispatch(OP, 2, [false; 2], &g, &dy.buf, &w.buf, &dx.buf)
    }

    fn conv2d_backward_filter(
        &self,
        p: &Conv2dParams,
        x: &WgpuBuffer,
        dy: &WgpuBuffer,
        dw: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "conv2d_backward_filter";
        let conv = check(OP, p, x, dw, dy)?;
        let g = GemmDispatch {
            m: p.out_channels,
            n: p.kernel[0] * p.kernel[1] * p.in_channels,
            k: p.batch * p.out_h() * p.out_w(),
            alpha: 1.0,
            beta: 0.0,
            conv,
        };
        self.gemm_dispatch(OP, 3, [false; 2], &g, &dy.buf, &x.buf, &dw.buf)
    }
}
