//! Elementwise maps, layout, reductions, softmax, products and optimiser steps.

use magnet::backend::*;
use magnet::Shape;

use crate::common::*;
use crate::{big, compare, get, on_small, out, up, Outputs};

// ---------------------------------------------------------------------------------------------
// Elementwise, layout, reductions, softmax
// ---------------------------------------------------------------------------------------------

const N: usize = 5000;

fn unary_forward<M: Backend>(m: &M, op: &UnaryOp) -> Outputs {
    let lo = if matches!(op, UnaryOp::Log | UnaryOp::Sqrt) {
        0.05
    } else {
        -3.0
    };
    let x = up(m, &random_range(N, 50, lo, 3.0));
    let dy = up(m, &random_vec(N, 51));
    let (mut y, mut dx) = (out(m, N), out(m, N));
    ok(m.unary(*op, &x, &mut y), "unary");
    ok(
        m.unary_backward(
            *op,
            if op.backward_from_output() { &y } else { &x },
            &dy,
            &mut dx,
        ),
        "unary_backward",
    );
    get(m, &[&y, &dx])
}

fn fill_axpy_dropout<M: Backend>(m: &M, _: &()) -> Outputs {
    let mut filled = out(m, N);
    ok(m.fill(&mut filled, -0.375), "fill");
    let x = up(m, &random_vec(N, 54));
    let mut y = up(m, &random_vec(N, 55));
    ok(m.axpy(0.7, &x, &mut y), "axpy");
    let (mut kept, mut dx) = (out(m, N), out(m, N));
    ok(
        m.dropout_forward(0.3, 1234, &x, &mut kept),
        "dropout_forward",
    );
    ok(
        m.dropout_backward(0.3, 1234, &x, &mut dx),
        "dropout_backward",
    );
    get(m, &[&filled, &y, &kept, &dx])
}

fn binary<M: Backend>(m: &M, (op, a, b): &(BinaryOp, Shape, Shape)) -> Outputs {
    let x = up(m, &random_vec(a.numel(), 52));
    let z = up(m, &random_range(b.numel(), 53, 0.25, 2.0));
    let len = a.broadcast(b).map_or(0, |s| s.numel());
    let mut y = out(m, len);
    ok(m.binary(*op, &x, a, &z, b, &mut y), "binary");
    get(m, &[&y])
}

const ROWS: usize = 600;
const WIDTHS: [usize; 3] = [3, 5, 2];

fn concat_split<M: Backend>(m: &M, _: &()) -> Outputs {
    let total: usize = WIDTHS.iter().sum();
    let parts: Vec<M::Buffer> = (0..WIDTHS.len())
        .map(|i| up(m, &random_vec(ROWS * WIDTHS[i], 40 + i as u64)))
        .collect();
    let refs: Vec<(&M::Buffer, usize)> = parts.iter().zip(WIDTHS).collect();
    let mut y = out(m, ROWS * total);
    ok(m.concat_last(ROWS, &refs, &mut y), "concat_last");
    let x = up(m, &random_vec(ROWS * total, 43));
    let mut back: Vec<M::Buffer> = WIDTHS.iter().map(|&w| out(m, ROWS * w)).collect();
    let mut refs: Vec<(&mut M::Buffer, usize)> = back.iter_mut().zip(WIDTHS).collect();
    ok(m.split_last(ROWS, &x, &mut refs), "split_last");
    let mut outs = get(m, &[&y]);
    outs.extend(back.iter().map(|b| download(m, b)));
    outs
}

fn reduce<M: Backend>(m: &M, (op, x_shape, y_shape): &(ReduceOp, Shape, Shape)) -> Outputs {
    let x = up(m, &random_vec(x_shape.numel(), 60));
    let mut y = out(m, y_shape.numel());
    ok(m.reduce(*op, &x, x_shape, y_shape, &mut y), "reduce");
    let small = up(m, &random_vec(y_shape.numel(), 61));
    let mut spread = out(m, x_shape.numel());
    ok(
        m.broadcast_to(&small, y_shape, x_shape, &mut spread),
        "broadcast_to",
    );
    get(m, &[&y, &spread])
}

fn softmax<M: Backend>(m: &M, &(rows, cols, log): &(usize, usize, bool)) -> Outputs {
    let n = rows * cols;
    let x = up(m, &random_range(n, 62, -4.0, 4.0));
    let dy = up(m, &random_vec(n, 63));
    let (mut y, mut dx) = (out(m, n), out(m, n));
    ok(m.softmax(rows, cols, log, &x, &mut y), "softmax");
    ok(
        m.softmax_backward(rows, cols, log, &y, &dy, &mut dx),
        "softmax_backward",
    );
    get(m, &[&y, &dx])
}

#[test]
fn elementwise_layout_and_reductions_split() {
    on_small(|b| {
        big(N);
        // Strict fp32 elementwise maps: a few roundings, library transcendentals.
        const ELEMENTWISE: Tol = Tol::rel_abs(1e-5, 1e-6);
        for op in [
            UnaryOp::Relu,
            UnaryOp::Sigmoid,
            UnaryOp::Tanh,
            UnaryOp::Exp,
            UnaryOp::Log,
            UnaryOp::Neg,
            UnaryOp::Abs,
            UnaryOp::Sqrt,
            UnaryOp::Square,
            UnaryOp::Affine {
                scale: -1.5,
                shift: 0.25,
            },
        ] {
            same_as_cpu!(b, unary_forward, &op, ELEMENTWISE, format!("{op:?}"));
        }
        // fill and dropout's mask are exact; axpy one fused or unfused multiply-add.
        let tol = Tol::rel_abs(4.0 * F32_U, 4.0 * F32_U);
        same_as_cpu!(b, fill_axpy_dropout, &(), tol, "fill, axpy, dropout");
        for (x, z) in [
            (vec![3, 50, 9], vec![9]),
            (vec![3, 50, 9], vec![3, 50, 1]),
            (vec![1, 50, 9], vec![3, 1, 9]),
            (vec![1, 600, 3], vec![2, 600, 3]),
            (vec![3, 50, 9], vec![3, 50, 9]),
        ] {
            let (x, z) = (Shape::new(x), Shape::new(z));
            big(x.broadcast(&z).map_or(0, |s| s.numel()));
            for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
                let p = (op, x.clone(), z.clone());
                same_as_cpu!(b, binary, &p, ELEMENTWISE, format!("{op:?} {x} {z}"));
            }
        }
        big(ROWS * WIDTHS.iter().sum::<usize>());
        same_as_cpu!(
            b,
            concat_split,
            &(),
            Tol::exact(),
            "concat_last, split_last"
        );
        for (x, y) in [
            (vec![3, 60, 9], vec![1, 60, 1]),
            (vec![3, 60, 9], vec![9]),
            (vec![3, 60, 9], vec![]),
            (vec![2, 400, 3], vec![2, 1, 3]),
            (vec![4, 700], vec![4, 1]),
            // One output's elements span several bindings.
            (vec![2, 3000], vec![2, 1]),
            (vec![3000, 2], vec![1, 2]),
            (vec![1500], vec![1]),
        ] {
            let (x, y) = (Shape::new(x), Shape::new(y));
            let k = big(x.numel()) / y.numel().max(1);
            for (op, tol) in [
                // Sums of k values in another order, in parts over dispatches.
                (ReduceOp::Sum, Tol::accumulated(k).scale(2.0)),
                // A sum divided by k: its error divides too.
                (ReduceOp::Mean, Tol::rel_abs(16.0 * F32_U, 16.0 * F32_U)),
                (ReduceOp::Max, Tol::exact()),
            ] {
                let p = (op, x.clone(), y.clone());
                same_as_cpu!(b, reduce, &p, tol, format!("{op:?} {x} → {y}"));
            }
        }
        for (rows, cols) in [(1300, 3), (90, 37)] {
            big(rows * cols);
            for log in [false, true] {
                // exp and log of O(1) values and a sum over the row.
                let tol = Tol::rel_abs(1e-5, 1e-6).max(Tol::accumulated(cols).scale(2.0));
                let what = format!("softmax {rows}×{cols} log {log}");
                same_as_cpu!(b, softmax, &(rows, cols, log), tol, what);
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Products, optimisers
// ---------------------------------------------------------------------------------------------

fn gemm<M: Backend>(m: &M, p: &GemmParams) -> Outputs {
    let a = up(m, &random_vec(p.m * p.k, 70));
    let b = up(m, &random_vec(p.k * p.n, 71));
    let mut c = up(m, &random_vec(p.m * p.n, 72));
    ok(m.gemm(p, &a, &b, &mut c), "gemm");
    get(m, &[&c])
}

const PARAMS: usize = 3000;

fn optimisers<M: Backend>(m: &M, _: &()) -> Outputs {
    let mut outs = Vec::new();
    for (momentum, dampening, nesterov) in [(0.0, 0.0, false), (0.9, 0.1, false), (0.8, 0.0, true)]
    {
        let mut param = up(m, &random_vec(PARAMS, 80));
        let mut buf = up(m, &random_vec(PARAMS, 81));
        for step in 0..3 {
            let grad = up(m, &random_vec(PARAMS, 82 + step));
            let p = SgdParams {
                lr: 0.05,
                momentum,
                dampening,
                weight_decay: 1e-2,
                nesterov,
                first_step: step == 0,
            };
            ok(m.sgd_step(&p, &mut param, &grad, &mut buf), "sgd_step");
        }
        outs.extend(get(m, &[&param, &buf]));
    }
    for decoupled in [false, true] {
        let mut param = up(m, &random_vec(PARAMS, 90));
        let (mut m1, mut m2) = (zeros_len(m, PARAMS), zeros_len(m, PARAMS));
        for step in 1..=3 {
            let grad = up(m, &random_vec(PARAMS, 91 + step));
            let p = AdamParams {
                lr: 1e-2,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 1e-2,
                decoupled_weight_decay: decoupled,
                step,
            };
            ok(
                m.adam_step(&p, &mut param, &grad, &mut m1, &mut m2),
                "adam_step",
            );
        }
        outs.extend(get(m, &[&param, &m1, &m2]));
    }
    outs
}

#[test]
fn products_and_optimisers_split() {
    on_small(|b| {
        for (m, n, k, trans) in [
            (70, 9, 40, [false, false]),
            (70, 9, 40, [true, false]),
            (70, 9, 40, [false, true]),
            // Both transposed: A and B bound whole, C split by rows.
            (30, 9, 20, [true, true]),
            // Two column tiles.
            (300, 70, 5, [false, true]),
            (300, 70, 5, [false, false]),
        ] {
            let p = GemmParams {
                m,
                n,
                k,
                trans_a: trans[0],
                trans_b: trans[1],
                alpha: 0.7,
                beta: 0.3,
            };
            // k products plus the alpha and beta terms, in another order.
            let tol = Tol::accumulated(k + 2).scale(2.0);
            same_as_cpu!(b, gemm, &p, tol, format!("{p:?}"));
        }
        big(PARAMS);
        // A handful of roundings per step (sqrt, division), three steps.
        let tol = Tol::rel_abs(4e-6, 2e-6);
        same_as_cpu!(b, optimisers, &(), tol, "sgd and adam steps");
    });
}
