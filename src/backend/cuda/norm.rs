//! Batch normalisation through cuDNN's spatial batch norm. A `rows × channels` tensor (NHWC
//! flattened) is described as NHWC with N = 1, C = channels, H = rows, W = 1, so cuDNN reduces
//! over the rows. cuDNN follows PyTorch: the biased batch variance normalises, the unbiased one
//! feeds the running variance, `running = (1 − factor) · running + factor · batch`, and the saved
//! inverse standard deviation is `1 / sqrt(var + eps)`.

use std::ffi::c_void;

use cudarc::cudnn::sys;

use super::dnn::{status, TensorDesc};
use super::{check_len, CudaBackend, CudaBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

/// `rows · channels`, or an error when it overflows.
fn numel(op: &'static str, p: &BatchNormParams) -> Result<usize> {
    p.rows
        .checked_mul(p.channels)
        .ok_or_else(|| Error::invalid(op, format!("{p:?} overflows")))
}

/// The data descriptor and the derived per-channel parameter descriptor.
fn descriptors(p: &BatchNormParams) -> Result<(TensorDesc, TensorDesc)> {
    let x = TensorDesc::nhwc([1, p.channels, p.rows, 1])?;
    let params = TensorDesc::batch_norm_params(&x)?;
    Ok((x, params))
}

const MODE: sys::cudnnBatchNormMode_t = sys::cudnnBatchNormMode_t::CUDNN_BATCHNORM_SPATIAL;

fn cptr(p: u64) -> *const c_void {
    p as *const c_void
}

fn mptr(p: u64) -> *mut c_void {
    p as *mut c_void
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
        let (xd, pd) = descriptors(p)?;
        let (one, zero) = (1.0f32, 0.0f32);
        let dnn = self.dnn()?;
        self.bind()?;
        // SAFETY: live handle and descriptors matching the buffers, whose lengths are checked.
        let s = unsafe {
            sys::cudnnBatchNormalizationForwardTraining(
                dnn.handle(),
                MODE,
                &one as *const f32 as *const c_void,
                &zero as *const f32 as *const c_void,
                xd.0,
                cptr(self.ptr(x)),
                xd.0,
                mptr(self.ptr(y)),
                pd.0,
                cptr(self.ptr(gamma)),
                cptr(self.ptr(beta)),
                p.momentum as f64,
                mptr(self.ptr(running_mean)),
                mptr(self.ptr(running_var)),
                p.eps as f64,
                mptr(self.ptr(save_mean)),
                mptr(self.ptr(save_invstd)),
            )
        };
        status("cudnnBatchNormalizationForwardTraining", s)
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
        let (xd, pd) = descriptors(p)?;
        let (one, zero) = (1.0f32, 0.0f32);
        let dnn = self.dnn()?;
        self.bind()?;
        // SAFETY: as in batch_norm_train.
        let s = unsafe {
            sys::cudnnBatchNormalizationForwardInference(
                dnn.handle(),
                MODE,
                &one as *const f32 as *const c_void,
                &zero as *const f32 as *const c_void,
                xd.0,
                cptr(self.ptr(x)),
                xd.0,
                mptr(self.ptr(y)),
                pd.0,
                cptr(self.ptr(gamma)),
                cptr(self.ptr(beta)),
                cptr(self.ptr(running_mean)),
                cptr(self.ptr(running_var)),
                p.eps as f64,
            )
        };
        status("cudnnBatchNormalizationForwardInference", s)
    }

    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        p: &BatchNormParams,
        x: &CudaBuffer,
        dy: &CudaBuffer,
        gamma: &CudaBuffer,
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
        for buf in [gamma, save_mean, save_invstd, &*dgamma, &*dbeta] {
            check_len(OP, buf, p.channels)?;
        }
        let (xd, pd) = descriptors(p)?;
        let (one, zero) = (1.0f32, 0.0f32);
        let (one_p, zero_p) = (
            &one as *const f32 as *const c_void,
            &zero as *const f32 as *const c_void,
        );
        let dnn = self.dnn()?;
        self.bind()?;
        // SAFETY: as in batch_norm_train; the saved statistics are those of the forward pass.
        let s = unsafe {
            sys::cudnnBatchNormalizationBackward(
                dnn.handle(),
                MODE,
                one_p,
                zero_p,
                one_p,
                zero_p,
                xd.0,
                cptr(self.ptr(x)),
                xd.0,
                cptr(self.ptr(dy)),
                xd.0,
                mptr(self.ptr(dx)),
                pd.0,
                cptr(self.ptr(gamma)),
                mptr(self.ptr(dgamma)),
                mptr(self.ptr(dbeta)),
                p.eps as f64,
                cptr(self.ptr(save_mean)),
                cptr(self.ptr(save_invstd)),
            )
        };
        status("cudnnBatchNormalizationBackward", s)
    }
}
