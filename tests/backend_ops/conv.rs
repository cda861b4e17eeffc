//! Convolution: forward, backward-data and backward-filter.

use magnet::backend::Conv2dParams;
use magnet::Backend;

use crate::common::reference as r;
use crate::common::*;

#[allow(clippy::too_many_arguments)]
fn conv(
    batch: usize,
    [in_h, in_w]: [usize; 2],
    in_channels: usize,
    out_channels: usize,
    kernel: [usize; 2],
    stride: [usize; 2],
    padding: [usize; 2],
    dilation: [usize; 2],
) -> Conv2dParams {
    Conv2dParams {
        batch,
        in_h,
        in_w,
        in_channels,
        out_channels,
        kernel,
        stride,
        padding,
        dilation,
    }
}

/// Awkward convolutions: odd sizes, batch 1 and 2, channels 3/5/7, every stride / padding /
/// dilation / kernel combination a U-Net uses, and one asymmetric case that catches h/w swaps.
fn cases() -> Vec<Conv2dParams> {
    vec![
        conv(1, [7, 5], 3, 5, [3, 3], [1, 1], [1, 1], [1, 1]),
        conv(2, [9, 11], 5, 3, [3, 3], [2, 2], [0, 0], [1, 1]),
        conv(2, [7, 5], 7, 3, [2, 2], [2, 2], [0, 0], [1, 1]),
        conv(1, [9, 11], 3, 7, [1, 1], [1, 1], [0, 0], [1, 1]),
        conv(1, [9, 11], 5, 5, [3, 3], [1, 1], [1, 1], [2, 2]),
        conv(2, [7, 5], 3, 5, [3, 2], [2, 1], [1, 0], [1, 2]),
        conv(2, [5, 7], 3, 3, [3, 3], [2, 2], [1, 1], [2, 1]),
    ]
}

/// The data of case `i`: input, weights and the output gradient (the `r` of `L = Σ y·r`).
fn data(p: &Conv2dParams, i: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let seed = 1000 + 10 * i as u64;
    (
        random_vec(p.input_shape().numel(), seed),
        random_vec(p.weight_shape().numel(), seed + 1),
        random_vec(p.output_shape().numel(), seed + 2),
    )
}

/// Output elements overlapping one input element: at most `⌈kh/sh⌉·⌈kw/sw⌉` kernel taps, each
/// over `out_channels` products.
fn backward_data_terms(p: &Conv2dParams) -> usize {
    p.kernel[0].div_ceil(p.stride[0]) * p.kernel[1].div_ceil(p.stride[1]) * p.out_channels
}

fn forward_case<B: Backend>(b: &B) {
    for (i, p) in cases().iter().enumerate() {
        let (x, w, _) = data(p, i);
        let xb = upload(b, &x, p.input_shape());
        let wb = upload(b, &w, p.weight_shape());
        let mut yb = garbage(b, p.output_shape());
        ok(b.conv2d_forward(p, &xb, &wb, &mut yb), "conv2d_forward");
        let want = r::conv2d_forward(p, &f64s(&x), &f64s(&w));
        // Each output is an f32 sum of kh·kw·in_channels products of magnitude ≤ 1.
        let k = p.kernel[0] * p.kernel[1] * p.in_channels;
        assert_close(
            &download(b, &yb),
            &want,
            Tol::accumulated(k),
            &format!("conv2d_forward {p:?}"),
        );
    }
}

#[test]
fn conv2d_forward_matches_reference() {
    for_each_backend!(|b| forward_case(b));
}

fn backward_data_case<B: Backend>(b: &B) {
    for (i, p) in cases().iter().enumerate() {
        let (x, w, dy) = data(p, i);
        let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));
        let fd = fd_grad(&x64, FD_STEP, |x| {
            dot(&r::conv2d_forward(p, x, &w64), &dy64)
        });
        let analytic = r::conv2d_backward_data(p, &dy64, &w64);
        let dyb = upload(b, &dy, p.output_shape());
        let wb = upload(b, &w, p.weight_shape());
        let mut dxb = garbage(b, p.input_shape());
        ok(
            b.conv2d_backward_data(p, &dyb, &wb, &mut dxb),
            "conv2d_backward_data",
        );
        // Each input gradient sums the products of the outputs its taps reach.
        check_gradient(
            &download(b, &dxb),
            &fd,
            &analytic,
            Tol::accumulated(backward_data_terms(p)),
            &format!("conv2d_backward_data {p:?}"),
        );
    }
}

#[test]
fn conv2d_backward_data_matches_finite_differences() {
    for_each_backend!(|b| backward_data_case(b));
}

fn backward_filter_case<B: Backend>(b: &B) {
    for (i, p) in cases().iter().enumerate() {
        let (x, w, dy) = data(p, i);
        let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));
        let fd = fd_grad(&w64, FD_STEP, |w| {
            dot(&r::conv2d_forward(p, &x64, w), &dy64)
        });
        let analytic = r::conv2d_backward_filter(p, &x64, &dy64);
        let xb = upload(b, &x, p.input_shape());
        let dyb = upload(b, &dy, p.output_shape());
        let mut dwb = garbage(b, p.weight_shape());
        ok(
            b.conv2d_backward_filter(p, &xb, &dyb, &mut dwb),
            "conv2d_backward_filter",
        );
        // Each weight gradient is a sum over batch·out_h·out_w output positions.
        let k = p.batch * p.out_h() * p.out_w();
        check_gradient(
            &download(b, &dwb),
            &fd,
            &analytic,
            Tol::accumulated(k),
            &format!("conv2d_backward_filter {p:?}"),
        );
    }
}

#[test]
fn conv2d_backward_filter_matches_finite_differences() {
    for_each_backend!(|b| backward_filter_case(b));
}

/// Convolutions whose products are long next to their few outputs, which GPU backends cut into
/// parts of the depth summed afterwards: backward-filter over thousands of pixels (an uneven
/// number, and a stride), forward and backward-data over thousands of channels.
fn long_depth_cases() -> Vec<Conv2dParams> {
    vec![
        conv(2, [61, 67], 3, 4, [3, 3], [1, 1], [1, 1], [1, 1]),
        conv(2, [122, 134], 2, 3, [3, 3], [2, 2], [1, 1], [1, 1]),
        conv(1, [2, 3], 4100, 3, [1, 1], [1, 1], [0, 0], [1, 1]),
        conv(1, [2, 3], 3, 4100, [1, 1], [1, 1], [0, 0], [1, 1]),
    ]
}

fn long_depth_case<B: Backend>(b: &B) {
    for (i, p) in long_depth_cases().iter().enumerate() {
        let (x, w, dy) = data(p, 100 + i);
        let (x64, w64, dy64) = (f64s(&x), f64s(&w), f64s(&dy));
        let xb = upload(b, &x, p.input_shape());
        let wb = upload(b, &w, p.weight_shape());
        let dyb = upload(b, &dy, p.output_shape());
        let mut yb = garbage(b, p.output_shape());
        let mut dxb = garbage(b, p.input_shape());
        let mut dwb = garbage(b, p.weight_shape());
        ok(b.conv2d_forward(p, &xb, &wb, &mut yb), "conv2d_forward");
        ok(
            b.conv2d_backward_data(p, &dyb, &wb, &mut dxb),
            "conv2d_backward_data",
        );
        ok(
            b.conv2d_backward_filter(p, &xb, &dyb, &mut dwb),
            "conv2d_backward_filter",
        );
        // Sums of kh·kw·in, ⌈kh/sh⌉·⌈kw/sw⌉·out and batch·out_h·out_w products of magnitude ≤ 1.
        let taps = p.kernel[0] * p.kernel[1];
        let checks = [
            (yb, r::conv2d_forward(p, &x64, &w64), taps * p.in_channels),
            (
                dxb,
                r::conv2d_backward_data(p, &dy64, &w64),
                backward_data_terms(p),
            ),
            (
                dwb,
                r::conv2d_backward_filter(p, &x64, &dy64),
                p.batch * p.out_h() * p.out_w(),
            ),
        ];
        for (what, (got, want, terms)) in ["forward", "backward_data", "backward_filter"]
            .iter()
            .zip(checks)
        {
            assert_close(
                &download(b, &got),
                &want,
                Tol::accumulated(terms),
                &format!("conv2d {what} {p:?}"),
            );
        }
    }
}

#[test]
fn conv2d_over_a_long_depth_matches_reference() {
    for_each_backend!(|b| long_depth_case(b));
}

fn rejects_case<B: Backend>(b: &B) {
    let p = cases()[1];
    let (x, w, dy) = data(&p, 1);
    let xb = upload(b, &x, p.input_shape());
    let wb = upload(b, &w, p.weight_shape());
    let dyb = upload(b, &dy, p.output_shape());
    let short_x = upload_vec(b, &x[1..]);
    let short_w = upload_vec(b, &w[1..]);
    let short_dy = upload_vec(b, &dy[1..]);
    let mut y = zeros(b, p.output_shape());
    let mut dx = zeros(b, p.input_shape());
    let mut dw = zeros(b, p.weight_shape());
    let mut long_y = zeros_len(b, p.output_shape().numel() + 1);
    let mut long_dx = zeros_len(b, p.input_shape().numel() + 1);
    let mut long_dw = zeros_len(b, p.weight_shape().numel() + 1);

    expect_err("conv2d_forward with a short input", || {
        b.conv2d_forward(&p, &short_x, &wb, &mut y)
    });
    expect_err("conv2d_forward with short weights", || {
        b.conv2d_forward(&p, &xb, &short_w, &mut y)
    });
    expect_err("conv2d_forward with a long output", || {
        b.conv2d_forward(&p, &xb, &wb, &mut long_y)
    });
    expect_err("conv2d_backward_data with a short dy", || {
        b.conv2d_backward_data(&p, &short_dy, &wb, &mut dx)
    });
    expect_err("conv2d_backward_data with short weights", || {
        b.conv2d_backward_data(&p, &dyb, &short_w, &mut dx)
    });
    expect_err("conv2d_backward_data with a long dx", || {
        b.conv2d_backward_data(&p, &dyb, &wb, &mut long_dx)
    });
    expect_err("conv2d_backward_filter with a short input", || {
        b.conv2d_backward_filter(&p, &short_x, &dyb, &mut dw)
    });
    expect_err("conv2d_backward_filter with a short dy", || {
        b.conv2d_backward_filter(&p, &xb, &short_dy, &mut dw)
    });
    expect_err("conv2d_backward_filter with a long dw", || {
        b.conv2d_backward_filter(&p, &xb, &dyb, &mut long_dw)
    });

    // Invalid parameters, with buffers whose lengths match what the parameters imply as far
    // as they can.
    let zero_stride = Conv2dParams {
        stride: [0, 2],
        ..p
    };
    expect_err("conv2d_forward with a zero stride", || {
        b.conv2d_forward(&zero_stride, &xb, &wb, &mut y)
    });
    expect_err("conv2d_backward_data with a zero stride", || {
        b.conv2d_backward_data(&zero_stride, &dyb, &wb, &mut dx)
    });
    expect_err("conv2d_backward_filter with a zero stride", || {
        b.conv2d_backward_filter(&zero_stride, &xb, &dyb, &mut dw)
    });
    let zero_dilation = Conv2dParams {
        dilation: [1, 0],
        ..p
    };
    expect_err("conv2d_forward with a zero dilation", || {
        b.conv2d_forward(&zero_dilation, &xb, &wb, &mut y)
    });
    // A 3×3 kernel with dilation 5 spans 11 rows, more than the 9 (unpadded) input rows.
    let too_wide = Conv2dParams {
        dilation: [5, 1],
        ..p
    };
    expect_err("conv2d_forward with a kernel wider than the input", || {
        b.conv2d_forward(&too_wide, &xb, &wb, &mut y)
    });
    let empty = Conv2dParams { batch: 0, ..p };
    let mut nothing = zeros_len(b, 0);
    let nothing_in = zeros_len(b, 0);
    expect_err("conv2d_forward with batch 0", || {
        b.conv2d_forward(&empty, &nothing_in, &wb, &mut nothing)
    });
}

#[test]
fn conv2d_rejects_bad_input() {
    for_each_backend!(|b| rejects_case(b));
}
