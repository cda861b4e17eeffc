//! GEMM with every transpose combination and with alpha / beta.

use magnet::backend::GemmParams;
use magnet::Backend;

use crate::common::reference as r;
use crate::common::*;

fn gemm_case<B: Backend>(b: &B) {
    // The last: a long depth over few outputs, which GPU backends cut into parts.
    let shapes = [(3, 5, 7), (1, 4, 2), (13, 11, 9), (6, 1, 5), (5, 70, 6000)];
    let scalings = [(1.0f32, 0.0f32), (0.5, 2.0), (-1.0, 1.0)];
    let mut seed = 8000;
    for (m, n, k) in shapes {
        for trans_a in [false, true] {
            for trans_b in [false, true] {
                for (alpha, beta) in scalings {
                    let p = GemmParams {
                        m,
                        n,
                        k,
                        trans_a,
                        trans_b,
                        alpha,
                        beta,
                    };
                    seed += 3;
                    let a = random_vec(m * k, seed);
                    let bm = random_vec(k * n, seed + 1);
                    let c = random_vec(m * n, seed + 2);
                    let want = r::gemm(&p, &f64s(&a), &f64s(&bm), &f64s(&c));
                    let mut cb = upload_vec(b, &c);
                    ok(
                        b.gemm(&p, &upload_vec(b, &a), &upload_vec(b, &bm), &mut cb),
                        "gemm",
                    );
                    // An f32 dot product of k terms ≤ 1, scaled by |alpha| ≤ 1, plus beta·c
                    // (|beta·c| ≤ 2, two more roundings).
                    assert_close(
                        &download(b, &cb),
                        &want,
                        Tol::accumulated(k + 2),
                        &format!("gemm {p:?}"),
                    );
                }
            }
        }
    }
}

#[test]
fn gemm_matches_reference() {
    for_each_backend!(|b| gemm_case(b));
}

fn rejects_case<B: Backend>(b: &B) {
    let p = GemmParams {
        m: 3,
        n: 5,
        k: 7,
        trans_a: false,
        trans_b: true,
        alpha: 1.0,
        beta: 0.0,
    };
    let a = upload_vec(b, &random_vec(21, 8100));
    let bm = upload_vec(b, &random_vec(35, 8101));
    let short_a = upload_vec(b, &random_vec(20, 8102));
    let long_b = upload_vec(b, &random_vec(36, 8103));
    let mut c = zeros_len(b, 15);
    let mut short_c = zeros_len(b, 14);
    expect_err("gemm with a short A", || b.gemm(&p, &short_a, &bm, &mut c));
    expect_err("gemm with a long B", || b.gemm(&p, &a, &long_b, &mut c));
    expect_err("gemm with a short C", || b.gemm(&p, &a, &bm, &mut short_c));
}

#[test]
fn gemm_rejects_bad_input() {
    for_each_backend!(|b| rejects_case(b));
}
