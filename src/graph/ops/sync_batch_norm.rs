//! Batch norm whose training statistics are those of the combined batch of every rank of a
//! data-parallel run (PyTorch's `SyncBatchNorm`), built from backend primitives and two kinds of
//! all-reduce. Every rank's batch must have the same number of rows, so that the mean over the
//! ranks of a per-rank mean is the combined batch's.
//!
//! Forward: the fused kernel gives each rank's mean `μ_r` and `1/sqrt(σ²_r + eps)`; the combined
//! mean is `μ = mean_r μ_r` and the combined (biased) variance `σ² = mean_r (σ²_r + (μ_r − μ)²)`
//! (Chan et al.'s pairwise combination, free of the cancellation of `E[x²] − μ²`).
//!
//! Backward: with the combined statistics saved, the fused kernel's local gradient is
//! `dx_r = γ·s/M·(M·dy − Σ_r dy − x̂·Σ_r dy·x̂)` over the rank's `M` rows, while the combined
//! batch's is the same with the sums replaced by their mean over the ranks. The difference is an
//! affine map per channel, `dx = dx_r + a·x + k` with `a = γ·s²/M·(dγ_r − mean dγ)` and
//! `k = γ·s/M·(dβ_r − mean dβ) − a·μ`.

use crate::backend::{Backend, BatchNormParams, BinaryOp, UnaryOp};
use crate::dist::{Collective, Reduction};
use crate::error::Result;
use crate::tensor::{Shape, TensorDesc};

/// Small per-channel vectors and the arithmetic between them.
struct Channels<'b, B: Backend> {
    b: &'b B,
    shape: Shape,
}

impl<B: Backend> Channels<'_, B> {
    fn alloc(&self) -> Result<B::Buffer> {
        self.b.alloc(&TensorDesc::f32(self.shape.clone()))
    }

    fn binary(&self, op: BinaryOp, a: &B::Buffer, b: &B::Buffer) -> Result<B::Buffer> {
        let mut y = self.alloc()?;
        self.b.binary(op, a, &self.shape, b, &self.shape, &mut y)?;
        Ok(y)
    }

    fn affine(&self, x: &B::Buffer, scale: f32, shift: f32) -> Result<B::Buffer> {
        let mut y = self.alloc()?;
        self.b.unary(UnaryOp::Affine { scale, shift }, x, &mut y)?;
        Ok(y)
    }

    fn copy(&self, x: &B::Buffer) -> Result<B::Buffer> {
        let mut y = self.alloc()?;
        self.b.copy(x, &mut y)?;
        Ok(y)
    }

    /// `1 / x`.
    fn reciprocal(&self, x: &B::Buffer) -> Result<B::Buffer> {
        let mut ones = self.alloc()?;
        self.b.fill(&mut ones, 1.0)?;
        self.binary(BinaryOp::Div, &ones, x)
    }
}

/// Training forward with the combined batch's statistics: writes `y`, saves the combined mean
/// and `1/sqrt(σ² + eps)` and updates the running averages (unbiased variance over all rows of
/// all ranks, as PyTorch).
#[allow(clippy::too_many_arguments)]
pub(super) fn forward<B: Backend>(
    b: &B,
    p: &BatchNormParams,
    collective: &mut dyn Collective<B>,
    x: &B::Buffer,
    gamma: &B::Buffer,
    beta: &B::Buffer,
    y: &mut B::Buffer,
    save_mean: &mut B::Buffer,
    save_invstd: &mut B::Buffer,
    running_mean: &mut B::Buffer,
    running_var: &mut B::Buffer,
) -> Result<()> {
    let ch = Channels {
        b,
        shape: Shape::new([p.channels]),
    };
    // The rank's own statistics; its running averages go to scratch.
    let (mut scratch_mean, mut scratch_var) = (ch.alloc()?, ch.alloc()?);
    b.batch_norm_train(
        p,
        x,
        gamma,
        beta,
        y,
        save_mean,
        save_invstd,
        &mut scratch_mean,
        &mut scratch_var,
    )?;
    let mut mean = ch.copy(save_mean)?;
    collective.all_reduce(b, Reduction::Mean, &mut [&mut mean])?;
    collective.wait(b)?;
    // σ²_r + eps + (μ_r − μ)², averaged over the ranks: σ² + eps.
    let inv_square = ch.binary(BinaryOp::Mul, save_invstd, save_invstd)?;
    let local_var_eps = ch.reciprocal(&inv_square)?;
    let offset = ch.binary(BinaryOp::Sub, save_mean, &mean)?;
    let offset_square = ch.binary(BinaryOp::Mul, &offset, &offset)?;
    let mut var_eps = ch.binary(BinaryOp::Add, &local_var_eps, &offset_square)?;
    collective.all_reduce(b, Reduction::Mean, &mut [&mut var_eps])?;
    collective.wait(b)?;
    let var = ch.affine(&var_eps, 1.0, -p.eps)?;
    b.copy(&mean, save_mean)?;
    let mut std = ch.alloc()?;
    b.unary(UnaryOp::Sqrt, &var_eps, &mut std)?;
    b.copy(&ch.reciprocal(&std)?, save_invstd)?;
    // From the saved statistics, as backward and a recompute see them.
    b.batch_norm_apply(p, x, gamma, beta, save_mean, save_invstd, y)?;
    // running += momentum · (statistic − running)
    let rows = (p.rows * collective.world_size()) as f32;
    let unbiased = ch.affine(&var, rows / (rows - 1.0).max(1.0), 0.0)?;
    for (statistic, running) in [(&mean, running_mean), (&unbiased, running_var)] {
        let step = ch.binary(BinaryOp::Sub, statistic, running)?;
        b.axpy(p.momentum, &step, running)?;
    }
    Ok(())
}

/// Training backward with the combined batch's statistics saved by [`forward`]: the fused
/// kernel's gradients, then `dx` corrected from the rank's sums to the ranks' mean sums. `dgamma`
/// and `dbeta` stay the rank's own (data-parallel training averages them with the other
/// gradients).
#[allow(clippy::too_many_arguments)]
pub(super) fn backward<B: Backend>(
    b: &B,
    p: &BatchNormParams,
    collective: &mut dyn Collective<B>,
    x: &B::Buffer,
    x_shape: &Shape,
    dy: &B::Buffer,
    [gamma, beta]: [&B::Buffer; 2],
    save_mean: &B::Buffer,
    save_invstd: &B::Buffer,
    dx: &mut B::Buffer,
    dgamma: &mut B::Buffer,
    dbeta: &mut B::Buffer,
) -> Result<()> {
    b.batch_norm_backward(
        p,
        x,
        dy,
        gamma,
        beta,
        save_mean,
        save_invstd,
        dx,
        dgamma,
        dbeta,
    )?;
    let ch = Channels {
        b,
        shape: Shape::new([p.channels]),
    };
    let (mut mean_dgamma, mut mean_dbeta) = (ch.copy(dgamma)?, ch.copy(dbeta)?);
    collective.all_reduce(b, Reduction::Mean, &mut [&mut mean_dgamma, &mut mean_dbeta])?;
    collective.wait(b)?;
    let per_row = 1.0 / p.rows as f32;
    let gamma_s = ch.binary(BinaryOp::Mul, gamma, save_invstd)?;
    let gamma_s_m = ch.affine(&gamma_s, per_row, 0.0)?;
    let dgamma_excess = ch.binary(BinaryOp::Sub, dgamma, &mean_dgamma)?;
    let slope_s = ch.binary(BinaryOp::Mul, &gamma_s_m, &dgamma_excess)?;
    let slope = ch.binary(BinaryOp::Mul, &slope_s, save_invstd)?;
    let dbeta_excess = ch.binary(BinaryOp::Sub, dbeta, &mean_dbeta)?;
    let shift = ch.binary(BinaryOp::Mul, &gamma_s_m, &dbeta_excess)?;
    let slope_mean = ch.binary(BinaryOp::Mul, &slope, save_mean)?;
    let intercept = ch.binary(BinaryOp::Sub, &shift, &slope_mean)?;
    let full = TensorDesc::f32(x_shape.clone());
    let (mut scaled, mut correction) = (b.alloc(&full)?, b.alloc(&full)?);
    b.binary(BinaryOp::Mul, x, x_shape, &slope, &ch.shape, &mut scaled)?;
    b.binary(
        BinaryOp::Add,
        &scaled,
        x_shape,
        &intercept,
        &ch.shape,
        &mut correction,
    )?;
    b.axpy(1.0, &correction, dx)
}
