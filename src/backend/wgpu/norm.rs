//! Batch normalisation (`shaders/norm.wgsl`): per-channel sums as two-stage column reductions,
//! then an elementwise pass.
//!
//! Channels are innermost (NHWC), so one workgroup per channel would read with a stride of a row
//! and, with few channels, leave most of a GPU idle. Instead the rows are cut into slabs
//! ([`slabs`]); a workgroup sums a tile of channels over one slab into a scratch buffer of
//! partials, and a finishing kernel adds each channel's slabs in a fixed order, so the result is
//! the same on every run and whatever chunks the window machinery dispatches the slabs in.

use std::ops::Range;

use super::matmul::TARGET_GROUPS;
use super::window::{Arg, Work};
use super::{check_len, product, shader, word, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

const SHADER: Shader = shader!("norm.wgsl");

/// Channels a workgroup of the partial kernels sums, one per lane (`TILE` in the shader).
const TILE: usize = 32;

/// The fewest rows worth a slab of their own: each of a workgroup's 8 row lanes adds 32 values
/// or more before the slab's partials are written and read back.
const MIN_SLAB: usize = 256;

/// How the rows of a column reduction are cut: `count` slabs of `rows` rows (the last shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slabs {
    rows: usize,
    count: usize,
}

/// Slabs for `rows × channels`: enough for [`TARGET_GROUPS`] workgroups of [`TILE`] channels,
/// none shorter than [`MIN_SLAB`] rows (unless there are fewer rows), and none longer than
/// `max_rows`, what one binding holds.
fn slabs(rows: usize, channels: usize, max_rows: usize) -> Slabs {
    let tiles = channels.div_ceil(TILE).max(1);
    let want = (TARGET_GROUPS / tiles).min(rows / MIN_SLAB).max(1);
    let slab_rows = rows.div_ceil(want).clamp(1, max_rows.max(1));
    Slabs {
        rows: slab_rows,
        count: rows.div_ceil(slab_rows),
    }
}

fn words(op: &'static str, p: &BatchNormParams) -> Result<Vec<u32>> {
    Ok(vec![
        word(op, p.rows)?,
        word(op, p.channels)?,
        p.eps.to_bits(),
        p.momentum.to_bits(),
        p.relu as u32,
    ])
}

impl WgpuBackend {
    /// Records the partial kernel `entry` over the slabs of `p`'s rows, reading the rows ×
    /// channels tensors `tensors` (windowed) and the per-channel vectors `per_channel`; returns
    /// the partials (a pair per channel and slab) and the parameter words of the finishing
    /// kernel, which sums them with one workgroup per channel.
    fn partial_sums(
        &self,
        op: &'static str,
        entry: &'static str,
        p: &BatchNormParams,
        tensors: &[&::wgpu::Buffer],
        per_channel: &[&::wgpu::Buffer],
    ) -> Result<(::wgpu::Buffer, Vec<u32>)> {
        let c = p.channels;
        // A slab's window starts up to one alignment before its first row.
        let room = self.max_binding().saturating_sub(self.ctx.limits.align) / 4;
        let s = slabs(p.rows, c, usize::try_from(room).unwrap_or(usize::MAX) / c);
        let partial = self.scratch(op, product(op, &[2, c, s.count])?)?;
        let mut w = words(op, p)?;
        w.extend([word(op, s.rows)?, word(op, s.count)?]);
        let rows = p.rows;
        let span =
            move |u: Range<usize>| (u.start * s.rows).min(rows) * c..(u.end * s.rows).min(rows) * c;
        let mut inputs: Vec<Arg<'_>> = tensors.iter().map(|&t| Arg::map(t, &span)).collect();
        inputs.extend(per_channel.iter().map(|&v| Arg::whole(v)));
        let tiles = c.div_ceil(TILE);
        self.launch(
            op,
            Kernel::new(SHADER, entry),
            &inputs,
            &[Arg::whole(&partial)],
            &w,
            &Work::new("slab", s.count, move |u| {
                let groups = tiles * u.len();
                (u, groups)
            }),
        )?;
        Ok((partial, w))
    }

    /// Records `bn_apply`: `y = (x − mean)·γ·invstd + β` (ReLU'd when `p.relu`), with `[mean,
    /// spread]` the saved mean and invstd, or with `inference` the running mean and variance.
    #[allow(clippy::too_many_arguments)]
    fn normalise(
        &self,
        op: &'static str,
        p: &BatchNormParams,
        x: &WgpuBuffer,
        gamma: &WgpuBuffer,
        beta: &WgpuBuffer,
        [mean, spread]: [&WgpuBuffer; 2],
        inference: bool,
        y: &mut WgpuBuffer,
    ) -> Result<()> {
        let constants = [("INFERENCE", if inference { 1.0 } else { 0.0 })];
        self.launch(
            op,
            Kernel::with(SHADER, "bn_apply", &constants),
            &[
                Arg::per(&x.buf, 1),
                Arg::whole(&gamma.buf),
                Arg::whole(&beta.buf),
                Arg::whole(&mean.buf),
                Arg::whole(&spread.buf),
            ],
            &[Arg::per(&y.buf, 1)],
            &words(op, p)?,
            &Work::threads("element", p.rows * p.channels, 1),
        )
    }
}

impl NormOps for WgpuBackend {
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_train(
        &self,
        p: &BatchNormParams,
        x: &WgpuBuffer,
        gamma: &WgpuBuffer,
        beta: &WgpuBuffer,
        y: &mut WgpuBuffer,
        save_mean: &mut WgpuBuffer,
        save_invstd: &mut WgpuBuffer,
        running_mean: &mut WgpuBuffer,
        running_var: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm_train";
        p.validate(OP)?;
        if p.rows < 2 {
            return Err(Error::invalid(
                OP,
                "expected more than one value per channel when training",
            ));
        }
        let len = product(OP, &[p.rows, p.channels])?;
        check_len(OP, x, len)?;
        check_len(OP, y, len)?;
        for buf in [
            gamma,
            beta,
            &*save_mean,
            &*save_invstd,
            &*running_mean,
            &*running_var,
        ] {
            check_len(OP, buf, p.channels)?;
        }
        // Every slab shifts by the channel's first value, copied out of x.
        let shift = self.scratch(OP, p.channels)?;
        self.copy_raw(&x.buf, &shift, p.channels);
        let (partial, w) = self.partial_sums(OP, "bn_partial", p, &[&x.buf], &[&shift])?;
        self.launch(
            OP,
            Kernel::new(SHADER, "bn_finish"),
            &[Arg::whole(&partial), Arg::whole(&shift)],
            &[
                Arg::whole(&save_mean.buf),
                Arg::whole(&save_invstd.buf),
                Arg::whole(&running_mean.buf),
                Arg::whole(&running_var.buf),
            ],
            &w,
            &Work::groups("call", 1, p.channels),
        )?;
        self.normalise(OP, p, x, gamma, beta, [save_mean, save_invstd], false, y)
    }

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_apply(
        &self,
        p: &BatchNormParams,
        x: &WgpuBuffer,
        gamma: &WgpuBuffer,
        beta: &WgpuBuffer,
        save_mean: &WgpuBuffer,
        save_invstd: &WgpuBuffer,
        y: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm_apply";
        p.validate(OP)?;
        let len = product(OP, &[p.rows, p.channels])?;
        check_len(OP, x, len)?;
        check_len(OP, y, len)?;
        for buf in [gamma, beta, save_mean, save_invstd] {
            check_len(OP, buf, p.channels)?;
        }
        self.normalise(OP, p, x, gamma, beta, [save_mean, save_invstd], false, y)
    }

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_inference(
        &self,
        p: &BatchNormParams,
        x: &WgpuBuffer,
        gamma: &WgpuBuffer,
        beta: &WgpuBuffer,
        running_mean: &WgpuBuffer,
        running_var: &WgpuBuffer,
        y: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm_inference";
        p.validate(OP)?;
        let len = product(OP, &[p.rows, p.channels])?;
        check_len(OP, x, len)?;
        check_len(OP, y, len)?;
        for buf in [gamma, beta, running_mean, running_var] {
            check_len(OP, buf, p.channels)?;
        }
        self.normalise(OP, p, x, gamma, beta, [running_mean, running_var], true, y)
    }

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        p: &BatchNormParams,
        x: &WgpuBuffer,
        dy: &WgpuBuffer,
        gamma: &WgpuBuffer,
        beta: &WgpuBuffer,
        save_mean: &WgpuBuffer,
        save_invstd: &WgpuBuffer,
        dx: &mut WgpuBuffer,
        dgamma: &mut WgpuBuffer,
        dbeta: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm_backward";
        p.validate(OP)?;
        let len = product(OP, &[p.rows, p.channels])?;
        check_len(OP, x, len)?;
        check_len(OP, dy, len)?;
        check_len(OP, dx, len)?;
        for buf in [gamma, beta, save_mean, save_invstd, &*dgamma, &*dbeta] {
            check_len(OP, buf, p.channels)?;
        }
        let (partial, w) = self.partial_sums(
            OP,
            "bn_backward_partial",
            p,
            &[&x.buf, &dy.buf],
            &[&save_mean.buf, &gamma.buf, &save_invstd.buf, &beta.buf],
        )?;
        let coef = self.scratch(OP, product(OP, &[3, p.channels])?)?;
        self.launch(
            OP,
            Kernel::new(SHADER, "bn_backward_finish"),
            &[
                Arg::whole(&partial),
                Arg::whole(&save_invstd.buf),
                Arg::whole(&gamma.buf),
            ],
            &[
                Arg::whole(&dgamma.buf),
                Arg::whole(&dbeta.buf),
                Arg::whole(&coef),
            ],
            &w,
            &Work::groups("call", 1, p.channels),
        )?;
        self.launch(
            OP,
            Kernel::new(SHADER, "bn_backward_dx"),
            &[
                Arg::per(&x.buf, 1),
                Arg::per(&dy.buf, 1),
                Arg::whole(&save_mean.buf),
                Arg::whole(&coef),
                Arg::whole(&beta.buf),
            ],
            &[Arg::per(&dx.buf, 1)],
            &words(OP, p)?,
            &Work::threads("element", len, 1),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slabs_fill_the_gpu_and_fit_a_binding() {
        // U-Net, 256 × 256, batch 8, 64 channels: 2 tiles × 1024 slabs of 512 rows.
        let unet = slabs(524_288, 64, usize::MAX);
        assert_eq!(
            unet,
            Slabs {
                rows: 512,
                count: 1024
            }
        );
        // Few rows: slabs of at least MIN_SLAB rows, or one slab.
        assert_eq!(
            slabs(3000, 70, usize::MAX),
            Slabs {
                rows: 273,
                count: 11
            }
        );
        assert_eq!(
            slabs(100, 5, usize::MAX),
            Slabs {
                rows: 100,
                count: 1
            }
        );
        // Many channels: fewer slabs, as the tiles already give workgroups.
        assert_eq!(
            slabs(2048, 1024, usize::MAX),
            Slabs {
                rows: 256,
                count: 8
            }
        );
        // A binding of 137 rows caps the slabs.
        assert_eq!(
            slabs(384, 7, 137),
            Slabs {
                rows: 137,
                count: 3
            }
        );
        // A row beyond a binding: slabs of one row, which `launch` rejects with its error.
        assert_eq!(slabs(4, 7, 0), Slabs { rows: 1, count: 4 });
    }
}
