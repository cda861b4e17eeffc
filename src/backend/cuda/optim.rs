//! Fused SGD and Adam / AdamW updates (`kernels/optim.cu`) with PyTorch's rules; the scalar
//! factors are computed here in f64 exactly as the CPU backend computes them.

use super::kernels::Module;
use super::{check_len, grid, launch, CudaBackend, CudaBuffer};
use crate::backend::*;
use crate::error::Result;

impl OptimOps for CudaBackend {
    /// Leaves `momentum` alone (and accepts any length for it) when `p.momentum` is 0.
    fn sgd_step(
        &self,
        p: &SgdParams,
        param: &mut CudaBuffer,
        grad: &CudaBuffer,
        momentum: &mut CudaBuffer,
    ) -> Result<()> {
        p.validate()?;
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
        p.validate()?;
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
