//! Fused SGD and Adam / AdamW steps (`shaders/optim.wgsl`), one dispatch per parameter tensor.

use super::{check_len, shader, word, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

const SHADER: Shader = shader!("optim.wgsl");

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

impl OptimOps for WgpuBackend {
    /// Leaves `momentum` alone (and accepts any length for it) when `p.momentum` is 0.
    fn sgd_step(
        &self,
        p: &SgdParams,
        param: &mut WgpuBuffer,
        grad: &WgpuBuffer,
        momentum: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "sgd_step";
        check_sgd(p)?;
        let n = param.len;
        check_len(OP, grad, n)?;
        let damp = (1.0 - f64::from(p.dampening)) as f32;
        let words = [
            word(OP, n)?,
            p.lr.to_bits(),
            p.weight_decay.to_bits(),
            p.momentum.to_bits(),
            damp.to_bits(),
            u32::from(p.first_step),
            u32::from(p.nesterov),
        ];
        let grid = self.grid_for(OP, n)?;
        if p.momentum == 0.0 {
            return self.dispatch(
                OP,
                Kernel::new(SHADER, "sgd_plain"),
                &[&grad.buf],
                &[&param.buf],
                &words,
                grid,
            );
        }
        check_len(OP, momentum, n)?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "sgd"),
            &[&grad.buf],
            &[&param.buf, &momentum.buf],
            &words,
            grid,
        )
    }

    fn adam_step(
        &self,
        p: &AdamParams,
        param: &mut WgpuBuffer,
        grad: &WgpuBuffer,
        m: &mut WgpuBuffer,
        v: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "adam_step";
        check_adam(p)?;
        let n = param.len;
        check_len(OP, grad, n)?;
        check_len(OP, m, n)?;
        check_len(OP, v, n)?;
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
        let words = [
            word(OP, n)?,
            decay.to_bits(),
            l2.to_bits(),
            step_size.to_bits(),
            bc2_sqrt.to_bits(),
            ((1.0 - b1) as f32).to_bits(),
            p.beta2.to_bits(),
            ((1.0 - b2) as f32).to_bits(),
            p.eps.to_bits(),
        ];
        self.dispatch(
            OP,
            Kernel::new(SHADER, "adam"),
            &[&grad.buf],
            &[&param.buf, &m.buf, &v.buf],
            &words,
            self.grid_for(OP, n)?,
        )
    }
}
