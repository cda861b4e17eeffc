//! Elementwise maps, broadcasting binary maps, fill, axpy and dropout (`shaders/elementwise.wgsl`).

use std::ops::Range;

use super::window::{Arg, Work};
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

/// The output's axes with size-1 axes dropped and contiguous neighbours merged, and the element
/// strides of operands `a` and `b` along them (0 where an operand is broadcast): the uniform
/// block `Strided` of the broadcasting kernels, and what a range of output elements reads.
pub(super) struct Strided {
    dims: Vec<usize>,
    strides: [Vec<usize>; 2],
}

impl Strided {
    pub fn new(op: &'static str, a: &Shape, b: &Shape, out: &Shape) -> Result<Self> {
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
        Ok(Strided {
            dims,
            strides: [sa, sb],
        })
    }

    /// The words of the uniform block `Strided`.
    pub fn words(&self, op: &'static str) -> Result<Vec<u32>> {
        let mut words = vec![self.dims.len() as u32, 0, 0, 0];
        for list in [&self.dims, &self.strides[0], &self.strides[1]] {
            let mut block = [0u32; MAX_RANK];
            for (w, &v) in block.iter_mut().zip(list.iter()) {
                *w = word(op, v)?;
            }
            words.extend_from_slice(&block);
        }
        Ok(words)
    }

    /// The elements of operand `k` (0: `a`, 1: `b`) that the output elements `r` read: exact
    /// along the axes where the first and last element of `r` agree, the whole extent of the
    /// axes inside the first one where they differ. Exact for an operand that is not broadcast.
    pub fn span(&self, k: usize, r: Range<usize>) -> Range<usize> {
        if r.is_empty() {
            return 0..0;
        }
        let (dims, st) = (&self.dims, &self.strides[k]);
        let coords = |mut i: usize| -> Vec<usize> {
            let mut c = vec![0; dims.len()];
            for d in (0..dims.len()).rev() {
                c[d] = i % dims[d];
                i /= dims[d];
            }
            c
        };
        let (first, last) = (coords(r.start), coords(r.end - 1));
        let mut base = 0;
        for d in 0..dims.len() {
            if first[d] != last[d] {
                let inner: usize = (d + 1..dims.len()).map(|e| (dims[e] - 1) * st[e]).sum();
                return base + first[d] * st[d]..base + last[d] * st[d] + inner + 1;
            }
            base += first[d] * st[d];
        }
        base..base + 1
    }

    /// Runs the broadcasting kernel `k` over the output `y`, reading `a` and (for binary maps)
    /// `b`, split by output elements.
    pub fn launch(
        &self,
        backend: &WgpuBackend,
        op: &'static str,
        k: Kernel<'_>,
        a: &::wgpu::Buffer,
        b: Option<&::wgpu::Buffer>,
        y: &WgpuBuffer,
    ) -> Result<()> {
        let span_a = |r: Range<usize>| self.span(0, r);
        let span_b = |r: Range<usize>| self.span(1, r);
        let mut inputs = vec![Arg::map(a, &span_a)];
        if let Some(b) = b {
            inputs.push(Arg::map(b, &span_b));
        }
        backend.launch(
            op,
            k,
            &inputs,
            &[Arg::per(&y.buf, 1)],
            &self.words(op)?,
            &Work::threads("element", y.len, 1),
        )
    }
}

impl WgpuBackend {
    /// `y = f(x)` elementwise with the `Scalars` block `(a, b, key)`.
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
        let constants = [("OP", code as f64)];
        self.launch(
            op,
            Kernel::with(SHADER, entry, &constants),
            &[Arg::per(&x.buf, 1)],
            &[Arg::per(&y.buf, 1)],
            &[a.to_bits(), b.to_bits(), key],
            &Work::threads("element", y.len, 1),
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
        // Mask indices are element indices, as on the CPU (buffers hold fewer than 2^32).
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
        saved: &WgpuBuffer,
        dy: &WgpuBuffer,
        dx: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "unary_backward";
        let n = saved.len;
        check_len(OP, dy, n)?;
        check_len(OP, dx, n)?;
        let (code, a, b) = op.kernel_code();
        let constants = [("OP", code as f64)];
        self.launch(
            OP,
            Kernel::with(SHADER, "unary_backward", &constants),
            &[Arg::per(&saved.buf, 1), Arg::per(&dy.buf, 1)],
            &[Arg::per(&dx.buf, 1)],
            &[a.to_bits(), b.to_bits(), 0],
            &Work::threads("element", n, 1),
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
        let constants = [("OP", binary_code(op) as f64)];
        Strided::new(OP, a_shape, b_shape, &out)?.launch(
            self,
            OP,
            Kernel::with(SHADER, "binary", &constants),
            &a.buf,
            Some(&b.buf),
            y,
        )
    }

    fn fill(&self, y: &mut WgpuBuffer, value: f32) -> Result<()> {
        self.launch(
            "fill",
            Kernel::new(SHADER, "fill"),
            &[],
            &[Arg::per(&y.buf, 1)],
            &[value.to_bits(), 0, 0],
            &Work::threads("element", y.len, 1),
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
