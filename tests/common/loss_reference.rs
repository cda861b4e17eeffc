//! Naive float64 references of the loss, distance and confusion primitives
//! ([`magnet::backend::LossOps`]), written for clarity, not speed. Labels are class indices as
//! f64; `ignore` is the ignore index.

/// `(max, log Σ exp(z − max))` of a row.
fn lse(z: &[f64]) -> (f64, f64) {
    let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    (m, z.iter().map(|v| (v - m).exp()).sum::<f64>().ln())
}

/// Softmax of one row.
pub fn softmax_row(z: &[f64]) -> Vec<f64> {
    let (m, l) = lse(z);
    z.iter().map(|v| (v - m - l).exp()).collect()
}

/// Options of [`cross_entropy`].
#[derive(Debug, Clone, Default)]
pub struct CeCase {
    pub rows: usize,
    pub classes: usize,
    pub class_weights: Option<Vec<f64>>,
    pub pixel_weights: Option<Vec<f64>>,
    pub ignore: Option<u32>,
    pub gamma: f64,
}

impl CeCase {
    /// `a_i = w[y_i] · pw_i` for a row that is not ignored.
    fn weight(&self, row: usize, label: f64) -> Option<(usize, f64)> {
        if self.ignore.is_some_and(|i| i as f64 == label) {
            return None;
        }
        let c = label as usize;
        let w = self.class_weights.as_ref().map_or(1.0, |w| w[c])
            * self.pixel_weights.as_ref().map_or(1.0, |pw| pw[row]);
        Some((c, w))
    }

    fn denominator(&self, labels: &[f64]) -> f64 {
        (0..self.rows)
            .filter_map(|r| self.weight(r, labels[r]))
            .map(|(_, w)| w)
            .sum()
    }
}

/// `Σ a_i (1 − p_y)^γ (−log p_y) / Σ a_i` (0 when `Σ a_i = 0`).
pub fn cross_entropy(case: &CeCase, logits: &[f64], labels: &[f64]) -> f64 {
    let c = case.classes;
    let den = case.denominator(labels);
    if den == 0.0 {
        return 0.0;
    }
    let mut num = 0.0;
    for r in 0..case.rows {
        let Some((y, a)) = case.weight(r, labels[r]) else {
            continue;
        };
        let p = softmax_row(&logits[r * c..(r + 1) * c]);
        num += a * (1.0 - p[y]).powf(case.gamma) * -p[y].ln();
    }
    num / den
}

/// The analytic `dL/dlogits` of [`cross_entropy`].
pub fn cross_entropy_grad(case: &CeCase, logits: &[f64], labels: &[f64]) -> Vec<f64> {
    let c = case.classes;
    let den = case.denominator(labels);
    let mut g = vec![0.0; logits.len()];
    if den == 0.0 {
        return g;
    }
    for r in 0..case.rows {
        let Some((y, a)) = case.weight(r, labels[r]) else {
            continue;
        };
        let p = softmax_row(&logits[r * c..(r + 1) * c]);
        let (q, gm) = (p[y], case.gamma);
        // d/dq of −(1−q)^γ log q, times dq/dz_j = q(δ − p_j).
        let dq = if gm == 0.0 {
            -1.0 / q
        } else {
            gm * (1.0 - q).powf(gm - 1.0) * q.ln() - (1.0 - q).powf(gm) / q
        };
        for j in 0..c {
            let delta = if j == y { 1.0 } else { 0.0 };
            g[r * c + j] = a / den * dq * q * (delta - p[j]);
        }
    }
    g
}

/// Softplus `ln(1 + eˣ)`, stable.
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `(1/n) Σ w (pos·t·softplus(−x) + (1−t)·softplus(x))`.
pub fn bce_with_logits(x: &[f64], t: &[f64], w: Option<&[f64]>, pos: f64) -> f64 {
    let n = x.len() as f64;
    (0..x.len())
        .map(|i| {
            let wi = w.map_or(1.0, |w| w[i]);
            wi * (pos * t[i] * softplus(-x[i]) + (1.0 - t[i]) * softplus(x[i]))
        })
        .sum::<f64>()
        / n
}

/// The analytic gradient of [`bce_with_logits`].
pub fn bce_with_logits_grad(x: &[f64], t: &[f64], w: Option<&[f64]>, pos: f64) -> Vec<f64> {
    let n = x.len() as f64;
    (0..x.len())
        .map(|i| {
            let s = 1.0 / (1.0 + (-x[i]).exp());
            let wi = w.map_or(1.0, |w| w[i]);
            wi * ((1.0 - t[i]) * s - pos * t[i] * (1.0 - s)) / n
        })
        .collect()
}

/// Options of [`soft_dice`].
#[derive(Debug, Clone)]
pub struct DiceCase {
    pub images: usize,
    pub pixels_per_image: usize,
    pub classes: usize,
    pub ignore: Option<u32>,
    pub eps: f64,
    pub include_background: bool,
}

/// `mean_{b,c} 1 − (2 Σ p t + ε) / (Σ p + Σ t + ε)`.
pub fn soft_dice(case: &DiceCase, logits: &[f64], labels: &[f64]) -> f64 {
    let (c, ppi) = (case.classes, case.pixels_per_image);
    let first = usize::from(!case.include_background);
    let mut total = 0.0;
    for b in 0..case.images {
        for k in first..c {
            let (mut inter, mut ps, mut ts) = (0.0, 0.0, 0.0);
            for i in b * ppi..(b + 1) * ppi {
                if case.ignore.is_some_and(|ig| ig as f64 == labels[i]) {
                    continue;
                }
                let p = softmax_row(&logits[i * c..(i + 1) * c])[k];
                let t = if labels[i] as usize == k { 1.0 } else { 0.0 };
                inter += p * t;
                ps += p;
                ts += t;
            }
            let den = ps + ts + case.eps;
            if den > 0.0 {
                total += 1.0 - (2.0 * inter + case.eps) / den;
            }
        }
    }
    total / (case.images * (c - first)) as f64
}

/// The analytic gradient of [`soft_dice`], through the softmax.
pub fn soft_dice_grad(case: &DiceCase, logits: &[f64], labels: &[f64]) -> Vec<f64> {
    let (c, ppi) = (case.classes, case.pixels_per_image);
    let first = usize::from(!case.include_background);
    let terms = (case.images * (c - first)) as f64;
    let ignored = |i: usize| case.ignore.is_some_and(|ig| ig as f64 == labels[i]);
    let mut g = vec![0.0; logits.len()];
    for b in 0..case.images {
        let pixels = b * ppi..(b + 1) * ppi;
        // dL/dp per pixel and class.
        let mut dp = vec![0.0; ppi * c];
        for k in first..c {
            let (mut inter, mut ps, mut ts) = (0.0, 0.0, 0.0);
            for i in pixels.clone().filter(|&i| !ignored(i)) {
                let p = softmax_row(&logits[i * c..(i + 1) * c])[k];
                let t = if labels[i] as usize == k { 1.0 } else { 0.0 };
                inter += p * t;
                ps += p;
                ts += t;
            }
            let den = ps + ts + case.eps;
            if den == 0.0 {
                continue;
            }
            for i in pixels.clone().filter(|&i| !ignored(i)) {
                let t = if labels[i] as usize == k { 1.0 } else { 0.0 };
                dp[(i - b * ppi) * c + k] =
                    -(2.0 * t / den - (2.0 * inter + case.eps) / (den * den)) / terms;
            }
        }
        for i in pixels.filter(|&i| !ignored(i)) {
            let p = softmax_row(&logits[i * c..(i + 1) * c]);
            for j in 0..c {
                g[i * c + j] = (0..c)
                    .map(|k| {
                        let delta = if k == j { 1.0 } else { 0.0 };
                        dp[(i - b * ppi) * c + k] * p[k] * (delta - p[j])
                    })
                    .sum();
            }
        }
    }
    g
}

/// The exact Euclidean distance to the nearest foreground pixel (`mask > 0.5`) by brute force;
/// an image without foreground gets its diagonal `√(h² + w²)`.
pub fn distance_transform(batch: usize, h: usize, w: usize, mask: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; batch * h * w];
    for b in 0..batch {
        let fg: Vec<(usize, usize)> = (0..h)
            .flat_map(|y| (0..w).map(move |x| (y, x)))
            .filter(|&(y, x)| mask[(b * h + y) * w + x] > 0.5)
            .collect();
        for y in 0..h {
            for x in 0..w {
                out[(b * h + y) * w + x] = if fg.is_empty() {
                    ((h * h + w * w) as f64).sqrt()
                } else {
                    fg.iter()
                        .map(|&(fy, fx)| {
                            let (dy, dx) = (fy as f64 - y as f64, fx as f64 - x as f64);
                            (dy * dy + dx * dx).sqrt()
                        })
                        .fold(f64::INFINITY, f64::min)
                };
            }
        }
    }
    out
}

/// Per-image counts `[image][true][argmax]` (first maximum on ties), skipping ignored pixels.
pub fn confusion(
    images: usize,
    ppi: usize,
    classes: usize,
    ignore: Option<u32>,
    logits: &[f64],
    labels: &[f64],
) -> Vec<f64> {
    let mut counts = vec![0.0; images * classes * classes];
    for i in 0..images * ppi {
        if ignore.is_some_and(|ig| ig as f64 == labels[i]) {
            continue;
        }
        let row = &logits[i * classes..(i + 1) * classes];
        let mut best = 0;
        for k in 1..classes {
            if row[k] > row[best] {
                best = k;
            }
        }
        counts[(i / ppi) * classes * classes + labels[i] as usize * classes + best] += 1.0;
    }
    counts
}
