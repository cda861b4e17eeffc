//! Batch normalisation over the last axis of a `rows × channels` tensor (NHWC flattened), with
//! the CUDA kernels of `kernels/norm.cu` and the CPU backend's arithmetic: PyTorch's semantics
//! (the biased batch variance normalises, the unbiased one feeds the running variance,
//! `running = (1 − momentum) · running + momentum · batch`, saved inverse standard deviation
//! `1 / sqrt(var + eps)`).
//!
//! Per-channel sums are a two-stage column reduction: blocks of a tile of channels and a slab of
//! rows write f64 partial sums, and one block per channel adds them in a fixed order, so results
//! do not vary from run to run. An elementwise kernel then applies per-channel coefficients.

use cudarc::driver::LaunchConfig;

use super::kernels::Module;
use super::{check_len, grid, launch, CudaBackend, CudaBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

/// Channels per block of the partial-sum kernel (`BN_TILE` in kernels/norm.cu).
const TILE: usize = 32;
/// Rows read at once by a block of the partial-sum kernel (`BN_ROWS` in kernels/norm.cu).
const ROWS: usize = 8;
/// Aim for about this many partial-sum blocks.
const TARGET_BLOCKS: usize = 2048;
/// Fewest rows per slab.
const MIN_SLAB_ROWS: usize = 64;
/// Threads per block of the finishing kernels.
const FINISH_THREADS: u32 = 256;

/// `rows · channels`, or an error when it overflows.
fn numel(op: &'static str, p: &BatchNormParams) -> Result<usize> {
    p.rows
        .checked_mul(p.channels)
        .ok_or_else(|| Error::invalid(op, format!("{p:?} overflows")))
}

/// How the rows are split: `(rows_per_slab, slabs)`.
fn slabs(rows: usize, channels: usize) -> (usize, usize) {
    let tiles = channels.div_ceil(TILE);
    let wanted = (TARGET_BLOCKS / tiles)
        .min(rows.div_ceil(MIN_SLAB_ROWS))
        .clamp(1, 65535);
    let per_slab = rows.div_ceil(wanted).max(1);
    (per_slab, rows.div_ceil(per_slab).max(1))
}

/// One block per channel for the finishing kernels.
fn per_channel(channels: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (channels as u32, 1, 1),
        block_dim: (FINISH_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Whether the elementwise kernels can read four channels at once.
fn vec4(channels: usize) -> i32 {
    (channels % 4 == 0) as i32
}

impl CudaBackend {
    /// Per-channel partial sums of `x` (mode 0) or of `dy` and `dy · (x − mean)` (mode 1, with
    /// `dy` masked by the ReLU when `p.relu`), `2 · channels · slabs` f64 values; returns them
    /// with the slab count.
    fn bn_partial(
        &self,
        p: &BatchNormParams,
        x: &CudaBuffer,
        grad: Option<&Gradient>,
    ) -> Result<(cudarc::driver::CudaSlice<f64>, u64)> {
        let (per_slab, count) = slabs(p.rows, p.channels);
        let partial = self.scratch::<f64>(2 * p.channels * count)?;
        let cfg = LaunchConfig {
            grid_dim: (p.channels.div_ceil(TILE) as u32, count as u32, 1),
            block_dim: (TILE as u32, ROWS as u32, 1),
            shared_mem_bytes: 0,
        };
        let xp = self.ptr(x);
        let (dyp, meanp, scalep, shiftp, mode) = match grad {
            Some(g) => (g.dy, g.mean, g.scale, g.shift, 1i32),
            None => (0u64, 0u64, 0u64, 0u64, 0i32),
        };
        let relu = p.relu as i32;
        let (rows, channels) = (p.rows as u64, p.channels as u64);
        let (rows_per_slab, slabs) = (per_slab as u64, count as u64);
        let pp = self.slice_ptr(&partial);
        launch!(self, Module::Norm, "bn_partial", cfg;
            xp, dyp, meanp, scalep, shiftp, relu, rows, channels, rows_per_slab, slabs, mode, pp)?;
        Ok((partial, slabs))
    }

    /// `y = (x − mean) · scale + shift` per channel, ReLU'd when `p.relu`.
    fn bn_apply(
        &self,
        p: &BatchNormParams,
        x: &CudaBuffer,
        mean: u64,
        scale: u64,
        shift: u64,
        y: &mut CudaBuffer,
    ) -> Result<()> {
        let len = p.rows * p.channels;
        let v4 = vec4(p.channels);
        let cfg = grid(if v4 != 0 { len / 4 } else { len });
        let (xp, yp) = (self.ptr(x), self.ptr(y));
        let (relu, n, channels) = (p.relu as i32, len as u64, p.channels as u64);
        launch!(self, Module::Norm, "bn_apply", cfg;
            xp, mean, scale, shift, relu, n, channels, v4, yp)
    }

    /// The training output's scale `γ · invstd` per channel, from the saved invstd.
    fn bn_train_scale(
        &self,
        p: &BatchNormParams,
        gamma: &CudaBuffer,
        save_invstd: &CudaBuffer,
    ) -> Result<cudarc::driver::CudaSlice<f32>> {
        let scale = self.scratch::<f32>(p.channels)?;
        let (gp, ip, sp) = (
            self.ptr(gamma),
            self.ptr(save_invstd),
            self.slice_ptr(&scale),
        );
        let channels = p.channels as u64;
        launch!(self, Module::Norm, "bn_train_scale", grid(p.channels);
            gp, ip, channels, sp)?;
        Ok(scale)
    }
}

/// Device addresses a backward kernel reads besides `x`: the output gradient, the saved mean,
/// and the forward's scale and shift for the ReLU mask (0 without a ReLU).
struct Gradient {
    dy: u64,
    mean: u64,
    scale: u64,
    shift: u64,
}

impl NormOps for CudaBackend {
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_train(
        &self,
        p: &BatchNormParams,
        x: &CudaBuffer,
        gamma: &CudaBuffer,
        beta: &CudaBuffer,
        y: &mut CudaBuffer,
        save_mean: &mut CudaBuffer,
        save_invstd: &mut CudaBuffer,
        running_mean: &mut CudaBuffer,
        running_var: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm_train";
        p.validate(OP)?;
        if p.rows < 2 {
            return Err(Error::invalid(
                OP,
                "expected more than one value per channel when training",
            ));
        }
        let len = numel(OP, p)?;
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
        let (partial, slabs) = self.bn_partial(p, x, None)?;
        let scale = self.scratch::<f32>(p.channels)?;
        let pp = self.slice_ptr(&partial);
        let (xp, gp) = (self.ptr(x), self.ptr(gamma));
        let (rows, channels) = (p.rows as u64, p.channels as u64);
        let (eps, momentum) = (p.eps, p.momentum);
        let (mp, ip) = (self.ptr(save_mean), self.ptr(save_invstd));
        let (rmp, rvp) = (self.ptr(running_mean), self.ptr(running_var));
        let sp = self.slice_ptr(&scale);
        launch!(self, Module::Norm, "bn_finish_train", per_channel(p.channels);
            pp, slabs, xp, gp, rows, channels, eps, momentum, mp, ip, rmp, rvp, sp)?;
        let bp = self.ptr(beta);
        self.bn_apply(p, x, mp, sp, bp, y)
    }

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_apply(
        &self,
        p: &BatchNormParams,
        x: &CudaBuffer,
        gamma: &CudaBuffer,
        beta: &CudaBuffer,
        save_mean: &CudaBuffer,
        save_invstd: &CudaBuffer,
        y: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm_apply";
        p.validate(OP)?;
        let len = numel(OP, p)?;
        check_len(OP, x, len)?;
        check_len(OP, y, len)?;
        for buf in [gamma, beta, save_mean, save_invstd] {
            check_len(OP, buf, p.channels)?;
        }
        let scale = self.bn_train_scale(p, gamma, save_invstd)?;
        let (mp, sp, bp) = (self.ptr(save_mean), self.slice_ptr(&scale), self.ptr(beta));
        self.bn_apply(p, x, mp, sp, bp, y)
    }

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_inference(
        &self,
        p: &BatchNormParams,
        x: &CudaBuffer,
        gamma: &CudaBuffer,
        beta: &CudaBuffer,
        running_mean: &CudaBuffer,
        running_var: &CudaBuffer,
        y: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm_inference";
        p.validate(OP)?;
        let len = numel(OP, p)?;
        check_len(OP, x, len)?;
        check_len(OP, y, len)?;
        for buf in [gamma, beta, running_mean, running_var] {
            check_len(OP, buf, p.channels)?;
        }
        let scale = self.scratch::<f32>(p.channels)?;
        let (gp, vp, sp) = (
            self.ptr(gamma),
            self.ptr(running_var),
            self.slice_ptr(&scale),
        );
        let (channels, eps) = (p.channels as u64, p.eps);
        launch!(self, Module::Norm, "bn_inference_scale", grid(p.channels);
            gp, vp, channels, eps, sp)?;
        let (mp, bp) = (self.ptr(running_mean), self.ptr(beta));
        self.bn_apply(p, x, mp, sp, bp, y)
    }

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        p: &BatchNormParams,
        x: &CudaBuffer,
        dy: &CudaBuffer,
        gamma: &CudaBuffer,
        beta: &CudaBuffer,
        save_mean: &CudaBuffer,
        save_invstd: &CudaBuffer,
        dx: &mut CudaBuffer,
        dgamma: &mut CudaBuffer,
        dbeta: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "batch_norm_backward";
        p.validate(OP)?;
        let len = numel(OP, p)?;
        check_len(OP, x, len)?;
        check_len(OP, dy, len)?;
        check_len(OP, dx, len)?;
        for buf in [gamma, beta, save_mean, save_invstd, &*dgamma, &*dbeta] {
            check_len(OP, buf, p.channels)?;
        }
        let scale = match p.relu {
            true => Some(self.bn_train_scale(p, gamma, save_invstd)?),
            false => None,
        };
        let grad = Gradient {
            dy: self.ptr(dy),
            mean: self.ptr(save_mean),
            scale: scale.as_ref().map_or(0, |s| self.slice_ptr(s)),
            shift: if p.relu { self.ptr(beta) } else { 0 },
        };
        let (partial, slabs) = self.bn_partial(p, x, Some(&grad))?;
        let coef = self.scratch::<f32>(3 * p.channels)?;
        let pp = self.slice_ptr(&partial);
        let (gp, ip) = (self.ptr(gamma), self.ptr(save_invstd));
        let (rows, channels) = (p.rows as u64, p.channels as u64);
        let (dgp, dbp, cp) = (self.ptr(dgamma), self.ptr(dbeta), self.slice_ptr(&coef));
        launch!(self, Module::Norm, "bn_finish_backward", per_channel(p.channels);
            pp, slabs, gp, ip, rows, channels, dgp, dbp, cp)?;
        let v4 = vec4(p.channels);
        let cfg = grid(if v4 != 0 { len / 4 } else { len });
        let (xp, dxp) = (self.ptr(x), self.ptr(dx));
        let (dyp, mp, sp, bp) = (grad.dy, grad.mean, grad.scale, grad.shift);
        let (relu, n) = (p.relu as i32, len as u64);
        launch!(self, Module::Norm, "bn_dx", cfg;
            xp, dyp, mp, cp, sp, bp, relu, n, channels, v4, dxp)
    }
}
