//! Elementwise maps, broadcasting binary maps, fill, axpy and dropout (`kernels/elementwise.cu`).

use super::kernels::Module;
use super::{check_len, grid, launch, CudaBackend, CudaBuffer};
use crate::backend::*;
use crate::error::{Error, Result};
use crate::tensor::Shape;

/// Most collapsed axes a broadcasting kernel takes.
pub(super) const MAX_AXES: usize = 8;

/// The output's collapsed axes and the element strides of each operand along them (0 where the
/// operand is broadcast): size-1 axes are dropped and neighbours that every operand steps through
/// contiguously are merged, as the CPU's broadcast layout.
pub(super) struct Layout {
    pub rank: i32,
    pub dims: [u64; MAX_AXES],
    pub strides: Vec<[u64; MAX_AXES]>,
}

/// When `layout` (of two operands) is rows of `cols` in which each operand is either the whole
/// output or one row repeated, `(cols, a is a row, b is a row)` as the `binary_rows` kernel takes
/// them; `None` otherwise or beyond 32-bit indices.
fn rows_layout(layout: &Layout, len: usize) -> Option<(u32, i32, i32)> {
    if layout.rank != 2 || len > u32::MAX as usize {
        return None;
    }
    let cols = layout.dims[1];
    let kind = |s: &[u64; MAX_AXES]| match (s[0], s[1]) {
        (c, 1) if c == cols => Some(0),
        (0, 1) => Some(1),
        _ => None,
    };
    Some((
        cols as u32,
        kind(&layout.strides[0])?,
        kind(&layout.strides[1])?,
    ))
}

impl Layout {
    /// The layout of `operands` (each broadcastable to `out`) read into `out`.
    pub(super) fn new(op: &'static str, operands: &[&Shape], out: &Shape) -> Result<Self> {
        let stride_of = |s: &Shape, k: usize| -> usize {
            if k >= s.rank() || s.dim_from_end(k) == 1 {
                0
            } else {
                s.strides()[s.rank() - 1 - k]
            }
        };
        let mut dims: Vec<usize> = Vec::new();
        let mut strides: Vec<Vec<usize>> = vec![Vec::new(); operands.len()];
        for k in (0..out.rank()).rev() {
            let d = out.dim_from_end(k);
            if d == 1 {
                continue;
            }
            let s: Vec<usize> = operands.iter().map(|o| stride_of(o, k)).collect();
            if let Some(last) = dims.len().checked_sub(1) {
                if strides.iter().zip(&s).all(|(st, &sk)| st[last] == sk * d) {
                    dims[last] *= d;
                    for (st, &sk) in strides.iter_mut().zip(&s) {
                        st[last] = sk;
                    }
                    continue;
                }
            }
            dims.push(d);
            for (st, &sk) in strides.iter_mut().zip(&s) {
                st.push(sk);
            }
        }
        if dims.len() > MAX_AXES {
            return Err(Error::invalid(
                op,
                format!(
                    "broadcasting over {} non-mergeable axes (at most {MAX_AXES})",
                    dims.len()
                ),
            ));
        }
        let pack = |v: &[usize]| {
            let mut a = [0u64; MAX_AXES];
            for (o, &x) in a.iter_mut().zip(v) {
                *o = x as u64;
            }
            a
        };
        Ok(Layout {
            rank: dims.len() as i32,
            dims: pack(&dims),
            strides: strides.iter().map(|s| pack(s)).collect(),
        })
    }
}

/// The scale `1 / (1 - p)` of kept elements, after checking that `p` is in `[0, 1)`.
fn dropout_scale(op: &'static str, p: f32) -> Result<f32> {
    if !(0.0..1.0).contains(&p) {
        return Err(Error::invalid(
            op,
            format!("dropout probability {p} is not in [0, 1)"),
        ));
    }
    Ok(1.0 / (1.0 - p))
}

impl CudaBackend {
    fn dropout_apply(
        &self,
        p: f32,
        scale: f32,
        seed: u64,
        src: &CudaBuffer,
        out: &mut CudaBuffer,
    ) -> Result<()> {
        if src.len == 0 {
            return Ok(());
        }
        if p == 0.0 {
            return self.copy(src, out);
        }
        let (sp, op, n, key) = (
            self.ptr(src),
            self.ptr(out),
            src.len as u64,
            rng::seed_key(seed),
        );
        launch!(self, Module::Elementwise, "dropout", grid(src.len); sp, op, n, key, p, scale)
    }
}

impl ElementwiseOps for CudaBackend {
    fn unary(&self, op: UnaryOp, x: &CudaBuffer, y: &mut CudaBuffer) -> Result<()> {
        check_len("unary", y, x.len)?;
        if x.len == 0 {
            return Ok(());
        }
        let (code, scale, shift) = op.kernel_code();
        let code = code as i32;
        let (xp, yp, n) = (self.ptr(x), self.ptr(y), x.len as u64);
        launch!(self, Module::Elementwise, "unary_fwd", grid(x.len); xp, yp, n, code, scale, shift)
    }

    fn unary_backward(
        &self,
        op: UnaryOp,
        saved: &CudaBuffer,
        dy: &CudaBuffer,
        dx: &mut CudaBuffer,
    ) -> Result<()> {
        let n = saved.len;
        check_len("unary_backward", dy, n)?;
        check_len("unary_backward", dx, n)?;
        if n == 0 {
            return Ok(());
        }
        let (code, scale, _) = op.kernel_code();
        let code = code as i32;
        let (sp, gp, dp, n64) = (self.ptr(saved), self.ptr(dy), self.ptr(dx), n as u64);
        launch!(self, Module::Elementwise, "unary_bwd", grid(n); sp, gp, dp, n64, code, scale)
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: &CudaBuffer,
        a_shape: &Shape,
        b: &CudaBuffer,
        b_shape: &Shape,
        y: &mut CudaBuffer,
    ) -> Result<()> {
        let out = a_shape.broadcast(b_shape).ok_or_else(|| {
            Error::shape("binary", "shapes do not broadcast", &[a_shape, b_shape])
        })?;
        check_len("binary", a, a_shape.numel())?;
        check_len("binary", b, b_shape.numel())?;
        if y.len != out.numel() {
            return Err(Error::shape(
                "binary",
                format!(
                    "output holds {} elements, the broadcast shape {} elements",
                    y.len,
                    out.numel()
                ),
                &[a_shape, b_shape, &out],
            ));
        }
        let len = out.numel();
        if len == 0 {
            return Ok(());
        }
        let layout = Layout::new("binary", &[a_shape, b_shape], &out)?;
        let code: i32 = match op {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
        };
        let (ap, bp, yp, n, rank) = (
            self.ptr(a),
            self.ptr(b),
            self.ptr(y),
            len as u64,
            layout.rank,
        );
        let (dims, sa, sb) = (layout.dims, layout.strides[0], layout.strides[1]);
        let cfg = grid(len);
        if let Some((cols, a_row, b_row)) = rows_layout(&layout, len) {
            let n = len as u32;
            return launch!(self, Module::Elementwise, "binary_rows", cfg; ap, bp, yp, n, cols, code, a_row, b_row);
        }
        if len <= u32::MAX as usize {
            launch!(self, Module::Elementwise, "binary32", cfg; ap, bp, yp, n, code, rank, dims, sa, sb)
        } else {
            launch!(self, Module::Elementwise, "binary64", cfg; ap, bp, yp, n, code, rank, dims, sa, sb)
        }
    }

    fn fill(&self, y: &mut CudaBuffer, value: f32) -> Result<()> {
        let len = y.len;
        self.fill_n(y, len, value)
    }

    fn axpy(&self, alpha: f32, x: &CudaBuffer, y: &mut CudaBuffer) -> Result<()> {
        check_len("axpy", y, x.len)?;
        if x.len == 0 {
            return Ok(());
        }
        let (xp, yp, n) = (self.ptr(x), self.ptr(y), x.len as u64);
        launch!(self, Module::Elementwise, "axpy", grid(x.len); alpha, xp, yp, n)
    }

    fn dropout_forward(&self, p: f32, seed: u64, x: &CudaBuffer, y: &mut CudaBuffer) -> Result<()> {
        let scale = dropout_scale("dropout_forward", p)?;
        check_len("dropout_forward", y, x.len)?;
        self.dropout_apply(p, scale, seed, x, y)
    }

    fn dropout_backward(
        &self,
        p: f32,
        seed: u64,
        dy: &CudaBuffer,
        dx: &mut CudaBuffer,
    ) -> Result<()> {
        let scale = dropout_scale("dropout_backward", p)?;
        check_len("dropout_backward", dx, dy.len)?;
        self.dropout_apply(p, scale, seed, dy, dx)
    }
}
