//! Bilinear resampling: forward and backward, align_corners true and false.

use magnet::backend::UpsampleParams;
use magnet::Backend;

use crate::common::reference as r;
use crate::common::*;

fn up(
    batch: usize,
    [in_h, in_w]: [usize; 2],
    channels: usize,
    [out_h, out_w]: [usize; 2],
    align_corners: bool,
) -> UpsampleParams {
    UpsampleParams {
        batch,
        in_h,
        in_w,
        channels,
        out_h,
        out_w,
        align_corners,
    }
}

/// Scale 2 on odd sizes, a non-integer scale, a down-sampling, a 1×1 input and a 1-wide
/// output (where align_corners' `(in − 1)/(out − 1)` would divide by zero), each in both modes.
fn cases() -> Vec<UpsampleParams> {
    let mut v = Vec::new();
    for align in [false, true] {
        v.push(up(1, [7, 5], 3, [14, 10], align));
        v.push(up(2, [4, 3], 5, [9, 11], align));
        v.push(up(1, [9, 11], 7, [5, 4], align));
        v.push(up(2, [1, 1], 3, [3, 2], align));
        v.push(up(1, [3, 4], 3, [1, 5], align));
    }
    v
}

fn forward_case<B: Backend>(b: &B) {
    for (i, p) in cases().iter().enumerate() {
        let x = random_vec(p.input_shape().numel(), 4000 + i as u64);
        let want = r::upsample_bilinear2d_forward(p, &f64s(&x));
        let mut yb = garbage(b, p.output_shape());
        ok(
            b.upsample_bilinear2d_forward(p, &upload(b, &x, p.input_shape()), &mut yb),
            "upsample_bilinear2d_forward",
        );
        // A blend of four inputs (|x| ≤ 1) with weights computed in f32 from source coordinates
        // below 11: each weight is off by ~11·u ≈ 7e-7, the blend by a few of those.
        assert_close(
            &download(b, &yb),
            &want,
            Tol::rel_abs(1e-5, 1e-5),
            &format!("upsample_bilinear2d_forward {p:?}"),
        );
    }
}

#[test]
fn upsample_bilinear2d_forward_matches_reference() {
    for_each_backend!(|b| forward_case(b));
}

fn backward_case<B: Backend>(b: &B) {
    for (i, p) in cases().iter().enumerate() {
        let x = f64s(&random_vec(p.input_shape().numel(), 4100 + i as u64));
        let dy = random_vec(p.output_shape().numel(), 4200 + i as u64);
        let dy64 = f64s(&dy);
        let fd = fd_grad(&x, FD_STEP, |x| {
            dot(&r::upsample_bilinear2d_forward(p, x), &dy64)
        });
        let analytic = r::upsample_bilinear2d_backward(p, &dy64);
        let mut dxb = garbage(b, p.input_shape());
        ok(
            b.upsample_bilinear2d_backward(p, &upload(b, &dy, p.output_shape()), &mut dxb),
            "upsample_bilinear2d_backward",
        );
        // Each input gathers four weighted taps from every output whose source cell touches
        // it: at most 4·⌈out/in + 1⌉² terms (a 1×1 input gathers every output).
        let per_axis = |i: usize, o: usize| o.div_ceil(i) + 1;
        let k = 4 * per_axis(p.in_h, p.out_h) * per_axis(p.in_w, p.out_w);
        check_gradient(
            &download(b, &dxb),
            &fd,
            &analytic,
            Tol::rel_abs(1e-5, 1e-5).max(Tol::accumulated(k)),
            &format!("upsample_bilinear2d_backward {p:?}"),
        );
    }
}

#[test]
fn upsample_bilinear2d_backward_matches_finite_differences() {
    for_each_backend!(|b| backward_case(b));
}

fn rejects_case<B: Backend>(b: &B) {
    let p = cases()[0];
    let x = random_vec(p.input_shape().numel(), 4300);
    let xb = upload(b, &x, p.input_shape());
    let short_x = upload_vec(b, &x[1..]);
    let dy = zeros(b, p.output_shape());
    let mut y = zeros(b, p.output_shape());
    let mut short_y = zeros_len(b, p.output_shape().numel() - 1);
    let mut dx = zeros(b, p.input_shape());
    let mut long_dx = zeros_len(b, p.input_shape().numel() + 1);

    expect_err("upsample_bilinear2d_forward with a short input", || {
        b.upsample_bilinear2d_forward(&p, &short_x, &mut y)
    });
    expect_err("upsample_bilinear2d_forward with a short output", || {
        b.upsample_bilinear2d_forward(&p, &xb, &mut short_y)
    });
    expect_err("upsample_bilinear2d_backward with a short dy", || {
        b.upsample_bilinear2d_backward(&p, &short_x, &mut dx)
    });
    expect_err("upsample_bilinear2d_backward with a long dx", || {
        b.upsample_bilinear2d_backward(&p, &dy, &mut long_dx)
    });
    let empty = UpsampleParams { out_h: 0, ..p };
    let mut nothing = zeros_len(b, 0);
    expect_err(
        "upsample_bilinear2d_forward to a zero-height output",
        || b.upsample_bilinear2d_forward(&empty, &xb, &mut nothing),
    );
}

#[test]
fn upsample_bilinear2d_rejects_bad_input() {
    for_each_backend!(|b| rejects_case(b));
}
