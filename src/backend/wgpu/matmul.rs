//! Dense matrix products (`shaders/gemm.wgsl`, mode 0), and the launch every GEMM-shaped kernel
//! (the convolutions too) goes through.

use super::window::{Arg, Work};
use super::{check_len, product, shader, word, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::*;
use crate::error::Result;

pub(super) const SHADER: Shader = shader!("gemm.wgsl");

/// Rows and columns of C one workgroup computes.
const TILE: usize = 64;

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

impl WgpuBackend {
    /// Records the GEMM `mode` of `gemm.wgsl` (see the shader) on `a`, `b` into `c`, split as
    /// `s` says, each operand bound as its `Arg` says.
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
        // A product of depth 0 still scales C by beta: one dispatch.
        let units = if s.depth { s.units.max(1) } else { s.units };
        let (m, col_tiles, per) = (g.m, g.n.div_ceil(TILE), s.per);
        let work = Work::new(s.unit, units, move |u| {
            let r = u.start * per..u.end * per;
            let rows = if s.depth { m } else { r.len() };
            (r, col_tiles * rows.div_ceil(TILE))
        });
        self.launch(
            op,
            Kernel::with(SHADER, "gemm", &constants),
            &[a, b],
            &[c],
            &words,
            &work,
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
