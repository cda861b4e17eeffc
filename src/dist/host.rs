//! Collectives between threads of one process through host memory, on any backend.

use std::sync::{Arc, Barrier, Mutex};

use crate::backend::Memory;
use crate::dist::{Collective, Reduction};
use crate::error::{Error, Result};

/// One rank of a group of threads that reduce and broadcast through host memory.
///
/// Every operation downloads the rank's buffers, meets the other ranks at a barrier and uploads
/// the result, so it is synchronous and slow; it works on every backend and needs no GPU, which
/// makes it the reference for data-parallel logic in tests. Sums run over the ranks in rank
/// order, so every rank gets bit-identical results.
pub struct HostCollective {
    rank: usize,
    group: Arc<Group>,
}

struct Group {
    size: usize,
    barrier: Barrier,
    /// Each rank's contribution to the current operation.
    slots: Mutex<Vec<Vec<f32>>>,
}

impl HostCollective {
    /// The `size` ranks of a new group, to be moved into one thread each.
    pub fn group(size: usize) -> Result<Vec<HostCollective>> {
        if size == 0 {
            return Err(Error::invalid("HostCollective", "a group needs a rank"));
        }
        let group = Arc::new(Group {
            size,
            barrier: Barrier::new(size),
            slots: Mutex::new(vec![Vec::new(); size]),
        });
        Ok((0..size)
            .map(|rank| HostCollective {
                rank,
                group: Arc::clone(&group),
            })
            .collect())
    }

    /// Publishes this rank's data, waits for every rank, returns `combine(slots)` and waits
    /// again so no rank overwrites a slot another is still reading.
    fn exchange(&self, data: Vec<f32>, combine: impl FnOnce(&[Vec<f32>]) -> Vec<f32>) -> Vec<f32> {
        self.slots()[self.rank] = data;
        self.group.barrier.wait();
        let result = combine(&self.slots());
        self.group.barrier.wait();
        result
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Vec<f32>>> {
        // A rank that panicked while holding the lock leaves data that is still plain floats.
        self.group.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn concat<B: Memory>(backend: &B, buffers: &[&mut B::Buffer]) -> Result<Vec<f32>> {
    let mut data = Vec::new();
    for buf in buffers {
        data.extend(backend.download(buf)?);
    }
    Ok(data)
}

fn scatter<B: Memory>(backend: &B, data: &[f32], buffers: &mut [&mut B::Buffer]) -> Result<()> {
    let mut offset = 0;
    for buf in buffers.iter_mut() {
        let len = backend.len(buf);
        backend.upload(&data[offset..offset + len], buf)?;
        offset += len;
    }
    Ok(())
}

impl<B: Memory> Collective<B> for HostCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.group.size
    }

    fn all_reduce(
        &mut self,
        backend: &B,
        reduction: Reduction,
        buffers: &mut [&mut B::Buffer],
    ) -> Result<()> {
        let data = concat(backend, buffers)?;
        let len = data.len();
        let scale = match reduction {
            Reduction::Sum => 1.0,
            Reduction::Mean => 1.0 / self.group.size as f32,
        };
        let total = self.exchange(data, |slots| {
            if slots.iter().any(|s| s.len() != len) {
                return Vec::new();
            }
            let mut total = vec![0.0f32; len];
            for slot in slots {
                total.iter_mut().zip(slot).for_each(|(t, x)| *t += x);
            }
            total.iter_mut().for_each(|t| *t *= scale);
            total
        });
        if total.len() != len {
            return Err(Error::Distributed {
                rank: self.rank,
                reason: "all_reduce: the ranks passed buffers of different lengths".into(),
            });
        }
        scatter(backend, &total, buffers)
    }

    fn broadcast(
        &mut self,
        backend: &B,
        root: usize,
        buffers: &mut [&mut B::Buffer],
    ) -> Result<()> {
        if root >= self.group.size {
            return Err(Error::invalid(
                "broadcast",
                format!("root {root} is not a rank of {}", self.group.size),
            ));
        }
        let data = concat(backend, buffers)?;
        let len = data.len();
        let value = self.exchange(data, |slots| slots[root].clone());
        if value.len() != len {
            return Err(Error::Distributed {
                rank: self.rank,
                reason: "broadcast: the ranks passed buffers of different lengths".into(),
            });
        }
        scatter(backend, &value, buffers)
    }

    fn wait(&mut self, _backend: &B) -> Result<()> {
        Ok(())
    }
}
