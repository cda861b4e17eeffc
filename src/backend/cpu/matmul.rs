use crate::backend::cpu::{CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::Result;
use crate::tensor::Shape;

impl MatmulOps for CpuBackend {
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn gemm(&self, p: &GemmParams, a: &CpuBuffer, b: &CpuBuffer, c: &mut CpuBuffer) -> Result<()> {
        unimplemented!()
    }
}
