//! Choosing the backend on the command line and running generic code on it.

use clap::ValueEnum;

/// Which backend runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BackendChoice {
    Cpu,
    Cuda,
    Wgpu,
}

/// Runs `$body` with `$b` bound to the chosen backend; a backend this build lacks is an error.
macro_rules! with_backend {
    ($choice:expr, |$b:ident| $body:expr) => {
        match $choice {
            $crate::backend::BackendChoice::Cpu => {
                let $b = magnet::CpuBackend::new();
                $body
            }
            $crate::backend::BackendChoice::Cuda => {
                #[cfg(feature = "cuda")]
                {
                    let $b = magnet::backend::CudaBackend::new(0)?;
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                {
                    Err(magnet::Error::Backend {
                        backend: "cuda",
                        reason: "this build has no CUDA support; rebuild with --features cuda"
                            .into(),
                    })
                }
            }
            $crate::backend::BackendChoice::Wgpu => {
                #[cfg(feature = "wgpu")]
                {
                    let $b = magnet::backend::WgpuBackend::new()?;
                    $body
                }
                #[cfg(not(feature = "wgpu"))]
                {
                    Err(magnet::Error::Backend {
                        backend: "wgpu",
                        reason: "this build has no wgpu support; rebuild with --features wgpu"
                            .into(),
                    })
                }
            }
        }
    };
}
pub(crate) use with_backend;

/// The CUDA backend and NCCL communicator of this process's rank in a data-parallel run (the GPU
/// `LOCAL_RANK`, after the rendezvous); `op` names the command in errors.
#[cfg(feature = "cuda")]
pub fn open_rank(
    op: &'static str,
    choice: BackendChoice,
    env: &magnet::dist::DistEnv,
) -> magnet::Result<(
    magnet::backend::CudaBackend,
    magnet::backend::NcclCollective,
)> {
    if choice != BackendChoice::Cuda {
        return Err(magnet::Error::invalid(
            op,
            "data parallel (--gpus or WORLD_SIZE) runs on --backend cuda",
        ));
    }
    let backend = magnet::backend::CudaBackend::new(env.local_rank)?;
    let timeout = magnet::dist::rendezvous::timeout_from_env()?;
    let collective = magnet::backend::NcclCollective::from_env(&backend, env, timeout)?;
    Ok((backend, collective))
}

/// The error of a data-parallel run in a build without CUDA.
#[cfg(not(feature = "cuda"))]
pub fn no_nccl() -> magnet::Error {
    magnet::Error::Backend {
        backend: "cuda",
        reason: "data parallel needs CUDA and NCCL; rebuild with --features cuda".into(),
    }
}
