//! The CUDA backend (feature `cuda`), on cudarc with dynamic loading: magnet builds without CUDA
//! and finds the driver and libraries at run time.
//!
//! cudarc aborts when a library it needs is missing, so every entry point checks for the libraries
//! first and returns a typed error instead.

use crate::error::{Error, Result};

/// The CUDA devices of this machine, by name; a typed error when the driver or a library magnet
/// needs (NVRTC, cuBLAS, cuDNN) is missing, or when there is no device.
pub fn probe() -> Result<Vec<String>> {
    check_libraries()?;
    let unavailable = |e: cudarc::driver::DriverError| Error::Backend {
        backend: "cuda",
        reason: format!("the CUDA driver failed: {e}"),
    };
    let count = cudarc::driver::CudaContext::device_count().map_err(unavailable)?;
    if count <= 0 {
        return Err(Error::Backend {
            backend: "cuda",
            reason: "the CUDA driver reports no device".into(),
        });
    }
    (0..count as usize)
        .map(|ordinal| {
            let ctx = cudarc::driver::CudaContext::new(ordinal).map_err(unavailable)?;
            ctx.name().map_err(unavailable)
        })
        .collect()
}

/// Errors naming the first CUDA library that cannot be loaded.
fn check_libraries() -> Result<()> {
    // SAFETY: each check only tries to open a shared library by name.
    let present = unsafe {
        [
            (
                "the CUDA driver (libcuda)",
                cudarc::driver::sys::is_culib_present(),
            ),
            ("NVRTC (libnvrtc)", cudarc::nvrtc::sys::is_culib_present()),
            (
                "cuBLAS (libcublas)",
                cudarc::cublas::sys::is_culib_present(),
            ),
            ("cuDNN (libcudnn)", cudarc::cudnn::sys::is_culib_present()),
        ]
    };
    match present.iter().find(|(_, ok)| !ok) {
        Some((name, _)) => Err(Error::Backend {
            backend: "cuda",
            reason: format!("{name} was not found on the library path"),
        }),
        None => Ok(()),
    }
}
