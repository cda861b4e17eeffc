//! Batch normalisation over the last axis of a `rows × channels` tensor (NHWC flattened), with
//! PyTorch's semantics: the biased batch variance normalises, the unbiased one feeds the running
//! average, and `running = (1 − momentum) · running + momentum · batch`.
//!
//! Per-channel statistics are accumulated in f64, in parallel over blocks of rows with one
//! partial sum per block.

use std::ops::Range;

use rayon::prelude::*;

use crate::backend::cpu::elementwise::{for_each_chunk_mut, rows_per_block};
use crate::backend::cpu::{check_len, CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

/// `rows · channels`, or an error when it overflows.
fn numel(op: &'static str, p: &BatchNormParams) -> Result<usize> {
    p.rows
        .checked_mul(p.channels)
        .ok_or_else(|| Error::invalid(op, format!("{p:?} overflows")))
}

/// Sums of `width` f64 accumulators over `rows` rows: `add(range, acc)` adds the rows of one
/// block into `acc`; blocks run in parallel and their partial sums are added together.
fn sum_rows<F>(rows: usize, channels: usize, width: usize, add: F) -> Vec<f64>
where
    F: Fn(Range<usize>, &mut [f64]) + Sync + Send,
{
    let block = rows_per_block(channels);
    let blocks = rows.div_ceil(block);
    let zeros = || vec![0.0f64; width];
    let run = |mut acc: Vec<f64>, b: usize| {
        add(b * block..((b + 1) * block).min(rows), &mut acc);
        acc
    };
    if blocks <= 1 {
        return run(zeros(), 0);
    }
    // Partials collected in block order and added in that order, so the sums do not depend on
    // how rayon schedules the blocks.
    let partials: Vec<Vec<f64>> = (0..blocks)
        .into_par_iter()
        .map(|b| run(zeros(), b))
        .collect();
    partials.into_iter().fold(zeros(), |mut a, b| {
        a.iter_mut().zip(b).for_each(|(u, v)| *u += v);
        a
    })
}

/// The training output's per-channel scale `γ·invstd` from the saved (f32) `invstd`, the same
/// in the forward, in [`NormOps::batch_norm_apply`] and in backward's ReLU mask.
fn train_scale(gamma: &[f32], invstd: &[f32]) -> Vec<f32> {
    gamma
        .iter()
        .zip(invstd)
        .map(|(&g, &s)| (g as f64 * s as f64) as f32)
        .collect()
}

/// `y = (x − mean) · scale + shift` per channel (then `max(0, y)` when `relu`), in parallel over
/// row blocks.
fn normalise(x: &[f32], mean: &[f32], scale: &[f32], shift: &[f32], relu: bool, y: &mut [f32]) {
    let c = mean.len();
    let block = rows_per_block(c);
    for_each_chunk_mut(y, block * c, |i, yc| {
        let start = i * block * c;
        let xc = &x[start..start + yc.len()];
        for (yr, xr) in yc.chunks_exact_mut(c).zip(xc.chunks_exact(c)) {
            let coef = mean.iter().zip(scale).zip(shift);
            for ((o, &v), ((&m, &a), &b)) in yr.iter_mut().zip(xr).zip(coef) {
                let z = (v - m) * a + b;
                *o = if relu { z.max(0.0) } else { z };
            }
        }
    });
}

/// What backward reads: `x`, the output gradient, and per channel the saved mean and the
/// forward's scale and shift (for the ReLU's mask).
struct Gradients<'a> {
    x: &'a [f32],
    dy: &'a [f32],
    mean: &'a [f32],
    scale: &'a [f32],
    shift: &'a [f32],
}

/// `dx = a · (dy − b − (x − mean) · k)` per channel.
struct Coefficients {
    a: Vec<f32>,
    b: Vec<f32>,
    k: Vec<f32>,
}

/// The gradient reaching the normalisation: `dy`, or with a ReLU after it (`RELU`) `dy` where
/// the forward's output `(x − mean)·scale + shift` was positive. A const parameter, so that the
/// loops without a ReLU carry no test.
#[inline(always)]
fn through_relu<const RELU: bool>(dy: f32, x: f32, mean: f32, scale: f32, shift: f32) -> f32 {
    if RELU && (x - mean) * scale + shift <= 0.0 {
        0.0
    } else {
        dy
    }
}

impl Gradients<'_> {
    /// Σ dy and Σ dy·(x − mean) per channel over `rows` rows.
    fn sums<const RELU: bool>(&self, rows: usize) -> Vec<f64> {
        let c = self.mean.len();
        sum_rows(rows, c, 2 * c, |block, acc| {
            let (s, t) = acc.split_at_mut(c);
            for r in block {
                let (xr, gr) = (&self.x[r * c..(r + 1) * c], &self.dy[r * c..(r + 1) * c]);
                let coef = self.mean.iter().zip(self.scale).zip(self.shift);
                let terms = xr.iter().zip(gr).zip(coef);
                for ((s, t), ((&v, &g), ((&m, &a), &b))) in
                    s.iter_mut().zip(t.iter_mut()).zip(terms)
                {
                    let g = through_relu::<RELU>(g, v, m, a, b) as f64;
                    *s += g;
                    *t += g * (v - m) as f64;
                }
            }
        })
    }

    /// `dx` from the per-channel coefficients, in parallel over row blocks.
    fn dx<const RELU: bool>(&self, coef: &Coefficients, dx: &mut [f32]) {
        let c = self.mean.len();
        let block = rows_per_block(c);
        for_each_chunk_mut(dx, block * c, |i, dxc| {
            let span = i * block * c..i * block * c + dxc.len();
            let rows = self.x[span.clone()]
                .chunks_exact(c)
                .zip(self.dy[span].chunks_exact(c));
            for ((xr, gr), dr) in rows.zip(dxc.chunks_exact_mut(c)) {
                let forward = self.mean.iter().zip(self.scale).zip(self.shift);
                let backward = coef.a.iter().zip(&coef.b).zip(&coef.k);
                let terms = xr.iter().zip(gr).zip(forward.zip(backward));
                for (o, ((&v, &g), (((&m, &s), &h), ((&a, &b), &k)))) in dr.iter_mut().zip(terms) {
                    *o = a * (through_relu::<RELU>(g, v, m, s, h) - b - (v - m) * k);
                }
            }
        });
    }
}

impl NormOps for CpuBackend {
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_train(
        &self,
        p: &BatchNormParams,
        x: &CpuBuffer,
        gamma: &CpuBuffer,
        beta: &CpuBuffer,
        y: &mut CpuBuffer,
        save_mean: &mut CpuBuffer,
        save_invstd: &mut CpuBuffer,
        running_mean: &mut CpuBuffer,
        running_var: &mut CpuBuffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm_train";
        p.validate(OP)?;
        if p.rows < 2 {
            // The unbiased variance needs two values, and PyTorch refuses one too.
            return Err(Error::invalid(
                OP,
                "expected more than one value per channel when training",
            ));
        }
        let (n, c) = (p.rows, p.channels);
        let len = numel(OP, p)?;
        check_len(OP, x, len)?;
        check_len(OP, y, len)?;
        for buf in [
            gamma,
            beta,
            &*save_mean,
            &*save_invstd,
            &*running_mean,
            &*running_var,
        ] {
            check_len(OP, buf, c)?;
        }
        let x = &x.0[..];

        // Σ(x − k) and Σ(x − k)² with k the first row: shifting by a sample of the channel keeps
        // the one-pass variance free of cancellation when the mean is large.
        let shift = &x[..c];
        let sums = sum_rows(n, c, 2 * c, |rows, acc| {
            let (s, q) = acc.split_at_mut(c);
            for r in rows {
                let xr = &x[r * c..(r + 1) * c];
                let terms = s.iter_mut().zip(q.iter_mut()).zip(xr.iter().zip(shift));
                for ((s, q), (&v, &k)) in terms {
                    let d = v as f64 - k as f64;
                    *s += d;
                    *q += d * d;
                }
            }
        });

        let nf = n as f64;
        let m = p.momentum as f64;
        for j in 0..c {
            let d_mean = sums[j] / nf;
            let var = (sums[c + j] / nf - d_mean * d_mean).max(0.0);
            let mu = shift[j] as f64 + d_mean;
            let invstd = 1.0 / (var + p.eps as f64).sqrt();
            save_mean.0[j] = mu as f32;
            save_invstd.0[j] = invstd as f32;
            let rm = &mut running_mean.0[j];
            *rm = ((1.0 - m) * *rm as f64 + m * mu) as f32;
            let rv = &mut running_var.0[j];
            *rv = ((1.0 - m) * *rv as f64 + m * var * nf / (nf - 1.0)) as f32;
        }
        let scale = train_scale(&gamma.0, &save_invstd.0);
        normalise(x, &save_mean.0, &scale, &beta.0, p.relu, &mut y.0);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_apply(
        &self,
        p: &BatchNormParams,
        x: &CpuBuffer,
        gamma: &CpuBuffer,
        beta: &CpuBuffer,
        save_mean: &CpuBuffer,
        save_invstd: &CpuBuffer,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm_apply";
        p.validate(OP)?;
        let len = numel(OP, p)?;
        check_len(OP, x, len)?;
        check_len(OP, y, len)?;
        for buf in [gamma, beta, save_mean, save_invstd] {
            check_len(OP, buf, p.channels)?;
        }
        let scale = train_scale(&gamma.0, &save_invstd.0);
        normalise(&x.0, &save_mean.0, &scale, &beta.0, p.relu, &mut y.0);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_inference(
        &self,
        p: &BatchNormParams,
        x: &CpuBuffer,
        gamma: &CpuBuffer,
        beta: &CpuBuffer,
        running_mean: &CpuBuffer,
        running_var: &CpuBuffer,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm_inference";
        p.validate(OP)?;
        let len = numel(OP, p)?;
        check_len(OP, x, len)?;
        check_len(OP, y, len)?;
        for buf in [gamma, beta, running_mean, running_var] {
            check_len(OP, buf, p.channels)?;
        }
        let scale: Vec<f32> = gamma
            .0
            .iter()
            .zip(&running_var.0)
            .map(|(&g, &v)| (g as f64 / (v as f64 + p.eps as f64).sqrt()) as f32)
            .collect();
        normalise(&x.0, &running_mean.0, &scale, &beta.0, p.relu, &mut y.0);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        p: &BatchNormParams,
        x: &CpuBuffer,
        dy: &CpuBuffer,
        gamma: &CpuBuffer,
        beta: &CpuBuffer,
        save_mean: &CpuBuffer,
        save_invstd: &CpuBuffer,
        dx: &mut CpuBuffer,
        dgamma: &mut CpuBuffer,
        dbeta: &mut CpuBuffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm_backward";
        p.validate(OP)?;
        let (n, c) = (p.rows, p.channels);
        let len = numel(OP, p)?;
        check_len(OP, x, len)?;
        check_len(OP, dy, len)?;
        check_len(OP, dx, len)?;
        for buf in [gamma, beta, save_mean, save_invstd, &*dgamma, &*dbeta] {
            check_len(OP, buf, c)?;
        }
        let invstd = &save_invstd.0[..];
        let grads = Gradients {
            x: &x.0,
            dy: &dy.0,
            mean: &save_mean.0,
            scale: &train_scale(&gamma.0, invstd),
            shift: &beta.0,
        };
        let sums = match p.relu {
            true => grads.sums::<true>(n),
            false => grads.sums::<false>(n),
        };

        // dx = γ·invstd · (dy − dβ/N − x̂ · dγ/N), with x̂ = (x − mean)·invstd, written as
        // a · (dy − b − (x − mean) · k) per channel.
        let nf = n as f64;
        let mut coef = Coefficients {
            a: vec![0.0f32; c],
            b: vec![0.0f32; c],
            k: vec![0.0f32; c],
        };
        for j in 0..c {
            let is = invstd[j] as f64;
            let db = sums[j];
            let dg = sums[c + j] * is;
            dbeta.0[j] = db as f32;
            dgamma.0[j] = dg as f32;
            coef.a[j] = (gamma.0[j] as f64 * is) as f32;
            coef.b[j] = (db / nf) as f32;
            coef.k[j] = (dg * is / nf) as f32;
        }
        match p.relu {
            true => grads.dx::<true>(&coef, &mut dx.0),
            false => grads.dx::<false>(&coef, &mut dx.0),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(rows: usize, channels: usize) -> BatchNormParams {
        BatchNormParams {
            rows,
            channels,
            eps: 1e-5,
            momentum: 0.1,
            relu: false,
        }
    }

    /// Per-channel mean and biased variance in f64.
    fn stats(v: &[f32], c: usize) -> Vec<(f64, f64)> {
        let n = (v.len() / c) as f64;
        (0..c)
            .map(|j| {
                let col: Vec<f64> = v.iter().skip(j).step_by(c).map(|&a| a as f64).collect();
                let m = col.iter().sum::<f64>() / n;
                (m, col.iter().map(|a| (a - m) * (a - m)).sum::<f64>() / n)
            })
            .collect()
    }

    #[test]
    fn train_normalises_and_updates_running_stats() {
        let be = CpuBackend::new();
        let (n, c) = (3000, 3); // several parallel blocks
                                // Channel 2 has a large mean, to exercise the shifted accumulation.
        let x: Vec<f32> = (0..n * c)
            .map(|i| ((i * 7919) % 113) as f32 * 0.05 + if i % c == 2 { 1000.0 } else { 0.0 })
            .collect();
        let ones = CpuBuffer(vec![1.0; c]);
        let zeros = CpuBuffer(vec![0.0; c]);
        let mut y = CpuBuffer(vec![0.0; n * c]);
        let (mut sm, mut si) = (zeros.clone(), zeros.clone());
        let (mut rm, mut rv) = (zeros.clone(), ones.clone());
        let xb = CpuBuffer(x.clone());
        be.batch_norm_train(
            &params(n, c),
            &xb,
            &ones,
            &zeros,
            &mut y,
            &mut sm,
            &mut si,
            &mut rm,
            &mut rv,
        )
        .unwrap();
        let want = stats(&x, c);
        for (j, &(m, v)) in want.iter().enumerate() {
            assert!((sm.0[j] as f64 - m).abs() < 1e-4 * m.abs().max(1.0));
            assert!((rm.0[j] as f64 - 0.1 * m).abs() < 1e-4 * m.abs().max(1.0));
            let unbiased = v * n as f64 / (n - 1) as f64;
            assert!((rv.0[j] as f64 - (0.9 + 0.1 * unbiased)).abs() < 1e-5);
        }
        for (m, v) in stats(&y.0, c) {
            assert!(m.abs() < 1e-4, "mean {m}");
            assert!((v - 1.0).abs() < 1e-3, "var {v}");
        }
        let err = be.batch_norm_train(
            &params(1, c),
            &zeros,
            &ones,
            &zeros,
            &mut y,
            &mut sm,
            &mut si,
            &mut rm,
            &mut rv,
        );
        assert!(matches!(err, Err(Error::InvalidArgument { .. })));
    }

    #[test]
    fn backward_matches_the_closed_form() {
        let be = CpuBackend::new();
        // One channel, x = [0, 1, 2, 3]: mean 1.5, biased var 1.25.
        let x = CpuBuffer(vec![0.0, 1.0, 2.0, 3.0]);
        let dy = CpuBuffer(vec![1.0, 0.0, 0.0, 2.0]);
        let gamma = CpuBuffer(vec![2.0]);
        let mean = CpuBuffer(vec![1.5]);
        let is = 1.0 / (1.25f64 + 1e-5).sqrt();
        let invstd = CpuBuffer(vec![is as f32]);
        let (mut dx, mut dg, mut db) = (
            CpuBuffer(vec![0.0; 4]),
            CpuBuffer(vec![0.0]),
            CpuBuffer(vec![0.0]),
        );
        be.batch_norm_backward(
            &params(4, 1),
            &x,
            &dy,
            &gamma,
            &CpuBuffer(vec![0.0]),
            &mean,
            &invstd,
            &mut dx,
            &mut dg,
            &mut db,
        )
        .unwrap();
        let xhat: Vec<f64> = [0.0, 1.0, 2.0, 3.0]
            .iter()
            .map(|v| (v - 1.5) * is)
            .collect();
        let dgw = 1.0 * xhat[0] + 2.0 * xhat[3];
        assert_eq!(db.0[0], 3.0);
        assert!((dg.0[0] as f64 - dgw).abs() < 1e-5);
        for (i, &g) in [1.0, 0.0, 0.0, 2.0].iter().enumerate() {
            let want = 2.0 * is / 4.0 * (4.0 * g - 3.0 - xhat[i] * dgw);
            assert!(
                (dx.0[i] as f64 - want).abs() < 1e-5,
                "{i}: {} vs {want}",
                dx.0[i]
            );
        }
    }
}
