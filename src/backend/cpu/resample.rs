//! Bilinear resampling of NHWC tensors, with PyTorch's `upsample_bilinear2d` source-index rules.
//!
//! The two source taps and weights of every output row and column are computed once per call in
//! f32, as PyTorch does, so results match it bit for bit up to the order of the final sums. The
//! backward pass is a gather: each input row collects the output gradients that sampled it, so it
//! parallelises over input rows (even for a batch of one) without races.

use crate::backend::cpu::elementwise::for_each_chunk_mut;
use crate::backend::cpu::{check_len, CpuBackend, CpuBuffer};
use crate::backend::plan::{bilinear_taps as taps, BilinearTap as Taps};
use crate::backend::*;
use crate::error::{Error, Result};

/// For every input position, the `(output position, weight)` pairs that read it.
fn readers(input: usize, taps: &[Taps]) -> Vec<Vec<(usize, f32)>> {
    let mut r = vec![Vec::new(); input];
    for (o, t) in taps.iter().enumerate() {
        r[t.i0].push((o, t.l0));
        r[t.i1].push((o, t.l1));
    }
    r
}

/// Validates `p` and returns the `(input, output)` element counts.
fn check(op: &'static str, p: &UpsampleParams) -> Result<(usize, usize)> {
    p.validate(op)?;
    let numel = |dims: [usize; 4]| {
        dims.iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::invalid(op, format!("{p:?} overflows")))
    };
    Ok((
        numel([p.batch, p.in_h, p.in_w, p.channels])?,
        numel([p.batch, p.out_h, p.out_w, p.channels])?,
    ))
}

impl ResampleOps for CpuBackend {
    fn upsample_bilinear2d_forward(
        &self,
        p: &UpsampleParams,
        x: &CpuBuffer,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        const OP: &str = "upsample_bilinear2d_forward";
        let (n_in, n_out) = check(OP, p)?;
        check_len(OP, x, n_in)?;
        check_len(OP, y, n_out)?;
        let th = taps(p.in_h, p.out_h, p.align_corners);
        let tw = taps(p.in_w, p.out_w, p.align_corners);
        let c = p.channels;
        let (row_in, image) = (p.in_w * c, p.in_h * p.in_w * c);
        let x = &x.0[..];
        // One task per output row (n, oh).
        for_each_chunk_mut(&mut y.0, p.out_w * c, |row, yr| {
            let (n, h) = (row / p.out_h, th[row % p.out_h]);
            let r0 = &x[n * image + h.i0 * row_in..][..row_in];
            let r1 = &x[n * image + h.i1 * row_in..][..row_in];
            for (yp, w) in yr.chunks_exact_mut(c).zip(&tw) {
                let (a0, a1) = (&r0[w.i0 * c..][..c], &r0[w.i1 * c..][..c]);
                let (b0, b1) = (&r1[w.i0 * c..][..c], &r1[w.i1 * c..][..c]);
                for k in 0..c {
                    yp[k] =
                        h.l0 * (w.l0 * a0[k] + w.l1 * a1[k]) + h.l1 * (w.l0 * b0[k] + w.l1 * b1[k]);
                }
            }
        });
        Ok(())
    }

    fn upsample_bilinear2d_backward(
        &self,
        p: &UpsampleParams,
        dy: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        const OP: &str = "upsample_bilinear2d_backward";
        let (n_in, n_out) = check(OP, p)?;
        check_len(OP, dy, n_out)?;
        check_len(OP, dx, n_in)?;
        let rh = readers(p.in_h, &taps(p.in_h, p.out_h, p.align_corners));
        let rw = readers(p.in_w, &taps(p.in_w, p.out_w, p.align_corners));
        let c = p.channels;
        let (row_out, image_out) = (p.out_w * c, p.out_h * p.out_w * c);
        let dy = &dy.0[..];
        // One task per input row (n, ih): dx[ih, iw] = Σ weight_h · weight_w · dy[oh, ow].
        for_each_chunk_mut(&mut dx.0, p.in_w * c, |row, dr| {
            let (n, ih) = (row / p.in_h, row % p.in_h);
            dr.fill(0.0);
            for &(oh, wh) in &rh[ih] {
                let g = &dy[n * image_out + oh * row_out..][..row_out];
                for (d, cols) in dr.chunks_exact_mut(c).zip(&rw) {
                    for &(ow, ww) in cols {
                        let w = wh * ww;
                        for (d, &g) in d.iter_mut().zip(&g[ow * c..][..c]) {
                            *d += w * g;
                        }
                    }
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(
        in_hw: [usize; 2],
        out_hw: [usize; 2],
        c: usize,
        align_corners: bool,
    ) -> UpsampleParams {
        UpsampleParams {
            batch: 2,
            in_h: in_hw[0],
            in_w: in_hw[1],
            channels: c,
            out_h: out_hw[0],
            out_w: out_hw[1],
            align_corners,
        }
    }

    #[test]
    fn align_corners_2x2_to_3x3() {
        let be = CpuBackend::new();
        let p = params([2, 2], [3, 3], 1, true);
        // Batch of two: the second image is the first plus 10.
        let x = CpuBuffer(vec![1.0, 2.0, 3.0, 4.0, 11.0, 12.0, 13.0, 14.0]);
        let mut y = CpuBuffer(vec![0.0; 18]);
        be.upsample_bilinear2d_forward(&p, &x, &mut y).unwrap();
        let first = [1.0, 1.5, 2.0, 2.0, 2.5, 3.0, 3.0, 3.5, 4.0];
        assert_eq!(&y.0[..9], &first);
        let second: Vec<f32> = first.iter().map(|v| v + 10.0).collect();
        assert_eq!(&y.0[9..], &second[..]);
    }

    #[test]
    fn half_pixel_taps_and_backward_is_the_adjoint() {
        // align_corners = false, 2 → 4: src = (o + 0.5)/2 − 0.5 = [-0.25→0, 0.25, 0.75, 1.25];
        // past the edge both taps are the last pixel, with PyTorch's unclamped weight.
        let t = taps(2, 4, false);
        let got: Vec<(usize, usize, f32)> = t.iter().map(|t| (t.i0, t.i1, t.l1)).collect();
        assert_eq!(
            got,
            vec![(0, 1, 0.0), (0, 1, 0.25), (0, 1, 0.75), (1, 1, 0.25)]
        );

        // <up(x), dy> = <x, up_backward(dy)> for both modes and down-sampling too.
        let be = CpuBackend::new();
        for (inp, out, ac) in [
            ([3, 5], [7, 4], false),
            ([4, 3], [9, 8], true),
            ([5, 6], [2, 3], false),
        ] {
            let p = params(inp, out, 3, ac);
            let n_in = 2 * inp[0] * inp[1] * 3;
            let n_out = 2 * out[0] * out[1] * 3;
            let x = CpuBuffer((0..n_in).map(|i| ((i * 31) % 17) as f32 - 8.0).collect());
            let dy = CpuBuffer((0..n_out).map(|i| ((i * 13) % 11) as f32 - 5.0).collect());
            let (mut y, mut dx) = (CpuBuffer(vec![0.0; n_out]), CpuBuffer(vec![7.0; n_in]));
            be.upsample_bilinear2d_forward(&p, &x, &mut y).unwrap();
            be.upsample_bilinear2d_backward(&p, &dy, &mut dx).unwrap();
            let lhs: f64 = y.0.iter().zip(&dy.0).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.0.iter().zip(&dx.0).map(|(a, b)| (a * b) as f64).sum();
            assert!(
                (lhs - rhs).abs() < 1e-3 * lhs.abs().max(1.0),
                "{lhs} vs {rhs}"
            );
        }
    }
}
