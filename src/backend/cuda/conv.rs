//! Convolution through cuDNN (see [`super::dnn`]): NHWC tensors, `[out, kh, kw, in]` filters.

use super::dnn::{ConvMath, ConvPtrs, Fp32ConvScratch};
use super::{check_len, CudaBackend, CudaBuffer};
use crate::backend::*;
use crate::error::Result;

impl CudaBackend {
    /// Validates `p` and the three buffer lengths (input, weights, output), then runs `kind`.
    fn convolution(
        &self,
        op: &'static str,
        kind: ConvKind,
        p: &Conv2dParams,
        [x, w, y]: [&CudaBuffer; 3],
        ptrs: ConvPtrs,
    ) -> Result<()> {
        p.validate(op)?;
        check_len(op, x, p.input_shape().numel())?;
        check_len(op, w, p.weight_shape().numel())?;
        check_len(op, y, p.output_shape().numel())?;
        let tf32 = self.tf32();
        let policy = self.fp32_conv_scratch();
        let layout = self.fp32_conv_layout();
        let mut dnn = self.dnn()?;
        let scratch = match policy {
            _ if tf32 => None,
            Fp32ConvScratch::Unlimited => None,
            Fp32ConvScratch::PerCall(limit) => Some(limit.bytes(p)),
            Fp32ConvScratch::Fitted { .. } => dnn.fitted_budget(),
        };
        let math = ConvMath {
            tf32,
            direct_only: self.direct_convolutions(),
            nchw: false,
            scratch,
        };
        self.bind()?;
        dnn.convolution(kind, p, math, layout, ptrs)
    }
}

impl ConvOps for CudaBackend {
    fn conv2d_forward(
        &self,
        p: &Conv2dParams,
        x: &CudaBuffer,
        w: &CudaBuffer,
        y: &mut CudaBuffer,
    ) -> Result<()> {
        let ptrs = ConvPtrs {
            a: self.ptr(x),
            b: self.ptr(w),
            out: self.ptr(y),
        };
        self.convolution("conv2d_forward", ConvKind::Forward, p, [x, w, y], ptrs)
    }

    fn conv2d_backward_data(
        &self,
        p: &Conv2dParams,
        dy: &CudaBuffer,
        w: &CudaBuffer,
        dx: &mut CudaBuffer,
    ) -> Result<()> {
        let ptrs = ConvPtrs {
            a: self.ptr(dy),
            b: self.ptr(w),
            out: self.ptr(dx),
        };
        let op = "conv2d_backward_data";
        self.convolution(op, ConvKind::BackwardData, p, [dx, w, dy], ptrs)
    }

    fn conv2d_backward_filter(
        &self,
        p: &Conv2dParams,
        x: &CudaBuffer,
        dy: &CudaBuffer,
        dw: &mut CudaBuffer,
    ) -> Result<()> {
        let ptrs = ConvPtrs {
            a: self.ptr(x),
            b: self.ptr(dy),
            out: self.ptr(dw),
        };
        let op = "conv2d_backward_filter";
        self.convolution(op, ConvKind::BackwardFilter, p, [x, dw, dy], ptrs)
    }
}
