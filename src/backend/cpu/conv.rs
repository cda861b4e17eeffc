use crate::backend::cpu::{CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::Result;
use crate::tensor::Shape;

impl ConvOps for CpuBackend {
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn conv2d_forward(
        &self,
        p: &Conv2dParams,
        x: &CpuBuffer,
        w: &CpuBuffer,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn conv2d_backward_data(
        &self,
        p: &Conv2dParams,
        dy: &CpuBuffer,
        w: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn conv2d_backward_filter(
        &self,
        p: &Conv2dParams,
        x: &CpuBuffer,
        dy: &CpuBuffer,
        dw: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
}
