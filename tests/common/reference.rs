//! Naive float64 references of every backend primitive, written for clarity, not speed.
//!
//! Layouts are magnet's: activations NHWC, convolution weights `[out, kh, kw, in]`, matrices
//! row-major. Each function takes the same parameter struct as the backend primitive, so a test
//! feeds both the same numbers (the f32 inputs widened to f64).

use magnet::backend::rng;
use magnet::backend::{
    AdamParams, BatchNormParams, BinaryOp, Conv2dParams, GemmParams, Pool2dParams, ReduceOp,
    SgdParams, UnaryOp, UpsampleParams,
};
use magnet::Shape;

// ---------------------------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------------------------

/// Calls `tap(x_index, w_index, y_index)` for every (input, weight, output) triple that a
/// convolution multiplies together; taps falling into the zero padding are skipped.
pub fn conv2d_taps(p: &Conv2dParams, mut tap: impl FnMut(usize, usize, usize)) {
    let (oh, ow) = (p.out_h(), p.out_w());
    let [kh, kw] = p.kernel;
    let (cin, cout) = (p.in_channels, p.out_channels);
    for n in 0..p.batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for ky in 0..kh {
                    let iy =
                        (oy * p.stride[0] + ky * p.dilation[0]) as isize - p.padding[0] as isize;
                    if iy < 0 || iy >= p.in_h as isize {
                        continue;
                    }
                    for kx in 0..kw {
                        let ix = (ox * p.stride[1] + kx * p.dilation[1]) as isize
                            - p.padding[1] as isize;
                        if ix < 0 || ix >= p.in_w as isize {
                            continue;
                        }
                        let (iy, ix) = (iy as usize, ix as usize);
                        for co in 0..cout {
                            let yi = ((n * oh + oy) * ow + ox) * cout + co;
                            for ci in 0..cin {
                                let xi = ((n * p.in_h + iy) * p.in_w + ix) * cin + ci;
                                let wi = ((co * kh + ky) * kw + kx) * cin + ci;
                                tap(xi, wi, yi);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `y[n, oy, ox, co] = Σ x[n, oy·s + ky·d − p, ox·s + kx·d − p, ci] · w[co, ky, kx, ci]`.
pub fn conv2d_forward(p: &Conv2dParams, x: &[f64], w: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; p.output_shape().numel()];
    conv2d_taps(p, |xi, wi, yi| y[yi] += x[xi] * w[wi]);
    y
}

/// `dx = ∂(Σ y·dy)/∂x`: the transposed convolution of `dy` with `w`.
pub fn conv2d_backward_data(p: &Conv2dParams, dy: &[f64], w: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; p.input_shape().numel()];
    conv2d_taps(p, |xi, wi, yi| dx[xi] += dy[yi] * w[wi]);
    dx
}

/// `dw = ∂(Σ y·dy)/∂w`: the correlation of `x` with `dy`.
pub fn conv2d_backward_filter(p: &Conv2dParams, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dw = vec![0.0; p.weight_shape().numel()];
    conv2d_taps(p, |xi, wi, yi| dw[wi] += x[xi] * dy[yi]);
    dw
}

// ---------------------------------------------------------------------------------------------
// Batch normalisation (over the last axis of a rows × channels tensor)
// ---------------------------------------------------------------------------------------------

/// Everything the training-mode forward produces.
#[derive(Debug, Clone)]
pub struct BatchNormTrain {
    pub y: Vec<f64>,
    /// The batch mean per channel.
    pub save_mean: Vec<f64>,
    /// `1 / sqrt(biased batch variance + eps)` per channel.
    pub save_invstd: Vec<f64>,
    /// `(1 − momentum)·running_mean + momentum·mean`.
    pub running_mean: Vec<f64>,
    /// `(1 − momentum)·running_var + momentum·unbiased batch variance`.
    pub running_var: Vec<f64>,
}

/// Per-channel mean and biased variance, two-pass.
pub fn channel_stats(rows: usize, channels: usize, x: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let mut mean = vec![0.0; channels];
    for r in 0..rows {
        for c in 0..channels {
            mean[c] += x[r * channels + c];
        }
    }
    mean.iter_mut().for_each(|m| *m /= rows as f64);
    let mut var = vec![0.0; channels];
    for r in 0..rows {
        for c in 0..channels {
            let d = x[r * channels + c] - mean[c];
            var[c] += d * d;
        }
    }
    var.iter_mut().for_each(|v| *v /= rows as f64);
    (mean, var)
}

/// Training-mode batch norm with PyTorch's running-statistics update.
pub fn batch_norm_train(
    p: &BatchNormParams,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
) -> BatchNormTrain {
    let (rows, ch) = (p.rows, p.channels);
    let (eps, m) = (p.eps as f64, p.momentum as f64);
    let (mean, var) = channel_stats(rows, ch, x);
    let invstd: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    let mut y = vec![0.0; rows * ch];
    for r in 0..rows {
        for c in 0..ch {
            let i = r * ch + c;
            y[i] = relu_if(p, (x[i] - mean[c]) * invstd[c] * gamma[c] + beta[c]);
        }
    }
    let unbiased = rows as f64 / (rows as f64 - 1.0);
    BatchNormTrain {
        y,
        running_mean: (0..ch)
            .map(|c| (1.0 - m) * running_mean[c] + m * mean[c])
            .collect(),
        running_var: (0..ch)
            .map(|c| (1.0 - m) * running_var[c] + m * var[c] * unbiased)
            .collect(),
        save_mean: mean,
        save_invstd: invstd,
    }
}

/// Inference-mode batch norm: `(x − running_mean) / sqrt(running_var + eps) · γ + β`.
pub fn batch_norm_inference(
    p: &BatchNormParams,
    x: &[f64],
    gamma: &[f64],
    beta: &[f64],
    running_mean: &[f64],
    running_var: &[f64],
) -> Vec<f64> {
    let ch = p.channels;
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i % ch;
            let z = (v - running_mean[c]) / (running_var[c] + p.eps as f64).sqrt();
            relu_if(p, z * gamma[c] + beta[c])
        })
        .collect()
}

/// `max(0, z)` when the batch norm has a ReLU after it.
fn relu_if(p: &BatchNormParams, z: f64) -> f64 {
    if p.relu {
        z.max(0.0)
    } else {
        z
    }
}

/// Gradients of the training-mode forward: `(dx, dγ, dβ)`, with
/// `dx = γ·invstd/N · (N·dy − Σdy − x̂·Σ(dy·x̂))` (with a ReLU, `dy` zeroed where `γ·x̂ + β ≤ 0`).
pub fn batch_norm_backward(
    p: &BatchNormParams,
    x: &[f64],
    dy: &[f64],
    gamma: &[f64],
    beta: &[f64],
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let (rows, ch) = (p.rows, p.channels);
    let (mean, var) = channel_stats(rows, ch, x);
    let invstd: Vec<f64> = var
        .iter()
        .map(|v| 1.0 / (v + p.eps as f64).sqrt())
        .collect();
    let xhat = |i: usize| (x[i] - mean[i % ch]) * invstd[i % ch];
    let masked: Vec<f64> = (0..rows * ch)
        .map(
            |i| match p.relu && gamma[i % ch] * xhat(i) + beta[i % ch] <= 0.0 {
                true => 0.0,
                false => dy[i],
            },
        )
        .collect();
    let dy = &masked;
    let mut dgamma = vec![0.0; ch];
    let mut dbeta = vec![0.0; ch];
    for i in 0..rows * ch {
        dgamma[i % ch] += dy[i] * xhat(i);
        dbeta[i % ch] += dy[i];
    }
    let n = rows as f64;
    let dx = (0..rows * ch)
        .map(|i| {
            let c = i % ch;
            gamma[c] * invstd[c] / n * (n * dy[i] - dbeta[c] - xhat(i) * dgamma[c])
        })
        .collect();
    (dx, dgamma, dbeta)
}

// ---------------------------------------------------------------------------------------------
// Max pooling
// ---------------------------------------------------------------------------------------------

/// For every output element, the input index of its maximum (first in row-major window order on
/// ties; padding is −inf and never wins).
pub fn max_pool2d_argmax(p: &Pool2dParams, x: &[f64]) -> Vec<usize> {
    let (oh, ow, ch) = (p.out_h(), p.out_w(), p.channels);
    let mut arg = Vec::with_capacity(p.output_shape().numel());
    for n in 0..p.batch {
        for oy in 0..oh {
            for ox in 0..ow {
                for c in 0..ch {
                    let mut best: Option<(usize, f64)> = None;
                    for ky in 0..p.kernel[0] {
                        let iy = (oy * p.stride[0] + ky) as isize - p.padding[0] as isize;
                        if iy < 0 || iy >= p.in_h as isize {
                            continue;
                        }
                        for kx in 0..p.kernel[1] {
                            let ix = (ox * p.stride[1] + kx) as isize - p.padding[1] as isize;
                            if ix < 0 || ix >= p.in_w as isize {
                                continue;
                            }
                            let i = ((n * p.in_h + iy as usize) * p.in_w + ix as usize) * ch + c;
                            if best.is_none_or(|(_, v)| x[i] > v) {
                                best = Some((i, x[i]));
                            }
                        }
                    }
                    arg.push(best.expect("a pooling window holds at least one input").0);
                }
            }
        }
    }
    arg
}

/// Max pooling forward.
pub fn max_pool2d_forward(p: &Pool2dParams, x: &[f64]) -> Vec<f64> {
    max_pool2d_argmax(p, x).into_iter().map(|i| x[i]).collect()
}

/// Max pooling backward: each output gradient goes to its window's (first) maximum.
pub fn max_pool2d_backward(p: &Pool2dParams, x: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; x.len()];
    for (o, i) in max_pool2d_argmax(p, x).into_iter().enumerate() {
        dx[i] += dy[o];
    }
    dx
}

// ---------------------------------------------------------------------------------------------
// Bilinear upsampling
// ---------------------------------------------------------------------------------------------

/// PyTorch's source position along one axis: `(i0, i1, weight of i0, weight of i1)`.
pub fn bilinear_source(
    dst: usize,
    input: usize,
    output: usize,
    align_corners: bool,
) -> (usize, usize, f64, f64) {
    let src = if align_corners {
        if output > 1 {
            dst as f64 * (input as f64 - 1.0) / (output as f64 - 1.0)
        } else {
            0.0
        }
    } else {
        ((dst as f64 + 0.5) * input as f64 / output as f64 - 0.5).max(0.0)
    };
    let i0 = (src.floor() as usize).min(input - 1);
    let i1 = (i0 + 1).min(input - 1);
    let l1 = src - i0 as f64;
    (i0, i1, 1.0 - l1, l1)
}

/// Calls `tap(x_index, y_index, weight)` for the four bilinear taps of every output element.
pub fn upsample_taps(p: &UpsampleParams, mut tap: impl FnMut(usize, usize, f64)) {
    let ch = p.channels;
    for n in 0..p.batch {
        for oy in 0..p.out_h {
            let (y0, y1, wy0, wy1) = bilinear_source(oy, p.in_h, p.out_h, p.align_corners);
            for ox in 0..p.out_w {
                let (x0, x1, wx0, wx1) = bilinear_source(ox, p.in_w, p.out_w, p.align_corners);
                for c in 0..ch {
                    let yi = ((n * p.out_h + oy) * p.out_w + ox) * ch + c;
                    let at = |iy: usize, ix: usize| ((n * p.in_h + iy) * p.in_w + ix) * ch + c;
                    tap(at(y0, x0), yi, wy0 * wx0);
                    tap(at(y0, x1), yi, wy0 * wx1);
                    tap(at(y1, x0), yi, wy1 * wx0);
                    tap(at(y1, x1), yi, wy1 * wx1);
                }
            }
        }
    }
}

/// Bilinear resampling forward.
pub fn upsample_bilinear2d_forward(p: &UpsampleParams, x: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; p.output_shape().numel()];
    upsample_taps(p, |xi, yi, w| y[yi] += w * x[xi]);
    y
}

/// Bilinear resampling backward (the adjoint of the forward).
pub fn upsample_bilinear2d_backward(p: &UpsampleParams, dy: &[f64]) -> Vec<f64> {
    let mut dx = vec![0.0; p.input_shape().numel()];
    upsample_taps(p, |xi, yi, w| dx[xi] += w * dy[yi]);
    dx
}

// ---------------------------------------------------------------------------------------------
// Concat / split along the last axis
// ---------------------------------------------------------------------------------------------

/// `y[r, :] = [parts[0][r, :], parts[1][r, :], ...]`; each part is `(data, width)`.
pub fn concat_last(rows: usize, parts: &[(&[f64], usize)]) -> Vec<f64> {
    let mut y = Vec::with_capacity(rows * parts.iter().map(|p| p.1).sum::<usize>());
    for r in 0..rows {
        for (data, w) in parts {
            y.extend_from_slice(&data[r * w..(r + 1) * w]);
        }
    }
    y
}

/// The inverse of [`concat_last`]: the columns of `x` split into parts of the given widths.
pub fn split_last(rows: usize, x: &[f64], widths: &[usize]) -> Vec<Vec<f64>> {
    let total: usize = widths.iter().sum();
    let mut parts: Vec<Vec<f64>> = widths
        .iter()
        .map(|w| Vec::with_capacity(rows * w))
        .collect();
    for r in 0..rows {
        let mut off = r * total;
        for (part, &w) in parts.iter_mut().zip(widths) {
            part.extend_from_slice(&x[off..off + w]);
            off += w;
        }
    }
    parts
}

// ---------------------------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------------------------

/// `f(x)`.
pub fn unary(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Square => x * x,
        UnaryOp::Affine { scale, shift } => scale as f64 * x + shift as f64,
    }
}

/// `f'(x)` (0 at the kinks of relu and abs, as PyTorch).
pub fn unary_derivative(op: UnaryOp, x: f64) -> f64 {
    match op {
        UnaryOp::Relu => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        UnaryOp::Sigmoid => {
            let s = unary(op, x);
            s * (1.0 - s)
        }
        UnaryOp::Tanh => 1.0 - x.tanh().powi(2),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => 1.0 / x,
        UnaryOp::Neg => -1.0,
        UnaryOp::Abs => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                0.0
            }
        }
        UnaryOp::Sqrt => 0.5 / x.sqrt(),
        UnaryOp::Square => 2.0 * x,
        UnaryOp::Affine { scale, .. } => scale as f64,
    }
}

/// `a ∘ b`.
pub fn binary_scalar(op: BinaryOp, a: f64, b: f64) -> f64 {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
    }
}

/// The flat index into a tensor of `shape` (right-aligned against `out`, size-1 axes broadcast)
/// for the element at multi-index `idx` of the broadcast shape `out`.
pub fn broadcast_index(shape: &Shape, out: &Shape, idx: &[usize]) -> usize {
    let strides = shape.strides();
    let offset = out.rank() - shape.rank();
    (0..shape.rank())
        .map(|a| {
            let i = if shape.dim(a) == 1 {
                0
            } else {
                idx[a + offset]
            };
            i * strides[a]
        })
        .sum()
}

/// The multi-index of flat index `flat` in `shape`.
pub fn unravel(shape: &Shape, mut flat: usize) -> Vec<usize> {
    let mut idx = vec![0; shape.rank()];
    for a in (0..shape.rank()).rev() {
        idx[a] = flat % shape.dim(a);
        flat /= shape.dim(a);
    }
    idx
}

/// `a ∘ b` with NumPy broadcasting; `None` when the shapes do not broadcast.
pub fn binary(
    op: BinaryOp,
    a: &[f64],
    a_shape: &Shape,
    b: &[f64],
    b_shape: &Shape,
) -> Option<Vec<f64>> {
    let out = a_shape.broadcast(b_shape)?;
    Some(
        (0..out.numel())
            .map(|f| {
                let idx = unravel(&out, f);
                binary_scalar(
                    op,
                    a[broadcast_index(a_shape, &out, &idx)],
                    b[broadcast_index(b_shape, &out, &idx)],
                )
            })
            .collect(),
    )
}

/// `y = x · keep / (1 − p)` with `keep = rng::uniform(seed, i) >= p`, the mask every backend draws.
pub fn dropout_mask(p: f32, seed: u64, len: usize) -> Vec<bool> {
    (0..len)
        .map(|i| rng::uniform(seed, i as u32) >= p)
        .collect()
}

/// Dropout forward (and, applied to `dy`, backward).
pub fn dropout(p: f32, seed: u64, x: &[f64]) -> Vec<f64> {
    let scale = 1.0 / (1.0 - p as f64);
    dropout_mask(p, seed, x.len())
        .into_iter()
        .zip(x)
        .map(|(keep, &v)| if keep { v * scale } else { 0.0 })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Reductions and softmax
// ---------------------------------------------------------------------------------------------

/// Reduces `x` of `x_shape` to `y_shape` (right-aligned; axes where `y_shape` is 1 or missing are
/// reduced). `None` when `y_shape` does not broadcast to `x_shape`.
pub fn reduce(op: ReduceOp, x: &[f64], x_shape: &Shape, y_shape: &Shape) -> Option<Vec<f64>> {
    if y_shape.rank() > x_shape.rank() || x_shape.broadcast(y_shape).as_ref() != Some(x_shape) {
        return None;
    }
    let n = y_shape.numel();
    let mut acc = vec![
        match op {
            ReduceOp::Max => f64::NEG_INFINITY,
            _ => 0.0,
        };
        n
    ];
    let mut count = vec![0usize; n];
    for (f, &v) in x.iter().enumerate() {
        let j = broadcast_index(y_shape, x_shape, &unravel(x_shape, f));
        count[j] += 1;
        acc[j] = match op {
            ReduceOp::Max => acc[j].max(v),
            _ => acc[j] + v,
        };
    }
    if op == ReduceOp::Mean {
        acc.iter_mut()
            .zip(&count)
            .for_each(|(a, &c)| *a /= c as f64);
    }
    Some(acc)
}

/// Softmax (or log-softmax) over the last axis of `rows × cols`.
pub fn softmax(rows: usize, cols: usize, log: bool, x: &[f64]) -> Vec<f64> {
    let mut y = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let row = &x[r * cols..(r + 1) * cols];
        let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
        y.extend(
            row.iter()
                .map(|v| if log { v - lse } else { (v - lse).exp() }),
        );
    }
    y
}

/// Softmax backward from the output `y`: `dx = y·(dy − Σ dy·y)`; log-softmax:
/// `dx = dy − exp(y)·Σ dy`.
pub fn softmax_backward(rows: usize, cols: usize, log: bool, y: &[f64], dy: &[f64]) -> Vec<f64> {
    let mut dx = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        let yr = &y[r * cols..(r + 1) * cols];
        let dyr = &dy[r * cols..(r + 1) * cols];
        if log {
            let s: f64 = dyr.iter().sum();
            dx.extend(yr.iter().zip(dyr).map(|(y, d)| d - y.exp() * s));
        } else {
            let s: f64 = yr.iter().zip(dyr).map(|(y, d)| y * d).sum();
            dx.extend(yr.iter().zip(dyr).map(|(y, d)| y * (d - s)));
        }
    }
    dx
}

// ---------------------------------------------------------------------------------------------
// GEMM
// ---------------------------------------------------------------------------------------------

/// Row-major `alpha · op(A) · op(B) + beta · C`.
pub fn gemm(p: &GemmParams, a: &[f64], b: &[f64], c: &[f64]) -> Vec<f64> {
    let (m, n, k) = (p.m, p.n, p.k);
    let at = |i: usize, l: usize| {
        if p.trans_a {
            a[l * m + i]
        } else {
            a[i * k + l]
        }
    };
    let bt = |l: usize, j: usize| {
        if p.trans_b {
            b[j * k + l]
        } else {
            b[l * n + j]
        }
    };
    (0..m * n)
        .map(|f| {
            let (i, j) = (f / n, f % n);
            let s: f64 = (0..k).map(|l| at(i, l) * bt(l, j)).sum();
            p.alpha as f64 * s + p.beta as f64 * c[f]
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Optimisers (PyTorch's update rules)
// ---------------------------------------------------------------------------------------------

/// A hyper-parameter as the update rules see it: exactly the f32 the caller passed, widened.
/// (PyTorch given the Python float `0.999` uses `1 − 0.999` where this gives `1 − 0.999f32`,
/// 1.3e-5 relative apart; parity runs against PyTorch should pass it f32-exact values.)
pub fn hyper(x: f32) -> f64 {
    f64::from(x)
}

/// One `torch.optim.SGD` step, updating `param` and `momentum` in place.
pub fn sgd_step(p: &SgdParams, param: &mut [f64], grad: &[f64], momentum: &mut [f64]) {
    let (lr, mu, damp, wd) = (
        hyper(p.lr),
        hyper(p.momentum),
        hyper(p.dampening),
        hyper(p.weight_decay),
    );
    for i in 0..param.len() {
        let mut d = grad[i];
        if wd != 0.0 {
            d += wd * param[i];
        }
        if mu != 0.0 {
            momentum[i] = if p.first_step {
                d
            } else {
                mu * momentum[i] + (1.0 - damp) * d
            };
            d = if p.nesterov {
                d + mu * momentum[i]
            } else {
                momentum[i]
            };
        }
        param[i] -= lr * d;
    }
}

/// One `torch.optim.Adam` (or `AdamW` when decoupled) step, updating `param`, `m` and `v`.
pub fn adam_step(p: &AdamParams, param: &mut [f64], grad: &[f64], m: &mut [f64], v: &mut [f64]) {
    let (lr, b1, b2, eps, wd) = (
        hyper(p.lr),
        hyper(p.beta1),
        hyper(p.beta2),
        hyper(p.eps),
        hyper(p.weight_decay),
    );
    let bc1 = 1.0 - b1.powi(p.step as i32);
    let bc2 = 1.0 - b2.powi(p.step as i32);
    for i in 0..param.len() {
        let mut g = grad[i];
        if p.decoupled_weight_decay {
            param[i] *= 1.0 - lr * wd;
        } else if wd != 0.0 {
            g += wd * param[i];
        }
        m[i] = b1 * m[i] + (1.0 - b1) * g;
        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
        let denom = v[i].sqrt() / bc2.sqrt() + eps;
        param[i] -= lr / bc1 * m[i] / denom;
    }
}
