use crate::backend::cpu::{CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::Result;
use crate::tensor::Shape;

impl PoolOps for CpuBackend {
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn max_pool2d_forward(&self, p: &Pool2dParams, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn max_pool2d_backward(
        &self,
        p: &Pool2dParams,
        x: &CpuBuffer,
        y: &CpuBuffer,
        dy: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
}
