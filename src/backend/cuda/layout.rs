//! Concatenation and split along the last axis: one strided column copy per part
//! (`kernels/layout.cu`).

use super::kernels::Module;
use super::{check_len, grid, launch, CudaBackend, CudaBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

/// Checks that the parts hold `rows × width` elements each and that the widths add up to the
/// whole tensor's `rows × total` elements; returns `total`.
fn check_parts<'a>(
    op: &'static str,
    rows: usize,
    parts: impl Iterator<Item = (&'a CudaBuffer, usize)>,
    whole: &CudaBuffer,
) -> Result<usize> {
    let overflow = || Error::invalid(op, "tensor size overflows");
    let mut total = 0usize;
    for (buf, width) in parts {
        check_len(op, buf, rows.checked_mul(width).ok_or_else(overflow)?)?;
        total = total.checked_add(width).ok_or_else(overflow)?;
    }
    check_len(op, whole, rows.checked_mul(total).ok_or_else(overflow)?)?;
    Ok(total)
}

impl CudaBackend {
    /// `dst[r, dst_off..dst_off + width] = src[r, src_off..src_off + width]` for every row.
    #[allow(clippy::too_many_arguments)]
    fn copy_columns(
        &self,
        src: u64,
        src_stride: usize,
        src_off: usize,
        dst: u64,
        dst_stride: usize,
        dst_off: usize,
        rows: usize,
        width: usize,
    ) -> Result<()> {
        let n = rows * width;
        if n == 0 {
            return Ok(());
        }
        let (ss, so, ds, dof, r, w) = (
            src_stride as u64,
            src_off as u64,
            dst_stride as u64,
            dst_off as u64,
            rows as u64,
            width as u64,
        );
        launch!(self, Module::Layout, "copy_columns", grid(n); src, ss, so, dst, ds, dof, r, w)
    }
}

impl LayoutOps for CudaBackend {
    fn concat_last(
        &self,
        rows: usize,
        parts: &[(&CudaBuffer, usize)],
        y: &mut CudaBuffer,
    ) -> Result<()> {
        let total = check_parts("concat_last", rows, parts.iter().copied(), y)?;
        let yp = self.ptr(y);
        let mut at = 0;
        for &(part, width) in parts {
            self.copy_columns(self.ptr(part), width, 0, yp, total, at, rows, width)?;
            at += width;
        }
        Ok(())
    }

    fn split_last(
        &self,
        rows: usize,
        x: &CudaBuffer,
        parts: &mut [(&mut CudaBuffer, usize)],
    ) -> Result<()> {
        let total = check_parts("split_last", rows, parts.iter().map(|(b, w)| (&**b, *w)), x)?;
        let xp = self.ptr(x);
        let mut at = 0;
        for (part, width) in parts.iter() {
            self.copy_columns(xp, total, at, self.ptr(part), *width, 0, rows, *width)?;
            at += *width;
        }
        Ok(())
    }
}
