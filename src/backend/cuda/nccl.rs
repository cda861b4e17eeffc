//! NCCL collectives for data-parallel training, on a communication stream beside the backend's
//! compute stream.

use std::sync::Arc;
use std::time::Duration;

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::CudaStream;
use cudarc::nccl::{group_end, group_start, Comm, Id, ReduceOp};

use super::{backend_error, driver_error, CudaBackend, CudaBuffer};
use crate::dist::{rendezvous, Collective, DistEnv, Reduction};
use crate::error::{Error, Result};

/// Bytes of an NCCL unique id.
const ID_BYTES: usize = 128;

/// One rank's NCCL communicator.
///
/// Collectives run on their own stream: each waits for the work already enqueued on the
/// backend's stream (an event), so gradients can travel while backward goes on;
/// [`Collective::wait`] makes the backend's stream wait for them in turn. Fused calls
/// (`all_reduce` of several buffers) are one NCCL group.
pub struct NcclCollective {
    // Drops before its stream.
    comm: Comm,
    stream: Arc<CudaStream>,
    backend: CudaBackend,
}

impl std::fmt::Debug for NcclCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCollective")
            .field("rank", &self.comm.rank())
            .field("world_size", &self.comm.world_size())
            .finish()
    }
}

fn check_nccl() -> Result<()> {
    // SAFETY: only tries to open the shared library by name.
    if unsafe { cudarc::nccl::sys::is_culib_present() } {
        Ok(())
    } else {
        Err(backend_error(
            "NCCL (libnccl) was not found on the library path",
        ))
    }
}

fn nccl_error(what: &str, e: impl std::fmt::Debug) -> Error {
    backend_error(format!("NCCL {what}: {e:?}"))
}

impl NcclCollective {
    /// A new NCCL unique id, made by rank 0 and handed to every rank.
    pub fn unique_id() -> Result<Vec<u8>> {
        check_nccl()?;
        let id = Id::new().map_err(|e| nccl_error("unique id", e))?;
        Ok(id.internal().iter().map(|&c| c as u8).collect())
    }

    /// Joins the communicator of `id` as `rank` of `world_size` on `backend`'s device. Every
    /// rank must call this at about the same time: it returns once all have joined.
    pub fn new(backend: &CudaBackend, rank: usize, world_size: usize, id: &[u8]) -> Result<Self> {
        check_nccl()?;
        let id: [u8; ID_BYTES] = id.try_into().map_err(|_| {
            backend_error(format!(
                "an NCCL unique id has {ID_BYTES} bytes, not {}",
                id.len()
            ))
        })?;
        if rank >= world_size {
            return Err(Error::invalid(
                "NcclCollective",
                format!("rank {rank} is not in a world of {world_size}"),
            ));
        }
        backend.bind()?;
        let stream = backend
            .inner
            .ctx
            .new_stream()
            .map_err(|e| driver_error("stream creation", e))?;
        let comm = Comm::from_rank(
            stream.clone(),
            rank,
            world_size,
            Id::uninit(id.map(|b| b as std::ffi::c_char)),
        )
        .map_err(|e| nccl_error("communicator initialisation", e))?;
        Ok(NcclCollective {
            comm,
            stream,
            backend: backend.clone(),
        })
    }

    /// Joins the run described by `env`: rank 0 makes the unique id and hands it out over the
    /// rendezvous (see [`rendezvous`]).
    pub fn from_env(backend: &CudaBackend, env: &DistEnv, timeout: Duration) -> Result<Self> {
        let id = rendezvous::share_from_rank0(env, timeout, Self::unique_id)?;
        Self::new(backend, env.rank, env.world_size, &id)
    }

    /// Makes `waiter` wait for the work enqueued so far on `signaller`.
    fn order(&self, signaller: &CudaStream, waiter: &CudaStream) -> Result<()> {
        let event = signaller
            .record_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING))
            .map_err(|e| driver_error("recording an event", e))?;
        waiter
            .wait(&event)
            .map_err(|e| driver_error("waiting for an event", e))
    }

    /// Runs `each` on every non-empty buffer inside one NCCL group, after the compute stream's
    /// work so far.
    fn grouped(
        &mut self,
        what: &str,
        buffers: &mut [&mut CudaBuffer],
        each: impl Fn(&Comm, &mut CudaBuffer) -> Result<(), cudarc::nccl::result::NcclError>,
    ) -> Result<()> {
        self.order(&self.backend.inner.stream, &self.stream)?;
        group_start().map_err(|e| nccl_error("group start", e))?;
        let mut result = Ok(());
        for buf in buffers.iter_mut().filter(|b| b.len > 0) {
            result = each(&self.comm, buf).map_err(|e| nccl_error(what, e));
            if result.is_err() {
                break;
            }
        }
        // The group must be closed even after an error, or NCCL stays in group mode.
        let ended = group_end()
            .map(|_| ())
            .map_err(|e| nccl_error("group end", e));
        result.and(ended)
    }
}

impl Collective<CudaBackend> for NcclCollective {
    fn rank(&self) -> usize {
        self.comm.rank()
    }

    fn world_size(&self) -> usize {
        self.comm.world_size()
    }

    fn all_reduce(
        &mut self,
        _backend: &CudaBackend,
        reduction: Reduction,
        buffers: &mut [&mut CudaBuffer],
    ) -> Result<()> {
        let op = match reduction {
            Reduction::Sum => ReduceOp::Sum,
            Reduction::Mean => ReduceOp::Avg,
        };
        self.grouped("all-reduce", buffers, |comm, buf| {
            let len = buf.len;
            let mut view = buf.data.slice_mut(..len);
            comm.all_reduce_in_place(&mut view, &op).map(|_| ())
        })
    }

    fn broadcast(
        &mut self,
        _backend: &CudaBackend,
        root: usize,
        buffers: &mut [&mut CudaBuffer],
    ) -> Result<()> {
        let world = self.comm.world_size();
        let root = i32::try_from(root)
            .ok()
            .filter(|&r| (r as usize) < world)
            .ok_or_else(|| {
                Error::invalid("broadcast", format!("root {root} is not a rank of {world}"))
            })?;
        self.grouped("broadcast", buffers, |comm, buf| {
            let len = buf.len;
            let mut view = buf.data.slice_mut(..len);
            comm.broadcast_in_place(&mut view, root).map(|_| ())
        })
    }

    fn wait(&mut self, _backend: &CudaBackend) -> Result<()> {
        self.order(&self.stream, &self.backend.inner.stream)
    }
}
