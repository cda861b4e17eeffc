//! Batch normalisation (`shaders/norm.wgsl`): per-channel statistics by one workgroup per
//! channel, then an elementwise pass.

use super::{check_len, product, shader, word, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

const SHADER: Shader = shader!("norm.wgsl");

fn words(op: &'static str, p: &BatchNormParams) -> Result<Vec<u32>> {
    Ok(vec![
        word(op, p.rows)?,
        word(op, p.channels)?,
        p.eps.to_bits(),
        p.momentum.to_bits(),
    ])
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
        let w = words(OP, p)?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "bn_stats"),
            &[&x.buf],
            &[
                &save_mean.buf,
                &save_invstd.buf,
                &running_mean.buf,
                &running_var.buf,
            ],
            &w,
            self.grid(OP, p.channels)?,
        )?;
        let constants = [("INFERENCE", 0.0)];
        self.dispatch(
            OP,
            Kernel::with(SHADER, "bn_apply", &constants),
            &[
                &x.buf,
                &gamma.buf,
                &beta.buf,
                &save_mean.buf,
                &save_invstd.buf,
            ],
            &[&y.buf],
            &w,
            self.grid_for(OP, len)?,
        )
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
        let constants = [("INFERENCE", 1.0)];
        self.dispatch(
            OP,
            Kernel::with(SHADER, "bn_apply", &constants),
            &[
                &x.buf,
                &gamma.buf,
                &beta.buf,
                &running_mean.buf,
                &running_var.buf,
            ],
            &[&y.buf],
            &words(OP, p)?,
            self.grid_for(OP, len)?,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        p: &BatchNormParams,
        x: &WgpuBuffer,
        dy: &WgpuBuffer,
        gamma: &WgpuBuffer,
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
        for buf in [gamma, save_mean, save_invstd, &*dgamma, &*dbeta] {
            check_len(OP, buf, p.channels)?;
        }
        let w = words(OP, p)?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "bn_backward_stats"),
            &[&x.buf, &dy.buf, &save_mean.buf, &save_invstd.buf],
            &[&dgamma.buf, &dbeta.buf],
            &w,
            self.grid(OP, p.channels)?,
        )?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "bn_backward_dx"),
            &[
                &x.buf,
                &dy.buf,
                &gamma.buf,
                &save_mean.buf,
                &save_invstd.buf,
                &dgamma.buf,
                &dbeta.buf,
            ],
            &[&dx.buf],
            &w,
            self.grid_for(OP, len)?,
        )
    }
}
