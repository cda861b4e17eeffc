//! Convolution on the CPU, as GEMMs over rows of output pixels spread across rayon's threads
//! (each GEMM single-threaded, so the data a thread touches stays in its cache).
//!
//! Layouts: input / output NHWC, weights `[out, kh, kw, in]` seen as the row-major matrix
//! `W[out, K]` with `K = kh·kw·in`, and the column matrix `cols[P, K]` (one row per output
//! pixel, see [`super::im2col`]).
//!
//! - forward: `Y[P, out] = cols[P, K] × Wᵀ[K, out]`. With wide inputs the column matrix is
//!   never built ("implicit GEMM"): in NHWC, the `kw·in` values one kernel row reads for output
//!   pixel `ox` start at input column `ox·sw - pw`, so for the output pixels whose window lies
//!   inside the image, that slab of `cols` is a strided view of the input itself (row stride
//!   `sw·in`, rows overlapping). One GEMM per kernel row then accumulates into the output row;
//!   only the few border pixels go through im2col. Narrow inputs (the RGB first layer) use
//!   im2col in cache-sized chunks.
//! - backward-data: `dcols[P, K] = dY[P, out] × W[out, K]`, scatter-added back (col2im); with
//!   stride 1 this is instead a forward convolution of `dY` with the flipped kernel
//! - backward-filter: `dW[out, K] = dYᵀ[out, P] × cols[P, K]`, with the same implicit slabs
//!   for wide inputs; each rayon task sums its rows into a private partial, added at the end

use std::cell::RefCell;
use std::ops::Range;

use gemm::Parallelism;
use rayon::prelude::*;

use super::im2col::{col2im_add, im2col, input_rows, Geom};
use super::matmul::{sgemm, MatMut, MatRef};
use crate::backend::cpu::{check_len, CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::Result;

/// Smallest GEMM depth (`kw·in` values per kernel row) for which the implicit GEMM beats
/// im2col; below it the GEMMs are too shallow to run at full speed.
const IMPLICIT_MIN_DEPTH: usize = 32;

/// Target size of one chunk's column matrix in f32 elements (512 KiB): it stays in a core's L2
/// cache between im2col writing it and the GEMM reading it.
const CHUNK_ELEMS: usize = 128 * 1024;

thread_local! {
    /// Per-thread column buffer, reused across chunks and calls.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on this thread's scratch buffer cut to `len` elements (contents unspecified).
fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    // Taken out rather than borrowed, so a nested call just allocates instead of panicking.
    let mut buf = SCRATCH.with(|s| s.take());
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let out = f(&mut buf[..len]);
    SCRATCH.with(|s| s.replace(buf));
    out
}

/// Output pixels per chunk: a cache-sized column matrix, but at least four chunks per thread
/// when the whole job is small, so both cores get work.
fn chunk_pixels(g: &Geom) -> usize {
    let by_cache = (CHUNK_ELEMS / g.k()).max(8);
    let by_balance = g.pixels().div_ceil(4 * rayon::current_num_threads());
    by_cache.min(by_balance).max(1)
}

/// Validates `p` and the three buffer lengths, in the order input, weights, output.
fn check(
    op: &'static str,
    p: &Conv2dParams,
    x: &CpuBuffer,
    w: &CpuBuffer,
    y: &CpuBuffer,
) -> Result<Geom> {
    p.validate(op)?;
    check_len(op, x, p.input_shape().numel())?;
    check_len(op, w, p.weight_shape().numel())?;
    check_len(op, y, p.output_shape().numel())?;
    Ok(Geom::new(p))
}

impl ConvOps for CpuBackend {
    fn conv2d_forward(
        &self,
        p: &Conv2dParams,
        x: &CpuBuffer,
        w: &CpuBuffer,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        let g = check("conv2d_forward", p, x, w, y)?;
        forward(&g, &x.0, &w.0, &mut y.0);
        Ok(())
    }

    fn conv2d_backward_data(
        &self,
        p: &Conv2dParams,
        dy: &CpuBuffer,
        w: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        let g = check("conv2d_backward_data", p, dx, w, dy)?;
        backward_data(&g, &dy.0, &w.0, &mut dx.0);
        Ok(())
    }

    fn conv2d_backward_filter(
        &self,
        p: &Conv2dParams,
        x: &CpuBuffer,
        dy: &CpuBuffer,
        dw: &mut CpuBuffer,
    ) -> Result<()> {
        let g = check("conv2d_backward_filter", p, x, dw, dy)?;
        backward_filter(&g, &x.0, &dy.0, &mut dw.0);
        Ok(())
    }
}

/// `y = conv(x, w)`; `y` is overwritten.
fn forward(g: &Geom, x: &[f32], w: &[f32], y: &mut [f32]) {
    if !g.is_pointwise() && implicit_depth(g) >= IMPLICIT_MIN_DEPTH {
        forward_implicit(g, x, w, y);
    } else {
        forward_im2col(g, x, w, y);
    }
}

/// Kernel taps read as one contiguous run per GEMM: a whole kernel row with unit horizontal
/// dilation, else one tap at a time.
fn tap_run(g: &Geom) -> usize {
    if g.dw == 1 {
        g.kw
    } else {
        1
    }
}

/// Depth of each implicit GEMM: `tap_run · in`.
fn implicit_depth(g: &Geom) -> usize {
    tap_run(g) * g.cin
}

/// The slab of the column matrix for `pixels` (interior output columns of one output row of
/// image `n`) and the tap run starting at `(ky, kx0)`, viewed in place in `x`:
/// `[pixels.len(), tap_run · in]`, row stride `sw · in`.
fn input_slab<'a>(
    g: &Geom,
    x: &'a [f32],
    n: usize,
    iy: usize,
    pixels: &Range<usize>,
    kx0: usize,
) -> MatRef<'a> {
    let ix0 = pixels.start * g.sw + kx0 * g.dw - g.pw;
    MatRef {
        data: &x[((n * g.h + iy) * g.w + ix0) * g.cin..],
        rows: pixels.len(),
        cols: implicit_depth(g),
        rs: g.sw * g.cin,
        cs: 1,
    }
}

/// The weights of the tap run starting at `(ky, kx0)`: `W[:, ky, kx0.., :]` as
/// `[out, tap_run · in]`, row stride `K`.
fn weight_slab<'a>(g: &Geom, w: &'a [f32], ky: usize, kx0: usize) -> MatRef<'a> {
    MatRef {
        data: &w[(ky * g.kw + kx0) * g.cin..],
        rows: g.cout,
        cols: implicit_depth(g),
        rs: g.k(),
        cs: 1,
    }
}

/// Implicit-GEMM forward, one task per output row:
/// `Y[row, interior, :] = Σ_{ky, run} slab[interior, run·in] × W_slabᵀ[run·in, out]`,
/// and the border pixels by im2col.
fn forward_implicit(g: &Geom, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (k, cout) = (g.k(), g.cout);
    let wt = MatRef::row_major(w, cout, k).t();
    let inner = g.interior_cols();
    y.par_chunks_mut(g.ow * cout)
        .enumerate()
        .for_each(|(row, y_row)| {
            let (n, oy) = (row / g.oh, row % g.oh);
            for edge in [0..inner.start, inner.end..g.ow] {
                if edge.is_empty() {
                    continue;
                }
                let px = edge.len();
                let out = MatMut::row_major(&mut y_row[edge.start * cout..][..px * cout], px, cout);
                with_scratch(px * k, |cols| {
                    let first = row * g.ow;
                    im2col(g, x, first + edge.start..first + edge.end, cols);
                    sgemm(
                        1.0,
                        MatRef::row_major(cols, px, k),
                        wt,
                        0.0,
                        out,
                        Parallelism::None,
                    );
                });
            }
            if inner.is_empty() {
                return;
            }
            let y_inner = &mut y_row[inner.start * cout..inner.end * cout];
            // The first contributing GEMM overwrites, the rest accumulate.
            let mut beta = 0.0;
            for ky in 0..g.kh {
                let Some(iy) = g.in_row(oy, ky) else { continue };
                for kx0 in (0..g.kw).step_by(tap_run(g)) {
                    let out = MatMut::row_major(y_inner, inner.len(), cout);
                    let lhs = input_slab(g, x, n, iy, &inner, kx0);
                    let rhs = weight_slab(g, w, ky, kx0).t();
                    sgemm(1.0, lhs, rhs, beta, out, Parallelism::None);
                    beta = 1.0;
                }
            }
            if beta == 0.0 {
                // Every kernel row fell in the vertical padding.
                y_inner.fill(0.0);
            }
        });
}

/// `y[P, out] = cols[P, K] × Wᵀ[K, out]`, chunk by chunk of output pixels.
fn forward_im2col(g: &Geom, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (k, cout) = (g.k(), g.cout);
    // W is [out, K] row-major; its transpose is a stride swap.
    let wt = MatRef::row_major(w, cout, k).t();
    let chunk = chunk_pixels(g);
    y.par_chunks_mut(chunk * cout)
        .enumerate()
        .for_each(|(i, y_chunk)| {
            let pixels = i * chunk..i * chunk + y_chunk.len() / cout;
            let rows = pixels.len();
            let out = MatMut::row_major(y_chunk, rows, cout);
            if g.is_pointwise() {
                // The input rows already are the column matrix.
                let xs = MatRef::row_major(&x[pixels.start * k..][..rows * k], rows, k);
                sgemm(1.0, xs, wt, 0.0, out, Parallelism::None);
            } else {
                with_scratch(rows * k, |cols| {
                    im2col(g, x, pixels, cols);
                    let cols = MatRef::row_major(cols, rows, k);
                    sgemm(1.0, cols, wt, 0.0, out, Parallelism::None);
                });
            }
        });
}

/// `dx = conv_transpose(dy, w)`; `dx` is overwritten.
fn backward_data(g: &Geom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let pad_h = (g.dh * (g.kh - 1)).checked_sub(g.ph);
    let pad_w = (g.dw * (g.kw - 1)).checked_sub(g.pw);
    if let (1, 1, Some(pad_h), Some(pad_w)) = (g.sh, g.sw, pad_h, pad_w) {
        // Stride 1: dx is dy convolved with the spatially flipped kernel with `in` and `out`
        // swapped, padded by d·(k-1) - p. No scatter, and the fast forward path does the work.
        let flipped = Geom {
            h: g.oh,
            w: g.ow,
            cin: g.cout,
            cout: g.cin,
            ph: pad_h,
            pw: pad_w,
            oh: g.h,
            ow: g.w,
            ..*g
        };
        forward(&flipped, dy, &flip_kernel(g, w), dx);
        return;
    }
    backward_data_col2im(g, dy, w, dx);
}

/// `[out, kh, kw, in]` to `[in, kh, kw, out]` with both spatial axes reversed.
fn flip_kernel(g: &Geom, w: &[f32]) -> Vec<f32> {
    let (kh, kw, cin, cout) = (g.kh, g.kw, g.cin, g.cout);
    let mut flipped = vec![0.0; w.len()];
    for (i, dst) in flipped.chunks_exact_mut(cout).enumerate() {
        // `dst` is flipped[ci, a, b, :]; it reads w[:, kh-1-a, kw-1-b, ci].
        let (ci, tap) = (i / (kh * kw), i % (kh * kw));
        let src_tap = (kh - 1 - tap / kw) * kw + (kw - 1 - tap % kw);
        for (co, d) in dst.iter_mut().enumerate() {
            *d = w[(co * kh * kw + src_tap) * cin + ci];
        }
    }
    flipped
}

/// General backward-data: per chunk of output rows, `dcols = dY × W` then scatter-add into
/// `dx`. Chunks whose input rows overlap never run at the same time: chunks are processed in
/// `phases` rounds, and within a round the chunks of an image are far enough apart that their
/// input-row ranges are disjoint, so each gets its own `&mut` slice of `dx`.
fn backward_data_col2im(g: &Geom, dy: &[f32], w: &[f32], dx: &mut [f32]) {
    let (k, cout) = (g.k(), g.cout);
    let line = g.w * g.cin;
    dx.fill(0.0);
    let rows_per_chunk = (chunk_pixels(g) / g.ow).clamp(1, g.oh);
    let chunks_per_image = g.oh.div_ceil(rows_per_chunk);
    // Chunk c reads input rows up to ((c+1)R - 1)s + d(k-1) - p; chunk c+G starts at
    // (c+G)Rs - p. They are disjoint when (G-1)Rs >= d(k-1) + 1 - s.
    let reach = (g.dh * (g.kh - 1) + 1).saturating_sub(g.sh);
    let phases = 1 + reach.div_ceil(rows_per_chunk * g.sh);
    let w_mat = MatRef::row_major(w, cout, k);
    for phase in 0..phases {
        let mut jobs: Vec<(usize, Range<usize>, &mut [f32])> = Vec::new();
        for (n, image) in dx.chunks_exact_mut(g.image_len()).enumerate() {
            let (mut rest, mut rest_start) = (image, 0);
            for c in (phase..chunks_per_image).step_by(phases) {
                let rows = c * rows_per_chunk..((c + 1) * rows_per_chunk).min(g.oh);
                let reads = input_rows(g, &rows);
                if reads.is_empty() {
                    continue;
                }
                let (_, tail) =
                    std::mem::take(&mut rest).split_at_mut((reads.start - rest_start) * line);
                let (mine, tail) = tail.split_at_mut(reads.len() * line);
                (rest, rest_start) = (tail, reads.end);
                jobs.push((n, rows, mine));
            }
        }
        jobs.into_par_iter().for_each(|(n, rows, dx_rows)| {
            let first = (n * g.oh + rows.start) * g.ow;
            let pixels = rows.len() * g.ow;
            let dy_mat = MatRef::row_major(&dy[first * cout..][..pixels * cout], pixels, cout);
            with_scratch(pixels * k, |dcols| {
                let dcols_mat = MatMut::row_major(dcols, pixels, k);
                sgemm(1.0, dy_mat, w_mat, 0.0, dcols_mat, Parallelism::None);
                col2im_add(g, dcols, rows, dx_rows);
            });
        });
    }
}

/// `dW[out, K] = Σ_P dYᵀ[out, P] × cols[P, K]`; `dw` is overwritten. The work is cut into a fixed
/// number of contiguous groups, each folded into a private partial sum in parallel; the partials
/// are added in order, so the result is the same on every run (a rayon `fold` + `reduce` groups
/// the work as threads steal it, which changes the rounding from run to run).
fn backward_filter(g: &Geom, x: &[f32], dy: &[f32], dw: &mut [f32]) {
    let implicit = !g.is_pointwise() && implicit_depth(g) >= IMPLICIT_MIN_DEPTH;
    let partials: Vec<Vec<f32>> = if implicit {
        ordered_partials(g.batch * g.oh, dw.len(), |row, acc| {
            filter_row_implicit(g, x, dy, row, acc)
        })
    } else {
        let chunk = chunk_pixels(g);
        let total = g.pixels();
        ordered_partials(total.div_ceil(chunk), dw.len(), |c, acc| {
            let pixels = c * chunk..((c + 1) * chunk).min(total);
            filter_im2col(g, x, dy, pixels, acc)
        })
    };
    match partials.into_iter().reduce(add_into) {
        Some(sum) => dw.copy_from_slice(&sum),
        None => dw.fill(0.0),
    }
}

/// Partial sums of `add(i, acc)` over `0..items`, one per contiguous group of items (at most four
/// groups per thread), computed in parallel and returned in group order.
fn ordered_partials(
    items: usize,
    len: usize,
    add: impl Fn(usize, &mut [f32]) + Sync,
) -> Vec<Vec<f32>> {
    if items == 0 {
        return Vec::new();
    }
    let per_group = items.div_ceil(4 * rayon::current_num_threads());
    (0..items.div_ceil(per_group))
        .into_par_iter()
        .map(|group| {
            let mut acc = vec![0.0f32; len];
            for i in group * per_group..((group + 1) * per_group).min(items) {
                add(i, &mut acc);
            }
            acc
        })
        .collect()
}

fn add_into(mut a: Vec<f32>, b: Vec<f32>) -> Vec<f32> {
    a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
    a
}

/// `acc[out, K] += dYᵀ[out, Pc] × cols[Pc, K]` for the output pixels `pixels`.
fn filter_im2col(g: &Geom, x: &[f32], dy: &[f32], pixels: Range<usize>, acc: &mut [f32]) {
    let (k, cout) = (g.k(), g.cout);
    let rows = pixels.len();
    let dy_t = MatRef::row_major(&dy[pixels.start * cout..][..rows * cout], rows, cout).t();
    let acc = MatMut::row_major(acc, cout, k);
    if g.is_pointwise() {
        let xs = MatRef::row_major(&x[pixels.start * k..][..rows * k], rows, k);
        sgemm(1.0, dy_t, xs, 1.0, acc, Parallelism::None);
    } else {
        with_scratch(rows * k, |cols| {
            im2col(g, x, pixels, cols);
            let cols = MatRef::row_major(cols, rows, k);
            sgemm(1.0, dy_t, cols, 1.0, acc, Parallelism::None);
        });
    }
}

/// One output row's share of the filter gradient, implicit GEMM:
/// `acc[out, (ky, run)] += dY[row, interior, :]ᵀ × slab[interior, run·in]` per kernel row and
/// tap run, plus the border pixels by im2col.
fn filter_row_implicit(g: &Geom, x: &[f32], dy: &[f32], row: usize, acc: &mut [f32]) {
    let (k, cout) = (g.k(), g.cout);
    let (n, oy) = (row / g.oh, row % g.oh);
    let first = row * g.ow;
    let inner = g.interior_cols();
    for edge in [0..inner.start, inner.end..g.ow] {
        if !edge.is_empty() {
            filter_im2col(g, x, dy, first + edge.start..first + edge.end, acc);
        }
    }
    if inner.is_empty() {
        return;
    }
    let dy_inner = &dy[(first + inner.start) * cout..(first + inner.end) * cout];
    let dy_t = MatRef::row_major(dy_inner, inner.len(), cout).t();
    for ky in 0..g.kh {
        let Some(iy) = g.in_row(oy, ky) else { continue };
        for kx0 in (0..g.kw).step_by(tap_run(g)) {
            // The block of dW for this tap run: [out, run·in] with row stride K.
            let dst = MatMut {
                data: &mut acc[(ky * g.kw + kx0) * g.cin..],
                rows: cout,
                cols: implicit_depth(g),
                rs: k,
                cs: 1,
            };
            let rhs = input_slab(g, x, n, iy, &inner, kx0);
            sgemm(1.0, dy_t, rhs, 1.0, dst, Parallelism::None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Memory;

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Calls `f(n, oy, ox, iy, ix, co, ky, kx)` for every (output pixel, tap) that reads inside
    /// the input: the direct definition of the convolution, shared by the f64 references.
    fn for_each_tap(p: &Conv2dParams, mut f: impl FnMut([usize; 8])) {
        let (oh, ow) = (p.out_h(), p.out_w());
        for n in 0..p.batch {
            for oy in 0..oh {
                for ox in 0..ow {
                    for ky in 0..p.kernel[0] {
                        for kx in 0..p.kernel[1] {
                            let iy = (oy * p.stride[0] + ky * p.dilation[0]) as isize
                                - p.padding[0] as isize;
                            let ix = (ox * p.stride[1] + kx * p.dilation[1]) as isize
                                - p.padding[1] as isize;
                            if iy < 0 || ix < 0 || iy >= p.in_h as isize || ix >= p.in_w as isize {
                                continue;
                            }
                            for co in 0..p.out_channels {
                                f([n, oy, ox, iy as usize, ix as usize, co, ky, kx]);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Flat indices of `y[n, oy, ox, co]`, `x[n, iy, ix, ci = 0]` and `w[co, ky, kx, ci = 0]`.
    fn indices(p: &Conv2dParams, t: [usize; 8]) -> (usize, usize, usize) {
        let [n, oy, ox, iy, ix, co, ky, kx] = t;
        let c = p.in_channels;
        let y = ((n * p.out_h() + oy) * p.out_w() + ox) * p.out_channels + co;
        let x = ((n * p.in_h + iy) * p.in_w + ix) * c;
        let w = ((co * p.kernel[0] + ky) * p.kernel[1] + kx) * c;
        (y, x, w)
    }

    fn ref_forward(p: &Conv2dParams, x: &[f64], w: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; p.output_shape().numel()];
        for_each_tap(p, |t| {
            let (yi, xi, wi) = indices(p, t);
            for ci in 0..p.in_channels {
                y[yi] += x[xi + ci] * w[wi + ci];
            }
        });
        y
    }

    fn ref_backward_data(p: &Conv2dParams, dy: &[f64], w: &[f64]) -> Vec<f64> {
        let mut dx = vec![0.0; p.input_shape().numel()];
        for_each_tap(p, |t| {
            let (yi, xi, wi) = indices(p, t);
            for ci in 0..p.in_channels {
                dx[xi + ci] += dy[yi] * w[wi + ci];
            }
        });
        dx
    }

    fn ref_backward_filter(p: &Conv2dParams, x: &[f64], dy: &[f64]) -> Vec<f64> {
        let mut dw = vec![0.0; p.weight_shape().numel()];
        for_each_tap(p, |t| {
            let (yi, xi, wi) = indices(p, t);
            for ci in 0..p.in_channels {
                dw[wi + ci] += dy[yi] * x[xi + ci];
            }
        });
        dw
    }

    fn to_f64(v: &[f32]) -> Vec<f64> {
        v.iter().map(|&v| v as f64).collect()
    }

    /// Tolerance for f32 kernels against f64 references: rel 1e-4, abs 1e-5.
    fn assert_close(what: &str, p: &Conv2dParams, got: &[f32], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{what} length, {p:?}");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let ok = (g as f64 - w).abs() <= 1e-5 + 1e-4 * w.abs();
            assert!(ok, "{what}[{i}] = {g}, want {w}, {p:?}");
        }
    }

    fn params(
        batch: usize,
        [in_h, in_w]: [usize; 2],
        [in_channels, out_channels]: [usize; 2],
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

    /// Awkward shapes: batch 1 and 2, odd sizes, 3 and 5 channels, every path of the kernels
    /// (pointwise, im2col, flipped-kernel and col2im backward-data, several chunks and phases).
    fn cases() -> Vec<Conv2dParams> {
        vec![
            params(1, [7, 5], [3, 5], [3, 3], [1, 1], [1, 1], [1, 1]),
            params(2, [7, 5], [5, 3], [3, 3], [2, 2], [1, 1], [1, 1]),
            params(2, [7, 5], [3, 5], [3, 3], [1, 1], [0, 0], [1, 1]),
            params(2, [7, 5], [3, 5], [3, 3], [1, 1], [1, 1], [2, 2]),
            params(1, [7, 5], [5, 3], [1, 1], [1, 1], [0, 0], [1, 1]),
            params(2, [7, 5], [3, 5], [1, 1], [2, 2], [0, 0], [1, 1]),
            params(1, [7, 5], [5, 3], [1, 1], [1, 1], [1, 1], [1, 1]),
            params(2, [7, 5], [3, 5], [2, 2], [2, 2], [0, 0], [1, 1]),
            params(1, [8, 6], [5, 3], [2, 2], [2, 2], [0, 0], [1, 1]),
            params(2, [7, 5], [5, 3], [3, 2], [2, 1], [1, 0], [2, 1]),
            params(1, [33, 17], [5, 7], [3, 3], [1, 1], [1, 1], [1, 1]),
            params(1, [33, 17], [5, 7], [3, 3], [2, 2], [1, 1], [1, 1]),
            params(2, [33, 17], [3, 5], [3, 3], [2, 1], [2, 1], [2, 1]),
            // Wide enough for the implicit GEMM (kw·in >= 32), forward and flipped backward.
            params(1, [7, 5], [11, 13], [3, 3], [1, 1], [1, 1], [1, 1]),
            params(2, [9, 7], [13, 11], [3, 3], [2, 1], [1, 2], [1, 1]),
            params(1, [7, 9], [33, 3], [2, 3], [1, 2], [0, 1], [2, 2]),
            // Rows entirely in the vertical padding; no interior columns at all.
            params(1, [5, 5], [16, 16], [3, 3], [1, 1], [3, 3], [1, 1]),
            params(1, [4, 2], [12, 12], [3, 3], [1, 1], [1, 1], [1, 1]),
        ]
    }

    /// Runs the three kernels on random data for `p`: `(x, w, dy, y, dx, dw)`.
    #[allow(clippy::type_complexity)]
    fn run_all(p: &Conv2dParams) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let cpu = CpuBackend::new();
        let x = values(p.input_shape().numel(), 1);
        let w = values(p.weight_shape().numel(), 2);
        let dy = values(p.output_shape().numel(), 3);
        let (xb, wb, dyb) = (
            CpuBuffer(x.clone()),
            CpuBuffer(w.clone()),
            CpuBuffer(dy.clone()),
        );
        // Garbage in the outputs checks that every kernel overwrites.
        let mut y = CpuBuffer(vec![f32::NAN; dy.len()]);
        let mut dx = CpuBuffer(vec![f32::NAN; x.len()]);
        let mut dw = CpuBuffer(vec![f32::NAN; w.len()]);
        cpu.conv2d_forward(p, &xb, &wb, &mut y).unwrap();
        cpu.conv2d_backward_data(p, &dyb, &wb, &mut dx).unwrap();
        cpu.conv2d_backward_filter(p, &xb, &dyb, &mut dw).unwrap();
        let (y, dx, dw) = (
            cpu.download(&y).unwrap(),
            cpu.download(&dx).unwrap(),
            cpu.download(&dw).unwrap(),
        );
        (x, w, dy, y, dx, dw)
    }

    #[test]
    fn conv_matches_f64_reference() {
        for p in cases() {
            let (x, w, dy, y, dx, dw) = run_all(&p);
            let (x, w, dy) = (to_f64(&x), to_f64(&w), to_f64(&dy));
            assert_close("forward", &p, &y, &ref_forward(&p, &x, &w));
            assert_close("backward_data", &p, &dx, &ref_backward_data(&p, &dy, &w));
            assert_close(
                "backward_filter",
                &p,
                &dw,
                &ref_backward_filter(&p, &x, &dy),
            );
        }
    }

    /// Central differences of `L = Σ conv(x, w) · dy` (f64 reference) against the f32 kernels.
    #[test]
    fn conv_gradients_match_finite_differences() {
        let h = 1e-3;
        for p in cases()
            .into_iter()
            .filter(|p| p.input_shape().numel() < 1000)
        {
            let (x, w, dy, _, dx, dw) = run_all(&p);
            let (x, w, dy) = (to_f64(&x), to_f64(&w), to_f64(&dy));
            let loss = |x: &[f64], w: &[f64]| -> f64 {
                ref_forward(&p, x, w)
                    .iter()
                    .zip(&dy)
                    .map(|(y, r)| y * r)
                    .sum()
            };
            let numeric = |v: &[f64], is_x: bool| -> Vec<f64> {
                (0..v.len())
                    .map(|i| {
                        let (mut plus, mut minus) = (v.to_vec(), v.to_vec());
                        plus[i] += h;
                        minus[i] -= h;
                        let (lp, lm) = if is_x {
                            (loss(&plus, &w), loss(&minus, &w))
                        } else {
                            (loss(&x, &plus), loss(&x, &minus))
                        };
                        (lp - lm) / (2.0 * h)
                    })
                    .collect()
            };
            assert_close("backward_data vs fd", &p, &dx, &numeric(&x, true));
            assert_close("backward_filter vs fd", &p, &dw, &numeric(&w, false));
        }
    }

    #[test]
    fn conv_rejects_bad_buffers() {
        let cpu = CpuBackend::new();
        let p = params(1, [5, 5], [2, 3], [3, 3], [1, 1], [1, 1], [1, 1]);
        let x = CpuBuffer(vec![0.0; 50]);
        let w = CpuBuffer(vec![0.0; 54]);
        let mut y = CpuBuffer(vec![0.0; 75]);
        assert!(cpu.conv2d_forward(&p, &x, &w, &mut y).is_ok());
        let short = CpuBuffer(vec![0.0; 49]);
        assert!(cpu.conv2d_forward(&p, &short, &w, &mut y).is_err());
        let mut dx = CpuBuffer(vec![0.0; 49]);
        assert!(cpu.conv2d_backward_data(&p, &y, &w, &mut dx).is_err());
        let mut dw = CpuBuffer(vec![0.0; 53]);
        assert!(cpu.conv2d_backward_filter(&p, &x, &y, &mut dw).is_err());
        let zero_stride = Conv2dParams {
            stride: [0, 1],
            ..p
        };
        assert!(cpu.conv2d_forward(&zero_stride, &x, &w, &mut y).is_err());
        let too_big = Conv2dParams {
            kernel: [9, 9],
            ..p
        };
        assert!(cpu.conv2d_forward(&too_big, &x, &w, &mut y).is_err());
    }
}
