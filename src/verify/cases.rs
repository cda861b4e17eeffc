//! The cases of [`super::verify_backend`]: one generic function per primitive and direction,
//! run on the backend and on the reference with the same seeded inputs. Each tolerance is written
//! beside its case with the reason for its size; both sides are f32, so where the test suite
//! allows an f32 result `t` from the exact value, a case allows `2t` between two f32 results.

use rayon::ThreadPool;

use super::{compare, random_range, random_vec, CaseResult, Tol, F32_U};
use crate::backend::*;
use crate::error::Result;
use crate::tensor::{HostTensor, Shape};

/// The outputs of one run of a case, each downloaded to the host.
type Outputs = Result<Vec<Vec<f32>>>;

/// What the cases run on and where their results go.
pub(super) struct Ctx<'a, B: Backend> {
    pub backend: &'a B,
    pub reference: CpuBackend,
    pub pool: ThreadPool,
    pub results: Vec<CaseResult>,
}

impl<B: Backend> Ctx<'_, B> {
    /// Runs `on_backend` and `on_reference` (on the one-thread pool) with `p`, compares every
    /// output and records the row.
    #[allow(clippy::too_many_arguments)]
    fn check<P: Sync>(
        &mut self,
        op: &str,
        shape: String,
        tol: Tol,
        reason: &'static str,
        p: &P,
        on_backend: fn(&B, &P) -> Outputs,
        on_reference: fn(&CpuBackend, &P) -> Outputs,
    ) {
        let mut row = CaseResult {
            op: op.to_string(),
            shape,
            backend: self.backend.name(),
            max_relative_error: 0.0,
            tol,
            reason,
            bad: 0,
            error: None,
        };
        let reference = &self.reference;
        let outcome = on_backend(self.backend, p).and_then(|got| {
            let want = self.pool.install(|| on_reference(reference, p))?;
            if got.len() != want.len() {
                return Err(crate::Error::invalid("verify", "output counts differ"));
            }
            for (g, w) in got.iter().zip(&want) {
                let c = compare(g, w, tol)?;
                row.bad += c.bad;
                row.max_relative_error = row.max_relative_error.max(c.max_relative_error);
            }
            Ok(())
        });
        if let Err(e) = outcome {
            row.error = Some(e.to_string());
        }
        self.results.push(row);
    }
}

/// `check!(ctx, op, shape, tol, reason, &p, case_fn)`: runs generic `case_fn` on the backend
/// and on the reference.
macro_rules! check {
    ($ctx:expr, $op:expr, $shape:expr, $tol:expr, $reason:expr, $p:expr, $f:ident) => {
        $ctx.check($op, $shape, $tol, $reason, $p, $f::<B>, $f::<CpuBackend>)
    };
}

/// Every case, family by family.
pub(super) fn run_all<B: Backend>(ctx: &mut Ctx<'_, B>) {
    conv_cases(ctx);
    norm_cases(ctx);
    pool_cases(ctx);
    resample_cases(ctx);
    layout_cases(ctx);
    elementwise_cases(ctx);
    reduce_cases(ctx);
    matmul_cases(ctx);
    optim_cases(ctx);
    loss_cases(ctx);
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn up<M: Backend>(m: &M, data: &[f32]) -> Result<M::Buffer> {
    m.to_device(&HostTensor::new([data.len()], data.to_vec())?)
}

/// An output buffer filled with a sentinel, so a kernel that accumulates into its output or
/// skips elements differs from the reference.
fn out<M: Backend>(m: &M, len: usize) -> Result<M::Buffer> {
    up(m, &vec![7777.0; len])
}

fn dims(s: &Shape) -> String {
    s.dims()
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("×")
}

/// Labels `0..classes` as f32, with every seventh pixel set to `ignore` when given.
fn labels(len: usize, classes: usize, seed: u64, ignore: Option<u32>) -> Vec<f32> {
    random_range(len, seed, 0.0, classes as f32 - 0.01)
        .into_iter()
        .enumerate()
        .map(|(i, v)| match ignore {
            Some(ig) if i % 7 == 3 => ig as f32,
            _ => v.floor(),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------------------------

/// `[batch, h, w, in, out, kernel, stride, padding]`.
fn conv([batch, h, w, cin, cout, k, s, pad]: [usize; 8]) -> Conv2dParams {
    Conv2dParams {
        batch,
        in_h: h,
        in_w: w,
        in_channels: cin,
        out_channels: cout,
        kernel: [k, k],
        stride: [s, s],
        padding: [pad, pad],
        dilation: [1, 1],
    }
}

fn conv_forward<M: Backend>(m: &M, p: &Conv2dParams) -> Outputs {
    let x = up(m, &random_vec(p.input_shape().numel(), 1))?;
    let w = up(m, &random_vec(p.weight_shape().numel(), 2))?;
    let mut y = out(m, p.output_shape().numel())?;
    m.conv2d_forward(p, &x, &w, &mut y)?;
    Ok(vec![m.download(&y)?])
}

fn conv_backward_data<M: Backend>(m: &M, p: &Conv2dParams) -> Outputs {
    let dy = up(m, &random_vec(p.output_shape().numel(), 3))?;
    let w = up(m, &random_vec(p.weight_shape().numel(), 2))?;
    let mut dx = out(m, p.input_shape().numel())?;
    m.conv2d_backward_data(p, &dy, &w, &mut dx)?;
    Ok(vec![m.download(&dx)?])
}

fn conv_backward_filter<M: Backend>(m: &M, p: &Conv2dParams) -> Outputs {
    let x = up(m, &random_vec(p.input_shape().numel(), 1))?;
    let dy = up(m, &random_vec(p.output_shape().numel(), 3))?;
    let mut dw = out(m, p.weight_shape().numel())?;
    m.conv2d_backward_filter(p, &x, &dy, &mut dw)?;
    Ok(vec![m.download(&dw)?])
}

fn conv_cases<B: Backend>(ctx: &mut Ctx<'_, B>) {
    const WHY: &str =
        "f32 sums of k products in another order (tiles, cuDNN algorithms): 2× accumulated(k)";
    for p in [
        conv([1, 7, 9, 5, 3, 3, 1, 1]),
        conv([2, 8, 11, 3, 6, 3, 2, 0]),
        conv([1, 9, 7, 7, 5, 3, 2, 1]),
        conv([1, 5, 6, 7, 5, 1, 1, 0]),
        conv([2, 6, 6, 6, 3, 2, 2, 0]),
    ] {
        let shape = format!(
            "{}×{}×{}×{} k{} s{} p{} → {}",
            p.batch,
            p.in_h,
            p.in_w,
            p.in_channels,
            p.kernel[0],
            p.stride[0],
            p.padding[0],
            p.out_channels
        );
        let taps = p.kernel[0] * p.kernel[1];
        // Forward: k = kh·kw·cin terms per output.
        let tol = Tol::accumulated(taps * p.in_channels).scale(2.0);
        check!(
            ctx,
            "conv2d forward",
            shape.clone(),
            tol,
            WHY,
            &p,
            conv_forward
        );
        // Backward-data: at most kh·kw·cout terms per input element.
        let tol = Tol::accumulated(taps * p.out_channels).scale(2.0);
        check!(
            ctx,
            "conv2d backward_data",
            shape.clone(),
            tol,
            WHY,
            &p,
            conv_backward_data
        );
        // Backward-filter: one term per output pixel of the batch.
        let tol = Tol::accumulated(p.batch * p.out_h() * p.out_w()).scale(2.0);
        check!(
            ctx,
            "conv2d backward_filter",
            shape,
            tol,
            WHY,
            &p,
            conv_backward_filter
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Batch normalisation
// ---------------------------------------------------------------------------------------------

fn bn_train<M: Backend>(m: &M, p: &BatchNormParams) -> Outputs {
    let n = p.rows * p.channels;
    let x = up(m, &random_range(n, 10, -2.0, 3.0))?;
    let gamma = up(m, &random_range(p.channels, 11, 0.5, 1.5))?;
    let beta = up(m, &random_vec(p.channels, 12))?;
    let mut y = out(m, n)?;
    let mut mean = out(m, p.channels)?;
    let mut invstd = out(m, p.channels)?;
    let mut rmean = up(m, &random_vec(p.channels, 13))?;
    let mut rvar = up(m, &random_range(p.channels, 14, 0.5, 2.0))?;
    m.batch_norm_train(
        p,
        &x,
        &gamma,
        &beta,
        &mut y,
        &mut mean,
        &mut invstd,
        &mut rmean,
        &mut rvar,
    )?;
    [&y, &mean, &invstd, &rmean, &rvar]
        .into_iter()
        .map(|b| m.download(b))
        .collect()
}

fn bn_inference<M: Backend>(m: &M, p: &BatchNormParams) -> Outputs {
    let n = p.rows * p.channels;
    let x = up(m, &random_range(n, 10, -2.0, 3.0))?;
    let gamma = up(m, &random_range(p.channels, 11, 0.5, 1.5))?;
    let beta = up(m, &random_vec(p.channels, 12))?;
    let rmean = up(m, &random_vec(p.channels, 13))?;
    let rvar = up(m, &random_range(p.channels, 14, 0.5, 2.0))?;
    let mut y = out(m, n)?;
    m.batch_norm_inference(p, &x, &gamma, &beta, &rmean, &rvar, &mut y)?;
    Ok(vec![m.download(&y)?])
}

fn bn_backward<M: Backend>(m: &M, p: &BatchNormParams) -> Outputs {
    let n = p.rows * p.channels;
    let x = up(m, &random_range(n, 10, -2.0, 3.0))?;
    let dy = up(m, &random_vec(n, 15))?;
    let gamma = up(m, &random_range(p.channels, 11, 0.5, 1.5))?;
    let beta = up(m, &random_vec(p.channels, 12))?;
    // The saved statistics are inputs here, the same on both sides.
    let mean = up(m, &random_range(p.channels, 16, 0.0, 1.0))?;
    let invstd = up(m, &random_range(p.channels, 17, 0.5, 1.0))?;
    let (mut dx, mut dgamma, mut dbeta) = (out(m, n)?, out(m, p.channels)?, out(m, p.channels)?);
    m.batch_norm_backward(
        p,
        &x,
        &dy,
        &gamma,
        &beta,
        &mean,
        &invstd,
        &mut dx,
        &mut dgamma,
        &mut dbeta,
    )?;
    [&dx, &dgamma, &dbeta]
        .into_iter()
        .map(|b| m.download(b))
        .collect()
}

fn bn_apply<M: Backend>(m: &M, p: &BatchNormParams) -> Outputs {
    let n = p.rows * p.channels;
    let x = up(m, &random_range(n, 10, -2.0, 3.0))?;
    let gamma = up(m, &random_range(p.channels, 11, 0.5, 1.5))?;
    let beta = up(m, &random_vec(p.channels, 12))?;
    let mean = up(m, &random_range(p.channels, 16, 0.0, 1.0))?;
    let invstd = up(m, &random_range(p.channels, 17, 0.5, 1.0))?;
    let mut y = out(m, n)?;
    m.batch_norm_apply(p, &x, &gamma, &beta, &mean, &invstd, &mut y)?;
    Ok(vec![m.download(&y)?])
}

fn norm_cases<B: Backend>(ctx: &mut Ctx<'_, B>) {
    let sizes = [(2 * 7 * 9, 5), (3 * 3, 7), (1, 3)];
    for ((rows, channels), relu) in sizes.into_iter().flat_map(|s| [(s, false), (s, true)]) {
        let p = BatchNormParams {
            rows,
            channels,
            eps: 1e-5,
            momentum: 0.1,
            relu,
        };
        let relu_name = if relu { " + relu" } else { "" };
        let shape = format!("{rows} rows × {channels}{relu_name}");
        let sums = Tol::accumulated(2 * rows).scale(2.0);
        if rows > 1 {
            // Mean and variance are sums over the rows; the normalised output is O(1).
            let tol = Tol::rel_abs(1e-5, 1e-5).max(sums);
            let why = "strict fp32 normalisation of O(1) values; statistics are sums over the rows";
            check!(
                ctx,
                "batch_norm train",
                shape.clone(),
                tol,
                why,
                &p,
                bn_train
            );
        }
        let why = "a few roundings per element (rsqrt, multiply-add)";
        check!(
            ctx,
            "batch_norm inference",
            shape.clone(),
            Tol::rel_abs(1e-5, 1e-6),
            why,
            &p,
            bn_inference
        );
        let why = "a multiply-add per element from the given statistics";
        check!(
            ctx,
            "batch_norm apply",
            shape.clone(),
            Tol::rel_abs(1e-5, 1e-6),
            why,
            &p,
            bn_apply
        );
        if rows > 1 {
            let tol = Tol::rel_abs(1e-5, 1e-5).max(sums);
            let why = "dgamma, dbeta and dx's correction terms are sums over the rows";
            check!(ctx, "batch_norm backward", shape, tol, why, &p, bn_backward);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pooling and resampling
// ---------------------------------------------------------------------------------------------

fn pool_forward<M: Backend>(m: &M, p: &Pool2dParams) -> Outputs {
    let x = up(m, &random_vec(p.input_shape().numel(), 20))?;
    let mut y = out(m, p.output_shape().numel())?;
    m.max_pool2d_forward(p, &x, &mut y)?;
    Ok(vec![m.download(&y)?])
}

fn pool_backward<M: Backend>(m: &M, p: &Pool2dParams) -> Outputs {
    let x = up(m, &random_vec(p.input_shape().numel(), 20))?;
    let dy = up(m, &random_vec(p.output_shape().numel(), 21))?;
    let mut y = out(m, p.output_shape().numel())?;
    m.max_pool2d_forward(p, &x, &mut y)?;
    let mut dx = out(m, p.input_shape().numel())?;
    m.max_pool2d_backward(p, &x, &y, &dy, &mut dx)?;
    Ok(vec![m.download(&dx)?])
}

fn pool_cases<B: Backend>(ctx: &mut Ctx<'_, B>) {
    for (batch, h, w, c, k, s, pad) in [
        (1, 7, 9, 5, 2, 2, 0),
        (2, 8, 6, 5, 2, 2, 0),
        (2, 6, 7, 3, 3, 2, 1),
        (1, 5, 5, 7, 3, 1, 1),
    ] {
        let p = Pool2dParams {
            batch,
            in_h: h,
            in_w: w,
            channels: c,
            kernel: [k, k],
            stride: [s, s],
            padding: [pad, pad],
        };
        let shape = format!("{batch}×{h}×{w}×{c} k{k} s{s} p{pad}");
        let why = "selects one input element: exact";
        check!(
            ctx,
            "max_pool2d forward",
            shape.clone(),
            Tol::exact(),
            why,
            &p,
            pool_forward
        );
        // Overlapping windows add up to ⌈k/s⌉² gradients into one input.
        let tol = Tol::accumulated(k.div_ceil(s).pow(2)).scale(2.0);
        let why = "sums of the few gradients of overlapping windows";
        check!(
            ctx,
            "max_pool2d backward",
            shape,
            tol,
            why,
            &p,
            pool_backward
        );
    }
}

fn upsample_forward<M: Backend>(m: &M, p: &UpsampleParams) -> Outputs {
    let x = up(m, &random_vec(p.input_shape().numel(), 30))?;
    let mut y = out(m, p.output_shape().numel())?;
    m.upsample_bilinear2d_forward(p, &x, &mut y)?;
    Ok(vec![m.download(&y)?])
}

fn upsample_backward<M: Backend>(m: &M, p: &UpsampleParams) -> Outputs {
    let dy = up(m, &random_vec(p.output_shape().numel(), 31))?;
    let mut dx = out(m, p.input_shape().numel())?;
    m.upsample_bilinear2d_backward(p, &dy, &mut dx)?;
    Ok(vec![m.download(&dx)?])
}

fn resample_cases<B: Backend>(ctx: &mut Ctx<'_, B>) {
    for (batch, h, w, c, oh, ow, align) in [
        (1, 3, 5, 5, 6, 10, true),
        (2, 4, 3, 3, 7, 9, false),
        (1, 1, 2, 7, 3, 4, true),
    ] {
        let p = UpsampleParams {
            batch,
            in_h: h,
            in_w: w,
            channels: c,
            out_h: oh,
            out_w: ow,
            align_corners: align,
        };
        let shape = format!("{batch}×{h}×{w}×{c} → {oh}×{ow} align {align}");
        let why = "four weights per output computed in f32 (source coordinates round)";
        check!(
            ctx,
            "upsample_bilinear2d forward",
            shape.clone(),
            Tol::rel_abs(1e-5, 1e-5),
            why,
            &p,
            upsample_forward
        );
        let k = oh.div_ceil(h.max(1)) * ow.div_ceil(w.max(1)) * 4;
        let tol = Tol::rel_abs(1e-5, 1e-5).max(Tol::accumulated(k).scale(2.0));
        let why = "each input sums the weighted gradients of the outputs near it";
        check!(
            ctx,
            "upsample_bilinear2d backward",
            shape,
            tol,
            why,
            &p,
            upsample_backward
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------------------------

const ROWS: usize = 2 * 3 * 5;
const WIDTHS: [usize; 3] = [3, 5, 1];

fn concat<M: Backend>(m: &M, _: &()) -> Outputs {
    let parts: Vec<M::Buffer> = WIDTHS
        .iter()
        .enumerate()
        .map(|(i, &w)| up(m, &random_vec(ROWS * w, 40 + i as u64)))
        .collect::<Result<_>>()?;
    let refs: Vec<(&M::Buffer, usize)> = parts.iter().zip(WIDTHS).collect();
    let mut y = out(m, ROWS * WIDTHS.iter().sum::<usize>())?;
    m.concat_last(ROWS, &refs, &mut y)?;
    Ok(vec![m.download(&y)?])
}

fn split<M: Backend>(m: &M, _: &()) -> Outputs {
    let x = up(m, &random_vec(ROWS * WIDTHS.iter().sum::<usize>(), 43))?;
    let mut parts: Vec<M::Buffer> = WIDTHS
        .iter()
        .map(|&w| out(m, ROWS * w))
        .collect::<Result<_>>()?;
    let mut refs: Vec<(&mut M::Buffer, usize)> = parts.iter_mut().zip(WIDTHS).collect();
    m.split_last(ROWS, &x, &mut refs)?;
    parts.iter().map(|b| m.download(b)).collect()
}

fn layout_cases<B: Backend>(ctx: &mut Ctx<'_, B>) {
    let shape = format!("{ROWS} rows, widths {WIDTHS:?}");
    check!(
        ctx,
        "concat_last",
        shape.clone(),
        Tol::exact(),
        "copies: exact",
        &(),
        concat
    );
    check!(
        ctx,
        "split_last",
        shape,
        Tol::exact(),
        "copies: exact",
        &(),
        split
    );
}

// ---------------------------------------------------------------------------------------------
// Elementwise
// ---------------------------------------------------------------------------------------------

const N: usize = 1031;

/// Inputs in the domain of `op` (positive for log and sqrt).
fn unary_input(op: UnaryOp) -> Vec<f32> {
    match op {
        UnaryOp::Log | UnaryOp::Sqrt => random_range(N, 50, 0.05, 3.0),
        _ => random_range(N, 50, -3.0, 3.0),
    }
}

fn unary_forward<M: Backend>(m: &M, op: &UnaryOp) -> Outputs {
    let x = up(m, &unary_input(*op))?;
    let mut y = out(m, N)?;
    m.unary(*op, &x, &mut y)?;
    Ok(vec![m.download(&y)?])
}

fn unary_backward<M: Backend>(m: &M, op: &UnaryOp) -> Outputs {
    let x = up(m, &unary_input(*op))?;
    let dy = up(m, &random_vec(N, 51))?;
    let mut y = out(m, N)?;
    m.unary(*op, &x, &mut y)?;
    let mut dx = out(m, N)?;
    let saved = if op.backward_from_output() { &y } else { &x };
    m.unary_backward(*op, saved, &dy, &mut dx)?;
    Ok(vec![m.download(&dx)?])
}

struct Binary {
    op: BinaryOp,
    a: Shape,
    b: Shape,
}

fn binary<M: Backend>(m: &M, p: &Binary) -> Outputs {
    let a = up(m, &random_vec(p.a.numel(), 52))?;
    // Divisors kept away from zero.
    let b = up(m, &random_range(p.b.numel(), 53, 0.25, 2.0))?;
    let len = p.a.broadcast(&p.b).map_or(0, |s| s.numel());
    let mut y = out(m, len)?;
    m.binary(p.op, &a, &p.a, &b, &p.b, &mut y)?;
    Ok(vec![m.download(&y)?])
}

fn fill<M: Backend>(m: &M, _: &()) -> Outputs {
    let mut y = out(m, N)?;
    m.fill(&mut y, -0.375)?;
    Ok(vec![m.download(&y)?])
}

fn axpy<M: Backend>(m: &M, _: &()) -> Outputs {
    let x = up(m, &random_vec(N, 54))?;
    let mut y = up(m, &random_vec(N, 55))?;
    m.axpy(0.7, &x, &mut y)?;
    Ok(vec![m.download(&y)?])
}

fn dropout<M: Backend>(m: &M, _: &()) -> Outputs {
    let x = up(m, &random_vec(N, 56))?;
    let mut y = out(m, N)?;
    m.dropout_forward(0.3, 1234, &x, &mut y)?;
    let mut dx = out(m, N)?;
    m.dropout_backward(0.3, 1234, &x, &mut dx)?;
    Ok(vec![m.download(&y)?, m.download(&dx)?])
}

fn elementwise_cases<B: Backend>(ctx: &mut Ctx<'_, B>) {
    // Strict fp32 elementwise maps: a few roundings, and GPU exp / log / tanh within a few ulps.
    const ELEMENTWISE: Tol = Tol::rel_abs(1e-5, 1e-6);
    const WHY: &str = "strict fp32 elementwise: a few roundings, library transcendentals";
    let ops = [
        UnaryOp::Relu,
        UnaryOp::Sigmoid,
        UnaryOp::Tanh,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Sqrt,
        UnaryOp::Square,
        UnaryOp::Affine {
            scale: -1.5,
            shift: 0.25,
        },
    ];
    for op in ops {
        let shape = match op {
            UnaryOp::Affine { scale, shift } => format!("{N} elements, {scale}·x + {shift}"),
            _ => format!("{N} elements"),
        };
        let op_name = format!("{op:?}");
        let op_name = op_name.split(' ').next().unwrap_or("");
        check!(
            ctx,
            &format!("unary {op_name} forward"),
            shape.clone(),
            ELEMENTWISE,
            WHY,
            &op,
            unary_forward
        );
        check!(
            ctx,
            &format!("unary {op_name} backward"),
            shape,
            ELEMENTWISE,
            WHY,
            &op,
            unary_backward
        );
    }
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
        for (a, b) in [
            (vec![2, 3, 5], vec![3, 1]),
            (vec![1, 5], vec![7, 1]),
            (vec![2, 7, 5], vec![2, 7, 5]),
            (vec![3], vec![1]),
        ] {
            let p = Binary {
                op,
                a: Shape::new(a),
                b: Shape::new(b),
            };
            let shape = format!("{} ∘ {}", dims(&p.a), dims(&p.b));
            check!(
                ctx,
                &format!("binary {op:?}"),
                shape,
                ELEMENTWISE,
                WHY,
                &p,
                binary
            );
        }
    }
    let shape = format!("{N} elements");
    check!(
        ctx,
        "fill",
        shape.clone(),
        Tol::exact(),
        "stores a constant: exact",
        &(),
        fill
    );
    let why = "one multiply-add, fused or not";
    check!(
        ctx,
        "axpy",
        shape.clone(),
        Tol::rel_abs(4.0 * F32_U, 4.0 * F32_U),
        why,
        &(),
        axpy
    );
    let why = "the same counter-based mask; x·scale against x/(1−p) differ by one rounding";
    check!(
        ctx,
        "dropout forward+backward",
        shape,
        Tol::rel_abs(4.0 * F32_U, 0.0),
        why,
        &(),
        dropout
    );
}

// ---------------------------------------------------------------------------------------------
// Reductions and softmax
// ---------------------------------------------------------------------------------------------

struct Reduce {
    op: ReduceOp,
    x: Shape,
    y: Shape,
}

fn reduce<M: Backend>(m: &M, p: &Reduce) -> Outputs {
    let x = up(m, &random_vec(p.x.numel(), 60))?;
    let mut y = out(m, p.y.numel())?;
    m.reduce(p.op, &x, &p.x, &p.y, &mut y)?;
    Ok(vec![m.download(&y)?])
}

fn broadcast<M: Backend>(m: &M, p: &Reduce) -> Outputs {
    // `y` is the small shape here, broadcast to `x`.
    let small = up(m, &random_vec(p.y.numel(), 61))?;
    let mut big = out(m, p.x.numel())?;
    m.broadcast_to(&small, &p.y, &p.x, &mut big)?;
    Ok(vec![m.download(&big)?])
}

struct Softmax {
    rows: usize,
    cols: usize,
    log: bool,
}

fn softmax_forward<M: Backend>(m: &M, p: &Softmax) -> Outputs {
    let x = up(m, &random_range(p.rows * p.cols, 62, -4.0, 4.0))?;
    let mut y = out(m, p.rows * p.cols)?;
    m.softmax(p.rows, p.cols, p.log, &x, &mut y)?;
    Ok(vec![m.download(&y)?])
}

fn softmax_backward<M: Backend>(m: &M, p: &Softmax) -> Outputs {
    let n = p.rows * p.cols;
    let x = up(m, &random_range(n, 62, -4.0, 4.0))?;
    let dy = up(m, &random_vec(n, 63))?;
    let mut y = out(m, n)?;
    m.softmax(p.rows, p.cols, p.log, &x, &mut y)?;
    let mut dx = out(m, n)?;
    m.softmax_backward(p.rows, p.cols, p.log, &y, &dy, &mut dx)?;
    Ok(vec![m.download(&dx)?])
}

fn reduce_cases<B: Backend>(ctx: &mut Ctx<'_, B>) {
    for (x, y) in [
        (vec![2, 7, 5], vec![1, 7, 1]),
        (vec![2, 7, 5], vec![5]),
        (vec![2, 7, 5], vec![]),
        (vec![1, 3, 5, 7], vec![1, 1, 1, 7]),
        (vec![37], vec![1]),
    ] {
        let (x, y) = (Shape::new(x), Shape::new(y));
        let k = x.numel() / y.numel().max(1);
        let shape = format!("{} → [{}]", dims(&x), dims(&y));
        for (op, tol, why) in [
            (
                ReduceOp::Sum,
                Tol::accumulated(k).scale(2.0),
                "f32 sums of k values in another order",
            ),
            (
                ReduceOp::Mean,
                Tol::rel_abs(16.0 * F32_U, 16.0 * F32_U),
                "a sum divided by k: its error divides too",
            ),
            (ReduceOp::Max, Tol::exact(), "selects one input: exact"),
        ] {
            let p = Reduce {
                op,
                x: x.clone(),
                y: y.clone(),
            };
            check!(
                ctx,
                &format!("reduce {op:?}"),
                shape.clone(),
                tol,
                why,
                &p,
                reduce
            );
        }
        let p = Reduce {
            op: ReduceOp::Sum,
            x: x.clone(),
            y: y.clone(),
        };
        check!(
            ctx,
            "broadcast_to",
            shape,
            Tol::exact(),
            "copies: exact",
            &p,
            broadcast
        );
    }
    for (rows, cols) in [(13, 7), (1, 3), (5, 1)] {
        for log in [false, true] {
            let p = Softmax { rows, cols, log };
            let name = if log { "log_softmax" } else { "softmax" };
            let shape = format!("{rows}×{cols}");
            let why = "exp and log of O(1) values and a sum over the row";
            check!(
                ctx,
                &format!("{name} forward"),
                shape.clone(),
                Tol::rel_abs(1e-5, 1e-6),
                why,
                &p,
                softmax_forward
            );
            let tol = Tol::rel_abs(1e-5, 1e-6).max(Tol::accumulated(cols).scale(2.0));
            check!(
                ctx,
                &format!("{name} backward"),
                shape,
                tol,
                why,
                &p,
                softmax_backward
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Matrix products
// ---------------------------------------------------------------------------------------------

fn gemm<M: Backend>(m: &M, p: &GemmParams) -> Outputs {
    let a = up(m, &random_vec(p.m * p.k, 70))?;
    let b = up(m, &random_vec(p.k * p.n, 71))?;
    let mut c = up(m, &random_vec(p.m * p.n, 72))?;
    m.gemm(p, &a, &b, &mut c)?;
    Ok(vec![m.download(&c)?])
}

fn matmul_cases<B: Backend>(ctx: &mut Ctx<'_, B>) {
    for (mm, n, k) in [(7, 5, 9), (1, 13, 3), (17, 1, 33)] {
        for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
            let p = GemmParams {
                m: mm,
                n,
                k,
                trans_a,
                trans_b,
                alpha: 0.7,
                beta: 0.3,
            };
            let shape = format!("{mm}×{k} · {k}×{n} tA {trans_a} tB {trans_b}");
            // k products plus alpha and beta terms.
            let tol = Tol::accumulated(k + 2).scale(2.0);
            check!(
                ctx,
                "gemm",
                shape,
                tol,
                "f32 sums of k products in another order",
                &p,
                gemm
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Optimisers
// ---------------------------------------------------------------------------------------------

const STEPS: u64 = 3;
const PARAMS: usize = 37;

fn sgd<M: Backend>(m: &M, p: &SgdParams) -> Outputs {
    let mut param = up(m, &random_vec(PARAMS, 80))?;
    let mut momentum = up(m, &random_vec(PARAMS, 81))?;
    for step in 0..STEPS {
        let grad = up(m, &random_vec(PARAMS, 82 + step))?;
        let q = SgdParams {
            first_step: step == 0,
            ..*p
        };
        m.sgd_step(&q, &mut param, &grad, &mut momentum)?;
    }
    let mut outs = vec![m.download(&param)?];
    // Without momentum the buffer is not part of the update.
    if p.momentum != 0.0 {
        outs.push(m.download(&momentum)?);
    }
    Ok(outs)
}

fn adam<M: Backend>(m: &M, p: &AdamParams) -> Outputs {
    let mut param = up(m, &random_vec(PARAMS, 90))?;
    let mut mm = out(m, PARAMS)?;
    let mut v = out(m, PARAMS)?;
    m.fill(&mut mm, 0.0)?;
    m.fill(&mut v, 0.0)?;
    for step in 1..=STEPS {
        let grad = up(m, &random_vec(PARAMS, 91 + step))?;
        let q = AdamParams { step, ..*p };
        m.adam_step(&q, &mut param, &grad, &mut mm, &mut v)?;
    }
    [&param, &mm, &v]
        .into_iter()
        .map(|b| m.download(b))
        .collect()
}

fn optim_cases<B: Backend>(ctx: &mut Ctx<'_, B>) {
    // Parameters and gradients are O(1); each step rounds a handful of f32 operations.
    const STEP: Tol = Tol::rel_abs(4e-6, 2e-6);
    const WHY: &str = "three steps of a handful of roundings each (sqrt, division)";
    let shape = format!("{PARAMS} parameters, {STEPS} steps");
    for (momentum, dampening, weight_decay, nesterov) in [
        (0.0, 0.0, 0.0, false),
        (0.9, 0.1, 1e-2, false),
        (0.8, 0.0, 5e-3, true),
    ] {
        let p = SgdParams {
            lr: 0.05,
            momentum,
            dampening,
            weight_decay,
            nesterov,
            first_step: true,
        };
        let name = format!("sgd_step momentum {momentum} nesterov {nesterov}");
        check!(ctx, &name, shape.clone(), STEP, WHY, &p, sgd);
    }
    for decoupled in [false, true] {
        let p = AdamParams {
            lr: 1e-2,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 1e-2,
            decoupled_weight_decay: decoupled,
            step: 1,
        };
        let name = if decoupled {
            "adam_step (AdamW)"
        } else {
            "adam_step"
        };
        check!(ctx, name, shape.clone(), STEP, WHY, &p, adam);
    }
}

// ---------------------------------------------------------------------------------------------
// Losses and label maps
// ---------------------------------------------------------------------------------------------

const IGNORE: u32 = 255;

struct CrossEntropy {
    p: CrossEntropyParams,
    weighted: bool,
}

fn cross_entropy<M: Backend>(m: &M, c: &CrossEntropy) -> Outputs {
    let p = &c.p;
    let logits = up(m, &random_range(p.rows * p.classes, 100, -3.0, 3.0))?;
    let labels = up(m, &labels(p.rows, p.classes, 101, p.ignore_index))?;
    let class_w = up(m, &random_range(p.classes, 102, 0.5, 2.0))?;
    let pixel_w = up(m, &random_range(p.rows, 103, 0.0, 3.0))?;
    let (cw, pw) = if c.weighted {
        (Some(&class_w), Some(&pixel_w))
    } else {
        (None, None)
    };
    let mut loss = out(m, 1)?;
    let mut grad = out(m, p.rows * p.classes)?;
    m.softmax_cross_entropy(p, &logits, &labels, cw, pw, &mut loss, &mut grad)?;
    Ok(vec![m.download(&loss)?, m.download(&grad)?])
}

fn bce<M: Backend>(m: &M, p: &BinaryCrossEntropyParams) -> Outputs {
    let logits = up(m, &random_range(p.len, 110, -6.0, 6.0))?;
    let targets = up(m, &random_range(p.len, 111, 0.0, 1.0))?;
    let weights = up(m, &random_range(p.len, 112, 0.0, 2.0))?;
    let mut loss = out(m, 1)?;
    let mut grad = out(m, p.len)?;
    m.sigmoid_binary_cross_entropy(p, &logits, &targets, Some(&weights), &mut loss, &mut grad)?;
    Ok(vec![m.download(&loss)?, m.download(&grad)?])
}

fn dice<M: Backend>(m: &M, p: &SoftDiceParams) -> Outputs {
    let rows = p.rows();
    let logits = up(m, &random_range(rows * p.classes, 120, -3.0, 3.0))?;
    let labels = up(m, &labels(rows, p.classes, 121, p.ignore_index))?;
    let mut loss = out(m, 1)?;
    let mut grad = out(m, rows * p.classes)?;
    m.soft_dice(p, &logits, &labels, &mut loss, &mut grad)?;
    Ok(vec![m.download(&loss)?, m.download(&grad)?])
}

fn foreground<M: Backend>(m: &M, p: &ForegroundParams) -> Outputs {
    let labels = up(m, &labels(p.len, 3, 130, p.ignore_index))?;
    let mut mask = out(m, p.len)?;
    m.foreground_mask(p, &labels, &mut mask)?;
    Ok(vec![m.download(&mask)?])
}

fn distance<M: Backend>(m: &M, p: &ImageGridParams) -> Outputs {
    let len = p.batch * p.height * p.width;
    // About one pixel in five is foreground; the last image has none.
    let per_image = p.height * p.width;
    let mask: Vec<f32> = random_range(len, 131, 0.0, 1.0)
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            if v > 0.8 && i / per_image + 1 < p.batch {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    let mask = up(m, &mask)?;
    let mut d = out(m, len)?;
    m.distance_transform(p, &mask, &mut d)?;
    Ok(vec![m.download(&d)?])
}

fn confusion<M: Backend>(m: &M, p: &ConfusionParams) -> Outputs {
    let logits = up(m, &random_vec(p.rows() * p.classes, 140))?;
    let labels = up(m, &labels(p.rows(), p.classes, 141, p.ignore_index))?;
    let mut counts = out(m, p.images * p.classes * p.classes)?;
    m.confusion_matrix(p, &logits, &labels, &mut counts)?;
    Ok(vec![m.download(&counts)?])
}

fn loss_cases<B: Backend>(ctx: &mut Ctx<'_, B>) {
    // Losses are sums over the rows of exp / log terms; gradients are O(1/rows).
    const LOSS: Tol = Tol::rel_abs(2e-5, 1e-7);
    const WHY: &str = "exp, log and pow per row, and sums over the rows, in f32";
    for (rows, classes, ignore, gamma, weighted) in [
        (2 * 5 * 7, 3, Some(IGNORE), 0.0, false),
        (3 * 5, 2, None, 0.0, true),
        (2 * 5 * 7, 5, Some(IGNORE), 2.0, true),
    ] {
        let c = CrossEntropy {
            p: CrossEntropyParams {
                rows,
                classes,
                ignore_index: ignore,
                gamma,
            },
            weighted,
        };
        let shape = format!("{rows}×{classes} γ {gamma} weights {weighted} ignore {ignore:?}");
        check!(
            ctx,
            "softmax_cross_entropy",
            shape,
            LOSS,
            WHY,
            &c,
            cross_entropy
        );
    }
    for (len, pos_weight) in [(71, 1.0), (5, 2.5)] {
        let p = BinaryCrossEntropyParams { len, pos_weight };
        let shape = format!("{len} logits, pos_weight {pos_weight}");
        check!(
            ctx,
            "sigmoid_binary_cross_entropy",
            shape,
            LOSS,
            WHY,
            &p,
            bce
        );
    }
    for (images, pixels, classes, include_background) in [(2, 35, 3, true), (1, 9, 2, false)] {
        let p = SoftDiceParams {
            images,
            pixels_per_image: pixels,
            classes,
            ignore_index: Some(IGNORE),
            eps: 1.0,
            include_background,
        };
        let shape = format!("{images}×{pixels}×{classes} background {include_background}");
        check!(ctx, "soft_dice", shape, LOSS, WHY, &p, dice);
    }
    let p = ForegroundParams {
        len: 77,
        background: 0,
        ignore_index: Some(IGNORE),
    };
    check!(
        ctx,
        "foreground_mask",
        "77 labels".into(),
        Tol::exact(),
        "0 or 1: exact",
        &p,
        foreground
    );
    for (batch, height, width) in [(2, 7, 9), (1, 1, 5)] {
        let p = ImageGridParams {
            batch,
            height,
            width,
        };
        let why = "square roots of exact integer squared distances";
        check!(
            ctx,
            "distance_transform",
            format!("{batch}×{height}×{width}"),
            Tol::rel_abs(2.0 * F32_U, 0.0),
            why,
            &p,
            distance
        );
    }
    let p = ConfusionParams {
        images: 2,
        pixels_per_image: 35,
        classes: 3,
        ignore_index: Some(IGNORE),
    };
    check!(
        ctx,
        "confusion_matrix",
        "2×35×3".into(),
        Tol::exact(),
        "integer counts: exact",
        &p,
        confusion
    );
}
