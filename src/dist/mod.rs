//! Data-parallel training over several devices: one process (or thread) per device, each with
//! its own backend and its own shard of the data, gradients averaged over the ranks as the
//! backward pass produces them.
//!
//! - [`Collective`]: the collective operations a data-parallel run needs (all-reduce,
//!   broadcast), enqueued on a backend's buffers. NCCL implements it on CUDA
//!   (`backend::cuda::NcclCollective`); [`HostCollective`] implements it for threads of one process
//!   on any backend through host memory (tests, CPU runs).
//! - [`DistEnv`]: rank, world size and the master's address from torchrun-style environment
//!   variables; [`rendezvous::share_from_rank0`] hands a token (NCCL's unique id) from rank 0 to
//!   every other rank over TCP.
//! - [`DataParallel`]: broadcasts rank 0's weights, groups the gradients in buckets in the order
//!   backward finishes them and all-reduces each bucket as soon as it is complete.

mod data_parallel;
mod env;
mod host;
pub mod launch;
pub mod rendezvous;

pub use data_parallel::{DataParallel, ParallelConfig, DEFAULT_BUCKET_BYTES};
pub use env::DistEnv;
pub use host::HostCollective;

use crate::backend::Memory;
use crate::error::Result;

/// How [`Collective::all_reduce`] combines the ranks' values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reduction {
    Sum,
    /// The sum divided by the number of ranks.
    Mean,
}

/// Collective operations across the ranks of a data-parallel run, on buffers of backend `B`.
///
/// Every rank must make the same calls in the same order with buffers of the same lengths.
/// Operations may run asynchronously (on CUDA: on a communication stream beside the compute
/// stream); they start after the work already enqueued on the backend, and [`Collective::wait`]
/// makes the backend's later work wait for them.
pub trait Collective<B: Memory> {
    /// This process's rank, `0..world_size`.
    fn rank(&self) -> usize;

    /// Number of ranks.
    fn world_size(&self) -> usize;

    /// Replaces each buffer, in place, by the reduction of that buffer over the ranks; the
    /// buffers of one call travel together (one fused operation).
    fn all_reduce(
        &mut self,
        backend: &B,
        reduction: Reduction,
        buffers: &mut [&mut B::Buffer],
    ) -> Result<()>;

    /// Overwrites each buffer with `root`'s.
    fn broadcast(&mut self, backend: &B, root: usize, buffers: &mut [&mut B::Buffer])
        -> Result<()>;

    /// Makes the backend's work enqueued from now on wait for every collective enqueued so far.
    fn wait(&mut self, backend: &B) -> Result<()>;
}
