use crate::backend::cpu::{CpuBackend, CpuBuffer};
use crate::backend::*;
use crate::error::Result;
use crate::tensor::Shape;

impl ElementwiseOps for CpuBackend {
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn unary(&self, op: UnaryOp, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn unary_backward(
        &self,
        op: UnaryOp,
        x: &CpuBuffer,
        y: &CpuBuffer,
        dy: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn binary(
        &self,
        op: BinaryOp,
        a: &CpuBuffer,
        a_shape: &Shape,
        b: &CpuBuffer,
        b_shape: &Shape,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn fill(&self, y: &mut CpuBuffer, value: f32) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn axpy(&self, alpha: f32, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn dropout_forward(&self, p: f32, seed: u64, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        unimplemented!()
    }
    #[allow(unused_variables, clippy::too_many_arguments)]
    fn dropout_backward(
        &self,
        p: f32,
        seed: u64,
        dy: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        unimplemented!()
    }
}
