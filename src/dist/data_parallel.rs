//! Gradient averaging in buckets, overlapped with the backward pass.

use crate::backend::Backend;
use crate::dist::{Collective, Reduction};
use crate::error::Result;
use crate::graph::{Executor, GradientReady, Mode, NodeId, TensorId};
use crate::tensor::HostTensor;

/// Bucket size when none is given: PyTorch DistributedDataParallel's 25 MiB.
pub const DEFAULT_BUCKET_BYTES: usize = 25 << 20;

/// How a [`DataParallel`] run communicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParallelConfig {
    /// Gradients are all-reduced in buckets of about this many bytes.
    pub bucket_bytes: usize,
    /// Batch norm in training normalises with the statistics of the combined batch of all ranks
    /// (PyTorch's `SyncBatchNorm`) instead of each rank's own: two small all-reduces per layer
    /// forward and one backward, each waited for. Every rank's batch must have the same size.
    pub sync_batch_norm: bool,
}

impl Default for ParallelConfig {
    fn default() -> Self {
        ParallelConfig {
            bucket_bytes: DEFAULT_BUCKET_BYTES,
            sync_batch_norm: false,
        }
    }
}

/// Data-parallel training on one rank: every rank runs the same graph on its own shard of the
/// data; after each backward the gradients are the mean over the ranks, so the optimiser steps
/// are identical everywhere and the weights stay in lockstep.
///
/// Gradients are grouped in buckets of about [`DEFAULT_BUCKET_BYTES`] in the order backward
/// finishes them (output layers first); a bucket is all-reduced as soon as its last gradient is
/// final, while the backend goes on with the rest of backward.
pub struct DataParallel<B: Backend> {
    collective: Box<dyn Collective<B>>,
    sync_batch_norm: bool,
    buckets: Vec<Vec<TensorId>>,
    /// The bucket of each tensor, by tensor index (`None`: not trainable).
    bucket_of: Vec<Option<usize>>,
    /// Gradients of each bucket not yet final in the current backward.
    pending: Vec<usize>,
    launched: Vec<bool>,
}

impl<B: Backend> DataParallel<B> {
    /// Joins `exec` to the run of `collective`: broadcasts rank 0's parameters and state
    /// (batch-norm statistics) so every rank starts from the same weights, and plans the
    /// buckets.
    pub fn new(
        mut collective: Box<dyn Collective<B>>,
        exec: &mut Executor<B>,
        config: ParallelConfig,
    ) -> Result<Self> {
        let bucket_bytes = config.bucket_bytes;
        let (backend, mut tensors) = exec.tensor_buffers_mut();
        collective.broadcast(backend, 0, &mut tensors)?;
        collective.wait(backend)?;
        let specs = &exec.graph().tensors;
        let mut buckets: Vec<Vec<TensorId>> = Vec::new();
        let mut bucket_of = vec![None; specs.len()];
        let mut filled = usize::MAX;
        for t in exec.gradient_order() {
            let bytes = specs[t.index()].shape.numel() * std::mem::size_of::<f32>();
            if filled >= bucket_bytes.max(1) {
                buckets.push(Vec::new());
                filled = 0;
            }
            filled += bytes;
            bucket_of[t.index()] = Some(buckets.len() - 1);
            buckets.last_mut().unwrap().push(t);
        }
        Ok(DataParallel {
            collective,
            sync_batch_norm: config.sync_batch_norm,
            pending: vec![0; buckets.len()],
            launched: vec![false; buckets.len()],
            buckets,
            bucket_of,
        })
    }

    /// This rank.
    pub fn rank(&self) -> usize {
        self.collective.rank()
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.collective.world_size()
    }

    /// Ends the data-parallel run of this executor, giving back the collective for another.
    pub fn into_collective(self) -> Box<dyn Collective<B>> {
        self.collective
    }

    /// The tensors of each bucket, in the order they are all-reduced.
    pub fn buckets(&self) -> &[Vec<TensorId>] {
        &self.buckets
    }

    /// Runs `exec`'s forward; batch norm synchronises its training statistics over the ranks
    /// when the run was configured so.
    pub fn forward(
        &mut self,
        exec: &mut Executor<B>,
        feeds: &[(NodeId, &HostTensor)],
        mode: Mode,
    ) -> Result<()> {
        let collective = self.collective();
        exec.forward_with(feeds, mode, collective)
    }

    /// Back-propagates from `loss` and averages every gradient over the ranks; the optimiser
    /// may step as soon as this returns.
    pub fn backward(&mut self, exec: &mut Executor<B>, loss: NodeId) -> Result<()> {
        for (pending, bucket) in self.pending.iter_mut().zip(&self.buckets) {
            *pending = bucket.len();
        }
        self.launched.iter_mut().for_each(|l| *l = false);
        exec.backward_notifying(loss, self)?;
        // Gradients backward never reported final (not reached from this loss) are the same on
        // every rank, as the graph is: the buckets they hold go out now with what they have.
        let (backend, grads) = exec.gradients_mut();
        for bucket in 0..self.buckets.len() {
            if !self.launched[bucket] {
                self.launch(backend, bucket, grads)?;
            }
        }
        self.collective.wait(backend)
    }

    fn launch(
        &mut self,
        backend: &B,
        bucket: usize,
        grads: &mut [Option<B::Buffer>],
    ) -> Result<()> {
        self.launched[bucket] = true;
        let bucket_of = &self.bucket_of;
        let mut buffers: Vec<&mut B::Buffer> = grads
            .iter_mut()
            .enumerate()
            .filter(|(t, _)| bucket_of[*t] == Some(bucket))
            .filter_map(|(_, g)| g.as_mut())
            .collect();
        if buffers.is_empty() {
            return Ok(());
        }
        self.collective
            .all_reduce(backend, Reduction::Mean, &mut buffers)
    }
}

impl<B: Backend> GradientReady<B> for DataParallel<B> {
    fn ready(
        &mut self,
        backend: &B,
        tensor: TensorId,
        grads: &mut [Option<B::Buffer>],
    ) -> Result<()> {
        let Some(bucket) = self.bucket_of[tensor.index()] else {
            return Ok(());
        };
        self.pending[bucket] -= 1;
        if self.pending[bucket] == 0 {
            self.launch(backend, bucket, grads)?;
        }
        Ok(())
    }

    fn collective(&mut self) -> Option<&mut (dyn Collective<B> + 'static)> {
        if self.sync_batch_norm {
            Some(self.collective.as_mut())
        } else {
            None
        }
    }
}
