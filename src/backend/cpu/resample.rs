use crate::backend::cpu::{CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::Result;
use crate::tensor::Shape;

impl ResampleOps for CpuBackend {
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn upsample_bilinear2d_forward(
        &self,
        p: &UpsampleParams,
        x: &CpuBuffer,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn upsample_bilinear2d_backward(
        &self,
        p: &UpsampleParams,
        dy: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
}
