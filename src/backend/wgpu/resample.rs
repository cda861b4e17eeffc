//! Bilinear resampling (`shaders/resample.wgsl`); the taps are computed here, in f32, exactly as
//! the CPU backend computes them, and uploaded as a table.

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
        let mut table = Vec::with_capacity(4 * (p.out_h + p.out_w));
        for axis in [
            taps(p.in_h, p.out_h, p.align_corners),
            taps(p.in_w, p.out_w, p.align_corners),
        ] {
            for (i0, i1, l0, l1) in axis {
                table.extend_from_slice(&[i0, i1, l0.to_bits(), l1.to_bits()]);
            }
        }
        words.extend_from_slice(&[word(OP, 4 * p.out_h)?, 0, 0, 0]);
        let table = self.storage_from(&table);
        self.dispatch(
            OP,
            Kernel::new(SHADER, "upsample_forward"),
            &[&x.buf, &table],
            &[&y.buf],
            &words,
            self.grid_for(OP, n_out)?,
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
        let (rh_off, rh) = readers(p.in_h, &taps(p.in_h, p.out_h, p.align_corners));
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
        self.dispatch(
            OP,
            Kernel::new(SHADER, "upsample_backward"),
            &[&dy.buf, &table],
            &[&dx.buf],
            &words,
            self.grid_for(OP, n_in)?,
        )
    }
}
