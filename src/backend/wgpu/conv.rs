//! Convolution forward, backward-data and backward-filter as implicit GEMMs
//! (`shaders/gemm.wgsl`, modes 1–3): the column matrix is gathered tile by tile in workgroup
//! memory, never stored.
//!
//! - forward: `Y[P, out] = cols(x)[P, K] × Wᵀ[K, out]`, `K = kh·kw·in`
//! - backward-data: `dX[pixels, in] = dYcols[pixels, kh·kw·out] × Wflip[kh·kw·out, in]`, where a
//!   row gathers the output gradients whose windows cover the input pixel (any stride)
//! - backward-filter: `dW[out, K] = dYᵀ[out, P] × cols(x)[P, K]`
//!
//! All three split by image rows (a sample's row of output or input pixels): forward and
//! backward-data compute the GEMM rows of a run of image rows, reading the rows of the other
//! tensor their windows cover; backward-filter adds the products over a run of output rows to
//! dW. The weights are bound whole.

use std::ops::Range;

use super::matmul::{GemmDispatch, GemmSplit};
use super::window::{sample_rows, Arg, Slide};
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

/// The kernel's window along the rows.
fn slide(p: &Conv2dParams) -> Slide {
    Slide {
        in_rows: p.in_h,
        out_rows: p.out_h(),
        stride: p.stride[0],
        pad: p.padding[0],
        extent: (p.kernel[0] - 1) * p.dilation[0] + 1,
    }
}

/// The elements of x that runs of output rows read.
fn input_rows(p: &Conv2dParams) -> impl Fn(Range<usize>) -> Range<usize> + '_ {
    let s = slide(p);
    move |u| {
        sample_rows(u, p.out_h(), p.in_h, p.in_w * p.in_channels, |r| {
            s.inputs(r..r + 1)
        })
    }
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
        let s = GemmSplit {
            depth: false,
            unit: "output row",
            units: p.batch * p.out_h(),
            per: p.out_w(),
        };
        let x_rows = input_rows(p);
        let (a, b) = (Arg::map(&x.buf, &x_rows), Arg::whole(&w.buf));
        let c = Arg::per(&y.buf, p.out_w() * p.out_channels);
        self.gemm_launch(OP, 1, [false; 2], &g, s, a, b, c)
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
        let s = GemmSplit {
            depth: false,
            unit: "input row",
            units: p.batch * p.in_h,
            per: p.in_w,
        };
        // An input row gathers the output rows whose windows cover it.
        let sl = slide(p);
        let dy_rows = |u| {
            sample_rows(u, p.in_h, p.out_h(), p.out_w() * p.out_channels, |r| {
                sl.outputs(r..r + 1)
            })
        };
        let (a, b) = (Arg::map(&dy.buf, &dy_rows), Arg::whole(&w.buf));
        let c = Arg::per(&dx.buf, p.in_w * p.in_channels);
        self.gemm_launch(OP, 2, [false; 2], &g, s, a, b, c)
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
        let s = GemmSplit {
            depth: true,
            unit: "output row",
            units: p.batch * p.out_h(),
            per: p.out_w(),
        };
        let x_rows = input_rows(p);
        let a = Arg::per(&dy.buf, p.out_w() * p.out_channels);
        let (b, c) = (Arg::map(&x.buf, &x_rows), Arg::whole(&dw.buf));
        self.gemm_launch(OP, 3, [false; 2], &g, s, a, b, c)
    }
}
