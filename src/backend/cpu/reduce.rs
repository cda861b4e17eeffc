use crate::backend::cpu::{CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::Result;
use crate::tensor::Shape;

impl ReduceOps for CpuBackend {
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn reduce(
        &self,
        op: ReduceOp,
        x: &CpuBuffer,
        x_shape: &Shape,
        y_shape: &Shape,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn softmax(
        &self,
        rows: usize,
        cols: usize,
        log: bool,
        x: &CpuBuffer,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn softmax_backward(
        &self,
        rows: usize,
        cols: usize,
        log: bool,
        y: &CpuBuffer,
        dy: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
}
