//! Fused SGD and Adam / AdamW steps (`shaders/optim.wgsl`), per parameter tensor, split by
//! elements.

use super::window::{Arg, Work};
use super::{check_len, shader, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::*;
use crate::error::Result;

const SHADER: Shader = shader!("optim.wgsl");

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
        p.validate()?;
        let n = param.len;
        check_len(OP, grad, n)?;
        let damp = (1.0 - f64::from(p.dampening)) as f32;
        let words = [
            p.lr.to_bits(),
            p.weight_decay.to_bits(),
            p.momentum.to_bits(),
            damp.to_bits(),
            u32::from(p.first_step),
            u32::from(p.nesterov),
        ];
        let work = Work::threads("element", n, 1);
        if p.momentum == 0.0 {
            return self.launch(
                OP,
                Kernel::new(SHADER, "sgd_plain"),
                &[Arg::per(&grad.buf, 1)],
                &[Arg::per(&param.buf, 1)],
                &words,
                &work,
            );
        }
        check_len(OP, momentum, n)?;
        self.launch(
            OP,
            Kernel::new(SHADER, "sgd"),
            &[Arg::per(&grad.buf, 1)],
            &[Arg::per(&param.buf, 1), Arg::per(&momentum.buf, 1)],
            &words,
            &work,
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
        p.validate()?;
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
            decay.to_bits(),
            l2.to_bits(),
            step_size.to_bits(),
            bc2_sqrt.to_bits(),
            ((1.0 - b1) as f32).to_bits(),
            p.beta2.to_bits(),
            ((1.0 - b2) as f32).to_bits(),
            p.eps.to_bits(),
        ];
        self.launch(
            OP,
            Kernel::new(SHADER, "adam"),
            &[Arg::per(&grad.buf, 1)],
            &[
                Arg::per(&param.buf, 1),
                Arg::per(&m.buf, 1),
                Arg::per(&v.buf, 1),
            ],
            &words,
            &Work::threads("element", n, 1),
        )
    }
}
