//! Reductions (sum, mean, max) to a broadcastable shape, and softmax / log-softmax over the last
//! axis with their gradients.
//!
//! Sums accumulate in f64, so large reductions (a bias gradient over a whole NHWC batch) keep
//! f32 accuracy.

use rayon::prelude::*;

use crate::backend::cpu::elementwise::{for_each_chunk_mut, rows_per_block, PAR_CHUNK};
use crate::backend::cpu::{check_len, CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};
use crate::tensor::Shape;

/// `max` that propagates NaN, as PyTorch's reductions do.
#[inline(always)]
fn nan_max(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() {
        v
    } else {
        m
    }
}

/// Sum in f64 with independent accumulators (so the loop pipelines and vectorises).
fn sum_f64(xs: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let mut chunks = xs.chunks_exact(8);
    for c in &mut chunks {
        for (s, &v) in acc.iter_mut().zip(c) {
            *s += v as f64;
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
    acc.iter().sum::<f64>() + tail
}

fn max_f32(xs: &[f32]) -> f32 {
    xs.iter().fold(f32::NEG_INFINITY, |m, &v| nan_max(m, v))
}

/// Axes of `x_shape` after dropping size-1 axes and merging neighbours that are both reduced or
/// both kept: `(size, reduced)` pairs, outermost first.
fn reduction_groups(
    op: &'static str,
    x_shape: &Shape,
    y_shape: &Shape,
) -> Result<Vec<(usize, bool)>> {
    let bad = || {
        Error::shape(
            op,
            "output shape does not broadcast to the input shape",
            &[x_shape, y_shape],
        )
    };
    let extra = y_shape.dims().len().saturating_sub(x_shape.rank());
    if y_shape.dims()[..extra].iter().any(|&d| d != 1) {
        return Err(bad());
    }
    let mut groups: Vec<(usize, bool)> = Vec::new();
    for k in (0..x_shape.rank()).rev() {
        let (xd, yd) = (x_shape.dim_from_end(k), y_shape.dim_from_end(k));
        let reduced = match (xd, yd) {
            (a, b) if a == b => false,
            (_, 1) => true,
            _ => return Err(bad()),
        };
        if xd == 1 {
            continue;
        }
        match groups.last_mut() {
            Some((size, r)) if *r == reduced => *size *= xd,
            _ => groups.push((xd, reduced)),
        }
    }
    Ok(groups)
}

/// Per-block partial results of a column reduction: `rows × cols` to `cols`.
fn reduce_columns(op: ReduceOp, x: &[f32], cols: usize, y: &mut [f32]) {
    let rows = x.len() / cols;
    let block = rows_per_block(cols);
    if op == ReduceOp::Max {
        let fold = |mut acc: Vec<f32>, chunk: &[f32]| {
            for row in chunk.chunks_exact(cols) {
                for (m, &v) in acc.iter_mut().zip(row) {
                    *m = nan_max(*m, v);
                }
            }
            acc
        };
        let init = || vec![f32::NEG_INFINITY; cols];
        let m = if rows <= block {
            fold(init(), x)
        } else {
            x.par_chunks(block * cols)
                .fold(init, fold)
                .reduce(init, |a, b| {
                    a.into_iter().zip(b).map(|(u, v)| nan_max(u, v)).collect()
                })
        };
        y.copy_from_slice(&m);
        return;
    }
    let fold = |mut acc: Vec<f64>, chunk: &[f32]| {
        for row in chunk.chunks_exact(cols) {
            for (s, &v) in acc.iter_mut().zip(row) {
                *s += v as f64;
            }
        }
        acc
    };
    let init = || vec![0.0f64; cols];
    let s = if rows <= block {
        fold(init(), x)
    } else {
        x.par_chunks(block * cols)
            .fold(init, fold)
            .reduce(init, |a, b| {
                a.into_iter().zip(b).map(|(u, v)| u + v).collect()
            })
    };
    let scale = if op == ReduceOp::Mean {
        1.0 / rows as f64
    } else {
        1.0
    };
    for (o, v) in y.iter_mut().zip(s) {
        *o = (v * scale) as f32;
    }
}

/// Reduces each contiguous run of `inner` elements of `x` to one element of `y`.
fn reduce_rows(op: ReduceOp, x: &[f32], inner: usize, y: &mut [f32]) {
    // One output per `inner` inputs: aim for PAR_CHUNK inputs per block.
    let block = rows_per_block(inner);
    for_each_chunk_mut(y, block, |i, yc| {
        for (r, o) in yc.iter_mut().enumerate() {
            let row = &x[(i * block + r) * inner..(i * block + r + 1) * inner];
            *o = match op {
                ReduceOp::Sum => sum_f64(row) as f32,
                ReduceOp::Mean => (sum_f64(row) / inner as f64) as f32,
                ReduceOp::Max => max_f32(row),
            };
        }
    });
}

/// Any pattern of reduced and kept axes: each output element walks its reduced index set.
fn reduce_general(op: ReduceOp, x: &[f32], groups: &[(usize, bool)], y: &mut [f32]) {
    // Row-major strides of the grouped input.
    let mut strides = vec![1usize; groups.len()];
    for g in (0..groups.len().saturating_sub(1)).rev() {
        strides[g] = strides[g + 1] * groups[g + 1].0;
    }
    let kept: Vec<(usize, usize)> = groups
        .iter()
        .zip(&strides)
        .filter(|((_, r), _)| !r)
        .map(|((d, _), &s)| (*d, s))
        .collect();
    let reduced: Vec<(usize, usize)> = groups
        .iter()
        .zip(&strides)
        .filter(|((_, r), _)| *r)
        .map(|((d, _), &s)| (*d, s))
        .collect();
    let count: usize = reduced.iter().map(|(d, _)| d).product();
    let block = rows_per_block(count);
    for_each_chunk_mut(y, block, |i, yc| {
        for (r, o) in yc.iter_mut().enumerate() {
            let mut rest = i * block + r;
            let mut base = 0;
            for &(d, s) in kept.iter().rev() {
                base += (rest % d) * s;
                rest /= d;
            }
            let (mut sum, mut max) = (0.0f64, f32::NEG_INFINITY);
            for j in 0..count {
                let (mut rest, mut off) = (j, base);
                for &(d, s) in reduced.iter().rev() {
                    off += (rest % d) * s;
                    rest /= d;
                }
                let v = x[off];
                sum += v as f64;
                max = nan_max(max, v);
            }
            *o = match op {
                ReduceOp::Sum => sum as f32,
                ReduceOp::Mean => (sum / count as f64) as f32,
                ReduceOp::Max => max,
            };
        }
    });
}

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
            [(_, true)] => {
                let n = x.len();
                y[0] = match op {
                    ReduceOp::Max if n <= PAR_CHUNK => max_f32(x),
                    ReduceOp::Max => {
                        let parts: Vec<f32> = x.par_chunks(PAR_CHUNK).map(max_f32).collect();
                        max_f32(&parts)
                    }
                    _ => {
                        let s: f64 = if n <= PAR_CHUNK {
                            sum_f64(x)
                        } else {
                            x.par_chunks(PAR_CHUNK).map(sum_f64).sum()
                        };
                        if op == ReduceOp::Mean {
                            (s / n as f64) as f32
                        } else {
                            s as f32
                        }
                    }
                };
            }
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
                // A row of -inf (fully masked) would give inf - inf; treat its max as 0.
                let max = if max.is_finite() { max } else { 0.0 };
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
                    let inv = (1.0 / sum) as f32;
                    for o in yr.iter_mut() {
                        *o *= inv;
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
