//! Bilinear resampling with PyTorch's source-index rules (`kernels/resample.cu`).

use super::kernels::Module;
use super::{check_len, grid, launch, CudaBackend, CudaBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

/// The source-coordinate scale of one axis, in f32 exactly as the CPU computes it.
fn scale(input: usize, output: usize, align_corners: bool) -> f32 {
    if align_corners {
        if output > 1 {
            (input - 1) as f32 / (output - 1) as f32
        } else {
            0.0
        }
    } else {
        input as f32 / output as f32
    }
}

/// Validates `p`; returns the `(input, output)` element counts.
fn check(op: &'static str, p: &UpsampleParams) -> Result<(usize, usize)> {
    p.validate(op)?;
    let numel = |dims: [usize; 4]| {
        dims.iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::invalid(op, format!("{p:?} overflows")))
    };
    for v in [p.in_h, p.in_w, p.out_h, p.out_w] {
        if v > i32::MAX as usize / 2 {
            return Err(Error::invalid(op, format!("{p:?} exceeds 32-bit sizes")));
        }
    }
    Ok((
        numel([p.batch, p.in_h, p.in_w, p.channels])?,
        numel([p.batch, p.out_h, p.out_w, p.channels])?,
    ))
}

impl CudaBackend {
    fn upsample(
        &self,
        kernel_is_forward: bool,
        p: &UpsampleParams,
        src: &CudaBuffer,
        dst: &mut CudaBuffer,
        n: usize,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let (sp, dp) = (self.ptr(src), self.ptr(dst));
        let (batch, in_h, in_w, channels, out_h, out_w) = (
            p.batch as u64,
            p.in_h as i32,
            p.in_w as i32,
            p.channels as u64,
            p.out_h as i32,
            p.out_w as i32,
        );
        let scale_h = scale(p.in_h, p.out_h, p.align_corners);
        let scale_w = scale(p.in_w, p.out_w, p.align_corners);
        let align = i32::from(p.align_corners);
        if kernel_is_forward {
            launch!(self, Module::Resample, "upsample_fwd", grid(n);
                sp, dp, batch, in_h, in_w, channels, out_h, out_w, scale_h, scale_w, align)
        } else {
            launch!(self, Module::Resample, "upsample_bwd", grid(n);
                sp, dp, batch, in_h, in_w, channels, out_h, out_w, scale_h, scale_w, align)
        }
    }
}

impl ResampleOps for CudaBackend {
    fn upsample_bilinear2d_forward(
        &self,
        p: &UpsampleParams,
        x: &CudaBuffer,
        y: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "upsample_bilinear2d_forward";
        let (n_in, n_out) = check(OP, p)?;
        check_len(OP, x, n_in)?;
        check_len(OP, y, n_out)?;
        self.upsample(true, p, x, y, n_out)
    }

    fn upsample_bilinear2d_backward(
        &self,
        p: &UpsampleParams,
        dy: &CudaBuffer,
        dx: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "upsample_bilinear2d_backward";
        let (n_in, n_out) = check(OP, p)?;
        check_len(OP, dy, n_out)?;
        check_len(OP, dx, n_in)?;
        self.upsample(false, p, dy, dx, n_in)
    }
}
