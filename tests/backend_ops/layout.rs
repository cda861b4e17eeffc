//! Concatenation and split along the last axis.

use magnet::Backend;

use crate::common::reference as r;
use crate::common::*;

/// `(rows, widths)`: NHWC skip connections (1·7·5 rows of 3 + 5 channels), three parts of odd
/// widths, a single part, and a single row.
fn cases() -> Vec<(usize, Vec<usize>)> {
    vec![
        (7 * 5, vec![3, 5]),
        (2 * 9 * 11, vec![1, 7, 2]),
        (6, vec![4]),
        (1, vec![5, 3]),
    ]
}

fn concat_split_case<B: Backend>(b: &B) {
    for (i, (rows, widths)) in cases().iter().enumerate() {
        let rows = *rows;
        let total: usize = widths.iter().sum();
        let parts: Vec<Vec<f32>> = widths
            .iter()
            .enumerate()
            .map(|(j, w)| random_vec(rows * w, 5000 + 10 * i as u64 + j as u64))
            .collect();
        let parts64: Vec<Vec<f64>> = parts.iter().map(|p| f64s(p)).collect();
        let refs: Vec<(&[f64], usize)> = parts64
            .iter()
            .zip(widths)
            .map(|(p, &w)| (p.as_slice(), w))
            .collect();
        let want = r::concat_last(rows, &refs);

        let bufs: Vec<B::Buffer> = parts.iter().map(|p| upload_vec(b, p)).collect();
        let args: Vec<(&B::Buffer, usize)> =
            bufs.iter().zip(widths).map(|(p, &w)| (p, w)).collect();
        let mut yb = garbage(b, [rows, total]);
        ok(b.concat_last(rows, &args, &mut yb), "concat_last");
        // A copy: exact.
        let what = format!("concat_last rows {rows} widths {widths:?}");
        assert_close(&download(b, &yb), &want, Tol::exact(), &what);

        let mut outs: Vec<B::Buffer> = widths.iter().map(|w| garbage(b, [rows, *w])).collect();
        let mut out_args: Vec<(&mut B::Buffer, usize)> =
            outs.iter_mut().zip(widths).map(|(p, &w)| (p, w)).collect();
        ok(
            b.split_last(rows, &upload_vec(b, &f32s(&want)), &mut out_args),
            "split_last",
        );
        let want_parts = r::split_last(rows, &want, widths);
        for (j, (out, wp)) in outs.iter().zip(&want_parts).enumerate() {
            // A copy: exact.
            let what = format!("split_last part {j}, rows {rows} widths {widths:?}");
            assert_close(&download(b, out), wp, Tol::exact(), &what);
        }
    }
}

#[test]
fn concat_and_split_last_match_reference() {
    for_each_backend!(|b| concat_split_case(b));
}

fn rejects_case<B: Backend>(b: &B) {
    let rows = 6;
    let a = upload_vec(b, &random_vec(rows * 3, 5100));
    let c = upload_vec(b, &random_vec(rows * 2, 5101));
    let mut y = zeros(b, [rows, 5]);
    let mut long_y = zeros(b, [rows, 6]);
    expect_err("concat_last with a part shorter than rows × width", || {
        b.concat_last(rows, &[(&a, 3), (&c, 3)], &mut long_y)
    });
    expect_err("concat_last with an output wider than the parts", || {
        b.concat_last(rows, &[(&a, 3), (&c, 2)], &mut long_y)
    });
    let mut pa = zeros(b, [rows, 3]);
    let mut pc = zeros(b, [rows, 2]);
    expect_err("split_last with parts narrower than the input", || {
        b.split_last(rows, &long_y, &mut [(&mut pa, 3), (&mut pc, 2)])
    });
    expect_err("split_last with a part shorter than rows × width", || {
        b.split_last(rows, &y, &mut [(&mut pa, 3), (&mut pc, 3)])
    });
    ok(
        b.concat_last(rows, &[(&a, 3), (&c, 2)], &mut y),
        "concat_last",
    );
}

#[test]
fn concat_and_split_last_reject_bad_input() {
    for_each_backend!(|b| rejects_case(b));
}
