//! Concatenation and split along the last axis (`shaders/layout.wgsl`), dispatches per part.

use std::ops::Range;

use super::window::{Arg, Work};
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

impl WgpuBackend {
    /// Copies every part into its columns of the whole tensor (`concat`) or back out, split by
    /// rows.
    fn parts<'a>(
        &self,
        op: &'static str,
        concat: bool,
        rows: usize,
        total: usize,
        parts: impl Iterator<Item = (&'a WgpuBuffer, usize)>,
        whole: &WgpuBuffer,
    ) -> Result<()> {
        let mut offset = 0;
        for (part, width) in parts {
            // Rows a..b of the part are the whole tensor's elements from column `offset` of row
            // a to column `offset + width` of row b − 1.
            let columns = |u: Range<usize>| {
                if u.is_empty() {
                    return 0..0;
                }
                u.start * total + offset..(u.end - 1) * total + offset + width
            };
            let (part_arg, whole_arg) =
                (Arg::per(&part.buf, width), Arg::map(&whole.buf, &columns));
            let (entry, src, dst) = if concat {
                ("concat_part", part_arg, whole_arg)
            } else {
                ("split_part", whole_arg, part_arg)
            };
            self.launch(
                op,
                Kernel::new(SHADER, entry),
                &[src],
                &[dst],
                &[word(op, width)?, word(op, total)?, word(op, offset)?],
                &Work::threads("row", rows, width),
            )?;
            offset += width;
        }
        Ok(())
    }
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
        self.parts(OP, true, rows, total, parts.iter().copied(), y)
    }

    fn split_last(
        &self,
        rows: usize,
        x: &WgpuBuffer,
        parts: &mut [(&mut WgpuBuffer, usize)],
    ) -> Result<()> {
        const OP: &str = "split_last";
        let parts = || parts.iter().map(|(b, w)| (&**b, *w));
        let total = check_parts(OP, rows, parts(), x)?;
        self.parts(OP, false, rows, total, parts(), x)
    }
}
