//! Elementwise maps and their gradients, broadcasting binary maps, and seeded dropout.
//!
//! Also home to the chunking helpers the other CPU kernels share: work is split into chunks of at
//! least [`PAR_CHUNK`] elements so that small tensors run on the calling thread without touching
//! the thread pool.

use rayon::prelude::*;

use crate::backend::cpu::{check_len, CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};
use crate::tensor::Shape;

mod broadcast;

/// The smallest amount of work (in elements) worth handing to another thread.
pub(super) const PAR_CHUNK: usize = 1 << 14;

/// Rows of `row_len` elements per parallel block, so a block holds about [`PAR_CHUNK`] elements.
pub(super) fn rows_per_block(row_len: usize) -> usize {
    (PAR_CHUNK / row_len.max(1)).max(1)
}

/// Calls `f(i, chunk)` for the `chunk`-sized pieces of `y` (the `i`-th starts at `i · chunk`),
/// in parallel when there is more than one piece and on the calling thread otherwise.
pub(super) fn for_each_chunk_mut<T, F>(y: &mut [T], chunk: usize, f: F)
where
    T: Send,
    F: Fn(usize, &mut [T]) + Sync + Send,
{
    let chunk = chunk.max(1);
    if y.len() <= chunk {
        if !y.is_empty() {
            f(0, y);
        }
    } else {
        y.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(i, c)| f(i, c));
    }
}

/// `y[i] = f(x[i])`; the lengths are checked by the caller.
fn map1(x: &[f32], y: &mut [f32], f: impl Fn(f32) -> f32 + Sync + Send) {
    for_each_chunk_mut(y, PAR_CHUNK, |i, yc| {
        let xc = &x[i * PAR_CHUNK..i * PAR_CHUNK + yc.len()];
        for (o, &v) in yc.iter_mut().zip(xc) {
            *o = f(v);
        }
    });
}

/// `out[i] = f(s[i], dy[i])`; the lengths are checked by the caller.
fn map2(s: &[f32], dy: &[f32], out: &mut [f32], f: impl Fn(f32, f32) -> f32 + Sync + Send) {
    for_each_chunk_mut(out, PAR_CHUNK, |i, oc| {
        let r = i * PAR_CHUNK..i * PAR_CHUNK + oc.len();
        for ((o, &a), &g) in oc.iter_mut().zip(&s[r.clone()]).zip(&dy[r]) {
            *o = f(a, g);
        }
    });
}

/// Logistic sigmoid without overflow: `exp` only ever sees a non-positive argument.
fn sigmoid(x: f32) -> f32 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
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

/// `out[i] = src[i] · scale` where element `i` is kept and 0 elsewhere.
fn dropout_apply(p: f32, scale: f32, seed: u64, src: &[f32], out: &mut [f32]) {
    let key = rng::seed_key(seed);
    for_each_chunk_mut(out, PAR_CHUNK, |i, oc| {
        let start = i * PAR_CHUNK;
        let sc = &src[start..start + oc.len()];
        for (k, (o, &v)) in oc.iter_mut().zip(sc).enumerate() {
            // The mask index is the element index modulo 2^32, the same on every backend.
            let keep = rng::uniform_keyed(key, (start + k) as u32) >= p;
            *o = if keep { v * scale } else { 0.0 };
        }
    });
}

impl ElementwiseOps for CpuBackend {
    fn unary(&self, op: UnaryOp, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        check_len("unary", y, x.0.len())?;
        let (x, y) = (&x.0[..], &mut y.0[..]);
        match op {
            UnaryOp::Relu => map1(x, y, |v| if v > 0.0 { v } else { 0.0 }),
            UnaryOp::Sigmoid => map1(x, y, sigmoid),
            UnaryOp::Tanh => map1(x, y, f32::tanh),
            UnaryOp::Exp => map1(x, y, f32::exp),
            UnaryOp::Log => map1(x, y, f32::ln),
            UnaryOp::Neg => map1(x, y, |v| -v),
            UnaryOp::Abs => map1(x, y, f32::abs),
            UnaryOp::Sqrt => map1(x, y, f32::sqrt),
            UnaryOp::Square => map1(x, y, |v| v * v),
            UnaryOp::Affine { scale, shift } => map1(x, y, |v| scale * v + shift),
        }
        Ok(())
    }

    fn unary_backward(
        &self,
        op: UnaryOp,
        saved: &CpuBuffer,
        dy: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        let n = saved.0.len();
        check_len("unary_backward", dy, n)?;
        check_len("unary_backward", dx, n)?;
        let (s, dy, dx) = (&saved.0[..], &dy.0[..], &mut dx.0[..]);
        // `s` is y where the op's derivative comes from its output, else x.
        match op {
            UnaryOp::Relu => map2(s, dy, dx, |y, g| if y > 0.0 { g } else { 0.0 }),
            UnaryOp::Sigmoid => map2(s, dy, dx, |y, g| g * y * (1.0 - y)),
            UnaryOp::Tanh => map2(s, dy, dx, |y, g| g * (1.0 - y * y)),
            UnaryOp::Exp => map2(s, dy, dx, |y, g| g * y),
            UnaryOp::Log => map2(s, dy, dx, |x, g| g / x),
            UnaryOp::Neg => map2(s, dy, dx, |_, g| -g),
            UnaryOp::Abs => map2(s, dy, dx, |x, g| {
                // sign(x) with sign(0) = 0, as PyTorch.
                if x > 0.0 {
                    g
                } else if x < 0.0 {
                    -g
                } else {
                    0.0
                }
            }),
            UnaryOp::Sqrt => map2(s, dy, dx, |y, g| g * 0.5 / y),
            UnaryOp::Square => map2(s, dy, dx, |x, g| g * 2.0 * x),
            UnaryOp::Affine { scale, .. } => map2(s, dy, dx, |_, g| g * scale),
        }
        Ok(())
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: &CpuBuffer,
        a_shape: &Shape,
        b: &CpuBuffer,
        b_shape: &Shape,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        let out = a_shape.broadcast(b_shape).ok_or_else(|| {
            Error::shape("binary", "shapes do not broadcast", &[a_shape, b_shape])
        })?;
        check_len("binary", a, a_shape.numel())?;
        check_len("binary", b, b_shape.numel())?;
        if y.0.len() != out.numel() {
            return Err(Error::shape(
                "binary",
                format!(
                    "output holds {} elements, the broadcast shape {} elements",
                    y.0.len(),
                    out.numel()
                ),
                &[a_shape, b_shape, &out],
            ));
        }
        let layout = broadcast::Layout::new(a_shape, b_shape, &out);
        let (a, b, y) = (&a.0[..], &b.0[..], &mut y.0[..]);
        match op {
            BinaryOp::Add => broadcast::apply(&layout, a, b, y, |a, b| a + b),
            BinaryOp::Sub => broadcast::apply(&layout, a, b, y, |a, b| a - b),
            BinaryOp::Mul => broadcast::apply(&layout, a, b, y, |a, b| a * b),
            BinaryOp::Div => broadcast::apply(&layout, a, b, y, |a, b| a / b),
        }
        Ok(())
    }

    fn fill(&self, y: &mut CpuBuffer, value: f32) -> Result<()> {
        for_each_chunk_mut(&mut y.0, PAR_CHUNK, |_, c| c.fill(value));
        Ok(())
    }

    fn axpy(&self, alpha: f32, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        check_len("axpy", y, x.0.len())?;
        let x = &x.0[..];
        for_each_chunk_mut(&mut y.0, PAR_CHUNK, |i, yc| {
            let xc = &x[i * PAR_CHUNK..i * PAR_CHUNK + yc.len()];
            for (o, &v) in yc.iter_mut().zip(xc) {
                *o += alpha * v;
            }
        });
        Ok(())
    }

    fn dropout_forward(&self, p: f32, seed: u64, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        let scale = dropout_scale("dropout_forward", p)?;
        check_len("dropout_forward", y, x.0.len())?;
        if p == 0.0 {
            y.0.copy_from_slice(&x.0);
        } else {
            dropout_apply(p, scale, seed, &x.0, &mut y.0);
        }
        Ok(())
    }

    fn dropout_backward(
        &self,
        p: f32,
        seed: u64,
        dy: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        let scale = dropout_scale("dropout_backward", p)?;
        check_len("dropout_backward", dx, dy.0.len())?;
        if p == 0.0 {
            dx.0.copy_from_slice(&dy.0);
        } else {
            dropout_apply(p, scale, seed, &dy.0, &mut dx.0);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcasting_adds_rank3_and_rank2() {
        let be = CpuBackend::new();
        // a: [2,1,3], b: [4,1] -> y: [2,4,3]
        let a = CpuBuffer((0..6).map(|v| v as f32).collect());
        let b = CpuBuffer(vec![10.0, 20.0, 30.0, 40.0]);
        let mut y = CpuBuffer(vec![0.0; 24]);
        be.binary(
            BinaryOp::Add,
            &a,
            &Shape::new([2, 1, 3]),
            &b,
            &Shape::new([4, 1]),
            &mut y,
        )
        .unwrap();
        let mut want = Vec::new();
        for i in 0..2 {
            for j in 0..4 {
                for k in 0..3 {
                    want.push((i * 3 + k) as f32 + b.0[j]);
                }
            }
        }
        assert_eq!(y.0, want);

        let mut bad = CpuBuffer(vec![0.0; 5]);
        let err = be.binary(
            BinaryOp::Add,
            &a,
            &Shape::new([2, 1, 3]),
            &b,
            &Shape::new([4, 1]),
            &mut bad,
        );
        assert!(matches!(err, Err(Error::Shape { .. })));
        let err = be.binary(
            BinaryOp::Add,
            &a,
            &Shape::new([2, 3]),
            &b,
            &Shape::new([4]),
            &mut y,
        );
        assert!(matches!(err, Err(Error::Shape { .. })));
    }

    #[test]
    fn bias_over_leading_axes_and_scalar_divide() {
        let be = CpuBackend::new();
        let (rows, c) = (5000, 7); // large enough to run in parallel blocks
        let x = CpuBuffer((0..rows * c).map(|v| v as f32).collect());
        let bias = CpuBuffer((0..c).map(|v| -(v as f32)).collect());
        let mut y = CpuBuffer(vec![0.0; rows * c]);
        let xs = Shape::new([1, rows, 1, c]);
        be.binary(BinaryOp::Sub, &bias, &Shape::new([c]), &x, &xs, &mut y)
            .unwrap();
        for (i, &v) in y.0.iter().enumerate() {
            assert_eq!(v, -((i % c) as f32) - i as f32);
        }
        let two = CpuBuffer(vec![2.0]);
        be.binary(BinaryOp::Div, &x, &xs, &two, &Shape::new([]), &mut y)
            .unwrap();
        assert_eq!(y.0[101], 50.5);
    }

    #[test]
    fn unary_gradients_and_dropout() {
        let be = CpuBackend::new();
        let x = CpuBuffer(vec![-1000.0, -2.0, 0.0, 3.0]);
        let mut y = CpuBuffer(vec![0.0; 4]);
        be.unary(UnaryOp::Sigmoid, &x, &mut y).unwrap();
        assert_eq!(y.0[0], 0.0);
        assert_eq!(y.0[2], 0.5);
        let dy = CpuBuffer(vec![1.0; 4]);
        let mut dx = CpuBuffer(vec![0.0; 4]);
        be.unary_backward(UnaryOp::Abs, &x, &dy, &mut dx).unwrap();
        assert_eq!(dx.0, vec![-1.0, -1.0, 0.0, 1.0]);

        let n = 40_000;
        let ones = CpuBuffer(vec![1.0; n]);
        let mut out = CpuBuffer(vec![0.0; n]);
        be.dropout_forward(0.25, 7, &ones, &mut out).unwrap();
        for (i, &v) in out.0.iter().enumerate() {
            let keep = rng::uniform(7, i as u32) >= 0.25;
            assert_eq!(v, if keep { 1.0 / 0.75 } else { 0.0 });
        }
        assert!(be.dropout_forward(1.0, 7, &ones, &mut out).is_err());
    }
}
