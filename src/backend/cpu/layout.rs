//! Concatenation and split along the last axis (the channels of NHWC), by parallel row blocks.

use crate::backend::cpu::elementwise::{for_each_chunk_mut, rows_per_block};
use crate::backend::cpu::{check_len, CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

/// Checks that the parts hold `rows × width` elements each and that the widths add up to the
/// whole tensor's `rows × total` elements; returns `total`.
fn check_parts<'a>(
    op: &'static str,
    rows: usize,
    parts: impl Iterator<Item = (&'a CpuBuffer, usize)>,
    whole: &CpuBuffer,
) -> Result<usize> {
    let overflow = || Error::invalid(op, "tensor size overflows");
    let mut total = 0usize;
    for (buf, width) in parts {
        check_len(op, buf, rows.checked_mul(width).ok_or_else(overflow)?)?;
        total = total.checked_add(width).ok_or_else(overflow)?;
    }
    // The widths must add up to the whole tensor's width.
    check_len(op, whole, rows.checked_mul(total).ok_or_else(overflow)?)?;
    Ok(total)
}

impl LayoutOps for CpuBackend {
    fn concat_last(
        &self,
        rows: usize,
        parts: &[(&CpuBuffer, usize)],
        y: &mut CpuBuffer,
    ) -> Result<()> {
        const OP: &str = "concat_last";
        let total = check_parts(OP, rows, parts.iter().copied(), y)?;
        if total == 0 {
            return Ok(());
        }
        let block = rows_per_block(total);
        for_each_chunk_mut(&mut y.0, block * total, |i, yc| {
            let first = i * block;
            for (r, yr) in yc.chunks_exact_mut(total).enumerate() {
                let row = first + r;
                let mut at = 0;
                for &(part, width) in parts {
                    yr[at..at + width].copy_from_slice(&part.0[row * width..(row + 1) * width]);
                    at += width;
                }
            }
        });
        Ok(())
    }

    fn split_last(
        &self,
        rows: usize,
        x: &CpuBuffer,
        parts: &mut [(&mut CpuBuffer, usize)],
    ) -> Result<()> {
        const OP: &str = "split_last";
        let total = check_parts(OP, rows, parts.iter().map(|(b, w)| (&**b, *w)), x)?;
        let x = &x.0[..];
        // One part at a time, each written by parallel row blocks.
        let mut at = 0;
        for (part, width) in parts.iter_mut() {
            let (width, offset) = (*width, at);
            at += width;
            if width == 0 {
                continue;
            }
            let block = rows_per_block(width);
            for_each_chunk_mut(&mut part.0, block * width, |i, pc| {
                let first = i * block;
                for (r, pr) in pc.chunks_exact_mut(width).enumerate() {
                    let src = (first + r) * total + offset;
                    pr.copy_from_slice(&x[src..src + width]);
                }
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concat_then_split_round_trips() {
        let be = CpuBackend::new();
        let rows = 3000; // several parallel blocks
        let a = CpuBuffer((0..rows * 2).map(|v| v as f32).collect());
        let b = CpuBuffer((0..rows * 3).map(|v| -(v as f32)).collect());
        let empty = CpuBuffer(vec![]);
        let mut y = CpuBuffer(vec![0.0; rows * 5]);
        be.concat_last(rows, &[(&a, 2), (&empty, 0), (&b, 3)], &mut y)
            .unwrap();
        assert_eq!(&y.0[5..10], &[2.0, 3.0, -3.0, -4.0, -5.0]);

        let (mut a2, mut b2) = (
            CpuBuffer(vec![0.0; rows * 2]),
            CpuBuffer(vec![0.0; rows * 3]),
        );
        be.split_last(rows, &y, &mut [(&mut a2, 2), (&mut b2, 3)])
            .unwrap();
        assert_eq!((a2, b2), (a.clone(), b.clone()));

        // Widths that do not add up to the output are rejected.
        let mut short = CpuBuffer(vec![0.0; rows * 4]);
        assert!(be
            .concat_last(rows, &[(&a, 2), (&b, 3)], &mut short)
            .is_err());
        assert!(be.concat_last(rows, &[(&a, 3)], &mut short).is_err());
    }
}
