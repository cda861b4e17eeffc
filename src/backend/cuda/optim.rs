//! Fused SGD and Adam / AdamW updates (`kernels/optim.cu`) with PyTorch's rules; the scalar
//! factors are computed here in f64 exactly as the CPU backend computes them.

use super::kernels::Module;
use super::{check_len, grid, launch, CudaBackend, CudaBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

/// Errors unless `value` is finite and at least 0 (NaN fails too).
fn non_negative(op: &'static str, name: &str, value: f32) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("{name} must be finite and >= 0, got {value}"),
        ))
    }
}

fn check_sgd(p: &SgdParams) -> Result<()> {
    const OP: &str = "sgd_step";
    non_negative(OP, "learning rate", p.lr)?;
    non_negative(OP, "momentum", p.momentum)?;
    non_negative(OP, "weight decay", p.weight_decay)?;
    if !p.dampening.is_finite() {
        return Err(Error::invalid(OP, "dampening must be finite"));
    }
    if p.nesterov && (p.momentum <= 0.0 || p.dampening != 0.0) {
        return Err(Error::invalid(
            OP,
            "Nesterov momentum requires a momentum and zero dampening",
        ));
    }
    Ok(())
}

fn check_adam(p: &AdamParams) -> Result<()> {
    const OP: &str = "adam_step";
    if p.step == 0 {
        return Err(Error::invalid(OP, "the step count is 1-based; got 0"));
    }
    non_negative(OP, "learning rate", p.lr)?;
    non_negative(OP, "eps", p.eps)?;
    non_negative(OP, "weight decay", p.weight_decay)?;
    for (name, b) in [("beta1", p.beta1), ("beta2", p.beta2)] {
        if !(0.0..1.0).contains(&b) {
            return Err(Error::invalid(
                OP,
                format!("{name} must be in [0, 1), got {b}"),
            ));
        }
    }
    Ok(())
}

impl OptimOps for CudaBackend {
    /// Leaves `momentum` alone (and accepts any length for it) when `p.momentum` is 0.
    fn sgd_step(
        &self,
        p: &SgdParams,
        param: &mut CudaBuffer,
        grad: &CudaBuffer,
        momentum: &mut CudaBuffer,
    ) -> Result<()> {
        check_sgd(p)?;
        let n = param.len;
        check_len("sgd_step", grad, n)?;
        let use_momentum = i32::from(p.momentum != 0.0);
        if use_momentum != 0 {
            check_len("sgd_step", momentum, n)?;
        }
        if n == 0 {
            return Ok(());
        }
        let damp = (1.0 - f64::from(p.dampening)) as f32;
        let (wp, gp, bp, n64) = (
            self.ptr(param),
            self.ptr(grad),
            self.ptr(momentum),
            n as u64,
        );
        let (lr, wd, mu) = (p.lr, p.weight_decay, p.momentum);
        let (first, nesterov) = (i32::from(p.first_step), i32::from(p.nesterov));
        launch!(self, Module::Optim, "sgd_step", grid(n);
            wp, gp, bp, n64, lr, wd, mu, damp, first, nesterov, use_momentum)
    }

    fn adam_step(
        &self,
        p: &AdamParams,
        param: &mut CudaBuffer,
        grad: &CudaBuffer,
        m: &mut CudaBuffer,
        v: &mut CudaBuffer,
    ) -> Result<()> {
        check_adam(p)?;
        let n = param.len;
        check_len("adam_step", grad, n)?;
        check_len("adam_step", m, n)?;
        check_len("adam_step", v, n)?;
        if n == 0 {
            return Ok(());
        }
        let (lr, b1, b2) = (f64::from(p.lr), f64::from(p.beta1), f64::from(p.beta2));
        let decay = if p.decoupled_weight_decay {
            (1.0 - lr * f64::from(p.weight_decay)) as f32
        } else {
            1.0
        };
        let l2 = if p.decoupled_weight_decay {
            0.0
        } else {
            p.weight_decay
        };
        let t = p.step as f64;
        let step_size = (lr / (1.0 - b1.powf(t))) as f32;
        let bc2_sqrt = (1.0 - b2.powf(t)).powf(0.5) as f32;
        let (w1, b2f, w2, eps) = ((1.0 - b1) as f32, p.beta2, (1.0 - b2) as f32, p.eps);
        let (wp, gp, mp, vp, n64) = (
            self.ptr(param),
            self.ptr(grad),
            self.ptr(m),
            self.ptr(v),
            n as u64,
        );
        launch!(self, Module::Optim, "adam_step", grid(n);
            wp, gp, mp, vp, n64, decay, l2, w1, b2f, w2, eps, step_size, bc2_sqrt)
    }
}
