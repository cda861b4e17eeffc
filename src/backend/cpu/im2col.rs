//! im2col / col2im for NHWC convolution: the bridge between a convolution and a GEMM.
//!
//! The column matrix of a convolution has one row per output pixel and `K = kh·kw·cin` columns
//! ordered `(ky, kx, ci)`, the same order as a weight row of `[out, kh, kw, in]`, so a
//! convolution is `Y[P, out] = cols[P, K] × Wᵀ[K, out]`.

use std::ops::Range;

use crate::backend::Conv2dParams;

/// The sizes of a convolution, unpacked once so the inner loops read plain fields.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geom {
    pub batch: usize,
    pub h: usize,
    pub w: usize,
    pub cin: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
    pub oh: usize,
    pub ow: usize,
}

impl Geom {
    /// The geometry of a validated `p`.
    pub fn new(p: &Conv2dParams) -> Self {
        Geom {
            batch: p.batch,
            h: p.in_h,
            w: p.in_w,
            cin: p.in_channels,
            cout: p.out_channels,
            kh: p.kernel[0],
            kw: p.kernel[1],
            sh: p.stride[0],
            sw: p.stride[1],
            ph: p.padding[0],
            pw: p.padding[1],
            dh: p.dilation[0],
            dw: p.dilation[1],
            oh: p.out_h(),
            ow: p.out_w(),
        }
    }

    /// Columns of the column matrix: `kh·kw·cin`.
    pub fn k(&self) -> usize {
        self.kh * self.kw * self.cin
    }

    /// Output pixels over the whole batch: `batch·oh·ow`.
    pub fn pixels(&self) -> usize {
        self.batch * self.oh * self.ow
    }

    /// Elements of one input image: `h·w·cin`.
    pub fn image_len(&self) -> usize {
        self.h * self.w * self.cin
    }

    /// A 1×1, stride-1, unpadded convolution: the input already is the column matrix.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.ph == 0 && self.pw == 0
    }

    /// Output columns whose whole window row lies inside the input (no horizontal padding
    /// read): `[ceil(pw / sw), ...]`, empty when there are none.
    pub fn interior_cols(&self) -> Range<usize> {
        let lo = self.pw.div_ceil(self.sw).min(self.ow);
        // The last tap of column ox is ox·sw + dw·(kw-1) - pw, which must be below w.
        let hi = (self.w + self.pw)
            .checked_sub(self.dw * (self.kw - 1) + 1)
            .map_or(0, |last| last / self.sw + 1)
            .min(self.ow);
        lo..hi.max(lo)
    }

    /// Input row read by output row `oy` at kernel row `ky`, if inside the image.
    #[inline]
    pub fn in_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.sh + ky * self.dh)
            .checked_sub(self.ph)
            .filter(|&iy| iy < self.h)
    }

    /// Input column read by output column `ox` at kernel column `kx`, if inside the image.
    #[inline]
    pub fn in_col(&self, ox: usize, kx: usize) -> Option<usize> {
        (ox * self.sw + kx * self.dw)
            .checked_sub(self.pw)
            .filter(|&ix| ix < self.w)
    }
}

/// Fills `cols` (`pixels.len() × K`, row-major) with the column-matrix rows of the output
/// pixels `pixels` (flattened over `batch·oh·ow`). `x` is the whole NHWC input.
pub(super) fn im2col(g: &Geom, x: &[f32], pixels: Range<usize>, cols: &mut [f32]) {
    let (k, c) = (g.k(), g.cin);
    let per_image = g.oh * g.ow;
    let (mut n, rem) = (pixels.start / per_image, pixels.start % per_image);
    let (mut oy, mut ox) = (rem / g.ow, rem % g.ow);
    // With unit dilation, one kernel row's taps are `kw·cin` contiguous input values whenever
    // the whole window row is inside the image: copy them in one go.
    let row_span = g.kw * c;
    for row in cols.chunks_exact_mut(k).take(pixels.len()) {
        let img = &x[n * g.image_len()..][..g.image_len()];
        let whole_row = (ox * g.sw)
            .checked_sub(g.pw)
            .filter(|&x0| g.dw == 1 && x0 + g.kw <= g.w);
        for (ky, dst_row) in row.chunks_exact_mut(row_span).enumerate() {
            let Some(iy) = g.in_row(oy, ky) else {
                dst_row.fill(0.0);
                continue;
            };
            let line = &img[iy * g.w * c..][..g.w * c];
            if let Some(x0) = whole_row {
                dst_row.copy_from_slice(&line[x0 * c..][..row_span]);
                continue;
            }
            for (kx, dst) in dst_row.chunks_exact_mut(c).enumerate() {
                match g.in_col(ox, kx) {
                    Some(ix) => dst.copy_from_slice(&line[ix * c..][..c]),
                    None => dst.fill(0.0),
                }
            }
        }
        ox += 1;
        if ox == g.ow {
            ox = 0;
            oy += 1;
            if oy == g.oh {
                oy = 0;
                n += 1;
            }
        }
    }
}

/// The input rows `[lo, hi)` (clamped to the image) that output rows `rows` read.
pub(super) fn input_rows(g: &Geom, rows: &Range<usize>) -> Range<usize> {
    let lo = (rows.start * g.sh).saturating_sub(g.ph).min(g.h);
    let hi = ((rows.end - 1) * g.sh + g.dh * (g.kh - 1) + 1)
        .saturating_sub(g.ph)
        .min(g.h);
    lo..hi.max(lo)
}

/// Scatter-adds the column-matrix gradient `dcols` of the output rows `rows` of one image into
/// `dx`, which holds that image's input rows `input_rows(g, &rows)` (NHWC, `w·cin` per row).
pub(super) fn col2im_add(g: &Geom, dcols: &[f32], rows: Range<usize>, dx: &mut [f32]) {
    let (k, c) = (g.k(), g.cin);
    let line_len = g.w * c;
    let first = input_rows(g, &rows).start;
    let mut pixel_rows = dcols.chunks_exact(k);
    for oy in rows {
        for ox in 0..g.ow {
            let Some(src_row) = pixel_rows.next() else {
                return;
            };
            for (ky, src_taps) in src_row.chunks_exact(g.kw * c).enumerate() {
                let Some(iy) = g.in_row(oy, ky) else { continue };
                let line = &mut dx[(iy - first) * line_len..][..line_len];
                for (kx, src) in src_taps.chunks_exact(c).enumerate() {
                    if let Some(ix) = g.in_col(ox, kx) {
                        for (d, s) in line[ix * c..][..c].iter_mut().zip(src) {
                            *d += s;
                        }
                    }
                }
            }
        }
    }
}
