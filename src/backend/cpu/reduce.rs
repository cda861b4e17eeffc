//! Reductions (sum, mean, max) to a broadcastable shape, and softmax / log-softmax over the last
//! axis with their gradients.
//!
//! Sums accumulate in f64, so large reductions (a bias gradient over a whole NHWC batch) keep
//! f32 accuracy.

use crate::backend::cpu::elementwise::{for_each_chunk_mut, rows_per_block};
use crate::backend::cpu::{check_len, CpuBackend, CpuBuffer};
use crate::backend::plan::reduction_groups;
use crate::backend::*;
use crate::error::{Error, Result};
use crate::tensor::Shape;

mod axes;

use axes::{max_f32, reduce_all, reduce_columns, reduce_general, reduce_rows, sum_f64};

/// `rows × cols`, or an error when the product overflows.
fn matrix_len(op: &'static str, rows: usize, cols: usize) -> Result<usize> {
    rows.checked_mul(cols)
        .ok_or_else(|| Error::invalid(op, format!("{rows} × {cols} elements overflow")))
}

impl ReduceOps for CpuBackend {
    fn reduce(
        &self,
        op: ReduceOp,
        x: &CpuBuffer,
        x_shape: &Shape,
        y_shape: &Shape,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        let groups = reduction_groups("reduce", x_shape, y_shape)?;
        check_len("reduce", x, x_shape.numel())?;
        check_len("reduce", y, y_shape.numel())?;
        let (x, y) = (&x.0[..], &mut y.0[..]);
        if y.is_empty() {
            return Ok(());
        }
        if x.is_empty() {
            // Reducing over an empty axis: PyTorch gives 0 for a sum, NaN for a mean, and an
            // error for a max.
            match op {
                ReduceOp::Sum => y.fill(0.0),
                ReduceOp::Mean => y.fill(f32::NAN),
                ReduceOp::Max => {
                    return Err(Error::shape(
                        "reduce",
                        "max over an empty axis",
                        &[x_shape, y_shape],
                    ))
                }
            }
            return Ok(());
        }
        match groups.as_slice() {
            [] | [(_, false)] => y.copy_from_slice(x),
            [(_, true)] => y[0] = reduce_all(op, x),
            [(_, false), (inner, true)] => reduce_rows(op, x, *inner, y),
            [(_, true), (cols, false)] => reduce_columns(op, x, *cols, y),
            _ => reduce_general(op, x, &groups, y),
        }
        Ok(())
    }

    fn softmax(
        &self,
        rows: usize,
        cols: usize,
        log: bool,
        x: &CpuBuffer,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        let n = matrix_len("softmax", rows, cols)?;
        check_len("softmax", x, n)?;
        check_len("softmax", y, n)?;
        if n == 0 {
            return Ok(());
        }
        let x = &x.0[..];
        let block = rows_per_block(cols);
        for_each_chunk_mut(&mut y.0, block * cols, |i, yc| {
            let start = i * block * cols;
            for (xr, yr) in x[start..start + yc.len()]
                .chunks_exact(cols)
                .zip(yc.chunks_exact_mut(cols))
            {
                let max = max_f32(xr);
                let mut sum = 0.0f64;
                for (o, &v) in yr.iter_mut().zip(xr) {
                    let e = (v - max).exp();
                    *o = e;
                    sum += e as f64;
                }
                if log {
                    // (x − max) − log Σ, not x − (max + log Σ): the shifted value is exact.
                    let log_sum = sum.ln() as f32;
                    for (o, &v) in yr.iter_mut().zip(xr) {
                        *o = (v - max) - log_sum;
                    }
                } else {
                    let sum = sum as f32;
                    for o in yr.iter_mut() {
                        *o /= sum;
                    }
                }
            }
        });
        Ok(())
    }

    fn softmax_backward(
        &self,
        rows: usize,
        cols: usize,
        log: bool,
        y: &CpuBuffer,
        dy: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        let n = matrix_len("softmax_backward", rows, cols)?;
        check_len("softmax_backward", y, n)?;
        check_len("softmax_backward", dy, n)?;
        check_len("softmax_backward", dx, n)?;
        if n == 0 {
            return Ok(());
        }
        let (y, dy) = (&y.0[..], &dy.0[..]);
        let block = rows_per_block(cols);
        for_each_chunk_mut(&mut dx.0, block * cols, |i, dxc| {
            let r = i * block * cols..i * block * cols + dxc.len();
            let rows = y[r.clone()]
                .chunks_exact(cols)
                .zip(dy[r].chunks_exact(cols));
            for ((yr, gr), dxr) in rows.zip(dxc.chunks_exact_mut(cols)) {
                if log {
                    // dx = dy − softmax · Σ dy, with softmax = exp(log-softmax).
                    let s = sum_f64(gr) as f32;
                    for ((o, &yv), &g) in dxr.iter_mut().zip(yr).zip(gr) {
                        *o = g - yv.exp() * s;
                    }
                } else {
                    // dx = y · (dy − Σ dy·y).
                    let s = yr
                        .iter()
                        .zip(gr)
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>() as f32;
                    for ((o, &yv), &g) in dxr.iter_mut().zip(yr).zip(gr) {
                        *o = yv * (g - s);
                    }
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Float64 reference: sums `x` over the axes where `y_dims` (same rank) has 1.
    fn naive_sum(x: &[f32], x_dims: &[usize], y_dims: &[usize]) -> Vec<f32> {
        let ys = Shape::new(y_dims.to_vec());
        let mut out = vec![0.0f64; ys.numel()];
        let xs = Shape::new(x_dims.to_vec());
        let (xst, yst) = (xs.strides(), ys.strides());
        for (i, &v) in x.iter().enumerate() {
            let mut yi = 0;
            for a in 0..x_dims.len() {
                let idx = (i / xst[a]) % x_dims[a];
                if y_dims[a] != 1 {
                    yi += idx * yst[a];
                }
            }
            out[yi] += v as f64;
        }
        out.into_iter().map(|v| v as f32).collect()
    }

    #[test]
    fn reductions_match_a_naive_sum() {
        let be = CpuBackend::new();
        let dims = [3, 5, 4, 6];
        let x: Vec<f32> = (0..360)
            .map(|i| ((i * 37) % 101) as f32 * 0.1 - 5.0)
            .collect();
        let xb = CpuBuffer(x.clone());
        for y_dims in [
            [1, 1, 1, 6],
            [3, 5, 4, 1],
            [1, 1, 1, 1],
            [3, 1, 4, 1],
            [1, 5, 1, 6],
        ] {
            let mut y = CpuBuffer(vec![0.0; y_dims.iter().product()]);
            be.reduce(
                ReduceOp::Sum,
                &xb,
                &Shape::new(dims),
                &Shape::new(y_dims),
                &mut y,
            )
            .unwrap();
            let want = naive_sum(&x, &dims, &y_dims);
            for (g, w) in y.0.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "{y_dims:?}: {g} vs {w}");
            }
        }
        // Lower-rank output: the bias gradient [C] of an NHWC tensor, as a max.
        let mut y = CpuBuffer(vec![0.0; 6]);
        be.reduce(
            ReduceOp::Max,
            &xb,
            &Shape::new(dims),
            &Shape::new([6]),
            &mut y,
        )
        .unwrap();
        for (c, &m) in y.0.iter().enumerate() {
            let want = x.iter().skip(c).step_by(6).fold(f32::MIN, |a, &b| a.max(b));
            assert_eq!(m, want);
        }
        let err = be.reduce(
            ReduceOp::Sum,
            &xb,
            &Shape::new(dims),
            &Shape::new([5]),
            &mut y,
        );
        assert!(matches!(err, Err(Error::Shape { .. })));
    }

    #[test]
    fn softmax_rows_sum_to_one_and_log_softmax_agrees() {
        let be = CpuBackend::new();
        let x = CpuBuffer(vec![1.0, 2.0, 3.0, 1000.0, 1000.0, -1000.0]);
        let mut p = CpuBuffer(vec![0.0; 6]);
        let mut lp = CpuBuffer(vec![0.0; 6]);
        be.softmax(2, 3, false, &x, &mut p).unwrap();
        be.softmax(2, 3, true, &x, &mut lp).unwrap();
        for r in 0..2 {
            let s: f32 = p.0[r * 3..r * 3 + 3].iter().sum();
            assert!((s - 1.0).abs() < 1e-6);
        }
        for (a, b) in p.0.iter().zip(&lp.0) {
            assert!((a - b.exp()).abs() < 1e-6);
        }
        // The gradient of Σ softmax is zero.
        let ones = CpuBuffer(vec![1.0; 6]);
        let mut dx = CpuBuffer(vec![9.0; 6]);
        be.softmax_backward(2, 3, false, &p, &ones, &mut dx)
            .unwrap();
        assert!(dx.0.iter().all(|v| v.abs() < 1e-6));
    }
}
