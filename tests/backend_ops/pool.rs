//! Max pooling: forward, backward, ties and padding.

use magnet::backend::Pool2dParams;
use magnet::Backend;

use crate::common::reference as r;
use crate::common::*;

fn pool(
    batch: usize,
    [in_h, in_w]: [usize; 2],
    channels: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
) -> Pool2dParams {
    Pool2dParams {
        batch,
        in_h,
        in_w,
        channels,
        kernel,
        stride,
        padding,
    }
}

/// The U-Net's 2×2/2 on odd sizes (floor mode drops the last row / column) and on even ones,
/// 3×3/3 windows tiling the input (both take the CUDA backend's tiled backward), overlapping 3×3
/// windows with padding, and an asymmetric window.
fn cases() -> Vec<Pool2dParams> {
    vec![
        pool(1, [7, 5], 3, [2, 2], [2, 2], [0, 0]),
        pool(2, [8, 6], 3, [2, 2], [2, 2], [0, 0]),
        pool(1, [9, 6], 4, [3, 3], [3, 3], [0, 0]),
        pool(2, [9, 11], 5, [2, 2], [2, 2], [0, 0]),
        pool(2, [9, 11], 3, [3, 3], [2, 2], [1, 1]),
        pool(1, [7, 5], 7, [3, 3], [1, 1], [1, 1]),
        pool(2, [5, 7], 3, [2, 3], [1, 2], [1, 1]),
    ]
}

/// Windows that can contain one input element: `⌈kh/sh⌉·⌈kw/sw⌉`.
fn overlap(p: &Pool2dParams) -> usize {
    p.kernel[0].div_ceil(p.stride[0]) * p.kernel[1].div_ceil(p.stride[1])
}

fn run_forward<B: Backend>(b: &B, p: &Pool2dParams, x: &[f32]) -> Vec<f32> {
    let mut yb = garbage(b, p.output_shape());
    ok(
        b.max_pool2d_forward(p, &upload(b, x, p.input_shape()), &mut yb),
        "max_pool2d_forward",
    );
    download(b, &yb)
}

fn run_backward<B: Backend>(b: &B, p: &Pool2dParams, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let y = f32s(&r::max_pool2d_forward(p, &f64s(x)));
    let mut dxb = garbage(b, p.input_shape());
    ok(
        b.max_pool2d_backward(
            p,
            &upload(b, x, p.input_shape()),
            &upload(b, &y, p.output_shape()),
            &upload(b, dy, p.output_shape()),
            &mut dxb,
        ),
        "max_pool2d_backward",
    );
    download(b, &dxb)
}

fn forward_case<B: Backend>(b: &B) {
    for (i, p) in cases().iter().enumerate() {
        let x = random_vec(p.input_shape().numel(), 3000 + i as u64);
        let want = r::max_pool2d_forward(p, &f64s(&x));
        // A max selects one of its inputs: exact.
        assert_close(
            &run_forward(b, p, &x),
            &want,
            Tol::exact(),
            &format!("max_pool2d_forward {p:?}"),
        );
        // All-negative input: padding must act as −inf, not 0.
        let neg: Vec<f32> = x.iter().map(|v| -2.0 + 0.5 * v.abs()).collect();
        let want = r::max_pool2d_forward(p, &f64s(&neg));
        assert_close(
            &run_forward(b, p, &neg),
            &want,
            Tol::exact(),
            &format!("max_pool2d_forward, negative input {p:?}"),
        );
    }
}

#[test]
fn max_pool2d_forward_matches_reference() {
    for_each_backend!(|b| forward_case(b));
}

fn backward_case<B: Backend>(b: &B) {
    for (i, p) in cases().iter().enumerate() {
        // Distinct values (no ties) spaced further apart than two finite-difference steps.
        let x = distinct_vec(p.input_shape().numel(), 3100 + i as u64);
        let dy = random_vec(p.output_shape().numel(), 3200 + i as u64);
        let (x64, dy64) = (f64s(&x), f64s(&dy));
        let fd = fd_grad(&x64, FD_STEP, |x| dot(&r::max_pool2d_forward(p, x), &dy64));
        let analytic = r::max_pool2d_backward(p, &x64, &dy64);
        // Each input gradient sums the dy of the (overlapping) windows it wins.
        check_gradient(
            &run_backward(b, p, &x, &dy),
            &fd,
            &analytic,
            Tol::accumulated(overlap(p)),
            &format!("max_pool2d_backward {p:?}"),
        );
    }
}

#[test]
fn max_pool2d_backward_matches_finite_differences() {
    for_each_backend!(|b| backward_case(b));
}

fn ties_case<B: Backend>(b: &B) {
    for (i, p) in cases().iter().enumerate() {
        // Values in {0, 1, 2}: most windows hold ties, and the gradient must go to the first
        // maximum in row-major window order, once per window.
        let x: Vec<f32> = random_range(p.input_shape().numel(), 3300 + i as u64, 0.0, 2.99)
            .into_iter()
            .map(f32::floor)
            .collect();
        let dy = random_vec(p.output_shape().numel(), 3400 + i as u64);
        let (x64, dy64) = (f64s(&x), f64s(&dy));
        assert_close(
            &run_forward(b, p, &x),
            &r::max_pool2d_forward(p, &x64),
            Tol::exact(),
            &format!("max_pool2d_forward with ties {p:?}"),
        );
        // Same sums as the backward test, over the windows each element wins.
        assert_close(
            &run_backward(b, p, &x, &dy),
            &r::max_pool2d_backward(p, &x64, &dy64),
            Tol::accumulated(overlap(p)),
            &format!("max_pool2d_backward with ties {p:?}"),
        );
    }
}

#[test]
fn max_pool2d_ties_go_to_the_first_maximum() {
    for_each_backend!(|b| ties_case(b));
}

fn rejects_case<B: Backend>(b: &B) {
    let p = cases()[1];
    let x = random_vec(p.input_shape().numel(), 3500);
    let xb = upload(b, &x, p.input_shape());
    let short_x = upload_vec(b, &x[1..]);
    let y = zeros(b, p.output_shape());
    let mut yo = zeros(b, p.output_shape());
    let mut long_y = zeros_len(b, p.output_shape().numel() + 1);
    let mut dx = zeros(b, p.input_shape());
    let mut short_dx = zeros_len(b, p.input_shape().numel() - 1);

    expect_err("max_pool2d_forward with a short input", || {
        b.max_pool2d_forward(&p, &short_x, &mut yo)
    });
    expect_err("max_pool2d_forward with a long output", || {
        b.max_pool2d_forward(&p, &xb, &mut long_y)
    });
    expect_err("max_pool2d_backward with a short x", || {
        b.max_pool2d_backward(&p, &short_x, &y, &y, &mut dx)
    });
    expect_err("max_pool2d_backward with a short dx", || {
        b.max_pool2d_backward(&p, &xb, &y, &y, &mut short_dx)
    });
    let zero_stride = Pool2dParams {
        stride: [2, 0],
        ..p
    };
    expect_err("max_pool2d_forward with a zero stride", || {
        b.max_pool2d_forward(&zero_stride, &xb, &mut yo)
    });
    expect_err("max_pool2d_backward with a zero stride", || {
        b.max_pool2d_backward(&zero_stride, &xb, &y, &y, &mut dx)
    });
    let wide_pad = Pool2dParams {
        padding: [2, 0],
        ..p
    };
    expect_err(
        "max_pool2d_forward with padding over half the window",
        || b.max_pool2d_forward(&wide_pad, &xb, &mut yo),
    );
}

#[test]
fn max_pool2d_rejects_bad_input() {
    for_each_backend!(|b| rejects_case(b));
}
