use crate::backend::cpu::{CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::Result;
use crate::tensor::Shape;

impl OptimOps for CpuBackend {
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn sgd_step(
        &self,
        p: &SgdParams,
        param: &mut CpuBuffer,
        grad: &CpuBuffer,
        momentum: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn adam_step(
        &self,
        p: &AdamParams,
        param: &mut CpuBuffer,
        grad: &CpuBuffer,
        m: &mut CpuBuffer,
        v: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
}
