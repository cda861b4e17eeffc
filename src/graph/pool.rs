//! Device buffers a plan holds but is not using, for reuse by later nodes and steps.

use crate::backend::Backend;
use crate::error::Result;
use crate::tensor::{Shape, TensorDesc};

/// Free buffers. A take reuses the smallest free buffer with room for the tensor (on backends
/// that can shorten a buffer in place; elsewhere one of exactly its length), so values of
/// different sizes that are never alive together share memory.
///
/// During a plan's first step, a buffer allocated because nothing free had room replaces the
/// largest smaller free buffer: as a U-Net's decoder climbs back to full resolution, each level's
/// buffers give way to the next level's instead of piling up (an evaluation of the base-64 U-Net
/// at 256×256 held 110 MiB per image without this, 79 with it). Later steps repeat the same sequence of takes and
/// gives on a pool that never shrinks, so they allocate nothing.
pub(crate) struct BufferPool<B: Backend> {
    /// Free buffers with their capacities.
    free: Vec<(usize, B::Buffer)>,
    /// Whether the plan's first step is still running.
    first_step: bool,
}

impl<B: Backend> BufferPool<B> {
    pub(crate) fn new() -> Self {
        BufferPool {
            free: Vec::new(),
            first_step: true,
        }
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
        let smaller = (0..self.free.len())
            .filter(|&i| self.first_step && self.free[i].0 < len)
            .max_by_key(|&i| self.free[i].0);
        if let Some(i) = smaller {
            self.free.swap_remove(i);
        }
        backend.alloc(&TensorDesc::f32(shape.clone()))
    }

    /// Returns `buf` for reuse.
    pub(crate) fn give(&mut self, backend: &B, buf: B::Buffer) {
        self.free.push((backend.capacity(&buf), buf));
    }

    /// Marks the end of the first step (and of any later one).
    pub(crate) fn step_done(&mut self) {
        self.first_step = false;
    }

    /// Elements the free buffers have room for.
    pub(crate) fn elements(&self) -> usize {
        self.free.iter().map(|(capacity, _)| capacity).sum()
    }
}
