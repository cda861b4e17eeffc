//! Dense matrix products (`shaders/gemm.wgsl`, mode 0), and the launch every GEMM-shaped kernel
//! (the convolutions too) goes through.
//!
//! A dispatch whose rows of C make too few tiles for its depth (backward-filter's dW, a dense
//! weight gradient) would leave most of a GPU idle, each workgroup walking the whole depth: the
//! depth is then cut into parts ([`split_parts`]), computed side by side into a scratch buffer
//! and added in order by a second kernel (`gemm_sum`), so the result is the same on every run.

use std::ops::Range;

use super::window::{Arg, View, Work};
use super::{check_len, product, shader, word, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::*;
use crate::error::Result;

pub(super) const SHADER: Shader = shader!("gemm.wgsl");

/// Rows and columns of C one workgroup computes.
const TILE: usize = 64;

/// Workgroups a reduction cut into parts aims at (a GEMM's depth, batch norm's slabs): a large
/// GPU (an H200's 132 multiprocessors, a few 256-thread workgroups resident on each) filled a few
/// times over.
pub(super) const TARGET_GROUPS: usize = 2048;

/// The shortest slice of the depth worth a part of its own: its reads (two 64-wide panels of
/// the slice) outweigh writing and re-reading its 64 × 64 partial tile many times over.
const MIN_PART: usize = 2048;

/// How many parts to cut a dispatch's depth into: as many as fill [`TARGET_GROUPS`] workgroups
/// with `tiles` tiles each, no slice shorter than [`MIN_PART`], the scratch of `len` elements
/// per part within `max_len` (one binding) and the workgroups within `max_groups`; 1 is no split.
/// A part holds at most a tile's 64 × 64 values per tile, so the scratch of all the parts stays
/// under `TARGET_GROUPS · TILE²` values (32 MiB).
pub(super) fn split_parts(
    tiles: usize,
    depth: usize,
    len: usize,
    max_len: usize,
    max_groups: usize,
) -> usize {
    let tiles = tiles.max(1);
    (TARGET_GROUPS / tiles)
        .min(depth / MIN_PART)
        .min(max_len / len.max(1))
        .min(max_groups / tiles)
        .max(1)
}

/// What one GEMM-shaped kernel computes: `m × n` outputs, depth `k`, and the convolution
/// geometry the implicit modes gather with.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct GemmDispatch {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub beta: f32,
    /// `[batch, in_h, in_w, cin, cout, kh, kw, sh, sw, ph, pw, dh, dw, out_h, out_w]`.
    pub conv: [usize; 15],
}

/// How a GEMM splits into dispatches: by rows of C, or by its depth (each dispatch adds its part
/// of the products to C); `per` rows or depth indices to a unit.
#[derive(Debug, Clone, Copy)]
pub(super) struct GemmSplit {
    pub depth: bool,
    pub unit: &'static str,
    pub units: usize,
    pub per: usize,
}

impl GemmSplit {
    /// The rows of C (first, count) and the depth that a dispatch on the range `r` of the split
    /// index covers.
    fn extent(&self, g: &GemmDispatch, r: &Range<usize>) -> (usize, usize, usize) {
        if self.depth {
            (0, g.m, r.end.min(g.k) - r.start.min(g.k))
        } else {
            (r.start, r.len(), g.k)
        }
    }
}

impl WgpuBackend {
    /// Records the GEMM `mode` of `gemm.wgsl` (see the shader) on `a`, `b` into `c`, split as
    /// `s` says, each operand bound as its `Arg` says; a chunk of few tiles over a long depth is
    /// split into parts (see the module).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_launch(
        &self,
        op: &'static str,
        mode: u32,
        trans: [bool; 2],
        g: &GemmDispatch,
        s: GemmSplit,
        a: Arg<'_>,
        b: Arg<'_>,
        c: Arg<'_>,
    ) -> Result<()> {
        if g.m == 0 || g.n == 0 {
            return Ok(());
        }
        let mut words = vec![
            word(op, g.m)?,
            word(op, g.n)?,
            word(op, g.k)?,
            g.alpha.to_bits(),
            g.beta.to_bits(),
        ];
        for &v in &g.conv {
            words.push(word(op, v)?);
        }
        words.push(u32::from(s.depth));
        let constants = [
            ("MODE", mode as f64),
            ("TRANS_A", f64::from(u8::from(trans[0]))),
            ("TRANS_B", f64::from(u8::from(trans[1]))),
        ];
        let kernel = Kernel::with(SHADER, "gemm", &constants);
        // A product of depth 0 still scales C by beta: one dispatch.
        let units = if s.depth { s.units.max(1) } else { s.units };
        let (col_tiles, per) = (g.n.div_ceil(TILE), s.per);
        let work = Work::new(s.unit, units, move |u| {
            let r = u.start * per..u.end * per;
            let (_, rows, _) = s.extent(g, &r);
            (r, col_tiles * rows.div_ceil(TILE))
        });
        // Each chunk of units: its range, tiles and parts.
        let max_len = (self.max_binding() / 4) as usize;
        let plans: Vec<_> = self
            .chunks(op, &[a, b], &[c], &work)?
            .into_iter()
            .map(|u| {
                let (r, tiles) = work.chunk(u.clone());
                let (_, rows, depth) = s.extent(g, &r);
                let parts = split_parts(tiles, depth, rows * g.n, max_len, self.max_dispatch());
                (u, r, tiles, parts)
            })
            .collect();
        let scratch_len = plans
            .iter()
            .filter(|p| p.3 > 1)
            .map(|(_, r, _, parts)| parts * s.extent(g, r).1 * g.n)
            .max();
        let scratch = scratch_len.map(|len| self.scratch(op, len)).transpose()?;
        for (u, r, tiles, parts) in plans {
            let ins = [a.view(u.clone()), b.view(u.clone())];
            let mut params = words.clone();
            params.push(word(op, parts)?);
            match scratch.as_ref().filter(|_| parts > 1) {
                None => self.dispatch(op, kernel, &ins, &[c.view(u)], &params, r, tiles)?,
                Some(scratch) => {
                    let outs = [View::whole(scratch)];
                    let groups = tiles * parts;
                    self.dispatch(op, kernel, &ins, &outs, &params, r.clone(), groups)?;
                    let (row, rows, _) = s.extent(g, &r);
                    // Later parts of the depth add to what the earlier ones left in C.
                    let beta = if s.depth && r.start > 0 { 1.0 } else { g.beta };
                    let elems = row * g.n..(row + rows) * g.n;
                    self.sum_parts(op, scratch, parts, c.buf(), elems, g.alpha, beta)?;
                }
            }
        }
        Ok(())
    }

    /// Records `C[elems] = alpha · Σ parts + beta · C[elems]` (`gemm_sum`), the parts of
    /// `elems.len()` elements each, consecutive in `scratch`.
    #[allow(clippy::too_many_arguments)]
    fn sum_parts(
        &self,
        op: &'static str,
        scratch: &::wgpu::Buffer,
        parts: usize,
        c: &::wgpu::Buffer,
        elems: Range<usize>,
        alpha: f32,
        beta: f32,
    ) -> Result<()> {
        let len = elems.len();
        let base = elems.start;
        let words = [
            word(op, len)?,
            word(op, parts)?,
            word(op, base)?,
            alpha.to_bits(),
            beta.to_bits(),
        ];
        let c_elems = move |e: Range<usize>| base + e.start..base + e.end;
        self.launch(
            op,
            Kernel::new(SHADER, "gemm_sum"),
            &[Arg::whole(scratch)],
            &[Arg::map(c, &c_elems)],
            &words,
            &Work::threads("element", len, 1),
        )
    }
}

impl MatmulOps for WgpuBackend {
    /// Split by rows of C, with B bound whole; with A transposed (and B not), by the depth,
    /// which then holds rows of both.
    fn gemm(
        &self,
        p: &GemmParams,
        a: &WgpuBuffer,
        b: &WgpuBuffer,
        c: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "gemm";
        let (m, n, k) = (p.m, p.n, p.k);
        check_len(OP, a, product(OP, &[m, k])?)?;
        check_len(OP, b, product(OP, &[k, n])?)?;
        check_len(OP, c, product(OP, &[m, n])?)?;
        let g = GemmDispatch {
            m,
            n,
            k,
            alpha: p.alpha,
            beta: p.beta,
            ..Default::default()
        };
        let trans = [p.trans_a, p.trans_b];
        if p.trans_a && !p.trans_b {
            let s = GemmSplit {
                depth: true,
                unit: "row",
                units: k,
                per: 1,
            };
            let (a, b, c) = (Arg::per(&a.buf, m), Arg::per(&b.buf, n), Arg::whole(&c.buf));
            return self.gemm_launch(OP, 0, trans, &g, s, a, b, c);
        }
        // A transposed has the rows of C as columns: bound whole.
        let a = if p.trans_a {
            Arg::whole(&a.buf)
        } else {
            Arg::per(&a.buf, k)
        };
        let s = GemmSplit {
            depth: false,
            unit: "row",
            units: m,
            per: 1,
        };
        self.gemm_launch(
            OP,
            0,
            trans,
            &g,
            s,
            a,
            Arg::whole(&b.buf),
            Arg::per(&c.buf, n),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_fill_the_gpu_when_tiles_are_few() {
        let (binding, groups) = (1 << 30, 65535 * 65535);
        // U-Net's first backward-filter at 256², batch 8: dW 64 × 576 (9 tiles) over 524,288.
        assert_eq!(split_parts(9, 524_288, 64 * 576, binding, groups), 227);
        // Its forward (8,192 tiles over a depth of 576), and a depth too short to cut.
        assert_eq!(split_parts(8192, 576, 524_288 * 64, binding, groups), 1);
        assert_eq!(split_parts(1, 4095, 64, binding, groups), 1);
        // No slice shorter than MIN_PART, the scratch within a binding, the grid within a dispatch.
        assert_eq!(split_parts(1, 3 * MIN_PART + 1, 64, binding, groups), 3);
        assert_eq!(split_parts(9, 524_288, 1000, 5000, groups), 5);
        assert_eq!(split_parts(4, 524_288, 64, binding, 9), 2);
    }
}
