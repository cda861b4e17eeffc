//! Max pooling (`shaders/pool.wgsl`), split by rows of the output (forward) or of the input
//! (backward).

use super::window::{sample_rows, Arg, Slide, Work};
use super::{check_len, product, shader, word, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::*;
use crate::error::Result;

const SHADER: Shader = shader!("pool.wgsl");

/// Validates `p` and `x`; returns the element counts of input and output and the uniform words.
fn check(op: &'static str, p: &Pool2dParams, x: &WgpuBuffer) -> Result<(usize, usize, Vec<u32>)> {
    p.validate(op)?;
    let n_in = product(op, p.input_shape().dims())?;
    let n_out = product(op, p.output_shape().dims())?;
    check_len(op, x, n_in)?;
    let mut words = Vec::new();
    for v in [
        p.batch,
        p.in_h,
        p.in_w,
        p.channels,
        p.out_h(),
        p.out_w(),
        p.kernel[0],
        p.kernel[1],
        p.stride[0],
        p.stride[1],
        p.padding[0],
        p.padding[1],
    ] {
        words.push(word(op, v)?);
    }
    // Indices are computed in 32 bits.
    word(op, n_in)?;
    word(op, n_out)?;
    Ok((n_in, n_out, words))
}

/// The pooling window along the rows.
fn slide(p: &Pool2dParams) -> Slide {
    Slide {
        in_rows: p.in_h,
        out_rows: p.out_h(),
        stride: p.stride[0],
        pad: p.padding[0],
        extent: p.kernel[0],
    }
}

impl PoolOps for WgpuBackend {
    fn max_pool2d_forward(
        &self,
        p: &Pool2dParams,
        x: &WgpuBuffer,
        y: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "max_pool2d_forward";
        let (_, n_out, words) = check(OP, p, x)?;
        check_len(OP, y, n_out)?;
        let (s, in_row, out_row) = (slide(p), p.in_w * p.channels, p.out_w() * p.channels);
        let x_rows = |u| sample_rows(u, p.out_h(), p.in_h, in_row, |r| s.inputs(r..r + 1));
        self.launch(
            OP,
            Kernel::new(SHADER, "max_pool_forward"),
            &[Arg::map(&x.buf, &x_rows)],
            &[Arg::per(&y.buf, out_row)],
            &words,
            &Work::threads("row", p.batch * p.out_h(), out_row),
        )
    }

    fn max_pool2d_backward(
        &self,
        p: &Pool2dParams,
        x: &WgpuBuffer,
        y: &WgpuBuffer,
        dy: &WgpuBuffer,
        dx: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "max_pool2d_backward";
        let (n_in, n_out, words) = check(OP, p, x)?;
        check_len(OP, y, n_out)?;
        check_len(OP, dy, n_out)?;
        check_len(OP, dx, n_in)?;
        // An input row gathers from the windows that cover it, each read whole for its argmax.
        let (s, in_row, out_row) = (slide(p), p.in_w * p.channels, p.out_w() * p.channels);
        let x_rows = |u| sample_rows(u, p.in_h, p.in_h, in_row, |r| s.inputs(s.outputs(r..r + 1)));
        let dy_rows = |u| sample_rows(u, p.in_h, p.out_h(), out_row, |r| s.outputs(r..r + 1));
        self.launch(
            OP,
            Kernel::new(SHADER, "max_pool_backward"),
            &[Arg::map(&x.buf, &x_rows), Arg::map(&dy.buf, &dy_rows)],
            &[Arg::per(&dx.buf, in_row)],
            &words,
            &Work::threads("row", p.batch * p.in_h, in_row),
        )
    }
}
