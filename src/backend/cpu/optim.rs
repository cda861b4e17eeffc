//! Fused SGD and Adam / AdamW updates with PyTorch's update rules (its single-tensor
//! implementation: scalar factors such as `lr / (1 − β1^t)` in f64, element arithmetic in f32).

use rayon::prelude::*;

use crate::backend::cpu::elementwise::PAR_CHUNK;
use crate::backend::cpu::{check_len, CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::Result;

impl OptimOps for CpuBackend {
    /// Leaves `momentum` alone (and accepts any length for it) when `p.momentum` is 0.
    fn sgd_step(
        &self,
        p: &SgdParams,
        param: &mut CpuBuffer,
        grad: &CpuBuffer,
        momentum: &mut CpuBuffer,
    ) -> Result<()> {
        p.validate()?;
        let n = param.0.len();
        check_len("sgd_step", grad, n)?;
        let (lr, wd, mu) = (p.lr, p.weight_decay, p.momentum);
        let grad = &grad.0[..];
        if mu == 0.0 {
            let update = |ps: &mut [f32], gs: &[f32]| {
                for (w, &g) in ps.iter_mut().zip(gs) {
                    let d = if wd != 0.0 { g + wd * *w } else { g };
                    *w += -lr * d;
                }
            };
            if n <= PAR_CHUNK {
                update(&mut param.0, grad);
            } else {
                param
                    .0
                    .par_chunks_mut(PAR_CHUNK)
                    .zip(grad.par_chunks(PAR_CHUNK))
                    .for_each(|(ps, gs)| update(ps, gs));
            }
            return Ok(());
        }
        check_len("sgd_step", momentum, n)?;
        let damp = (1.0 - f64::from(p.dampening)) as f32;
        let (first, nesterov) = (p.first_step, p.nesterov);
        let update = |ps: &mut [f32], gs: &[f32], bs: &mut [f32]| {
            for ((w, &g), b) in ps.iter_mut().zip(gs).zip(bs) {
                let d = if wd != 0.0 { g + wd * *w } else { g };
                *b = if first { d } else { *b * mu + damp * d };
                let d = if nesterov { d + mu * *b } else { *b };
                *w += -lr * d;
            }
        };
        if n <= PAR_CHUNK {
            update(&mut param.0, grad, &mut momentum.0);
        } else {
            param
                .0
                .par_chunks_mut(PAR_CHUNK)
                .zip(grad.par_chunks(PAR_CHUNK))
                .zip(momentum.0.par_chunks_mut(PAR_CHUNK))
                .for_each(|((ps, gs), bs)| update(ps, gs, bs));
        }
        Ok(())
    }

    fn adam_step(
        &self,
        p: &AdamParams,
        param: &mut CpuBuffer,
        grad: &CpuBuffer,
        m: &mut CpuBuffer,
        v: &mut CpuBuffer,
    ) -> Result<()> {
        p.validate()?;
        let n = param.0.len();
        check_len("adam_step", grad, n)?;
        check_len("adam_step", m, n)?;
        check_len("adam_step", v, n)?;
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
        let update = |ps: &mut [f32], gs: &[f32], ms: &mut [f32], vs: &mut [f32]| {
            for (((w, &g), m), v) in ps.iter_mut().zip(gs).zip(ms).zip(vs) {
                *w *= decay;
                let g = if l2 != 0.0 { g + l2 * *w } else { g };
                // PyTorch blends the first moment with lerp(m, g, 1 − β1), which takes one of
                // two algebraically equal forms depending on the weight.
                *m = if w1 < 0.5 {
                    *m + w1 * (g - *m)
                } else {
                    g - (g - *m) * (1.0 - w1)
                };
                *v = *v * b2f + w2 * g * g;
                *w += -step_size * (*m / (v.sqrt() / bc2_sqrt + eps));
            }
        };
        if n <= PAR_CHUNK {
            update(&mut param.0, &grad.0, &mut m.0, &mut v.0);
        } else {
            param
                .0
                .par_chunks_mut(PAR_CHUNK)
                .zip(grad.0.par_chunks(PAR_CHUNK))
                .zip(m.0.par_chunks_mut(PAR_CHUNK))
                .zip(v.0.par_chunks_mut(PAR_CHUNK))
                .for_each(|(((ps, gs), ms), vs)| update(ps, gs, ms, vs));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sgd_nesterov_two_steps() {
        let be = CpuBackend::new();
        let mut p = SgdParams {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.01,
            nesterov: true,
            first_step: true,
        };
        let (mut w, g, mut buf) = (
            CpuBuffer(vec![1.0]),
            CpuBuffer(vec![0.5]),
            CpuBuffer(vec![0.0]),
        );
        be.sgd_step(&p, &mut w, &g, &mut buf).unwrap();
        // d = 0.5 + 0.01·1 = 0.51; buf = 0.51; d = 0.51 + 0.9·0.51 = 0.969; w = 1 − 0.0969.
        assert!((buf.0[0] - 0.51).abs() < 1e-7);
        assert!((w.0[0] - 0.9031).abs() < 1e-7);
        p.first_step = false;
        be.sgd_step(&p, &mut w, &g, &mut buf).unwrap();
        // d = 0.5 + 0.009031 = 0.509031; buf = 0.459 + 0.509031 = 0.968031;
        // d = 0.509031 + 0.8712279 = 1.3802589; w = 0.9031 − 0.13802589.
        assert!((buf.0[0] - 0.968031).abs() < 1e-6);
        assert!((w.0[0] - 0.76507411).abs() < 1e-6);
    }

    #[test]
    fn adam_and_adamw_steps() {
        let be = CpuBackend::new();
        let mut p = AdamParams {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.1,
            decoupled_weight_decay: false,
            step: 2,
        };
        let (mut w, g) = (CpuBuffer(vec![2.0]), CpuBuffer(vec![-0.5]));
        let (mut m, mut v) = (CpuBuffer(vec![0.1]), CpuBuffer(vec![0.04]));
        be.adam_step(&p, &mut w, &g, &mut m, &mut v).unwrap();
        // g = −0.5 + 0.1·2 = −0.3; m = 0.09 − 0.03 = 0.06; v = 0.03996 + 0.00009 = 0.04005;
        // bc1 = 0.19, bc2 = 0.001999; w = 2 − (0.01/0.19)·0.06 / (sqrt(0.04005/0.001999) + 1e-8).
        let want = 2.0 - (0.01 / 0.19) * 0.06 / ((0.04005f64 / 0.001999).sqrt() + 1e-8);
        assert!((m.0[0] - 0.06).abs() < 1e-7);
        assert!((v.0[0] - 0.04005).abs() < 1e-7);
        assert!((w.0[0] as f64 - want).abs() < 1e-6, "{} vs {want}", w.0[0]);

        // AdamW at step 1 from zero moments: w·(1 − lr·wd) − lr·sign(g) (up to eps).
        p.decoupled_weight_decay = true;
        p.step = 1;
        let (mut w, mut m, mut v) = (
            CpuBuffer(vec![2.0]),
            CpuBuffer(vec![0.0]),
            CpuBuffer(vec![0.0]),
        );
        be.adam_step(&p, &mut w, &g, &mut m, &mut v).unwrap();
        assert!((w.0[0] - (2.0 * 0.999 + 0.01)).abs() < 1e-6);

        p.step = 0;
        assert!(be.adam_step(&p, &mut w, &g, &mut m, &mut v).is_err());
    }
}
