//! The reduction kernels behind `ReduceOps::reduce`: the input's axes are grouped into runs
//! of reduced and kept axes, and the common groupings (everything, the last axis, all but the
//! last axis) get their own loops; anything else walks strides.

use rayon::prelude::*;

use crate::backend::cpu::elementwise::{for_each_chunk_mut, rows_per_block, PAR_CHUNK};
use crate::backend::ReduceOp;

/// `max` that propagates NaN, as PyTorch's reductions do.
#[inline(always)]
pub(super) fn nan_max(m: f32, v: f32) -> f32 {
    if v > m || v.is_nan() {
        v
    } else {
        m
    }
}

/// Sum in f64 with independent accumulators (so the loop pipelines and vectorises).
pub(super) fn sum_f64(xs: &[f32]) -> f64 {
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

pub(super) fn max_f32(xs: &[f32]) -> f32 {
    xs.iter().fold(f32::NEG_INFINITY, |m, &v| nan_max(m, v))
}

/// Reduces all of `x` (not empty) to one value.
pub(super) fn reduce_all(op: ReduceOp, x: &[f32]) -> f32 {
    let n = x.len();
    match op {
        ReduceOp::Max if n <= PAR_CHUNK => max_f32(x),
        ReduceOp::Max => {
            let parts: Vec<f32> = x.par_chunks(PAR_CHUNK).map(max_f32).collect();
            max_f32(&parts)
        }
        ReduceOp::Sum | ReduceOp::Mean => {
            let s: f64 = if n <= PAR_CHUNK {
                sum_f64(x)
            } else {
                // Collected, then added in order: the same sum on every run.
                let parts: Vec<f64> = x.par_chunks(PAR_CHUNK).map(sum_f64).collect();
                parts.into_iter().sum()
            };
            if op == ReduceOp::Mean {
                (s / n as f64) as f32
            } else {
                s as f32
            }
        }
    }
}

/// Per-block partial results of a column reduction: `rows × cols` to `cols`.
pub(super) fn reduce_columns(op: ReduceOp, x: &[f32], cols: usize, y: &mut [f32]) {
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
        // One partial per block, added in block order: the same sums on every run.
        let parts: Vec<Vec<f64>> = x
            .par_chunks(block * cols)
            .map(|chunk| fold(init(), chunk))
            .collect();
        parts.into_iter().fold(init(), |a, b| {
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
pub(super) fn reduce_rows(op: ReduceOp, x: &[f32], inner: usize, y: &mut [f32]) {
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
pub(super) fn reduce_general(op: ReduceOp, x: &[f32], groups: &[(usize, bool)], y: &mut [f32]) {
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
