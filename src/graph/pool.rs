//! Device buffers a plan holds but is not using, for reuse by later nodes and steps.

use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::{Shape, TensorDesc};

/// Free buffers. A take reuses the smallest free buffer with room for the tensor (on backends
/// that can shorten a buffer in place; elsewhere one of exactly its length), so values of
/// different sizes that are never alive together share memory. A plan's steps repeat the same
/// sequence of takes and gives, so after the first step nothing is allocated.
pub(crate) struct BufferPool<B: Backend> {
    /// Free buffers with their capacities.
    free: Vec<(usize, B::Buffer)>,
}

impl<B: Backend> BufferPool<B> {
    pub(crate) fn new() -> Self {
        BufferPool { free: Vec::new() }
    }

    /// A buffer of `shape`'s element count: a free one (holding stale data, which every kernel
    /// overwrites) or a new one.
    pub(crate) fn take(&mut self, backend: &B, shape: &Shape) -> Result<B::Buffer> {
        let len = shape.numel();
        let mut fitting: Vec<usize> = (0..self.free.len())
            .filter(|&i| self.free[i].0 >= len)
            .collect();
        fitting.sort_by_key(|&i| self.free[i].0);
        for i in fitting {
            if backend.reuse_as(&mut self.free[i].1, len) {
                return Ok(self.free.swap_remove(i).1);
            }
        }
        backend.alloc(&TensorDesc::f32(shape.clone()))
    }

    /// Returns `buf` for reuse.
    pub(crate) fn give(&mut self, backend: &B, buf: B::Buffer) {
        self.free.push((backend.capacity(&buf), buf));
    }

    /// Elements the free buffers have room for.
    pub(crate) fn elements(&self) -> usize {
        self.free.iter().map(|(capacity, _)| capacity).sum()
    }
}
