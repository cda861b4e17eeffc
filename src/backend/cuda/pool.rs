//! Max pooling (`kernels/pool.cu`): own kernels rather than cuDNN's, so that ties and NaNs
//! behave exactly as on the CPU (the gradient goes to the first maximum of a window).

use cudarc::driver::DeviceRepr;

use super::kernels::Module;
use super::{check_len, grid, launch, CudaBackend, CudaBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

/// The geometry the kernels take (`struct PoolGeom` in kernels/pool.cu).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct PoolGeom {
    batch: u64,
    channels: u64,
    in_h: i32,
    in_w: i32,
    out_h: i32,
    out_w: i32,
    kh: i32,
    kw: i32,
    sh: i32,
    sw: i32,
    ph: i32,
    pw: i32,
}

// SAFETY: plain integers in the layout of the kernels' struct.
unsafe impl DeviceRepr for PoolGeom {}

/// Validates `p` and returns the geometry and the `(input, output)` element counts.
fn check(op: &'static str, p: &Pool2dParams, x: &CudaBuffer) -> Result<(PoolGeom, usize, usize)> {
    p.validate(op)?;
    let numel = |s: crate::tensor::Shape| {
        s.dims()
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::invalid(op, format!("{p:?} overflows")))
    };
    let (n_in, n_out) = (numel(p.input_shape())?, numel(p.output_shape())?);
    check_len(op, x, n_in)?;
    let int = |v: usize| {
        i32::try_from(v).map_err(|_| Error::invalid(op, format!("{p:?} exceeds 32-bit sizes")))
    };
    let g = PoolGeom {
        batch: p.batch as u64,
        channels: p.channels as u64,
        in_h: int(p.in_h)?,
        in_w: int(p.in_w)?,
        out_h: int(p.out_h())?,
        out_w: int(p.out_w())?,
        kh: int(p.kernel[0])?,
        kw: int(p.kernel[1])?,
        sh: int(p.stride[0])?,
        sw: int(p.stride[1])?,
        ph: int(p.padding[0])?,
        pw: int(p.padding[1])?,
    };
    int(p
        .in_h
        .checked_mul(p.in_w)
        .ok_or_else(|| Error::invalid(op, "image too large"))?)?;
    Ok((g, n_in, n_out))
}

/// Whether every index of the input and the output fits the kernels' 32-bit variant.
fn fits_u32(n_in: usize, n_out: usize) -> bool {
    n_in.max(n_out) <= u32::MAX as usize
}

impl PoolOps for CudaBackend {
    fn max_pool2d_forward(
        &self,
        p: &Pool2dParams,
        x: &CudaBuffer,
        y: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "max_pool2d_forward";
        let (g, n_in, n_out) = check(OP, p, x)?;
        check_len(OP, y, n_out)?;
        if n_out == 0 {
            return Ok(());
        }
        let (xp, yp) = (self.ptr(x), self.ptr(y));
        if fits_u32(n_in, n_out) {
            launch!(self, Module::Pool, "max_pool_fwd32", grid(n_out); xp, yp, g)
        } else {
            launch!(self, Module::Pool, "max_pool_fwd64", grid(n_out); xp, yp, g)
        }
    }

    fn max_pool2d_backward(
        &self,
        p: &Pool2dParams,
        x: &CudaBuffer,
        y: &CudaBuffer,
        dy: &CudaBuffer,
        dx: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "max_pool2d_backward";
        let (g, n_in, n_out) = check(OP, p, x)?;
        check_len(OP, y, n_out)?;
        check_len(OP, dy, n_out)?;
        check_len(OP, dx, n_in)?;
        if n_in == 0 {
            return Ok(());
        }
        let (xp, gp, dp) = (self.ptr(x), self.ptr(dy), self.ptr(dx));
        let tiled = p.kernel == p.stride
            && p.padding == [0, 0]
            && p.in_h == p.out_h() * p.kernel[0]
            && p.in_w == p.out_w() * p.kernel[1];
        match (tiled, fits_u32(n_in, n_out)) {
            (true, true) => {
                launch!(self, Module::Pool, "max_pool_bwd_tiled32", grid(n_out); xp, gp, dp, g)
            }
            (true, false) => {
                launch!(self, Module::Pool, "max_pool_bwd_tiled64", grid(n_out); xp, gp, dp, g)
            }
            (false, true) => {
                launch!(self, Module::Pool, "max_pool_bwd32", grid(n_in); xp, gp, dp, g)
            }
            (false, false) => {
                launch!(self, Module::Pool, "max_pool_bwd64", grid(n_in); xp, gp, dp, g)
            }
        }
    }
}
