//! Losses with their gradients (softmax cross-entropy and focal loss, sigmoid binary
//! cross-entropy, soft Dice), foreground masks, the Euclidean distance transform and per-image
//! confusion counts.
//!
//! Each row's arithmetic runs in f64 and sums accumulate in f64 over blocks of rows whose partial
//! results are combined in block order, so results do not depend on the thread count.

use std::ops::{AddAssign, Range};

use rayon::prelude::*;

use crate::backend::cpu::elementwise::{rows_per_block, PAR_CHUNK};
use crate::backend::cpu::{check_len, CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

mod distance;

/// The class of label `v` (`None` for the ignore index), or an error naming row `row` when `v`
/// is not an integer class in `[0, classes)`.
fn class_of(
    op: &'static str,
    row: usize,
    v: f32,
    classes: usize,
    ignore: Option<u32>,
) -> Result<Option<usize>> {
    if v >= 0.0 && v.fract() == 0.0 && v < 4_294_967_296.0 {
        let k = v as u32;
        if Some(k) == ignore {
            return Ok(None);
        }
        if (k as usize) < classes {
            return Ok(Some(k as usize));
        }
    }
    let ignore = ignore.map_or_else(|| "none".to_string(), |i| i.to_string());
    Err(Error::invalid(
        op,
        format!(
            "label {v} of row {row} is not a class in [0, {classes}) nor the ignore index \
             ({ignore})"
        ),
    ))
}

/// Calls `f(range)` for consecutive ranges of `block` rows out of `rows` and returns the
/// results in order (in parallel when there is more than one block).
fn map_blocks<T, F>(rows: usize, block: usize, f: F) -> Result<Vec<T>>
where
    T: Send,
    F: Fn(Range<usize>) -> Result<T> + Sync + Send,
{
    let block = block.max(1);
    let blocks = rows.div_ceil(block);
    let range = |i: usize| i * block..((i + 1) * block).min(rows);
    if blocks <= 1 {
        return (0..blocks).map(|i| f(range(i))).collect();
    }
    (0..blocks).into_par_iter().map(|i| f(range(i))).collect()
}

/// Like [`map_blocks`], but each block also gets its rows of `out` (`width` elements per row).
fn map_row_blocks_mut<T, F>(out: &mut [f32], width: usize, block: usize, f: F) -> Vec<T>
where
    T: Send,
    F: Fn(Range<usize>, &mut [f32]) -> T + Sync + Send,
{
    let chunk = block.max(1) * width.max(1);
    let rows_of = |i: usize, c: &[f32]| {
        let start = i * block.max(1);
        start..start + c.len() / width.max(1)
    };
    if out.len() <= chunk {
        if out.is_empty() {
            return Vec::new();
        }
        return vec![f(rows_of(0, out), out)];
    }
    out.par_chunks_mut(chunk)
        .enumerate()
        .map(|(i, c)| f(rows_of(i, c), c))
        .collect()
}

/// Sums of `width` values per image, `images × width`, from blocks of rows: `f(rows, first,
/// partial)` adds the contributions of `rows` into `partial`, whose `width`-sized slots are the
/// images from `first` on that those rows span. Partials are added in block order.
fn per_image_sums<T, F>(
    images: usize,
    per_image: usize,
    width: usize,
    block: usize,
    f: F,
) -> Result<Vec<T>>
where
    T: Copy + Default + AddAssign + Send,
    F: Fn(Range<usize>, usize, &mut [T]) -> Result<()> + Sync + Send,
{
    let mut total = vec![T::default(); images * width];
    if per_image == 0 {
        return Ok(total);
    }
    let partials = map_blocks(images * per_image, block, |rows| {
        let first = rows.start / per_image;
        let last = (rows.end - 1) / per_image;
        let mut partial = vec![T::default(); (last - first + 1) * width];
        f(rows, first, &mut partial)?;
        Ok((first, partial))
    })?;
    for (first, partial) in partials {
        for (t, &v) in total[first * width..].iter_mut().zip(&partial) {
            *t += v;
        }
    }
    Ok(total)
}

/// `max`, `ln Σ exp(z − max)` of a row, in f64.
fn log_sum_exp(z: &[f32]) -> (f64, f64) {
    let max = z.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
    let sum: f64 = z.iter().map(|&v| (v as f64 - max).exp()).sum();
    (max, sum.ln())
}

/// `(1 − q)^γ · (−log q)` and its derivative factor `g` with `d loss / d z = g · (p − onehot)`,
/// from `log q` (focal loss; γ = 0 gives cross-entropy with `g = 1` exactly).
fn focal_terms(log_q: f64, gamma: f64) -> (f64, f64) {
    if gamma == 0.0 {
        return (-log_q, 1.0);
    }
    let q = log_q.exp();
    // 1 − q without cancellation when q is close to 1.
    let one_minus_q = -log_q.exp_m1();
    let factor = one_minus_q.powf(gamma);
    // log q / (1 − q) → −1 as q → 1.
    let ratio = if one_minus_q > 0.0 {
        log_q / one_minus_q
    } else {
        -1.0
    };
    (-factor * log_q, factor * (1.0 - gamma * q * ratio))
}

/// Softplus `ln(1 + eˣ)` without overflow.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// Logistic sigmoid without overflow.
fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// Checks the optional per-class weights: `classes` finite values ≥ 0.
fn class_weights<'a>(
    op: &'static str,
    weights: Option<&'a CpuBuffer>,
    classes: usize,
) -> Result<Option<&'a [f32]>> {
    let Some(w) = weights else {
        return Ok(None);
    };
    check_len(op, w, classes)?;
    if let Some(bad) = w.0.iter().find(|v| !(**v >= 0.0 && v.is_finite())) {
        return Err(Error::invalid(
            op,
            format!("class weight {bad} must be finite and >= 0"),
        ));
    }
    Ok(Some(&w.0))
}

impl LossOps for CpuBackend {
    fn softmax_cross_entropy(
        &self,
        p: &CrossEntropyParams,
        logits: &CpuBuffer,
        labels: &CpuBuffer,
        class_weights_buf: Option<&CpuBuffer>,
        pixel_weights: Option<&CpuBuffer>,
        loss: &mut CpuBuffer,
        grad: &mut CpuBuffer,
    ) -> Result<()> {
        const OP: &str = "softmax_cross_entropy";
        p.validate(OP)?;
        let (rows, classes) = (p.rows, p.classes);
        check_len(OP, logits, rows * classes)?;
        check_len(OP, labels, rows)?;
        check_len(OP, loss, 1)?;
        check_len(OP, grad, rows * classes)?;
        let cw = class_weights(OP, class_weights_buf, classes)?;
        if let Some(pw) = pixel_weights {
            check_len(OP, pw, rows)?;
        }
        let (z, y) = (&logits.0[..], &labels.0[..]);
        let pw = pixel_weights.map(|b| &b.0[..]);
        // a_i = w[y_i] · pw_i, or None for an ignored row.
        let weight = |row: usize| -> Result<Option<f64>> {
            let Some(c) = class_of(OP, row, y[row], classes, p.ignore_index)? else {
                return Ok(None);
            };
            let w = cw.map_or(1.0, |w| w[c] as f64) * pw.map_or(1.0, |pw| pw[row] as f64);
            Ok(Some(w))
        };
        // The normaliser depends on the labels and weights only: one cheap pass first.
        let block = rows_per_block(classes);
        let denominator: f64 = map_blocks(rows, PAR_CHUNK, |r| {
            r.map(|row| Ok(weight(row)?.unwrap_or(0.0)))
                .sum::<Result<f64>>()
        })?
        .into_iter()
        .sum();
        if denominator == 0.0 {
            loss.0[0] = 0.0;
            grad.0.fill(0.0);
            return Ok(());
        }
        let gamma = p.gamma as f64;
        let numerators = map_row_blocks_mut(&mut grad.0, classes, block, |r, gc| {
            let mut numerator = 0.0f64;
            for (row, gr) in r.zip(gc.chunks_exact_mut(classes)) {
                // Labels were checked by the first pass.
                let (Ok(Some(a)), Ok(Some(label))) = (
                    weight(row),
                    class_of(OP, row, y[row], classes, p.ignore_index),
                ) else {
                    gr.fill(0.0);
                    continue;
                };
                let zr = &z[row * classes..(row + 1) * classes];
                let (max, lse) = log_sum_exp(zr);
                let log_q = (zr[label] as f64 - max) - lse;
                let (l, g) = focal_terms(log_q, gamma);
                numerator += a * l;
                let scale = a / denominator * g;
                for (k, (o, &v)) in gr.iter_mut().zip(zr).enumerate() {
                    let prob = (v as f64 - max - lse).exp();
                    let onehot = if k == label { 1.0 } else { 0.0 };
                    *o = (scale * (prob - onehot)) as f32;
                }
            }
            numerator
        });
        loss.0[0] = (numerators.into_iter().sum::<f64>() / denominator) as f32;
        Ok(())
    }

    fn sigmoid_binary_cross_entropy(
        &self,
        p: &BinaryCrossEntropyParams,
        logits: &CpuBuffer,
        targets: &CpuBuffer,
        pixel_weights: Option<&CpuBuffer>,
        loss: &mut CpuBuffer,
        grad: &mut CpuBuffer,
    ) -> Result<()> {
        const OP: &str = "sigmoid_binary_cross_entropy";
        p.validate(OP)?;
        let n = p.len;
        check_len(OP, logits, n)?;
        check_len(OP, targets, n)?;
        check_len(OP, loss, 1)?;
        check_len(OP, grad, n)?;
        if let Some(pw) = pixel_weights {
            check_len(OP, pw, n)?;
        }
        if n == 0 {
            loss.0[0] = 0.0;
            return Ok(());
        }
        let (x, t) = (&logits.0[..], &targets.0[..]);
        let pw = pixel_weights.map(|b| &b.0[..]);
        let pos = p.pos_weight as f64;
        let inv_n = 1.0 / n as f64;
        let sums = map_row_blocks_mut(&mut grad.0, 1, PAR_CHUNK, |r, gc| {
            let mut sum = 0.0f64;
            for (i, o) in r.zip(gc.iter_mut()) {
                let (xi, ti) = (x[i] as f64, t[i] as f64);
                let w = pw.map_or(1.0, |pw| pw[i] as f64);
                // −log σ(x) = softplus(−x), −log(1 − σ(x)) = softplus(x).
                sum += w * (pos * ti * softplus(-xi) + (1.0 - ti) * softplus(xi));
                let s = sigmoid(xi);
                *o = (w * inv_n * ((1.0 - ti) * s - pos * ti * (1.0 - s))) as f32;
            }
            sum
        });
        loss.0[0] = (sums.into_iter().sum::<f64>() * inv_n) as f32;
        Ok(())
    }

    fn soft_dice(
        &self,
        p: &SoftDiceParams,
        logits: &CpuBuffer,
        labels: &CpuBuffer,
        loss: &mut CpuBuffer,
        grad: &mut CpuBuffer,
    ) -> Result<()> {
        const OP: &str = "soft_dice";
        p.validate(OP)?;
        let (classes, ppi) = (p.classes, p.pixels_per_image);
        let rows = p.rows();
        check_len(OP, logits, rows * classes)?;
        check_len(OP, labels, rows)?;
        check_len(OP, loss, 1)?;
        check_len(OP, grad, rows * classes)?;
        let (z, y) = (&logits.0[..], &labels.0[..]);
        let label = |row: usize| class_of(OP, row, y[row], classes, p.ignore_index);
        // Per image and class: Σ p·t, Σ p, Σ t.
        let block = rows_per_block(classes);
        let sums = per_image_sums::<f64, _>(p.images, ppi, 3 * classes, block, |r, first, acc| {
            for row in r {
                let Some(c) = label(row)? else { continue };
                let slot = &mut acc[(row / ppi - first) * 3 * classes..][..3 * classes];
                let zr = &z[row * classes..(row + 1) * classes];
                let (max, lse) = log_sum_exp(zr);
                for (k, &v) in zr.iter().enumerate() {
                    let prob = (v as f64 - max - lse).exp();
                    slot[classes + k] += prob;
                    if k == c {
                        slot[k] += prob;
                    }
                }
                slot[2 * classes + c] += 1.0;
            }
            Ok(())
        })?;
        // Per image and class, dL/dp_c = −a_c · t_c + b_c with a = 2 / (K·S), b = (2I + ε) /
        // (K·S²), S = Σp + Σt + ε; classes left out of the mean, and empty sums with ε = 0,
        // have a = b = 0.
        let first_class = p.first_class();
        let terms = (p.images * (classes - first_class)) as f64;
        let eps = p.eps as f64;
        let mut total = 0.0f64;
        let mut coef = vec![(0.0f64, 0.0f64); p.images * classes];
        for (img, s) in sums.chunks_exact(3 * classes).enumerate() {
            for c in first_class..classes {
                let (inter, psum, tsum) = (s[c], s[classes + c], s[2 * classes + c]);
                let denom = psum + tsum + eps;
                if denom == 0.0 {
                    continue;
                }
                total += 1.0 - (2.0 * inter + eps) / denom;
                coef[img * classes + c] = (
                    2.0 / (terms * denom),
                    (2.0 * inter + eps) / (terms * denom * denom),
                );
            }
        }
        loss.0[0] = (total / terms) as f32;
        // Through the softmax: dz_j = p_j · (G_j − Σ_c p_c·G_c).
        map_row_blocks_mut(&mut grad.0, classes, block, |r, gc| {
            let mut g = vec![0.0f64; classes];
            for (row, gr) in r.zip(gc.chunks_exact_mut(classes)) {
                let Ok(Some(c)) = label(row) else {
                    gr.fill(0.0);
                    continue;
                };
                let cf = &coef[(row / ppi) * classes..][..classes];
                let zr = &z[row * classes..(row + 1) * classes];
                let (max, lse) = log_sum_exp(zr);
                let mut dot = 0.0f64;
                for (k, gk) in g.iter_mut().enumerate() {
                    let prob = (zr[k] as f64 - max - lse).exp();
                    let t = if k == c { 1.0 } else { 0.0 };
                    *gk = -cf[k].0 * t + cf[k].1;
                    dot += prob * *gk;
                }
                for (k, o) in gr.iter_mut().enumerate() {
                    let prob = (zr[k] as f64 - max - lse).exp();
                    *o = (prob * (g[k] - dot)) as f32;
                }
            }
        });
        Ok(())
    }

    fn foreground_mask(
        &self,
        p: &ForegroundParams,
        labels: &CpuBuffer,
        mask: &mut CpuBuffer,
    ) -> Result<()> {
        distance::foreground_mask(p, labels, mask)
    }

    fn distance_transform(
        &self,
        p: &ImageGridParams,
        mask: &CpuBuffer,
        out: &mut CpuBuffer,
    ) -> Result<()> {
        distance::distance_transform(p, mask, out)
    }

    fn confusion_matrix(
        &self,
        p: &ConfusionParams,
        logits: &CpuBuffer,
        labels: &CpuBuffer,
        counts: &mut CpuBuffer,
    ) -> Result<()> {
        const OP: &str = "confusion_matrix";
        p.validate(OP)?;
        let (classes, ppi) = (p.classes, p.pixels_per_image);
        let rows = p.rows();
        check_len(OP, logits, rows * classes)?;
        check_len(OP, labels, rows)?;
        check_len(OP, counts, p.images * classes * classes)?;
        let (z, y) = (&logits.0[..], &labels.0[..]);
        let cells = classes * classes;
        let block = rows_per_block(classes);
        let sums = per_image_sums::<u64, _>(p.images, ppi, cells, block, |r, first, acc| {
            for row in r {
                let Some(t) = class_of(OP, row, y[row], classes, p.ignore_index)? else {
                    continue;
                };
                let zr = &z[row * classes..(row + 1) * classes];
                let mut best = 0;
                for (k, &v) in zr.iter().enumerate() {
                    if v > zr[best] {
                        best = k;
                    }
                }
                acc[(row / ppi - first) * cells + t * classes + best] += 1;
            }
            Ok(())
        })?;
        for (o, &c) in counts.0.iter_mut().zip(&sums) {
            *o = c as f32;
        }
        Ok(())
    }
}
