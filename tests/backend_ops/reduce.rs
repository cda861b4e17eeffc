//! Reductions to a broadcastable shape, and softmax / log-softmax with their gradients.

use magnet::backend::ReduceOp;
use magnet::{Backend, Shape};

use crate::common::reference as r;
use crate::common::*;

/// `(x_shape, y_shape)`: every axis pattern the graph's broadcast gradients produce (per-channel
/// bias gradients of NHWC, leading axes, inner axes, everything, nothing).
fn reduce_shapes() -> Vec<(Vec<usize>, Vec<usize>)> {
    vec![
        (vec![2, 3, 4], vec![1, 3, 1]),
        (vec![2, 3, 4], vec![4]),
        (vec![2, 3, 4], vec![]),
        (vec![2, 3, 4], vec![2, 1, 4]),
        (vec![2, 3, 4], vec![2, 3, 4]),
        (vec![2, 3, 4], vec![3, 1]),
        (vec![2, 7, 5, 3], vec![1, 1, 1, 3]),
        (vec![2, 7, 5, 3], vec![2, 1, 1, 1]),
        (vec![37], vec![1]),
    ]
}

fn reduce_case<B: Backend>(b: &B) {
    for (i, (xs, ys)) in reduce_shapes().into_iter().enumerate() {
        let (xs, ys) = (Shape::new(xs), Shape::new(ys));
        let x = random_vec(xs.numel(), 7000 + i as u64);
        let k = xs.numel() / ys.numel();
        for op in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max] {
            let want = r::reduce(op, &f64s(&x), &xs, &ys).expect("reducible");
            let mut yb = garbage(b, ys.clone());
            ok(
                b.reduce(op, &upload(b, &x, xs.clone()), &xs, &ys, &mut yb),
                "reduce",
            );
            let tol = match op {
                // An f32 sum of k values of magnitude ≤ 1.
                ReduceOp::Sum => Tol::accumulated(k),
                // The same sum divided by k: its error divides by k too.
                ReduceOp::Mean => Tol::rel_abs(8.0 * F32_U, 8.0 * F32_U),
                // Selects one input: exact.
                ReduceOp::Max => Tol::exact(),
            };
            assert_close(
                &download(b, &yb),
                &want,
                tol,
                &format!("reduce {op:?} {xs} -> {ys}"),
            );
        }
    }
}

#[test]
fn reduce_matches_reference() {
    for_each_backend!(|b| reduce_case(b));
}

/// `(rows, cols, scale, offset)` of `x = scale·U[-1, 1] + offset`: a pixel-wise softmax over 3
/// or 5 classes, one column, a long row, and logits near 90 where a softmax that does not
/// subtract the row maximum overflows f32 (`exp(88.7)` is its largest finite value).
fn softmax_cases() -> Vec<(usize, usize, f32, f32)> {
    vec![
        (7 * 5, 3, 2.0, 0.0),
        (3, 5, 2.0, 0.0),
        (7, 1, 2.0, 0.0),
        (2, 37, 2.0, 0.0),
        (4, 5, 30.0, 60.0),
    ]
}

fn softmax_data(i: usize, rows: usize, cols: usize, scale: f32, offset: f32) -> Vec<f32> {
    random_vec(rows * cols, 7100 + i as u64)
        .into_iter()
        .map(|v| scale * v + offset)
        .collect()
}

/// `x − max` (or `x − logsumexp`) rounds relative to the largest |x| in a row; then exp and a
/// sum over ≤ 37 columns add a few ulps.
fn softmax_tol(log: bool, max_abs: f32) -> Tol {
    let shift = 8.0 * F32_U * max_abs as f64;
    if log {
        Tol::rel_abs(1e-5, 1e-6 + shift)
    } else {
        Tol::rel_abs(1e-5 + shift, 1e-7)
    }
}

fn softmax_case<B: Backend>(b: &B) {
    for (i, (rows, cols, scale, offset)) in softmax_cases().into_iter().enumerate() {
        let x = softmax_data(i, rows, cols, scale, offset);
        let max_abs = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        for log in [false, true] {
            let want = r::softmax(rows, cols, log, &f64s(&x));
            let mut yb = garbage(b, [rows, cols]);
            ok(
                b.softmax(rows, cols, log, &upload_vec(b, &x), &mut yb),
                "softmax",
            );
            assert_close(
                &download(b, &yb),
                &want,
                softmax_tol(log, max_abs),
                &format!("softmax log={log} rows={rows} cols={cols} x in {offset}±{scale}"),
            );
        }
    }
}

#[test]
fn softmax_matches_reference() {
    for_each_backend!(|b| softmax_case(b));
}

fn softmax_backward_case<B: Backend>(b: &B) {
    for (i, (rows, cols, scale, offset)) in softmax_cases().into_iter().enumerate() {
        if offset != 0.0 {
            continue;
        }
        let x = f64s(&softmax_data(i, rows, cols, scale, offset));
        let dy = random_vec(rows * cols, 7200 + i as u64);
        let dy64 = f64s(&dy);
        for log in [false, true] {
            let fd = fd_grad(&x, FD_STEP, |x| dot(&r::softmax(rows, cols, log, x), &dy64));
            let y = r::softmax(rows, cols, log, &x);
            let analytic = r::softmax_backward(rows, cols, log, &y, &dy64);
            let mut dxb = garbage(b, [rows, cols]);
            ok(
                b.softmax_backward(
                    rows,
                    cols,
                    log,
                    &upload_vec(b, &f32s(&y)),
                    &upload_vec(b, &dy),
                    &mut dxb,
                ),
                "softmax_backward",
            );
            // dy − Σ(dy·y) (or dy − exp(y)·Σdy): an f32 sum over ≤ 37 columns of terms ≤ 1,
            // an exp for log-softmax, and one cancelling subtraction.
            check_gradient(
                &download(b, &dxb),
                &fd,
                &analytic,
                Tol::rel_abs(1e-5, 1e-6).max(Tol::accumulated(cols)),
                &format!("softmax_backward log={log} rows={rows} cols={cols}"),
            );
        }
    }
}

#[test]
fn softmax_backward_matches_finite_differences() {
    for_each_backend!(|b| softmax_backward_case(b));
}

fn rejects_case<B: Backend>(b: &B) {
    let (x24, s24) = (upload_vec(b, &random_vec(8, 7300)), Shape::new([2, 4]));
    let mut y3 = zeros_len(b, 3);
    let mut y4 = zeros_len(b, 4);
    expect_err("reduce [2, 4] to [3]", || {
        b.reduce(ReduceOp::Sum, &x24, &s24, &Shape::new([3]), &mut y3)
    });
    expect_err("reduce [2, 4] to the larger [3, 2, 4]", || {
        b.reduce(ReduceOp::Sum, &x24, &s24, &Shape::new([3, 2, 4]), &mut y4)
    });
    expect_err("reduce with an output longer than its shape", || {
        b.reduce(ReduceOp::Mean, &x24, &s24, &Shape::new([1, 3]), &mut y4)
    });
    expect_err("reduce with an input shorter than its shape", || {
        b.reduce(
            ReduceOp::Max,
            &x24,
            &Shape::new([3, 4]),
            &Shape::new([4]),
            &mut y4,
        )
    });
    let mut y8 = zeros_len(b, 8);
    let mut y9 = zeros_len(b, 9);
    expect_err("softmax with rows × cols above the input length", || {
        b.softmax(3, 3, false, &x24, &mut y9)
    });
    expect_err("softmax with a short output", || {
        b.softmax(2, 4, true, &x24, &mut y4)
    });
    expect_err("softmax_backward with a short dy", || {
        b.softmax_backward(2, 4, false, &x24, &y4, &mut y8)
    });
}

#[test]
fn reduce_and_softmax_reject_bad_input() {
    for_each_backend!(|b| rejects_case(b));
}
