//! Elementwise maps and their gradients, broadcasting binary maps, fill, axpy and dropout.

use magnet::backend::{BinaryOp, UnaryOp};
use magnet::{Backend, Shape};

use crate::common::reference as r;
use crate::common::*;

/// Every unary op with inputs in its domain, kept 0.01 away from kinks and poles so that the
/// finite differences do not straddle them.
fn unary_cases() -> Vec<(UnaryOp, Vec<f32>)> {
    let n = 37;
    let wide: Vec<f32> = random_vec(n, 6000).iter().map(|v| 2.0 * v).collect();
    let kinked = random_away_from_zero(n, 6001, 0.01);
    let positive = random_range(n, 6002, 0.1, 2.0);
    vec![
        (UnaryOp::Relu, kinked.clone()),
        (UnaryOp::Sigmoid, wide.clone()),
        (UnaryOp::Tanh, wide.clone()),
        (UnaryOp::Exp, wide.clone()),
        (UnaryOp::Log, positive.clone()),
        (UnaryOp::Neg, wide.clone()),
        (UnaryOp::Abs, kinked),
        (UnaryOp::Sqrt, positive),
        (UnaryOp::Square, wide.clone()),
        (
            UnaryOp::Affine {
                scale: -1.5,
                shift: 0.25,
            },
            wide,
        ),
    ]
}

/// f32 transcendental functions: correctly rounded would be 0.5 ulp, libm gives ~1 ulp, WGSL
/// allows 3 ulp (+2|x| for exp) and 2⁻²¹ absolute for log on [0.5, 2]; 4e-6 relative (~67 ulp)
/// and 1e-6 absolute cover those and still catch any wrong formula.
const TRANSCENDENTAL: Tol = Tol::rel_abs(4e-6, 1e-6);

fn unary_case<B: Backend>(b: &B) {
    for (op, x) in unary_cases() {
        let want: Vec<f64> = x.iter().map(|&v| r::unary(op, v as f64)).collect();
        let mut yb = garbage(b, [x.len()]);
        ok(b.unary(op, &upload_vec(b, &x), &mut yb), "unary");
        assert_close(
            &download(b, &yb),
            &want,
            TRANSCENDENTAL,
            &format!("unary {op:?}"),
        );
    }
}

#[test]
fn unary_matches_reference() {
    for_each_backend!(|b| unary_case(b));
}

fn unary_backward_case<B: Backend>(b: &B) {
    for (i, (op, x)) in unary_cases().into_iter().enumerate() {
        let dy = random_vec(x.len(), 6100 + i as u64);
        let (x64, dy64) = (f64s(&x), f64s(&dy));
        let fd = fd_grad(&x64, FD_STEP, |x| {
            let y: Vec<f64> = x.iter().map(|&v| r::unary(op, v)).collect();
            dot(&y, &dy64)
        });
        let analytic: Vec<f64> = x64
            .iter()
            .zip(&dy64)
            .map(|(&v, &d)| d * r::unary_derivative(op, v))
            .collect();
        let y: Vec<f32> = x.iter().map(|&v| r::unary(op, v as f64) as f32).collect();
        let mut dxb = garbage(b, [x.len()]);
        ok(
            b.unary_backward(
                op,
                &upload_vec(b, if op.backward_from_output() { &y } else { &x }),
                &upload_vec(b, &dy),
                &mut dxb,
            ),
            "unary_backward",
        );
        // dy·f'(x) with f' from the same f32 functions as the forward (or from y).
        check_gradient(
            &download(b, &dxb),
            &fd,
            &analytic,
            TRANSCENDENTAL,
            &format!("unary_backward {op:?}"),
        );
    }
}

#[test]
fn unary_backward_matches_finite_differences() {
    for_each_backend!(|b| unary_backward_case(b));
}

/// Broadcasting pairs: trailing vector, size-1 axes on both sides, equal shapes, a scalar of
/// rank 0 and of rank 1, and rank 4 against rank 3.
fn binary_shapes() -> Vec<(Vec<usize>, Vec<usize>)> {
    vec![
        (vec![2, 3, 4], vec![4]),
        (vec![2, 1, 4], vec![3, 1]),
        (vec![5], vec![5]),
        (vec![], vec![3, 2]),
        (vec![2, 3], vec![1]),
        (vec![2, 3, 1, 5], vec![3, 4, 1]),
        (vec![1, 7, 5, 3], vec![2, 1, 1, 3]),
    ]
}

fn binary_case<B: Backend>(b: &B) {
    let ops = [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div];
    for (i, (sa, sb)) in binary_shapes().into_iter().enumerate() {
        let (sa, sb) = (Shape::new(sa), Shape::new(sb));
        let out = sa.broadcast(&sb).expect("test shapes broadcast");
        let a = random_vec(sa.numel(), 6200 + i as u64);
        // Divisors kept in ±[0.5, 1.5].
        let d: Vec<f32> = random_away_from_zero(sb.numel(), 6300 + i as u64, 0.5)
            .into_iter()
            .map(|v| v * 1.5)
            .collect();
        for op in ops {
            let want = r::binary(op, &f64s(&a), &sa, &f64s(&d), &sb).expect("broadcastable");
            let mut yb = garbage(b, out.clone());
            ok(
                b.binary(
                    op,
                    &upload(b, &a, sa.clone()),
                    &sa,
                    &upload(b, &d, sb.clone()),
                    &sb,
                    &mut yb,
                ),
                "binary",
            );
            // One f32 rounding of an exact result (0.5 ulp); WGSL division may take 2.5 ulp.
            assert_close(
                &download(b, &yb),
                &want,
                Tol::rel_abs(4e-7, 0.0),
                &format!("binary {op:?} {sa} with {sb}"),
            );
        }
    }
}

#[test]
fn binary_broadcasts_like_numpy() {
    for_each_backend!(|b| binary_case(b));
}

fn fill_axpy_case<B: Backend>(b: &B) {
    for (i, n) in [1usize, 7, 37, 1000].into_iter().enumerate() {
        let mut yb = garbage(b, [n]);
        ok(b.fill(&mut yb, -0.375), "fill");
        // A store: exact.
        assert_close(&download(b, &yb), &vec![-0.375f32; n], Tol::exact(), "fill");

        let x = random_vec(n, 6400 + i as u64);
        let y = random_vec(n, 6500 + i as u64);
        let alpha = -0.7f32;
        let want: Vec<f64> = x
            .iter()
            .zip(&y)
            .map(|(&x, &y)| y as f64 + alpha as f64 * x as f64)
            .collect();
        let mut yb = upload_vec(b, &y);
        ok(b.axpy(alpha, &upload_vec(b, &x), &mut yb), "axpy");
        // Two roundings (or one fused) on values ≤ 1.7: ≤ 2 ulp of 2.
        assert_close(
            &download(b, &yb),
            &want,
            Tol::rel_abs(2.0 * F32_U, 4.0 * F32_U),
            &format!("axpy n={n}"),
        );
    }
}

#[test]
fn fill_and_axpy_match_reference() {
    for_each_backend!(|b| fill_axpy_case(b));
}

/// `(p, seed, length)`: no dropout, common rates, a seed using its high 32 bits, an odd length.
fn dropout_cases() -> Vec<(f32, u64, usize)> {
    vec![
        (0.0, 7, 64),
        (0.3, 7, 101),
        (0.5, (1 << 40) + 3, 101),
        (0.5, 8, 101),
        (0.9, 123, 257),
    ]
}

fn dropout_case<B: Backend>(b: &B) {
    for (i, (p, seed, n)) in dropout_cases().into_iter().enumerate() {
        let x = random_vec(n, 6600 + i as u64);
        let want = r::dropout(p, seed, &f64s(&x));
        let mut yb = garbage(b, [n]);
        ok(
            b.dropout_forward(p, seed, &upload_vec(b, &x), &mut yb),
            "dropout_forward",
        );
        // Kept elements are x·1/(1 − p): 1 − p, the reciprocal and the product round once each
        // (WGSL division: 2.5 ulp); dropped ones are exactly 0, and the mask must be bit-equal.
        let tol = Tol::rel_abs(4e-7, 0.0);
        let got = download(b, &yb);
        assert_close(
            &got,
            &want,
            tol,
            &format!("dropout_forward p={p} seed={seed}"),
        );

        let dy = random_vec(n, 6700 + i as u64);
        let dy64 = f64s(&dy);
        let fd = fd_grad(&f64s(&x), FD_STEP, |x| dot(&r::dropout(p, seed, x), &dy64));
        let analytic = r::dropout(p, seed, &dy64);
        let mut dxb = garbage(b, [n]);
        ok(
            b.dropout_backward(p, seed, &upload_vec(b, &dy), &mut dxb),
            "dropout_backward",
        );
        check_gradient(
            &download(b, &dxb),
            &fd,
            &analytic,
            tol,
            &format!("dropout_backward p={p} seed={seed}"),
        );
    }
}

#[test]
fn dropout_matches_reference_mask() {
    for_each_backend!(|b| dropout_case(b));
}

fn rejects_case<B: Backend>(b: &B) {
    let x = upload_vec(b, &random_vec(12, 6800));
    let short = upload_vec(b, &random_vec(11, 6801));
    let mut y = zeros_len(b, 12);
    let mut short_y = zeros_len(b, 11);
    expect_err("unary with a short output", || {
        b.unary(UnaryOp::Relu, &x, &mut short_y)
    });
    expect_err("unary_backward with a short dy", || {
        b.unary_backward(UnaryOp::Tanh, &x, &short, &mut y)
    });
    expect_err("unary_backward with a short saved value", || {
        b.unary_backward(UnaryOp::Sigmoid, &short, &x, &mut y)
    });

    let (s23, s4) = (Shape::new([2, 3]), Shape::new([4]));
    let a6 = upload_vec(b, &random_vec(6, 6802));
    let b4 = upload_vec(b, &random_vec(4, 6803));
    let mut y6 = zeros_len(b, 6);
    expect_err("binary with shapes [2, 3] and [4]", || {
        b.binary(BinaryOp::Add, &a6, &s23, &b4, &s4, &mut y6)
    });
    let s3 = Shape::new([3]);
    expect_err("binary with a buffer shorter than its shape", || {
        b.binary(BinaryOp::Mul, &a6, &s23, &b4, &s3, &mut y6)
    });
    let mut y7 = zeros_len(b, 7);
    let b3 = upload_vec(b, &random_vec(3, 6804));
    expect_err(
        "binary with an output longer than the broadcast shape",
        || b.binary(BinaryOp::Sub, &a6, &s23, &b3, &s3, &mut y7),
    );

    expect_err("axpy with different lengths", || {
        b.axpy(1.0, &short, &mut y)
    });

    expect_err("dropout_forward with p = 1.5", || {
        b.dropout_forward(1.5, 1, &x, &mut y)
    });
    expect_err("dropout_forward with p = -0.1", || {
        b.dropout_forward(-0.1, 1, &x, &mut y)
    });
    expect_err("dropout_forward with a short output", || {
        b.dropout_forward(0.5, 1, &x, &mut short_y)
    });
    expect_err("dropout_backward with a short dy", || {
        b.dropout_backward(0.5, 1, &short, &mut y)
    });
}

#[test]
fn elementwise_ops_reject_bad_input() {
    for_each_backend!(|b| rejects_case(b));
}
