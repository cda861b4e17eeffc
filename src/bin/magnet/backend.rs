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
