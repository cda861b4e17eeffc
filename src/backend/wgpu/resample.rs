//! Bilinear resampling (`shaders/resample.wgsl`); the taps are computed here, in f32, exactly as
//! the CPU backend computes them, and uploaded as a table. Split by rows of the output (forward)
//! or of the input (backward).

use std::ops::Range;

use super::window::{sample_rows, Arg, Work};
use super::{check_len, product, shader, word, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::plan::bilinear_taps;
use crate::backend::*;
use crate::error::Result;

const SHADER: Shader = shader!("resample.wgsl");

/// `(i0, i1, l0, l1)` of every output position along an axis (PyTorch's rules).
fn taps(input: usize, output: usize, align_corners: bool) -> Vec<(u32, u32, f32, f32)> {
    bilinear_taps(input, output, align_corners)
        .into_iter()
        .map(|t| (t.i0 as u32, t.i1 as u32, t.l0, t.l1))
        .collect()
}

/// For every input position, the `(output, weight)` pairs that read it, as CSR: offsets
/// (`input + 1`) and entries (2 words each).
fn readers(input: usize, taps: &[(u32, u32, f32, f32)]) -> (Vec<u32>, Vec<u32>) {
    let mut lists = vec![Vec::new(); input];
    for (o, &(i0, i1, l0, l1)) in taps.iter().enumerate() {
        lists[i0 as usize].push((o as u32, l0));
        lists[i1 as usize].push((o as u32, l1));
    }
    let mut offsets = vec![0u32];
    let mut entries = Vec::new();
    for list in lists {
        for (o, w) in list {
            entries.push(o);
            entries.push(w.to_bits());
        }
        offsets.push((entries.len() / 2) as u32);
    }
    (offsets, entries)
}

/// For every input position, a range of the output positions that read it, growing with the
/// position (suffix minima of the first readers, prefix maxima of the last).
fn reader_ranges(input: usize, output: usize, taps: &[(u32, u32, f32, f32)]) -> Vec<Range<usize>> {
    let (mut lo, mut hi) = (vec![output; input], vec![0; input]);
    for (o, &(i0, i1, _, _)) in taps.iter().enumerate() {
        for i in [i0 as usize, i1 as usize] {
            lo[i] = lo[i].min(o);
            hi[i] = hi[i].max(o + 1);
        }
    }
    for i in (1..input).rev() {
        lo[i - 1] = lo[i - 1].min(lo[i]);
    }
    for i in 1..input {
        hi[i] = hi[i].max(hi[i - 1]);
    }
    lo.into_iter().zip(hi).map(|(a, b)| a..b.max(a)).collect()
}

fn check(op: &'static str, p: &UpsampleParams) -> Result<(usize, usize, Vec<u32>)> {
    p.validate(op)?;
    let n_in = product(op, p.input_shape().dims())?;
    let n_out = product(op, p.output_shape().dims())?;
    word(op, n_in)?;
    word(op, n_out)?;
    let mut words = Vec::new();
    for v in [p.batch, p.in_h, p.in_w, p.channels, p.out_h, p.out_w] {
        words.push(word(op, v)?);
    }
    Ok((n_in, n_out, words))
}

impl ResampleOps for WgpuBackend {
    fn upsample_bilinear2d_forward(
        &self,
        p: &UpsampleParams,
        x: &WgpuBuffer,
        y: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "upsample_bilinear2d_forward";
        let (n_in, n_out, mut words) = check(OP, p)?;
        check_len(OP, x, n_in)?;
        check_len(OP, y, n_out)?;
        let rows = taps(p.in_h, p.out_h, p.align_corners);
        let mut table = Vec::with_capacity(4 * (p.out_h + p.out_w));
        for axis in [rows.clone(), taps(p.in_w, p.out_w, p.align_corners)] {
            for (i0, i1, l0, l1) in axis {
                table.extend_from_slice(&[i0, i1, l0.to_bits(), l1.to_bits()]);
            }
        }
        words.extend_from_slice(&[word(OP, 4 * p.out_h)?, 0, 0, 0]);
        let table = self.storage_from(&table);
        // Output row o reads input rows i0 and i1 = i0 or i0 + 1, both growing with o.
        let (in_row, out_row) = (p.in_w * p.channels, p.out_w * p.channels);
        let x_rows = |u| {
            sample_rows(u, p.out_h, p.in_h, in_row, |o| {
                let (i0, i1, _, _) = rows[o];
                i0.min(i1) as usize..i0.max(i1) as usize + 1
            })
        };
        self.launch(
            OP,
            Kernel::new(SHADER, "upsample_forward"),
            &[Arg::map(&x.buf, &x_rows), Arg::whole(&table)],
            &[Arg::per(&y.buf, out_row)],
            &words,
            &Work::threads("row", p.batch * p.out_h, out_row),
        )
    }

    fn upsample_bilinear2d_backward(
        &self,
        p: &UpsampleParams,
        dy: &WgpuBuffer,
        dx: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "upsample_bilinear2d_backward";
        let (n_in, n_out, mut words) = check(OP, p)?;
        check_len(OP, dy, n_out)?;
        check_len(OP, dx, n_in)?;
        let rows = taps(p.in_h, p.out_h, p.align_corners);
        let (rh_off, rh) = readers(p.in_h, &rows);
        let (rw_off, rw) = readers(p.in_w, &taps(p.in_w, p.out_w, p.align_corners));
        let mut table = rh_off;
        let o1 = table.len();
        table.extend_from_slice(&rh);
        let o2 = table.len();
        table.extend_from_slice(&rw_off);
        let o3 = table.len();
        table.extend_from_slice(&rw);
        words.extend_from_slice(&[0, word(OP, o1)?, word(OP, o2)?, word(OP, o3)?]);
        let table = self.storage_from(&table);
        let (in_row, out_row) = (p.in_w * p.channels, p.out_w * p.channels);
        let readers = reader_ranges(p.in_h, p.out_h, &rows);
        let dy_rows = |u| sample_rows(u, p.in_h, p.out_h, out_row, |i| readers[i].clone());
        self.launch(
            OP,
            Kernel::new(SHADER, "upsample_backward"),
            &[Arg::map(&dy.buf, &dy_rows), Arg::whole(&table)],
            &[Arg::per(&dx.buf, in_row)],
            &words,
            &Work::threads("row", p.batch * p.in_h, in_row),
        )
    }
}
