//! Fused optimiser steps: SGD (momentum, dampening, Nesterov, weight decay) and Adam / AdamW.

use magnet::backend::{AdamParams, SgdParams};
use magnet::Backend;

use crate::common::reference as r;
use crate::common::*;

/// Parameters and gradients are O(1) and each step rounds a handful of f32 operations; over
/// three steps that stays within a few ulps of 1.
const STEP_TOL: Tol = Tol::rel_abs(2e-6, 1e-6);

const STEPS: usize = 3;

fn sgd(lr: f32, momentum: f32, dampening: f32, weight_decay: f32, nesterov: bool) -> SgdParams {
    SgdParams {
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
        first_step: true,
    }
}

fn sgd_case<B: Backend>(b: &B) {
    let cases = [
        sgd(0.1, 0.0, 0.0, 0.0, false),
        sgd(0.05, 0.9, 0.0, 0.0, false),
        sgd(0.05, 0.9, 0.1, 1e-2, false),
        sgd(0.02, 0.8, 0.0, 5e-3, true),
        sgd(0.1, 0.0, 0.0, 1e-1, false),
    ];
    let n = 37;
    for (i, base) in cases.into_iter().enumerate() {
        let seed = 9000 + 10 * i as u64;
        let param = random_vec(n, seed);
        let momentum = random_vec(n, seed + 1);
        let (mut p64, mut m64) = (f64s(&param), f64s(&momentum));
        let mut pb = upload_vec(b, &param);
        let mut mb = upload_vec(b, &momentum);
        for step in 0..STEPS {
            let p = SgdParams {
                first_step: step == 0,
                ..base
            };
            let grad = random_vec(n, seed + 2 + step as u64);
            r::sgd_step(&p, &mut p64, &f64s(&grad), &mut m64);
            ok(
                b.sgd_step(&p, &mut pb, &upload_vec(b, &grad), &mut mb),
                "sgd_step",
            );
            let what = |name: &str| format!("sgd_step {name} after step {} {p:?}", step + 1);
            assert_close(&download(b, &pb), &p64, STEP_TOL, &what("param"));
            // Without momentum the buffer is not part of the update (PyTorch keeps none).
            if p.momentum != 0.0 {
                assert_close(&download(b, &mb), &m64, STEP_TOL, &what("momentum"));
            }
        }
    }
}

#[test]
fn sgd_step_matches_pytorch_rule() {
    for_each_backend!(|b| sgd_case(b));
}

fn adam(
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    decoupled: bool,
) -> AdamParams {
    AdamParams {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled_weight_decay: decoupled,
        step: 1,
    }
}

fn adam_case<B: Backend>(b: &B) {
    let cases = [
        adam(1e-3, 0.9, 0.999, 1e-8, 0.0, false),
        adam(1e-2, 0.9, 0.999, 1e-8, 1e-2, false),
        adam(1e-2, 0.9, 0.999, 1e-8, 1e-1, true),
        adam(5e-2, 0.5, 0.9, 1e-6, 0.0, true),
    ];
    let n = 37;
    for (i, base) in cases.into_iter().enumerate() {
        let seed = 9500 + 10 * i as u64;
        let param = random_vec(n, seed);
        let (mut p64, mut m64, mut v64) = (f64s(&param), vec![0.0; n], vec![0.0; n]);
        let mut pb = upload_vec(b, &param);
        let mut mb = zeros_len(b, n);
        let mut vb = zeros_len(b, n);
        for step in 1..=STEPS as u64 {
            let p = AdamParams { step, ..base };
            let grad = random_vec(n, seed + 1 + step);
            r::adam_step(&p, &mut p64, &f64s(&grad), &mut m64, &mut v64);
            ok(
                b.adam_step(&p, &mut pb, &upload_vec(b, &grad), &mut mb, &mut vb),
                "adam_step",
            );
            let what = |name: &str| format!("adam_step {name} after step {step} {p:?}");
            assert_close(&download(b, &pb), &p64, STEP_TOL, &what("param"));
            assert_close(&download(b, &mb), &m64, STEP_TOL, &what("m"));
            // v ≈ (1 − β2)·g² is small; its error is relative.
            assert_close(
                &download(b, &vb),
                &v64,
                Tol::rel_abs(2e-6, 1e-9),
                &what("v"),
            );
        }
    }
}

#[test]
fn adam_step_matches_pytorch_rule() {
    for_each_backend!(|b| adam_case(b));
}

fn rejects_case<B: Backend>(b: &B) {
    let s = sgd(0.1, 0.9, 0.0, 0.0, false);
    let a = adam(1e-3, 0.9, 0.999, 1e-8, 0.0, false);
    let mut param = upload_vec(b, &random_vec(8, 9900));
    let grad = upload_vec(b, &random_vec(8, 9901));
    let short_grad = upload_vec(b, &random_vec(7, 9902));
    let mut m = zeros_len(b, 8);
    let mut v = zeros_len(b, 8);
    let mut short_m = zeros_len(b, 7);
    expect_err("sgd_step with a short gradient", || {
        b.sgd_step(&s, &mut param, &short_grad, &mut m)
    });
    expect_err("sgd_step with a short momentum buffer", || {
        b.sgd_step(&s, &mut param, &grad, &mut short_m)
    });
    expect_err("adam_step with a short gradient", || {
        b.adam_step(&a, &mut param, &short_grad, &mut m, &mut v)
    });
    expect_err("adam_step with a short first moment", || {
        b.adam_step(&a, &mut param, &grad, &mut short_m, &mut v)
    });
    expect_err("adam_step with a short second moment", || {
        b.adam_step(&a, &mut param, &grad, &mut m, &mut short_m)
    });
}

#[test]
fn optimisers_reject_bad_input() {
    for_each_backend!(|b| rejects_case(b));
}
