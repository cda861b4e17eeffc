//! Concatenation and split along the last axis (`shaders/layout.wgsl`), one dispatch per part.

use super::{check_len, shader, word, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

const SHADER: Shader = shader!("layout.wgsl");

/// Checks that the parts hold `rows × width` elements each and that the widths add up to the
/// whole tensor's `rows × total` elements; returns `total`.
fn check_parts<'a>(
    op: &'static str,
    rows: usize,
    parts: impl Iterator<Item = (&'a WgpuBuffer, usize)>,
    whole: &WgpuBuffer,
) -> Result<usize> {
    let overflow = || Error::invalid(op, "tensor size overflows");
    let mut total = 0usize;
    for (buf, width) in parts {
        check_len(op, buf, rows.checked_mul(width).ok_or_else(overflow)?)?;
        total = total.checked_add(width).ok_or_else(overflow)?;
    }
    check_len(op, whole, rows.checked_mul(total).ok_or_else(overflow)?)?;
    word(op, whole.len)?;
    Ok(total)
}

impl LayoutOps for WgpuBackend {
    fn concat_last(
        &self,
        rows: usize,
        parts: &[(&WgpuBuffer, usize)],
        y: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "concat_last";
        let total = check_parts(OP, rows, parts.iter().copied(), y)?;
        let mut offset = 0;
        for &(part, width) in parts {
            self.dispatch(
                OP,
                Kernel::new(SHADER, "concat_part"),
                &[&part.buf],
                &[&y.buf],
                &[rows as u32, width as u32, total as u32, offset as u32],
                self.grid_for(OP, part.len)?,
            )?;
            offset += width;
        }
        Ok(())
    }

    fn split_last(
        &self,
        rows: usize,
        x: &WgpuBuffer,
        parts: &mut [(&mut WgpuBuffer, usize)],
    ) -> Result<()> {
        const OP: &str = "split_last";
        let total = check_parts(OP, rows, parts.iter().map(|(b, w)| (&**b, *w)), x)?;
        let mut offset = 0;
        for (part, width) in parts.iter() {
            self.dispatch(
                OP,
                Kernel::new(SHADER, "split_part"),
                &[&x.buf],
                &[&part.buf],
                &[rows as u32, *width as u32, total as u32, offset as u32],
                self.grid_for(OP, part.len)?,
            )?;
            offset += *width;
        }
        Ok(())
    }
}
