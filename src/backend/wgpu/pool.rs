//! Max pooling (`shaders/pool.wgsl`).

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
        self.dispatch(
            OP,
            Kernel::new(SHADER, "max_pool_forward"),
            &[&x.buf],
            &[&y.buf],
            &words,
            self.grid_for(OP, n_out)?,
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
        self.dispatch(
            OP,
            Kernel::new(SHADER, "max_pool_backward"),
            &[&x.buf, &dy.buf],
            &[&dx.buf],
            &words,
            self.grid_for(OP, n_in)?,
        )
    }
}
