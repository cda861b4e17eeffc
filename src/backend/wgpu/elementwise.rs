//! Elementwise maps, broadcasting binary maps, fill, axpy and dropout (`shaders/elementwise.wgsl`).

use super::{check_len, shader, word, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};
use crate::tensor::Shape;

const SHADER: Shader = shader!("elementwise.wgsl");

/// The most collapsed axes a strided kernel takes (the uniform block holds 8).
const MAX_RANK: usize = 8;

fn binary_code(op: BinaryOp) -> u32 {
    match op {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
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

/// The uniform block `Strided` of the broadcasting kernels: the output's axes with size-1 axes
/// dropped and contiguous neighbours merged, and each operand's strides along them.
pub(super) fn strided_words(
    op: &'static str,
    a: &Shape,
    b: &Shape,
    out: &Shape,
) -> Result<Vec<u32>> {
    let stride_of = |s: &Shape, k: usize| -> usize {
        if k >= s.rank() || s.dim_from_end(k) == 1 {
            0
        } else {
            s.strides()[s.rank() - 1 - k]
        }
    };
    let (mut dims, mut sa, mut sb): (Vec<usize>, Vec<usize>, Vec<usize>) = Default::default();
    for k in (0..out.rank()).rev() {
        let d = out.dim_from_end(k);
        if d == 1 {
            continue;
        }
        let (x, y) = (stride_of(a, k), stride_of(b, k));
        if let Some(last) = dims.len().checked_sub(1) {
            if sa[last] == x * d && sb[last] == y * d {
                dims[last] *= d;
                sa[last] = x;
                sb[last] = y;
                continue;
            }
        }
        dims.push(d);
        sa.push(x);
        sb.push(y);
    }
    if dims.len() > MAX_RANK {
        return Err(Error::shape(
            op,
            format!("more than {MAX_RANK} non-mergeable axes"),
            &[a, b, out],
        ));
    }
    let mut words = vec![word(op, out.numel())?, dims.len() as u32, 0, 0];
    for list in [&dims, &sa, &sb] {
        let mut block = [0u32; MAX_RANK];
        for (w, &v) in block.iter_mut().zip(list.iter()) {
            *w = word(op, v)?;
        }
        words.extend_from_slice(&block);
    }
    Ok(words)
}

impl WgpuBackend {
    /// `y = f(x)` elementwise with the `Scalars` block `(n, a, b, key)`.
    #[allow(clippy::too_many_arguments)]
    fn map1(
        &self,
        op: &'static str,
        entry: &'static str,
        code: u32,
        x: &WgpuBuffer,
        y: &WgpuBuffer,
        a: f32,
        b: f32,
        key: u32,
    ) -> Result<()> {
        let n = y.len;
        let constants = [("OP", code as f64)];
        self.dispatch(
            op,
            Kernel::with(SHADER, entry, &constants),
            &[&x.buf],
            &[&y.buf],
            &[word(op, n)?, a.to_bits(), b.to_bits(), key],
            self.grid_for(op, n)?,
        )
    }

    fn dropout(
        &self,
        op: &'static str,
        p: f32,
        seed: u64,
        x: &WgpuBuffer,
        y: &mut WgpuBuffer,
    ) -> Result<()> {
        let scale = dropout_scale(op, p)?;
        check_len(op, y, x.len)?;
        if p == 0.0 {
            self.copy_raw(&x.buf, &y.buf, x.len);
            return Ok(());
        }
        // Mask indices are element indices modulo 2^32, as on the CPU; larger buffers exceed
        // the binding limit anyway.
        let key = rng::seed_key(seed);
        self.map1(op, "dropout", 0, x, y, p, scale, key)
    }
}

impl ElementwiseOps for WgpuBackend {
    fn unary(&self, op: UnaryOp, x: &WgpuBuffer, y: &mut WgpuBuffer) -> Result<()> {
        check_len("unary", y, x.len)?;
        let (code, a, b) = op.kernel_code();
        self.map1("unary", "unary", code, x, y, a, b, 0)
    }

    fn unary_backward(
        &self,
        op: UnaryOp,
        x: &WgpuBuffer,
        y: &WgpuBuffer,
        dy: &WgpuBuffer,
        dx: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "unary_backward";
        let n = x.len;
        check_len(OP, y, n)?;
        check_len(OP, dy, n)?;
        check_len(OP, dx, n)?;
        let (code, a, b) = op.kernel_code();
        let constants = [("OP", code as f64)];
        self.dispatch(
            OP,
            Kernel::with(SHADER, "unary_backward", &constants),
            &[&x.buf, &y.buf, &dy.buf],
            &[&dx.buf],
            &[word(OP, n)?, a.to_bits(), b.to_bits(), 0],
            self.grid_for(OP, n)?,
        )
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: &WgpuBuffer,
        a_shape: &Shape,
        b: &WgpuBuffer,
        b_shape: &Shape,
        y: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "binary";
        let out = a_shape
            .broadcast(b_shape)
            .ok_or_else(|| Error::shape(OP, "shapes do not broadcast", &[a_shape, b_shape]))?;
        check_len(OP, a, a_shape.numel())?;
        check_len(OP, b, b_shape.numel())?;
        if y.len != out.numel() {
            return Err(Error::shape(
                OP,
                format!(
                    "output holds {} elements, the broadcast shape {} elements",
                    y.len,
                    out.numel()
                ),
                &[a_shape, b_shape, &out],
            ));
        }
        let words = strided_words(OP, a_shape, b_shape, &out)?;
        let constants = [("OP", binary_code(op) as f64)];
        self.dispatch(
            OP,
            Kernel::with(SHADER, "binary", &constants),
            &[&a.buf, &b.buf],
            &[&y.buf],
            &words,
            self.grid_for(OP, out.numel())?,
        )
    }

    fn fill(&self, y: &mut WgpuBuffer, value: f32) -> Result<()> {
        const OP: &str = "fill";
        self.dispatch(
            OP,
            Kernel::new(SHADER, "fill"),
            &[],
            &[&y.buf],
            &[word(OP, y.len)?, value.to_bits(), 0, 0],
            self.grid_for(OP, y.len)?,
        )
    }

    fn axpy(&self, alpha: f32, x: &WgpuBuffer, y: &mut WgpuBuffer) -> Result<()> {
        check_len("axpy", y, x.len)?;
        self.map1("axpy", "axpy", 0, x, y, alpha, 0.0, 0)
    }

    fn dropout_forward(&self, p: f32, seed: u64, x: &WgpuBuffer, y: &mut WgpuBuffer) -> Result<()> {
        self.dropout("dropout_forward", p, seed, x, y)
    }

    fn dropout_backward(
        &self,
        p: f32,
        seed: u64,
        dy: &WgpuBuffer,
        dx: &mut WgpuBuffer,
    ) -> Result<()> {
        self.dropout("dropout_backward", p, seed, dy, dx)
    }
}
