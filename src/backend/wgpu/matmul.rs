//! Dense matrix products (`shaders/gemm.wgsl`, mode 0).

use super::{check_len, product, shader, word, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

pub(super) const SHADER: Shader = shader!("gemm.wgsl");

/// Rows and columns of C one workgroup computes.
const TILE: usize = 64;

/// What one GEMM-shaped dispatch computes: `m × n` outputs, depth `k`, and the convolution
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

impl WgpuBackend {
    /// Records the GEMM `mode` of `gemm.wgsl` (see the shader) on `a`, `b` into `c`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn gemm_dispatch(
        &self,
        op: &'static str,
        mode: u32,
        trans: [bool; 2],
        g: &GemmDispatch,
        a: &::wgpu::Buffer,
        b: &::wgpu::Buffer,
        c: &::wgpu::Buffer,
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
        let constants = [
            ("MODE", mode as f64),
            ("TRANS_A", f64::from(u8::from(trans[0]))),
            ("TRANS_B", f64::from(u8::from(trans[1]))),
        ];
        // Column tiles along x; row tiles folded into y and z.
        let cols = g.n.div_ceil(TILE);
        let rows = g.m.div_ceil(TILE);
        let [ry, rz, _] = self.grid(op, rows)?;
        let max = self.ctx.max_groups as usize;
        if cols > max {
            return Err(Error::invalid(
                op,
                format!("{} columns exceed the device's dispatch limit", g.n),
            ));
        }
        self.dispatch(
            op,
            Kernel::with(SHADER, "gemm", &constants),
            &[a, b],
            &[c],
            &words,
            [cols as u32, ry, rz],
        )
    }
}

impl MatmulOps for WgpuBackend {
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
        self.gemm_dispatch(OP, 0, [p.trans_a, p.trans_b], &g, &a.buf, &b.buf, &c.buf)
    }
}
