//! Batch normalisation (`shaders/norm.wgsl`): per-channel statistics by one workgroup per
//! channel, accumulated over dispatches of rows, then an elementwise pass.

use super::window::{Arg, Work};
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
        // Every dispatch of rows shifts by the channel's first value, copied out of x.
        let shift = self.scratch(OP, p.channels)?;
        self.copy_raw(&x.buf, &shift, p.channels);
        self.launch(
            OP,
            Kernel::new(SHADER, "bn_stats"),
            &[Arg::per(&x.buf, p.channels), Arg::whole(&shift)],
            &[
                Arg::whole(&save_mean.buf),
                Arg::whole(&save_invstd.buf),
                Arg::whole(&running_mean.buf),
                Arg::whole(&running_var.buf),
            ],
            &w,
            &Work::groups("row", p.rows, p.channels),
        )?;
        let constants = [("INFERENCE", 0.0)];
        self.launch(
            OP,
            Kernel::with(SHADER, "bn_apply", &constants),
            &[
                Arg::per(&x.buf, 1),
                Arg::whole(&gamma.buf),
                Arg::whole(&beta.buf),
                Arg::whole(&save_mean.buf),
                Arg::whole(&save_invstd.buf),
            ],
            &[Arg::per(&y.buf, 1)],
            &w,
            &Work::threads("element", len, 1),
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
        self.launch(
            OP,
            Kernel::with(SHADER, "bn_apply", &constants),
            &[
                Arg::per(&x.buf, 1),
                Arg::whole(&gamma.buf),
                Arg::whole(&beta.buf),
                Arg::whole(&running_mean.buf),
                Arg::whole(&running_var.buf),
            ],
            &[Arg::per(&y.buf, 1)],
            &words(OP, p)?,
            &Work::threads("element", len, 1),
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
        self.launch(
            OP,
            Kernel::new(SHADER, "bn_backward_stats"),
            &[
                Arg::per(&x.buf, p.channels),
                Arg::per(&dy.buf, p.channels),
                Arg::whole(&save_mean.buf),
                Arg::whole(&save_invstd.buf),
            ],
            &[Arg::whole(&dgamma.buf), Arg::whole(&dbeta.buf)],
            &w,
            &Work::groups("row", p.rows, p.channels),
        )?;
        self.launch(
            OP,
            Kernel::new(SHADER, "bn_backward_dx"),
            &[
                Arg::per(&x.buf, 1),
                Arg::per(&dy.buf, 1),
                Arg::whole(&gamma.buf),
                Arg::whole(&save_mean.buf),
                Arg::whole(&save_invstd.buf),
                Arg::whole(&dgamma.buf),
                Arg::whole(&dbeta.buf),
            ],
            &[Arg::per(&dx.buf, 1)],
            &w,
            &Work::threads("element", len, 1),
        )
    }
}
