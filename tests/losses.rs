//! The loss primitives ([`magnet::backend::LossOps`]) on every selected backend against float64
//! references (`tests/common/loss_reference.rs`), their gradients against central finite
//! differences, and the loss functions of `magnet::loss` through the graph and executor.
//!
//! Shapes are tiny and awkward (odd pixel counts, 1 to 5 classes, batch 2) so the suite stays fast
//! on a software GPU.

#[macro_use]
mod common;

use magnet::backend::{
    BinaryCrossEntropyParams, ConfusionParams, CrossEntropyParams, ForegroundParams,
    ImageGridParams, SoftDiceParams,
};
use magnet::loss::{self, BceConfig, CrossEntropyConfig, DiceConfig, DistanceWeightConfig};
use magnet::{Backend, Executor, Graph, HostTensor, Mode, NodeId};

use common::loss_reference::{self as lr, CeCase, DiceCase};
use common::*;

/// `n` labels in `[0, classes)`, with every index in `ignored` set to 255.
fn labels(n: usize, classes: usize, seed: u64, ignored: &[usize]) -> Vec<f32> {
    let mut l: Vec<f32> = random_range(n, seed, 0.0, classes as f32 - 1e-3)
        .into_iter()
        .map(|v| v.floor())
        .collect();
    for &i in ignored {
        l[i] = 255.0;
    }
    l
}

/// Logits in `[-2, 2]`: probabilities between ~0.005 and ~0.99, where every loss is smooth.
fn logits(n: usize, seed: u64) -> Vec<f32> {
    random_vec(n, seed).into_iter().map(|v| 2.0 * v).collect()
}

// ---------------------------------------------------------------------------------------------
// Softmax cross-entropy and focal loss
// ---------------------------------------------------------------------------------------------

/// `(rows, classes, class weights, pixel weights, ignored rows, gamma)`.
type CeSpec = (usize, usize, bool, bool, &'static [usize], f32);

fn ce_specs() -> Vec<CeSpec> {
    vec![
        (7, 3, false, false, &[], 0.0),
        (7, 3, true, false, &[], 0.0),
        (9, 4, false, false, &[2, 5], 0.0),
        (9, 4, true, true, &[0, 8], 0.0),
        (8, 5, true, false, &[], 2.0),
        (8, 5, false, true, &[3], 0.5),
        (5, 1, false, false, &[], 0.0),
        (4, 3, true, true, &[0, 1, 2, 3], 2.0),
    ]
}

fn ce_case<B: Backend>(b: &B) {
    for (i, &(rows, classes, cw, pw, ignored, gamma)) in ce_specs().iter().enumerate() {
        let seed = 9000 + 10 * i as u64;
        let z = logits(rows * classes, seed);
        let y = labels(rows, classes, seed + 1, ignored);
        let cwv = random_range(classes, seed + 2, 0.2, 3.0);
        let pwv = random_range(rows, seed + 3, 0.0, 2.0);
        let case = CeCase {
            rows,
            classes,
            class_weights: cw.then(|| f64s(&cwv)),
            pixel_weights: pw.then(|| f64s(&pwv)),
            ignore: Some(255),
            gamma: gamma as f64,
        };
        let p = CrossEntropyParams {
            rows,
            classes,
            ignore_index: Some(255),
            gamma,
        };
        let (cwb, pwb) = (upload_vec(b, &cwv), upload_vec(b, &pwv));
        let mut loss = garbage(b, [1]);
        let mut grad = garbage(b, [rows, classes]);
        ok(
            b.softmax_cross_entropy(
                &p,
                &upload_vec(b, &z),
                &upload_vec(b, &y),
                cw.then_some(&cwb),
                pw.then_some(&pwb),
                &mut loss,
                &mut grad,
            ),
            "softmax_cross_entropy",
        );
        let what = format!("cross-entropy case {i} (rows {rows}, C {classes}, γ {gamma})");
        let (z64, y64) = (f64s(&z), f64s(&y));
        // f32 log-sum-exp (a few ulps) and an f32 sum of `rows` terms of magnitude ≤ ~5.
        assert_close(
            &download(b, &loss),
            &[lr::cross_entropy(&case, &z64, &y64)],
            Tol::rel_abs(1e-5, 1e-6).max(Tol::accumulated(rows)),
            &format!("{what}: loss"),
        );
        let fd = fd_grad(&z64, FD_STEP, |z| lr::cross_entropy(&case, z, &y64));
        // Each element is one f32 product of a softmax probability (a few ulps) and weights.
        check_gradient(
            &download(b, &grad),
            &fd,
            &lr::cross_entropy_grad(&case, &z64, &y64),
            Tol::rel_abs(1e-5, 1e-6),
            &format!("{what}: gradient"),
        );
    }
}

#[test]
fn cross_entropy_matches_reference_and_finite_differences() {
    for_each_backend!(|b| ce_case(b));
}

fn focal_zero_case<B: Backend>(b: &B) {
    let (rows, classes) = (11, 4);
    let z = upload_vec(b, &logits(rows * classes, 9100));
    let y = upload_vec(b, &labels(rows, classes, 9101, &[3]));
    let w = upload_vec(b, &random_range(classes, 9102, 0.5, 2.0));
    let run = |gamma: f32| {
        let p = CrossEntropyParams {
            rows,
            classes,
            ignore_index: Some(255),
            gamma,
        };
        let mut loss = garbage(b, [1]);
        let mut grad = garbage(b, [rows, classes]);
        ok(
            b.softmax_cross_entropy(&p, &z, &y, Some(&w), None, &mut loss, &mut grad),
            "softmax_cross_entropy",
        );
        (download(b, &loss), download(b, &grad))
    };
    let (ce, ce_grad) = run(0.0);
    let (tiny, tiny_grad) = run(1e-7);
    // γ → 0 is continuous: (1 − p)^γ = 1 + O(γ), so γ = 1e-7 moves the loss by ~1e-7 relative.
    assert_close(
        &tiny,
        &ce,
        Tol::rel_abs(1e-5, 1e-6),
        "focal γ = 1e-7 vs CE: loss",
    );
    assert_close(
        &tiny_grad,
        &ce_grad,
        Tol::rel_abs(1e-4, 1e-6),
        "focal γ = 1e-7 vs CE: grad",
    );
}

#[test]
fn focal_loss_tends_to_cross_entropy_as_gamma_tends_to_zero() {
    for_each_backend!(|b| focal_zero_case(b));
}

// ---------------------------------------------------------------------------------------------
// Sigmoid binary cross-entropy
// ---------------------------------------------------------------------------------------------

fn bce_case<B: Backend>(b: &B) {
    // (len, pos_weight, pixel weights, logit scale, hard targets)
    let specs = [
        (11, 1.0f32, false, 2.0f32, true),
        (13, 2.5, true, 2.0, false),
        (7, 0.5, true, 40.0, true),
    ];
    for (i, &(n, pos, pw, scale, hard)) in specs.iter().enumerate() {
        let seed = 9200 + 10 * i as u64;
        let x: Vec<f32> = random_vec(n, seed).iter().map(|v| v * scale).collect();
        let t: Vec<f32> = random_range(n, seed + 1, 0.0, 1.0)
            .into_iter()
            .map(|v| if hard { v.round() } else { v })
            .collect();
        let w = random_range(n, seed + 2, 0.0, 2.0);
        let wb = upload_vec(b, &w);
        let p = BinaryCrossEntropyParams {
            len: n,
            pos_weight: pos,
        };
        let mut loss = garbage(b, [1]);
        let mut grad = garbage(b, [n]);
        ok(
            b.sigmoid_binary_cross_entropy(
                &p,
                &upload_vec(b, &x),
                &upload_vec(b, &t),
                pw.then_some(&wb),
                &mut loss,
                &mut grad,
            ),
            "sigmoid_binary_cross_entropy",
        );
        let (x64, t64, w64) = (f64s(&x), f64s(&t), f64s(&w));
        let w_ref = pw.then_some(&w64[..]);
        let what = format!("bce case {i} (pos_weight {pos}, logits ±{scale})");
        // Softplus in f32 is accurate to a few ulps even at ±40; the mean sums n terms ≤ ~80.
        assert_close(
            &download(b, &loss),
            &[lr::bce_with_logits(&x64, &t64, w_ref, pos as f64)],
            Tol::rel_abs(1e-5, 1e-6).max(Tol::accumulated(n)),
            &format!("{what}: loss"),
        );
        let fd = fd_grad(&x64, FD_STEP, |x| {
            lr::bce_with_logits(x, &t64, w_ref, pos as f64)
        });
        // One sigmoid and a product per element: a few ulps of values ≤ 2.5·2/n.
        check_gradient(
            &download(b, &grad),
            &fd,
            &lr::bce_with_logits_grad(&x64, &t64, w_ref, pos as f64),
            Tol::rel_abs(1e-5, 1e-7),
            &format!("{what}: gradient"),
        );
    }
}

#[test]
fn binary_cross_entropy_matches_reference_and_finite_differences() {
    for_each_backend!(|b| bce_case(b));
}

// ---------------------------------------------------------------------------------------------
// Soft Dice
// ---------------------------------------------------------------------------------------------

/// `(images, pixels per image, classes, eps, include background, ignored pixels)`.
type DiceSpec = (usize, usize, usize, f32, bool, &'static [usize]);

fn dice_case<B: Backend>(b: &B) {
    let specs: [DiceSpec; 5] = [
        (2, 7, 3, 1.0, true, &[]),
        (1, 14, 3, 1.0, true, &[]),
        (2, 5, 4, 1e-3, false, &[1, 7]),
        (3, 3, 2, 0.5, true, &[0, 1, 2]),
        (1, 9, 5, 1.0, false, &[4]),
    ];
    for (i, &(images, ppi, classes, eps, bg, ignored)) in specs.iter().enumerate() {
        let seed = 9300 + 10 * i as u64;
        let rows = images * ppi;
        let z = logits(rows * classes, seed);
        let y = labels(rows, classes, seed + 1, ignored);
        let p = SoftDiceParams {
            images,
            pixels_per_image: ppi,
            classes,
            ignore_index: Some(255),
            eps,
            include_background: bg,
        };
        let case = DiceCase {
            images,
            pixels_per_image: ppi,
            classes,
            ignore: Some(255),
            eps: eps as f64,
            include_background: bg,
        };
        let mut loss = garbage(b, [1]);
        let mut grad = garbage(b, [rows, classes]);
        ok(
            b.soft_dice(
                &p,
                &upload_vec(b, &z),
                &upload_vec(b, &y),
                &mut loss,
                &mut grad,
            ),
            "soft_dice",
        );
        let (z64, y64) = (f64s(&z), f64s(&y));
        let what = format!("soft dice case {i} ({images}×{ppi}, C {classes}, ε {eps})");
        // Sums of ≤ 14 probabilities in f32, then a ratio: well within 1e-5.
        assert_close(
            &download(b, &loss),
            &[lr::soft_dice(&case, &z64, &y64)],
            Tol::rel_abs(1e-5, 1e-6),
            &format!("{what}: loss"),
        );
        let fd = fd_grad(&z64, FD_STEP, |z| lr::soft_dice(&case, z, &y64));
        // The same sums, then a softmax Jacobian-vector product over ≤ 5 classes.
        check_gradient(
            &download(b, &grad),
            &fd,
            &lr::soft_dice_grad(&case, &z64, &y64),
            Tol::rel_abs(1e-4, 1e-6),
            &format!("{what}: gradient"),
        );
    }
}

#[test]
fn soft_dice_matches_reference_and_finite_differences() {
    for_each_backend!(|b| dice_case(b));
}

// ---------------------------------------------------------------------------------------------
// Foreground masks, distance transform, confusion counts
// ---------------------------------------------------------------------------------------------

fn foreground_case<B: Backend>(b: &B) {
    let l = [0.0, 1.0, 2.0, 255.0, 0.0, 3.0];
    let p = ForegroundParams {
        len: 6,
        background: 0,
        ignore_index: Some(255),
    };
    let mut m = garbage(b, [6]);
    ok(
        b.foreground_mask(&p, &upload_vec(b, &l), &mut m),
        "foreground_mask",
    );
    // A 0/1 map: exact.
    assert_close(
        &download(b, &m),
        &[0.0f32, 1.0, 1.0, 0.0, 0.0, 1.0],
        Tol::exact(),
        "foreground mask",
    );
    let p = ForegroundParams {
        background: 2,
        ignore_index: None,
        ..p
    };
    ok(
        b.foreground_mask(&p, &upload_vec(b, &l), &mut m),
        "foreground_mask",
    );
    assert_close(
        &download(b, &m),
        &[1.0f32, 1.0, 0.0, 1.0, 1.0, 1.0],
        Tol::exact(),
        "foreground mask, background 2",
    );
}

#[test]
fn foreground_mask_marks_non_background_labels() {
    for_each_backend!(|b| foreground_case(b));
}

fn distance_case<B: Backend>(b: &B) {
    // (batch, height, width, foreground density); the density 0 makes empty images.
    let specs = [
        (2, 7, 9, 0.1f32),
        (1, 1, 6, 0.3),
        (1, 6, 1, 0.3),
        (2, 5, 4, 0.0),
        (1, 4, 5, 1.0),
        (2, 13, 11, 0.02),
        (1, 17, 3, 0.2),
    ];
    for (i, &(batch, h, w, density)) in specs.iter().enumerate() {
        let n = batch * h * w;
        let mut mask: Vec<f32> = random_range(n, 9400 + i as u64, 0.0, 1.0)
            .into_iter()
            .map(|v| if v < density { 1.0 } else { 0.0 })
            .collect();
        if i == 5 {
            // One isolated pixel in the first image, the second image empty.
            mask.iter_mut().for_each(|v| *v = 0.0);
            mask[3 * w + 8] = 1.0;
        }
        if i == 0 {
            // The second image empty, the first one with a guaranteed foreground pixel.
            mask[h * w..].iter_mut().for_each(|v| *v = 0.0);
            mask[0] = 1.0;
        }
        let p = ImageGridParams {
            batch,
            height: h,
            width: w,
        };
        let mut out = garbage(b, [batch, h, w]);
        ok(
            b.distance_transform(&p, &upload_vec(b, &mask), &mut out),
            "distance_transform",
        );
        let want = lr::distance_transform(batch, h, w, &f64s(&mask));
        // Squared distances are small integers, exact; the square root rounds once (≤ 1 ulp in
        // f32, a couple of ulps for a GPU's sqrt).
        assert_close(
            &download(b, &out),
            &want,
            Tol::rel_abs(4.0 * F32_U, 0.0),
            &format!("distance transform {batch}×{h}×{w}, density {density}"),
        );
    }
}

#[test]
fn distance_transform_matches_brute_force() {
    for_each_backend!(|b| distance_case(b));
}

fn confusion_case<B: Backend>(b: &B) {
    let (images, ppi, classes) = (2, 13, 4);
    let rows = images * ppi;
    let mut z = logits(rows * classes, 9500);
    // A tie between classes 1 and 2 of row 0: the first maximum wins.
    z[1] = 5.0;
    z[2] = 5.0;
    let y = labels(rows, classes, 9501, &[4, 20]);
    let p = ConfusionParams {
        images,
        pixels_per_image: ppi,
        classes,
        ignore_index: Some(255),
    };
    let mut counts = garbage(b, [images, classes, classes]);
    ok(
        b.confusion_matrix(&p, &upload_vec(b, &z), &upload_vec(b, &y), &mut counts),
        "confusion_matrix",
    );
    let want = lr::confusion(images, ppi, classes, Some(255), &f64s(&z), &f64s(&y));
    // Integer counts: exact.
    assert_close(
        &download(b, &counts),
        &want,
        Tol::exact(),
        "confusion counts",
    );
    assert_eq!(
        want.iter().sum::<f64>(),
        (rows - 2) as f64,
        "ignored pixels skipped"
    );
}

#[test]
fn confusion_counts_match_reference() {
    for_each_backend!(|b| confusion_case(b));
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// Whether the backend reports bad labels from the call itself. The CPU does; a GPU backend finds
/// them on the device and reports them at the next wait, or treats the rows as ignored, as
/// `LossOps` documents, which is checked instead.
fn checks_labels<B: Backend>(b: &B) -> bool {
    b.name() == "cpu"
}

fn rejects_case<B: Backend>(b: &B) {
    let (rows, classes) = (4, 3);
    let z = upload_vec(b, &logits(rows * classes, 9600));
    let z_short = upload_vec(b, &logits(rows * classes - 1, 9600));
    let y = upload_vec(b, &[0.0, 1.0, 2.0, 1.0]);
    let y_short = upload_vec(b, &[0.0, 1.0, 2.0]);
    let w3 = upload_vec(b, &[1.0, 1.0, 1.0]);
    let w2 = upload_vec(b, &[1.0, 1.0]);
    let mut loss = zeros_len(b, 1);
    let mut loss2 = zeros_len(b, 2);
    let mut grad = zeros(b, [rows, classes]);
    let mut grad_short = zeros_len(b, rows * classes - 1);
    let p = CrossEntropyParams {
        rows,
        classes,
        ignore_index: None,
        gamma: 0.0,
    };
    expect_err("cross-entropy with short logits", || {
        b.softmax_cross_entropy(&p, &z_short, &y, None, None, &mut loss, &mut grad)
    });
    expect_err("cross-entropy with short labels", || {
        b.softmax_cross_entropy(&p, &z, &y_short, None, None, &mut loss, &mut grad)
    });
    expect_err("cross-entropy with a loss of 2 elements", || {
        b.softmax_cross_entropy(&p, &z, &y, None, None, &mut loss2, &mut grad)
    });
    expect_err("cross-entropy with a short gradient", || {
        b.softmax_cross_entropy(&p, &z, &y, None, None, &mut loss, &mut grad_short)
    });
    expect_err("cross-entropy with 2 class weights for 3 classes", || {
        b.softmax_cross_entropy(&p, &z, &y, Some(&w2), None, &mut loss, &mut grad)
    });
    expect_err("cross-entropy with 3 pixel weights for 4 rows", || {
        b.softmax_cross_entropy(&p, &z, &y, None, Some(&w3), &mut loss, &mut grad)
    });
    let neg = CrossEntropyParams { gamma: -1.0, ..p };
    expect_err("cross-entropy with γ = −1", || {
        b.softmax_cross_entropy(&neg, &z, &y, None, None, &mut loss, &mut grad)
    });
    let none = CrossEntropyParams {
        classes: 0,
        rows: 0,
        ..p
    };
    expect_err("cross-entropy with no classes", || {
        let e = upload_vec(b, &[]);
        b.softmax_cross_entropy(
            &none,
            &e,
            &e,
            None,
            None,
            &mut loss,
            &mut upload_vec(b, &[]),
        )
    });
    // The same calls with the bad label's row marked ignored: what a backend that cannot report
    // bad labels must compute instead.
    let y_ignored = upload_vec(b, &[0.0, 255.0, 2.0, 1.0]);
    let ce_ignoring = CrossEntropyParams {
        ignore_index: Some(255),
        ..p
    };
    let dp = SoftDiceParams {
        images: 1,
        pixels_per_image: rows,
        classes,
        ignore_index: None,
        eps: 1.0,
        include_background: true,
    };
    let dice_ignoring = SoftDiceParams {
        ignore_index: Some(255),
        ..dp
    };
    let cp = ConfusionParams {
        images: 1,
        pixels_per_image: rows,
        classes,
        ignore_index: None,
    };
    let confusion_ignoring = ConfusionParams {
        ignore_index: Some(255),
        ..cp
    };
    let mut counts = zeros(b, [1, classes, classes]);
    for (bad, why) in [
        (3.0, "label 3 of 3 classes"),
        (-1.0, "label −1"),
        (1.5, "label 1.5"),
        (255.0, "label 255 without an ignore index"),
    ] {
        let yb = upload_vec(b, &[0.0, bad, 2.0, 1.0]);
        if checks_labels(b) {
            expect_err(&format!("cross-entropy with {why}"), || {
                b.softmax_cross_entropy(&p, &z, &yb, None, None, &mut loss, &mut grad)
            });
            expect_err(&format!("soft dice with {why}"), || {
                b.soft_dice(&dp, &z, &yb, &mut loss, &mut grad)
            });
            expect_err(&format!("confusion with {why}"), || {
                b.confusion_matrix(&cp, &z, &yb, &mut counts)
            });
            continue;
        }
        // A backend that finds the label on the device reports it at the next wait; one that
        // cannot must compute what the same call with the row ignored computes.
        let reported_late = |res: magnet::Result<()>| res.is_err() || b.sync().is_err();
        let (mut l1, mut g1) = (garbage(b, [1]), garbage(b, [rows, classes]));
        let (mut l2, mut g2) = (garbage(b, [1]), garbage(b, [rows, classes]));
        if !reported_late(b.softmax_cross_entropy(&p, &z, &yb, None, None, &mut l1, &mut g1)) {
            let res =
                b.softmax_cross_entropy(&ce_ignoring, &z, &y_ignored, None, None, &mut l2, &mut g2);
            ok(res, "cross-entropy with the row ignored");
            // The same rows in the same order: identical.
            let what = format!("cross-entropy with {why} ignores it");
            assert_close(&download(b, &l1), &download(b, &l2), Tol::exact(), &what);
            assert_close(&download(b, &g1), &download(b, &g2), Tol::exact(), &what);
        }
        if !reported_late(b.soft_dice(&dp, &z, &yb, &mut l1, &mut g1)) {
            let res = b.soft_dice(&dice_ignoring, &z, &y_ignored, &mut l2, &mut g2);
            ok(res, "soft dice with the row ignored");
            let what = format!("soft dice with {why} ignores it");
            assert_close(&download(b, &l1), &download(b, &l2), Tol::exact(), &what);
            assert_close(&download(b, &g1), &download(b, &g2), Tol::exact(), &what);
        }
        let mut c2 = zeros(b, [1, classes, classes]);
        if !reported_late(b.confusion_matrix(&cp, &z, &yb, &mut counts)) {
            let res = b.confusion_matrix(&confusion_ignoring, &z, &y_ignored, &mut c2);
            ok(res, "confusion with the row ignored");
            let what = format!("confusion with {why} ignores it");
            assert_close(
                &download(b, &counts),
                &download(b, &c2),
                Tol::exact(),
                &what,
            );
        }
    }

    let bp = BinaryCrossEntropyParams {
        len: 4,
        pos_weight: 1.0,
    };
    let mut g4 = zeros_len(b, 4);
    expect_err("bce with short targets", || {
        b.sigmoid_binary_cross_entropy(&bp, &y, &y_short, None, &mut loss, &mut g4)
    });
    expect_err("bce with short weights", || {
        b.sigmoid_binary_cross_entropy(&bp, &y, &y, Some(&w3), &mut loss, &mut g4)
    });
    expect_err("bce with a short gradient", || {
        b.sigmoid_binary_cross_entropy(&bp, &y, &y, None, &mut loss, &mut grad)
    });
    let bneg = BinaryCrossEntropyParams {
        pos_weight: f32::NAN,
        ..bp
    };
    expect_err("bce with a NaN pos_weight", || {
        b.sigmoid_binary_cross_entropy(&bneg, &y, &y, None, &mut loss, &mut g4)
    });

    let dp = SoftDiceParams {
        images: 2,
        pixels_per_image: 2,
        classes: 1,
        ignore_index: None,
        eps: 1.0,
        include_background: false,
    };
    expect_err("dice without background and 1 class", || {
        b.soft_dice(&dp, &y, &y, &mut loss, &mut g4)
    });
    let dp = SoftDiceParams {
        classes: 3,
        include_background: true,
        ..dp
    };
    expect_err("dice with short logits", || {
        b.soft_dice(&dp, &z_short, &y, &mut loss, &mut grad)
    });

    let gp = ImageGridParams {
        batch: 1,
        height: 2,
        width: 3,
    };
    let mut six = zeros_len(b, 6);
    expect_err("distance transform of 4 pixels for 2×3", || {
        b.distance_transform(&gp, &y, &mut six)
    });
    let m6 = upload_vec(b, &[0.0; 6]);
    expect_err("distance transform into 4 pixels for 2×3", || {
        b.distance_transform(&gp, &m6, &mut g4)
    });
    let fp = ForegroundParams {
        len: 4,
        background: 0,
        ignore_index: None,
    };
    let half = upload_vec(b, &[0.0, 0.5, 1.0, 2.0]);
    if checks_labels(b) {
        expect_err("foreground mask of a label 0.5", || {
            b.foreground_mask(&fp, &half, &mut g4)
        });
    } else if !(b.foreground_mask(&fp, &half, &mut g4).is_err() || b.sync().is_err()) {
        // Not reported: the label is not foreground.
        assert_close(
            &download(b, &g4),
            &[0.0f32, 0.0, 1.0, 1.0],
            Tol::exact(),
            "foreground mask of a label 0.5",
        );
    }
    expect_err("foreground mask into 6 elements", || {
        b.foreground_mask(&fp, &y, &mut six)
    });
    let cp = ConfusionParams {
        images: 2,
        pixels_per_image: 2,
        classes,
        ignore_index: None,
    };
    let mut short_counts = zeros_len(b, 2 * classes * classes - 1);
    expect_err("confusion into short counts", || {
        b.confusion_matrix(&cp, &z, &y, &mut short_counts)
    });
}

#[test]
fn losses_reject_bad_input() {
    for_each_backend!(|b| rejects_case(b));
}

// ---------------------------------------------------------------------------------------------
// Through the graph
// ---------------------------------------------------------------------------------------------

/// Runs `loss` forward with `feeds`, then backward; returns the loss and `d loss / d logits`.
fn run<B: Backend>(
    b: &B,
    g: Graph<B>,
    feeds: &[(NodeId, HostTensor)],
    loss: NodeId,
    logits: NodeId,
) -> (f64, Vec<f32>) {
    let mut exec = Executor::new(b.clone(), g, 0).expect("executor");
    let feeds: Vec<(NodeId, &HostTensor)> = feeds.iter().map(|(n, t)| (*n, t)).collect();
    exec.forward(&feeds, Mode::Train).expect("forward");
    let value = exec.value(loss).expect("loss value").data()[0] as f64;
    exec.backward(loss).expect("backward");
    (
        value,
        exec.grad(logits).expect("logits gradient").into_data(),
    )
}

fn host(shape: &[usize], data: Vec<f32>) -> HostTensor {
    HostTensor::new(shape.to_vec(), data).expect("matching length")
}

fn graph_cross_entropy_case<B: Backend>(b: &B) {
    // 2-D: N×C with class weights and an ignored row; 4-D: NHWC pixels with pixel weights,
    // labels given as [N, H, W] and as [N, H, W, 1]; a focal γ.
    let cases: [(&[usize], bool, f32); 4] = [
        (&[6, 4], false, 0.0),
        (&[2, 3, 5, 3], true, 0.0),
        (&[2, 3, 5, 3], true, 2.0),
        (&[1, 4, 3, 2], false, 0.0),
    ];
    for (i, &(dims, with_pw, gamma)) in cases.iter().enumerate() {
        let seed = 9700 + 10 * i as u64;
        let classes = *dims.last().unwrap();
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let mut label_dims = dims[..dims.len() - 1].to_vec();
        if i == 3 {
            label_dims.push(1);
        }
        let cw = random_range(classes, seed, 0.5, 2.0);
        let mut g = Graph::<B>::new();
        let x = g.input_with_grad("logits", dims.to_vec()).unwrap();
        let y = g.input("labels", label_dims.clone()).unwrap();
        let w = g.input("weights", label_dims.clone()).unwrap();
        let config = CrossEntropyConfig {
            class_weights: Some(cw.clone()),
            ignore_index: Some(255),
            focal_gamma: 0.0,
            pixel_weights: with_pw.then_some(w),
        };
        let l = if gamma == 0.0 {
            loss::cross_entropy(&mut g, x, y, &config).unwrap()
        } else {
            loss::focal_loss(&mut g, x, y, gamma, &config).unwrap()
        };
        let z = logits(rows * classes, seed + 1);
        let yv = labels(rows, classes, seed + 2, &[1]);
        let pw = random_range(rows, seed + 3, 0.0, 2.0);
        let mut feeds = vec![
            (x, host(dims, z.clone())),
            (y, host(&label_dims, yv.clone())),
        ];
        if with_pw {
            feeds.push((w, host(&label_dims, pw.clone())));
        }
        let (value, grad) = run(b, g, &feeds, l, x);
        let case = CeCase {
            rows,
            classes,
            class_weights: Some(f64s(&cw)),
            pixel_weights: with_pw.then(|| f64s(&pw)),
            ignore: Some(255),
            gamma: gamma as f64,
        };
        let (z64, y64) = (f64s(&z), f64s(&yv));
        let what = format!("graph cross-entropy {dims:?} γ {gamma}");
        // As the kernel test: f32 log-sum-exp and a sum over ≤ 30 rows.
        assert_close(
            &[value as f32],
            &[lr::cross_entropy(&case, &z64, &y64)],
            Tol::rel_abs(1e-5, 1e-6).max(Tol::accumulated(rows)),
            &what,
        );
        let fd = fd_grad(&z64, FD_STEP, |z| lr::cross_entropy(&case, z, &y64));
        // The kernel's gradient times the seed 1.0: as the kernel test.
        check_gradient(
            &grad,
            &fd,
            &lr::cross_entropy_grad(&case, &z64, &y64),
            Tol::rel_abs(1e-5, 1e-6),
            &format!("{what}: gradient"),
        );
    }
}

#[test]
fn cross_entropy_through_the_graph_2d_and_4d() {
    for_each_backend!(|b| graph_cross_entropy_case(b));
}

fn focal_gamma_zero_is_ce_case<B: Backend>(b: &B) {
    let dims = [2, 3, 3, 4];
    let mut g = Graph::<B>::new();
    let x = g.input_with_grad("logits", dims).unwrap();
    let y = g.input("labels", [2, 3, 3]).unwrap();
    let config = CrossEntropyConfig {
        class_weights: Some(vec![0.5, 1.0, 2.0, 1.5]),
        ignore_index: Some(255),
        ..CrossEntropyConfig::default()
    };
    let ce = loss::cross_entropy(&mut g, x, y, &config).unwrap();
    let focal = loss::focal_loss(&mut g, x, y, 0.0, &config).unwrap();
    let mut exec = Executor::new(b.clone(), g, 0).unwrap();
    let z = host(&dims, logits(72, 9800));
    let l = host(&[2, 3, 3], labels(18, 4, 9801, &[5]));
    exec.forward(&[(x, &z), (y, &l)], Mode::Train).unwrap();
    let (a, c) = (exec.value(ce).unwrap(), exec.value(focal).unwrap());
    // The same kernel with γ = 0: bit-identical.
    assert_close(
        a.data(),
        c.data(),
        Tol::exact(),
        "focal γ=0 vs cross-entropy: loss",
    );
    exec.backward(ce).unwrap();
    let ga = exec.grad(x).unwrap();
    exec.backward(focal).unwrap();
    let gc = exec.grad(x).unwrap();
    assert_close(
        ga.data(),
        gc.data(),
        Tol::exact(),
        "focal γ=0 vs cross-entropy: grad",
    );
    // An upstream gradient scales the saved gradient.
    exec.backward_with(ce, &HostTensor::scalar(2.5)).unwrap();
    let scaled: Vec<f32> = ga.data().iter().map(|v| v * 2.5).collect();
    // One f32 multiplication, the same on both sides: exact.
    assert_close(
        exec.grad(x).unwrap().data(),
        &scaled,
        Tol::exact(),
        "seed 2.5",
    );
}

#[test]
fn focal_loss_with_gamma_zero_equals_cross_entropy() {
    for_each_backend!(|b| focal_gamma_zero_is_ce_case(b));
}

fn graph_bce_mse_case<B: Backend>(b: &B) {
    let dims = [2, 3, 3, 1];
    let n = 18;
    let mut g = Graph::<B>::new();
    let x = g.input_with_grad("logits", dims).unwrap();
    let t = g.input("targets", dims).unwrap();
    let w = g.input("weights", dims).unwrap();
    let config = BceConfig {
        pos_weight: 3.0,
        pixel_weights: Some(w),
    };
    let bce = loss::binary_cross_entropy_with_logits(&mut g, x, t, &config).unwrap();
    let mse = loss::mse(&mut g, x, t).unwrap();
    let mut exec = Executor::new(b.clone(), g, 0).unwrap();
    let (xv, tv, wv) = (
        logits(n, 9900),
        random_range(n, 9901, 0.0, 1.0),
        random_range(n, 9902, 0.0, 2.0),
    );
    let (xh, th, wh) = (
        host(&dims, xv.clone()),
        host(&dims, tv.clone()),
        host(&dims, wv.clone()),
    );
    exec.forward(&[(x, &xh), (t, &th), (w, &wh)], Mode::Train)
        .unwrap();
    let (x64, t64, w64) = (f64s(&xv), f64s(&tv), f64s(&wv));
    // As the kernel test.
    assert_close(
        exec.value(bce).unwrap().data(),
        &[lr::bce_with_logits(&x64, &t64, Some(&w64), 3.0)],
        Tol::rel_abs(1e-5, 1e-6).max(Tol::accumulated(n)),
        "graph bce",
    );
    exec.backward(bce).unwrap();
    assert_close(
        exec.grad(x).unwrap().data(),
        &lr::bce_with_logits_grad(&x64, &t64, Some(&w64), 3.0),
        Tol::rel_abs(1e-5, 1e-7),
        "graph bce gradient",
    );
    let want: f64 = x64
        .iter()
        .zip(&t64)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        / n as f64;
    // An f32 mean of 18 squares ≤ 9.
    assert_close(
        exec.value(mse).unwrap().data(),
        &[want],
        Tol::rel_abs(1e-5, 1e-6),
        "graph mse",
    );
    exec.backward(mse).unwrap();
    let want: Vec<f64> = x64
        .iter()
        .zip(&t64)
        .map(|(a, b)| 2.0 * (a - b) / n as f64)
        .collect();
    // Subtraction, scale and product in f32: a few ulps.
    assert_close(
        exec.grad(x).unwrap().data(),
        &want,
        Tol::rel_abs(1e-5, 1e-7),
        "graph mse gradient",
    );
}

#[test]
fn bce_and_mse_through_the_graph() {
    for_each_backend!(|b| graph_bce_mse_case(b));
}

fn graph_dice_case<B: Backend>(b: &B) {
    let dims = [2, 3, 4, 3];
    let (rows, classes) = (24, 3);
    let mut g = Graph::<B>::new();
    let x = g.input_with_grad("logits", dims).unwrap();
    let y = g.input("labels", [2, 3, 4]).unwrap();
    let dice_cfg = DiceConfig {
        ignore_index: Some(255),
        ..DiceConfig::default()
    };
    let ce_cfg = CrossEntropyConfig {
        ignore_index: Some(255),
        ..CrossEntropyConfig::default()
    };
    let both = loss::cross_entropy_plus_dice(&mut g, x, y, &ce_cfg, &dice_cfg, 0.5).unwrap();
    let z = logits(rows * classes, 9950);
    let yv = labels(rows, classes, 9951, &[7]);
    let feeds = [
        (x, host(&dims, z.clone())),
        (y, host(&[2, 3, 4], yv.clone())),
    ];
    let (value, grad) = run(b, g, &feeds, both, x);
    let ce_case = CeCase {
        rows,
        classes,
        ignore: Some(255),
        ..CeCase::default()
    };
    let dice_case = DiceCase {
        images: 2,
        pixels_per_image: 12,
        classes,
        ignore: Some(255),
        eps: 1.0,
        include_background: true,
    };
    let (z64, y64) = (f64s(&z), f64s(&yv));
    let total =
        |z: &[f64]| lr::cross_entropy(&ce_case, z, &y64) + 0.5 * lr::soft_dice(&dice_case, z, &y64);
    // The two losses' tolerances added.
    assert_close(
        &[value as f32],
        &[total(&z64)],
        Tol::rel_abs(2e-5, 2e-6).max(Tol::accumulated(rows)),
        "cross-entropy + 0.5 dice",
    );
    let analytic: Vec<f64> = lr::cross_entropy_grad(&ce_case, &z64, &y64)
        .iter()
        .zip(lr::soft_dice_grad(&dice_case, &z64, &y64))
        .map(|(a, d)| a + 0.5 * d)
        .collect();
    // The two gradients' tolerances added.
    check_gradient(
        &grad,
        &fd_grad(&z64, FD_STEP, total),
        &analytic,
        Tol::rel_abs(1e-4, 2e-6),
        "cross-entropy + 0.5 dice: gradient",
    );
}

#[test]
fn cross_entropy_plus_dice_through_the_graph() {
    for_each_backend!(|b| graph_dice_case(b));
}

fn distance_weighted_case<B: Backend>(b: &B) {
    let (n, h, w, classes) = (2, 5, 7, 3);
    let rows = n * h * w;
    let dims = [n, h, w, classes];
    let dcfg = DistanceWeightConfig {
        background: 0,
        foreground: 1.5,
        near: 0.2,
        far: 2.0,
        sigma: 2.0,
    };
    let mut g = Graph::<B>::new();
    let x = g.input_with_grad("logits", dims).unwrap();
    let y = g.input("labels", [n, h, w]).unwrap();
    let ce_cfg = CrossEntropyConfig {
        ignore_index: Some(255),
        class_weights: Some(vec![1.0, 2.0, 0.5]),
        ..CrossEntropyConfig::default()
    };
    let weights = loss::distance_weights(&mut g, y, &dcfg, Some(255)).unwrap();
    let l = loss::distance_weighted_cross_entropy(&mut g, x, y, &dcfg, &ce_cfg).unwrap();
    // Mostly background, a few objects in the first image, none in the second.
    let mut yv: Vec<f32> = random_range(rows, 9960, 0.0, 1.0)
        .into_iter()
        .map(|v| {
            if v < 0.15 {
                1.0 + (v * 20.0).floor().min(1.0)
            } else {
                0.0
            }
        })
        .collect();
    yv[h * w..].iter_mut().for_each(|v| *v = 0.0);
    yv[3] = 255.0;
    yv[h * w + 4] = 255.0;
    let z = logits(rows * classes, 9961);
    let mut exec = Executor::new(b.clone(), g, 0).unwrap();
    let (zh, yh) = (host(&dims, z.clone()), host(&[n, h, w], yv.clone()));
    exec.forward(&[(x, &zh), (y, &yh)], Mode::Train).unwrap();

    let fg: Vec<f64> = yv
        .iter()
        .map(|&l| if l != 0.0 && l != 255.0 { 1.0 } else { 0.0 })
        .collect();
    let d = lr::distance_transform(n, h, w, &fg);
    let want: Vec<f64> = (0..rows)
        .map(|i| {
            if fg[i] == 1.0 {
                1.5
            } else {
                0.2 + (2.0 - 0.2) * (1.0 - (-d[i] / 2.0).exp())
            }
        })
        .collect();
    // exp and two affine maps in f32 of values ≤ 2: a few ulps.
    assert_close(
        exec.value(weights).unwrap().data(),
        &want,
        Tol::rel_abs(1e-6, 1e-6),
        "distance weights",
    );
    exec.backward(l).unwrap();
    let case = CeCase {
        rows,
        classes,
        class_weights: Some(vec![1.0, 2.0, 0.5]),
        pixel_weights: Some(want),
        ignore: Some(255),
        gamma: 0.0,
    };
    let (z64, y64) = (f64s(&z), f64s(&yv));
    // The weights' few ulps, then as the kernel test over 70 rows.
    assert_close(
        exec.value(l).unwrap().data(),
        &[lr::cross_entropy(&case, &z64, &y64)],
        Tol::rel_abs(1e-5, 1e-6).max(Tol::accumulated(rows)),
        "distance-weighted cross-entropy",
    );
    check_gradient(
        exec.grad(x).unwrap().data(),
        &fd_grad(&z64, FD_STEP, |z| lr::cross_entropy(&case, z, &y64)),
        &lr::cross_entropy_grad(&case, &z64, &y64),
        Tol::rel_abs(1e-5, 1e-6),
        "distance-weighted cross-entropy: gradient",
    );
}

#[test]
fn distance_weighted_cross_entropy_through_the_graph() {
    for_each_backend!(|b| distance_weighted_case(b));
}

fn graph_rejects_case<B: Backend>(b: &B) {
    let mut g = Graph::<B>::new();
    let x = g.input_with_grad("logits", [5, 4]).unwrap();
    let y6 = g.input("labels6", [6]).unwrap();
    let y5 = g.input("labels5", [5]).unwrap();
    let x4 = g.input("image", [2, 3, 3, 4]).unwrap();
    let y4 = g.input("labels4", [2, 3, 4]).unwrap();
    let cfg = CrossEntropyConfig::default();
    expect_err("cross-entropy with 6 labels for 5 rows", || {
        loss::cross_entropy(&mut g, x, y6, &cfg)
    });
    expect_err("cross-entropy with labels of another spatial size", || {
        loss::cross_entropy(&mut g, x4, y4, &cfg)
    });
    let bad_weights = CrossEntropyConfig {
        class_weights: Some(vec![1.0; 3]),
        ..CrossEntropyConfig::default()
    };
    expect_err("cross-entropy with 3 class weights for 4 classes", || {
        loss::cross_entropy(&mut g, x, y5, &bad_weights)
    });
    let bad_gamma = CrossEntropyConfig::default();
    expect_err("focal loss with γ = NaN", || {
        loss::focal_loss(&mut g, x, y5, f32::NAN, &bad_gamma)
    });
    expect_err("bce with targets of another shape", || {
        loss::binary_cross_entropy_with_logits(&mut g, x, y5, &BceConfig::default())
    });
    expect_err("distance weights of 1-D labels", || {
        loss::distance_weights(&mut g, y5, &DistanceWeightConfig::default(), None)
    });
    let zero_sigma = DistanceWeightConfig {
        sigma: 0.0,
        ..DistanceWeightConfig::default()
    };
    expect_err("distance weights with σ = 0", || {
        loss::distance_weights(&mut g, y4, &zero_sigma, None)
    });
    let l = loss::cross_entropy(&mut g, x, y5, &cfg).unwrap();
    let mut exec = Executor::new(b.clone(), g, 0).unwrap();
    let z = host(&[5, 4], logits(20, 9990));
    let labels = host(&[5], vec![0.0, 1.0, 4.0, 2.0, 3.0]);
    if checks_labels(b) {
        expect_err("a forward with label 4 of 4 classes", || {
            exec.forward(&[(x, &z), (y5, &labels)], Mode::Train)
        });
    } else if exec.forward(&[(x, &z), (y5, &labels)], Mode::Train).is_ok() {
        // Reported at the next wait, or the row ignored.
        if let Ok(value) = exec.value(l) {
            assert!(
                value.data()[0].is_finite(),
                "loss with an ignored bad label"
            );
        }
    }
}

#[test]
fn loss_functions_reject_bad_graphs_and_labels() {
    for_each_backend!(|b| graph_rejects_case(b));
}
