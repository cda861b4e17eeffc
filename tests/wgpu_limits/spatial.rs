//! Convolution, batch norm, pooling and resampling, split by image rows and rows.

use magnet::backend::*;

use crate::common::*;
use crate::{big, compare, get, on_small, out, up, Outputs};

// ---------------------------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------------------------

/// `[batch, h, w, in, out, kernel, stride, padding, dilation]`.
pub fn conv([batch, h, w, cin, cout, k, s, pad, dil]: [usize; 9]) -> Conv2dParams {
    Conv2dParams {
        batch,
        in_h: h,
        in_w: w,
        in_channels: cin,
        out_channels: cout,
        kernel: [k, k],
        stride: [s, s],
        padding: [pad, pad],
        dilation: [dil, dil],
    }
}

fn conv_forward<M: Backend>(m: &M, p: &Conv2dParams) -> Outputs {
    let x = up(m, &random_vec(p.input_shape().numel(), 1));
    let w = up(m, &random_vec(p.weight_shape().numel(), 2));
    let mut y = out(m, p.output_shape().numel());
    ok(m.conv2d_forward(p, &x, &w, &mut y), "conv2d_forward");
    get(m, &[&y])
}

fn conv_backward_data<M: Backend>(m: &M, p: &Conv2dParams) -> Outputs {
    let dy = up(m, &random_vec(p.output_shape().numel(), 3));
    let w = up(m, &random_vec(p.weight_shape().numel(), 2));
    let mut dx = out(m, p.input_shape().numel());
    ok(m.conv2d_backward_data(p, &dy, &w, &mut dx), "backward_data");
    get(m, &[&dx])
}

fn conv_backward_filter<M: Backend>(m: &M, p: &Conv2dParams) -> Outputs {
    let x = up(m, &random_vec(p.input_shape().numel(), 1));
    let dy = up(m, &random_vec(p.output_shape().numel(), 3));
    let mut dw = out(m, p.weight_shape().numel());
    ok(
        m.conv2d_backward_filter(p, &x, &dy, &mut dw),
        "backward_filter",
    );
    get(m, &[&dw])
}

#[test]
fn convolutions_split_by_image_rows() {
    on_small(|b| {
        for p in [
            conv([2, 12, 16, 6, 5, 3, 1, 1, 1]),
            conv([2, 15, 13, 4, 6, 3, 2, 0, 1]),
            conv([2, 20, 12, 5, 4, 3, 1, 2, 2]),
            conv([2, 10, 12, 8, 7, 1, 1, 0, 1]),
            conv([2, 16, 14, 4, 8, 2, 2, 0, 1]),
        ] {
            big(p.input_shape().numel());
            let what = format!("{p:?}");
            let taps = p.kernel[0] * p.kernel[1];
            // f32 sums of k products in another order: 2× accumulated(k), as `magnet verify`.
            let tol = Tol::accumulated(taps * p.in_channels).scale(2.0);
            same_as_cpu!(b, conv_forward, &p, tol, format!("forward {what}"));
            let tol = Tol::accumulated(taps * p.out_channels).scale(2.0);
            same_as_cpu!(
                b,
                conv_backward_data,
                &p,
                tol,
                format!("backward_data {what}")
            );
            // One term per output pixel of the batch, summed over dispatches of rows.
            let tol = Tol::accumulated(p.batch * p.out_h() * p.out_w()).scale(2.0);
            same_as_cpu!(
                b,
                conv_backward_filter,
                &p,
                tol,
                format!("backward_filter {what}")
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Batch norm, pooling, resampling
// ---------------------------------------------------------------------------------------------

fn bn_train<M: Backend>(m: &M, p: &BatchNormParams) -> Outputs {
    let n = p.rows * p.channels;
    let x = up(m, &random_range(n, 10, -2.0, 3.0));
    let gamma = up(m, &random_range(p.channels, 11, 0.5, 1.5));
    let beta = up(m, &random_vec(p.channels, 12));
    let (mut y, mut mean, mut invstd) = (out(m, n), out(m, p.channels), out(m, p.channels));
    let mut rmean = up(m, &random_vec(p.channels, 13));
    let mut rvar = up(m, &random_range(p.channels, 14, 0.5, 2.0));
    let res = m.batch_norm_train(
        p,
        &x,
        &gamma,
        &beta,
        &mut y,
        &mut mean,
        &mut invstd,
        &mut rmean,
        &mut rvar,
    );
    ok(res, "batch_norm_train");
    get(m, &[&y, &mean, &invstd, &rmean, &rvar])
}

fn bn_inference<M: Backend>(m: &M, p: &BatchNormParams) -> Outputs {
    let n = p.rows * p.channels;
    let x = up(m, &random_range(n, 10, -2.0, 3.0));
    let gamma = up(m, &random_range(p.channels, 11, 0.5, 1.5));
    let beta = up(m, &random_vec(p.channels, 12));
    let rmean = up(m, &random_vec(p.channels, 13));
    let rvar = up(m, &random_range(p.channels, 14, 0.5, 2.0));
    let mut y = out(m, n);
    let res = m.batch_norm_inference(p, &x, &gamma, &beta, &rmean, &rvar, &mut y);
    ok(res, "batch_norm_inference");
    get(m, &[&y])
}

fn bn_backward<M: Backend>(m: &M, p: &BatchNormParams) -> Outputs {
    let n = p.rows * p.channels;
    let x = up(m, &random_range(n, 10, -2.0, 3.0));
    let dy = up(m, &random_vec(n, 15));
    let gamma = up(m, &random_range(p.channels, 11, 0.5, 1.5));
    let beta = up(m, &random_vec(p.channels, 12));
    let mean = up(m, &random_range(p.channels, 16, 0.0, 1.0));
    let invstd = up(m, &random_range(p.channels, 17, 0.5, 1.0));
    let (mut dx, mut dgamma, mut dbeta) = (out(m, n), out(m, p.channels), out(m, p.channels));
    let res = m.batch_norm_backward(
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
    );
    ok(res, "batch_norm_backward");
    get(m, &[&dx, &dgamma, &dbeta])
}

fn pool_forward<M: Backend>(m: &M, p: &Pool2dParams) -> Outputs {
    let x = up(m, &random_vec(p.input_shape().numel(), 20));
    let mut y = out(m, p.output_shape().numel());
    ok(m.max_pool2d_forward(p, &x, &mut y), "max_pool2d_forward");
    get(m, &[&y])
}

fn pool_backward<M: Backend>(m: &M, p: &Pool2dParams) -> Outputs {
    let x = up(m, &random_vec(p.input_shape().numel(), 20));
    let dy = up(m, &random_vec(p.output_shape().numel(), 21));
    let mut y = out(m, p.output_shape().numel());
    ok(m.max_pool2d_forward(p, &x, &mut y), "max_pool2d_forward");
    let mut dx = out(m, p.input_shape().numel());
    ok(
        m.max_pool2d_backward(p, &x, &y, &dy, &mut dx),
        "max_pool2d_backward",
    );
    get(m, &[&dx])
}

fn upsample_forward<M: Backend>(m: &M, p: &UpsampleParams) -> Outputs {
    let x = up(m, &random_vec(p.input_shape().numel(), 30));
    let mut y = out(m, p.output_shape().numel());
    ok(
        m.upsample_bilinear2d_forward(p, &x, &mut y),
        "upsample forward",
    );
    get(m, &[&y])
}

fn upsample_backward<M: Backend>(m: &M, p: &UpsampleParams) -> Outputs {
    let dy = up(m, &random_vec(p.output_shape().numel(), 31));
    let mut dx = out(m, p.input_shape().numel());
    ok(
        m.upsample_bilinear2d_backward(p, &dy, &mut dx),
        "upsample backward",
    );
    get(m, &[&dx])
}

#[test]
fn norm_pool_and_resample_split_by_rows() {
    on_small(|b| {
        for (rows, channels, relu) in [(2 * 12 * 16, 7, false), (1100, 3, true)] {
            let p = BatchNormParams {
                rows,
                channels,
                eps: 1e-5,
                momentum: 0.1,
                relu,
            };
            big(rows * channels);
            // Statistics are sums over the rows, added up over dispatches; the output is O(1).
            let tol = Tol::rel_abs(1e-5, 1e-5).max(Tol::accumulated(2 * rows).scale(2.0));
            same_as_cpu!(b, bn_train, &p, tol, format!("batch_norm_train {p:?}"));
            same_as_cpu!(
                b,
                bn_backward,
                &p,
                tol,
                format!("batch_norm_backward {p:?}")
            );
            let tol = Tol::rel_abs(1e-5, 1e-6);
            same_as_cpu!(
                b,
                bn_inference,
                &p,
                tol,
                format!("batch_norm_inference {p:?}")
            );
        }
        for (batch, h, w, c, k, s, pad) in [
            (2, 15, 17, 6, 2, 2, 0),
            (2, 14, 13, 5, 3, 2, 1),
            (1, 16, 12, 7, 3, 1, 1),
            // Windows of stride 3 miss every third row.
            (2, 14, 14, 6, 2, 3, 0),
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
            big(p.input_shape().numel());
            let what = format!("{p:?}");
            same_as_cpu!(
                b,
                pool_forward,
                &p,
                Tol::exact(),
                format!("pool forward {what}")
            );
            let tol = Tol::accumulated(k.div_ceil(s).pow(2)).scale(2.0);
            same_as_cpu!(b, pool_backward, &p, tol, format!("pool backward {what}"));
        }
        for (batch, h, w, c, oh, ow, align) in [
            (2, 6, 7, 5, 13, 15, true),
            (2, 8, 5, 6, 16, 10, false),
            // Downsampling: some input rows have no readers.
            (1, 20, 18, 4, 9, 7, false),
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
            big(p.input_shape().numel().max(p.output_shape().numel()));
            let what = format!("{p:?}");
            let tol = Tol::rel_abs(1e-5, 1e-5);
            same_as_cpu!(
                b,
                upsample_forward,
                &p,
                tol,
                format!("upsample forward {what}")
            );
            let k = oh.div_ceil(h) * ow.div_ceil(w) * 4;
            let tol = tol.max(Tol::accumulated(k).scale(2.0));
            same_as_cpu!(
                b,
                upsample_backward,
                &p,
                tol,
                format!("upsample backward {what}")
            );
        }
    });
}
