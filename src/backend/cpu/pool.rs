//! 2-D max pooling over NHWC tensors.
//!
//! Padding counts as -inf, so only the part of a window inside the input is visited; the window
//! is scanned row-major and a value replaces the running maximum only when strictly greater (or
//! NaN), so ties go to the first maximum, as in PyTorch. The backward pass recomputes the argmax
//! of every window, then *gathers* the gradient into each input pixel from the windows that
//! chose it, so the work parallelises over input rows without races even when windows overlap.

use std::ops::Range;

use crate::backend::cpu::elementwise::for_each_chunk_mut;
use crate::backend::cpu::{check_len, CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

/// The input positions `[start, end)` of output position `o` along one axis, clipped to the input.
#[inline]
fn window(o: usize, kernel: usize, stride: usize, pad: usize, input: usize) -> Range<usize> {
    let start = (o * stride).saturating_sub(pad);
    let end = (o * stride + kernel).saturating_sub(pad).min(input);
    start..end
}

/// The output positions whose windows contain input position `i` along one axis.
#[inline]
fn windows_containing(
    i: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    out: usize,
) -> Range<usize> {
    // o·s − pad ≤ i < o·s − pad + kernel
    let lo = (i + pad + 1).saturating_sub(kernel).div_ceil(stride);
    let hi = ((i + pad) / stride + 1).min(out);
    lo..hi.max(lo)
}

/// Validates `p` and the buffer lengths; returns `(input, output)` element counts.
fn check(op: &'static str, p: &Pool2dParams, x: &CpuBuffer) -> Result<(usize, usize)> {
    p.validate(op)?;
    let numel = |s: crate::tensor::Shape| {
        s.dims()
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d))
            .ok_or_else(|| Error::invalid(op, format!("{p:?} overflows")))
    };
    let (n_in, n_out) = (numel(p.input_shape())?, numel(p.output_shape())?);
    check_len(op, x, n_in)?;
    Ok((n_in, n_out))
}

/// Runs `visit(out_pixel, in_pixel)` for each output pixel of output row `(n, oh)` and each input
/// pixel of its window, row-major; pixels are indices into the image (`h · in_w + w`).
#[inline(always)]
fn scan_row(p: &Pool2dParams, oh: usize, mut visit: impl FnMut(usize, usize)) {
    let hs = window(oh, p.kernel[0], p.stride[0], p.padding[0], p.in_h);
    for ow in 0..p.out_w() {
        let ws = window(ow, p.kernel[1], p.stride[1], p.padding[1], p.in_w);
        for ih in hs.clone() {
            for iw in ws.clone() {
                visit(ow, ih * p.in_w + iw);
            }
        }
    }
}

impl PoolOps for CpuBackend {
    fn max_pool2d_forward(&self, p: &Pool2dParams, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        const OP: &str = "max_pool2d_forward";
        let (_, n_out) = check(OP, p, x)?;
        check_len(OP, y, n_out)?;
        let (c, oh_n) = (p.channels, p.out_h());
        let image = p.in_h * p.in_w * c;
        let x = &x.0[..];
        // One task per output row (n, oh).
        for_each_chunk_mut(&mut y.0, p.out_w() * c, |row, yr| {
            let (n, oh) = (row / oh_n, row % oh_n);
            let xi = &x[n * image..(n + 1) * image];
            yr.fill(f32::NEG_INFINITY);
            scan_row(p, oh, |ow, pix| {
                let (out, inp) = (&mut yr[ow * c..(ow + 1) * c], &xi[pix * c..(pix + 1) * c]);
                for (m, &v) in out.iter_mut().zip(inp) {
                    if v > *m || v.is_nan() {
                        *m = v;
                    }
                }
            });
        });
        Ok(())
    }

    fn max_pool2d_backward(
        &self,
        p: &Pool2dParams,
        x: &CpuBuffer,
        y: &CpuBuffer,
        dy: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        const OP: &str = "max_pool2d_backward";
        let (n_in, n_out) = check(OP, p, x)?;
        check_len(OP, y, n_out)?;
        check_len(OP, dy, n_out)?;
        check_len(OP, dx, n_in)?;
        if u32::try_from(p.in_h * p.in_w).is_err() {
            return Err(Error::invalid(
                OP,
                "images over 2^32 pixels are not supported",
            ));
        }
        let (c, oh_n, ow_n) = (p.channels, p.out_h(), p.out_w());
        let image = p.in_h * p.in_w * c;
        let x = &x.0[..];

        // Pass 1: the argmax pixel of every output element, per output row.
        let mut arg = vec![0u32; n_out];
        for_each_chunk_mut(&mut arg, ow_n * c, |row, ar| {
            let (n, oh) = (row / oh_n, row % oh_n);
            let xi = &x[n * image..(n + 1) * image];
            let mut maxv = vec![f32::NEG_INFINITY; ow_n * c];
            let hs = window(oh, p.kernel[0], p.stride[0], p.padding[0], p.in_h);
            for ow in 0..ow_n {
                let ws = window(ow, p.kernel[1], p.stride[1], p.padding[1], p.in_w);
                let (m, a) = (
                    &mut maxv[ow * c..(ow + 1) * c],
                    &mut ar[ow * c..(ow + 1) * c],
                );
                // The first pixel inside the input wins when every value is -inf.
                a.fill((hs.start * p.in_w + ws.start) as u32);
                for ih in hs.clone() {
                    for iw in ws.clone() {
                        let pix = ih * p.in_w + iw;
                        let v = &xi[pix * c..(pix + 1) * c];
                        for ((m, a), &v) in m.iter_mut().zip(a.iter_mut()).zip(v) {
                            if v > *m || v.is_nan() {
                                *m = v;
                                *a = pix as u32;
                            }
                        }
                    }
                }
            }
        });

        // Pass 2: each input row gathers from the windows that picked its pixels.
        let dy = &dy.0[..];
        let in_w = p.in_w;
        for_each_chunk_mut(&mut dx.0, in_w * c, |row, dr| {
            let (n, ih) = (row / p.in_h, row % p.in_h);
            dr.fill(0.0);
            let ohs = windows_containing(ih, p.kernel[0], p.stride[0], p.padding[0], oh_n);
            for iw in 0..in_w {
                let pix = (ih * in_w + iw) as u32;
                let d = &mut dr[iw * c..(iw + 1) * c];
                let ows = windows_containing(iw, p.kernel[1], p.stride[1], p.padding[1], ow_n);
                for oh in ohs.clone() {
                    for ow in ows.clone() {
                        let o = ((n * oh_n + oh) * ow_n + ow) * c;
                        for ((d, &a), &g) in d.iter_mut().zip(&arg[o..o + c]).zip(&dy[o..o + c]) {
                            if a == pix {
                                *d += g;
                            }
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

    fn params(h: usize, w: usize, c: usize, k: usize, s: usize, pad: usize) -> Pool2dParams {
        Pool2dParams {
            batch: 1,
            in_h: h,
            in_w: w,
            channels: c,
            kernel: [k, k],
            stride: [s, s],
            padding: [pad, pad],
        }
    }

    #[test]
    fn ties_send_the_gradient_to_the_first_maximum() {
        let be = CpuBackend::new();
        // 2×4 single channel, 2×2 windows, stride 2: window 0 is all 5s, window 1 has 7 twice.
        let p = params(2, 4, 1, 2, 2, 0);
        let x = CpuBuffer(vec![5.0, 5.0, 1.0, 7.0, 5.0, 5.0, 7.0, 2.0]);
        let mut y = CpuBuffer(vec![0.0; 2]);
        be.max_pool2d_forward(&p, &x, &mut y).unwrap();
        assert_eq!(y.0, vec![5.0, 7.0]);
        let dy = CpuBuffer(vec![1.0, 2.0]);
        let mut dx = CpuBuffer(vec![9.0; 8]);
        be.max_pool2d_backward(&p, &x, &y, &dy, &mut dx).unwrap();
        assert_eq!(dx.0, vec![1.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn padded_overlapping_windows_accumulate() {
        let be = CpuBackend::new();
        // 3×3 kernel, stride 1, padding 1 on a 3×3 image of two channels; channel 1 = −channel 0.
        let p = params(3, 3, 2, 3, 1, 1);
        let v = [1.0, 2.0, 3.0, 4.0, 9.0, 6.0, -7.0, 8.0, -5.0];
        let x = CpuBuffer(v.iter().flat_map(|&a| [a, -a]).collect());
        let mut y = CpuBuffer(vec![0.0; 18]);
        be.max_pool2d_forward(&p, &x, &mut y).unwrap();
        let ch0: Vec<f32> = y.0.iter().step_by(2).copied().collect();
        assert_eq!(ch0, vec![9.0; 9]);
        let ch1: Vec<f32> = y.0.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(ch1, vec![-1.0, -1.0, -2.0, 7.0, 7.0, 5.0, 7.0, 7.0, 5.0]);
        let dy = CpuBuffer(vec![1.0; 18]);
        let mut dx = CpuBuffer(vec![0.0; 18]);
        be.max_pool2d_backward(&p, &x, &y, &dy, &mut dx).unwrap();
        // Channel 0: every window picks the 9. Channel 1: −1 ×2, −2 ×1, 7 ×4, 5 ×2 windows.
        let want0 = [0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0];
        let want1 = [2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 2.0];
        let want: Vec<f32> = want0
            .iter()
            .zip(&want1)
            .flat_map(|(&a, &b)| [a, b])
            .collect();
        assert_eq!(dx.0, want);
    }
}
