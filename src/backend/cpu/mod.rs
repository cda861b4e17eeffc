//! The CPU backend: the reference every other backend is checked against, and fast in its own
//! right (convolution on a real GEMM, kernels parallelised with rayon).

mod conv;
mod elementwise;
mod im2col;
mod layout;
mod loss;
mod matmul;
mod norm;
mod optim;
mod pool;
mod reduce;
mod resample;

use crate::backend::Memory;
use crate::error::{Error, Result};
use crate::tensor::TensorDesc;

/// The CPU backend. Cheap to clone; kernels run on rayon's global thread pool.
#[derive(Debug, Clone, Default)]
pub struct CpuBackend;

impl CpuBackend {
    /// The CPU backend (always available).
    pub fn new() -> Self {
        CpuBackend
    }
}

/// A buffer in host memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CpuBuffer(Vec<f32>);

impl CpuBuffer {
    /// The elements.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// The elements, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

/// Errors unless `buf` holds exactly `expected` elements.
pub(crate) fn check_len(op: &'static str, buf: &CpuBuffer, expected: usize) -> Result<()> {
    if buf.0.len() != expected {
        return Err(Error::Length {
            op,
            expected,
            got: buf.0.len(),
        });
    }
    Ok(())
}

impl Memory for CpuBackend {
    type Buffer = CpuBuffer;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn device_name(&self) -> String {
        format!("CPU ({} threads)", rayon::current_num_threads())
    }

    fn alloc(&self, desc: &TensorDesc) -> Result<CpuBuffer> {
        Ok(CpuBuffer(vec![0.0; desc.shape.numel()]))
    }

    fn len(&self, buf: &CpuBuffer) -> usize {
        buf.0.len()
    }

    fn capacity(&self, buf: &CpuBuffer) -> usize {
        buf.0.capacity()
    }

    fn shrinks_in_place(&self) -> bool {
        true
    }

    fn reuse_as(&self, buf: &mut CpuBuffer, len: usize) -> bool {
        if len > buf.0.capacity() {
            return false;
        }
        // Within the capacity: no reallocation.
        buf.0.resize(len, 0.0);
        true
    }

    fn upload(&self, data: &[f32], dst: &mut CpuBuffer) -> Result<()> {
        check_len("upload", dst, data.len())?;
        dst.0.copy_from_slice(data);
        Ok(())
    }

    fn download(&self, src: &CpuBuffer) -> Result<Vec<f32>> {
        Ok(src.0.clone())
    }

    fn copy(&self, src: &CpuBuffer, dst: &mut CpuBuffer) -> Result<()> {
        check_len("copy", dst, src.0.len())?;
        dst.0.copy_from_slice(&src.0);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }
}
