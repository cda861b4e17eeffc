//! Batch normalisation, alone and with a ReLU after it: training forward (with saved
//! statistics and running averages), the training output again from saved statistics,
//! inference forward, and backward.

use magnet::backend::BatchNormParams;
use magnet::Backend;

use crate::common::reference as r;
use crate::common::*;

fn bn(rows: usize, channels: usize, eps: f32, momentum: f32) -> BatchNormParams {
    BatchNormParams {
        rows,
        channels,
        eps,
        momentum,
        relu: false,
    }
}

fn with_relu(p: BatchNormParams) -> BatchNormParams {
    BatchNormParams { relu: true, ..p }
}

/// NHWC tensors seen as rows × channels (1·7·5 × 3, 2·9·11 × 5), an N×C one (4 × 7), a
/// two-row one, and non-default eps / momentum so that hard-wired constants show; three of them
/// again with a ReLU.
fn cases() -> Vec<BatchNormParams> {
    let plain = [
        bn(7 * 5, 3, 1e-5, 0.1),
        bn(2 * 9 * 11, 5, 1e-5, 0.1),
        bn(4, 7, 1e-5, 0.1),
        bn(2, 3, 1e-5, 0.1),
        bn(3 * 5, 5, 1e-3, 0.3),
    ];
    let relu = [plain[0], plain[1], plain[4]].map(with_relu);
    plain.into_iter().chain(relu).collect()
}

/// Enough rows for a column reduction in several slabs of rows on the GPU backends, with fewer
/// channels than a tile (40,000 × 5) and more (3,000 × 70, also with a ReLU).
fn many_rows() -> Vec<BatchNormParams> {
    let wide = bn(3_000, 70, 1e-5, 0.1);
    vec![bn(40_000, 5, 1e-5, 0.1), wide, with_relu(wide)]
}

/// Input, γ, β, running mean, running variance and the output gradient of case `i`.
struct Data {
    x: Vec<f32>,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    mean: Vec<f32>,
    var: Vec<f32>,
    dy: Vec<f32>,
}

fn data(p: &BatchNormParams, i: usize) -> Data {
    let seed = 2000 + 10 * i as u64;
    let c = p.channels;
    Data {
        x: random_vec(p.rows * c, seed),
        gamma: random_range(c, seed + 1, 0.5, 1.5),
        beta: random_vec(c, seed + 2),
        mean: random_vec(c, seed + 3),
        var: random_range(c, seed + 4, 0.5, 1.5),
        dy: random_vec(p.rows * c, seed + 5),
    }
}

fn train_case<B: Backend>(b: &B) {
    for (i, p) in cases().iter().chain(&many_rows()).enumerate() {
        let d = data(p, i);
        let c = p.channels;
        let want = r::batch_norm_train(
            p,
            &f64s(&d.x),
            &f64s(&d.gamma),
            &f64s(&d.beta),
            &f64s(&d.mean),
            &f64s(&d.var),
        );
        let xb = upload_vec(b, &d.x);
        let gb = upload_vec(b, &d.gamma);
        let bb = upload_vec(b, &d.beta);
        let mut yb = garbage(b, [p.rows * c]);
        let mut smb = garbage(b, [c]);
        let mut sib = garbage(b, [c]);
        let mut rmb = upload_vec(b, &d.mean);
        let mut rvb = upload_vec(b, &d.var);
        ok(
            b.batch_norm_train(
                p, &xb, &gb, &bb, &mut yb, &mut smb, &mut sib, &mut rmb, &mut rvb,
            ),
            "batch_norm_train",
        );
        let what = |name: &str| format!("batch_norm_train {name} {p:?}");
        // Statistics are f32 sums over `rows` values of magnitude ≤ 1, divided by `rows`; the
        // normalised outputs are O(1) after a 1/sqrt: a few 1e-7 each, 1e-5 leaves headroom.
        let stats = Tol::rel_abs(1e-5, 1e-6);
        assert_close(
            &download(b, &yb),
            &want.y,
            Tol::rel_abs(1e-5, 1e-5),
            &what("y"),
        );
        assert_close(
            &download(b, &smb),
            &want.save_mean,
            stats,
            &what("save_mean"),
        );
        assert_close(
            &download(b, &sib),
            &want.save_invstd,
            stats,
            &what("save_invstd"),
        );
        assert_close(
            &download(b, &rmb),
            &want.running_mean,
            stats,
            &what("running_mean"),
        );
        assert_close(
            &download(b, &rvb),
            &want.running_var,
            stats,
            &what("running_var"),
        );
    }
}

#[test]
fn batch_norm_train_matches_reference() {
    for_each_backend!(|b| train_case(b));
}

/// `batch_norm_apply` from the statistics a training forward saved gives that forward's output
/// bit for bit (the executor recomputes outputs with it instead of keeping them).
fn apply_case<B: Backend>(b: &B) {
    for (i, p) in cases().iter().chain(&many_rows()).enumerate() {
        let d = data(p, i);
        let c = p.channels;
        let [xb, gb, bb] = [&d.x, &d.gamma, &d.beta].map(|v| upload_vec(b, v));
        let mut yb = garbage(b, [p.rows * c]);
        let (mut smb, mut sib) = (garbage(b, [c]), garbage(b, [c]));
        let (mut rmb, mut rvb) = (upload_vec(b, &d.mean), upload_vec(b, &d.var));
        ok(
            b.batch_norm_train(
                p, &xb, &gb, &bb, &mut yb, &mut smb, &mut sib, &mut rmb, &mut rvb,
            ),
            "batch_norm_train",
        );
        let running = (download(b, &rmb), download(b, &rvb));
        let mut again = garbage(b, [p.rows * c]);
        ok(
            b.batch_norm_apply(p, &xb, &gb, &bb, &smb, &sib, &mut again),
            "batch_norm_apply",
        );
        let (y, y_again) = (download(b, &yb), download(b, &again));
        let first_difference = y
            .iter()
            .zip(&y_again)
            .position(|(u, v)| u.to_bits() != v.to_bits());
        assert_eq!(first_difference, None, "batch_norm_apply {p:?}");
        assert_eq!(
            (download(b, &rmb), download(b, &rvb)),
            running,
            "batch_norm_apply must not touch the running statistics"
        );
    }
}

#[test]
fn batch_norm_apply_reproduces_the_training_output() {
    for_each_backend!(|b| apply_case(b));
}

fn inference_case<B: Backend>(b: &B) {
    for (i, p) in cases().iter().enumerate() {
        let d = data(p, i);
        let want = r::batch_norm_inference(
            p,
            &f64s(&d.x),
            &f64s(&d.gamma),
            &f64s(&d.beta),
            &f64s(&d.mean),
            &f64s(&d.var),
        );
        let mut yb = garbage(b, [d.x.len()]);
        ok(
            b.batch_norm_inference(
                p,
                &upload_vec(b, &d.x),
                &upload_vec(b, &d.gamma),
                &upload_vec(b, &d.beta),
                &upload_vec(b, &d.mean),
                &upload_vec(b, &d.var),
                &mut yb,
            ),
            "batch_norm_inference",
        );
        // Four f32 operations and a 1/sqrt per element on O(1) values; the final + β can cancel,
        // so the error is absolute, a few ulps of 2.
        assert_close(
            &download(b, &yb),
            &want,
            Tol::rel_abs(1e-6, 2e-6),
            &format!("batch_norm_inference {p:?}"),
        );
    }
}

#[test]
fn batch_norm_inference_matches_reference() {
    for_each_backend!(|b| inference_case(b));
}

fn backward_case<B: Backend>(b: &B) {
    let small = cases().len();
    for (i, p) in cases().iter().chain(&many_rows()).enumerate() {
        let d = data(p, i);
        let (x, gamma, beta, dy) = (f64s(&d.x), f64s(&d.gamma), f64s(&d.beta), f64s(&d.dy));
        let (rm, rv) = (f64s(&d.mean), f64s(&d.var));
        let loss = |x: &[f64], g: &[f64], be: &[f64]| {
            dot(&r::batch_norm_train(p, x, g, be, &rm, &rv).y, &dy)
        };
        let (ax, ag, ab) = r::batch_norm_backward(p, &x, &dy, &gamma, &beta);
        // Finite differences take a forward pass per element: the cases with many rows are
        // checked against the f64 reference alone.
        let (fd_x, fd_g, fd_b) = if i < small {
            (
                fd_grad(&x, FD_STEP, |x| loss(x, &gamma, &beta)),
                fd_grad(&gamma, FD_STEP, |g| loss(&x, g, &beta)),
                fd_grad(&beta, FD_STEP, |be| loss(&x, &gamma, be)),
            )
        } else {
            (ax.clone(), ag.clone(), ab.clone())
        };
        // The saved statistics come from the reference, rounded to f32, so that this test does
        // not depend on the forward kernel.
        let saved = r::batch_norm_train(p, &x, &gamma, &beta, &rm, &rv);
        let c = p.channels;
        let mut dxb = garbage(b, [x.len()]);
        let mut dgb = garbage(b, [c]);
        let mut dbb = garbage(b, [c]);
        ok(
            b.batch_norm_backward(
                p,
                &upload_vec(b, &d.x),
                &upload_vec(b, &d.dy),
                &upload_vec(b, &d.gamma),
                &upload_vec(b, &d.beta),
                &upload_vec(b, &f32s(&saved.save_mean)),
                &upload_vec(b, &f32s(&saved.save_invstd)),
                &mut dxb,
                &mut dgb,
                &mut dbb,
            ),
            "batch_norm_backward",
        );
        let what = |name: &str| format!("batch_norm_backward {name} {p:?}");
        // dx = γ·invstd/N·(N·dy − Σdy − x̂·Σdy·x̂): O(1) terms after f32 sums over N rows whose
        // error divides by N; the cancellation inside the bracket leaves ~1e-6 absolute.
        check_gradient(
            &download(b, &dxb),
            &fd_x,
            &ax,
            Tol::rel_abs(1e-5, 1e-5),
            &what("dx"),
        );
        // dγ = Σ dy·x̂ with |x̂| ≤ √N: an f32 sum of N products of magnitude ≲ 2.
        check_gradient(
            &download(b, &dgb),
            &fd_g,
            &ag,
            Tol::accumulated(2 * p.rows),
            &what("dgamma"),
        );
        // dβ = Σ dy: an f32 sum of N values of magnitude ≤ 1.
        check_gradient(
            &download(b, &dbb),
            &fd_b,
            &ab,
            Tol::accumulated(p.rows),
            &what("dbeta"),
        );
    }
}

#[test]
fn batch_norm_backward_matches_finite_differences() {
    for_each_backend!(|b| backward_case(b));
}

fn rejects_case<B: Backend>(b: &B) {
    let p = cases()[0];
    let d = data(&p, 0);
    let c = p.channels;
    let x = upload_vec(b, &d.x);
    let g = upload_vec(b, &d.gamma);
    let be = upload_vec(b, &d.beta);
    let short_x = upload_vec(b, &d.x[1..]);
    let long_g = zeros_len(b, c + 1);
    let mut y = zeros_len(b, d.x.len());
    let mut sm = zeros_len(b, c);
    let mut si = zeros_len(b, c);
    let mut rm = upload_vec(b, &d.mean);
    let mut rv = upload_vec(b, &d.var);
    let mut short_rv = zeros_len(b, c - 1);
    let mut dx = zeros_len(b, d.x.len());
    let mut dg = zeros_len(b, c);
    let mut db = zeros_len(b, c);

    expect_err("batch_norm_train with a short input", || {
        b.batch_norm_train(
            &p, &short_x, &g, &be, &mut y, &mut sm, &mut si, &mut rm, &mut rv,
        )
    });
    expect_err("batch_norm_train with a long gamma", || {
        b.batch_norm_train(
            &p, &x, &long_g, &be, &mut y, &mut sm, &mut si, &mut rm, &mut rv,
        )
    });
    expect_err("batch_norm_train with a short running_var", || {
        b.batch_norm_train(
            &p,
            &x,
            &g,
            &be,
            &mut y,
            &mut sm,
            &mut si,
            &mut rm,
            &mut short_rv,
        )
    });
    let zero_eps = BatchNormParams { eps: 0.0, ..p };
    expect_err("batch_norm_train with eps 0", || {
        b.batch_norm_train(
            &zero_eps, &x, &g, &be, &mut y, &mut sm, &mut si, &mut rm, &mut rv,
        )
    });
    // One element per channel has no unbiased variance; the parameter docs reject it.
    let one_row = BatchNormParams { rows: 1, ..p };
    let x1 = upload_vec(b, &d.x[..c]);
    let mut y1 = zeros_len(b, c);
    expect_err("batch_norm_train with one row", || {
        b.batch_norm_train(
            &one_row, &x1, &g, &be, &mut y1, &mut sm, &mut si, &mut rm, &mut rv,
        )
    });
    expect_err("batch_norm_inference with a short input", || {
        b.batch_norm_inference(&p, &short_x, &g, &be, &rm, &rv, &mut y)
    });
    expect_err("batch_norm_inference with a short running_var", || {
        b.batch_norm_inference(&p, &x, &g, &be, &rm, &short_rv, &mut y)
    });
    expect_err("batch_norm_backward with a short dy", || {
        b.batch_norm_backward(
            &p, &x, &short_x, &g, &be, &sm, &si, &mut dx, &mut dg, &mut db,
        )
    });
    expect_err("batch_norm_backward with a long gamma", || {
        b.batch_norm_backward(
            &p, &x, &x, &long_g, &be, &sm, &si, &mut dx, &mut dg, &mut db,
        )
    });
    expect_err("batch_norm_backward with a long beta", || {
        b.batch_norm_backward(&p, &x, &x, &g, &long_g, &sm, &si, &mut dx, &mut dg, &mut db)
    });
    expect_err("batch_norm_apply with a short input", || {
        b.batch_norm_apply(&p, &short_x, &g, &be, &sm, &si, &mut y)
    });
    expect_err("batch_norm_apply with a long gamma", || {
        b.batch_norm_apply(&p, &x, &long_g, &be, &sm, &si, &mut y)
    });
    let empty = BatchNormParams { rows: 0, ..p };
    let nothing = zeros_len(b, 0);
    let mut nothing_out = zeros_len(b, 0);
    expect_err("batch_norm_inference with zero rows", || {
        b.batch_norm_inference(&empty, &nothing, &g, &be, &rm, &rv, &mut nothing_out)
    });
}

#[test]
fn batch_norm_rejects_bad_input() {
    for_each_backend!(|b| rejects_case(b));
}
