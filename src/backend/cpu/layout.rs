use crate::backend::cpu::{CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::Result;
use crate::tensor::Shape;

impl LayoutOps for CpuBackend {
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn concat_last(
        &self,
        rows: usize,
        parts: &[(&CpuBuffer, usize)],
        y: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn split_last(
        &self,
        rows: usize,
        x: &CpuBuffer,
        parts: &mut [(&mut CpuBuffer, usize)],
    ) -> Result<()> {
        unimplemented!()
    }
}
