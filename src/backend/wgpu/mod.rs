//! The WGSL compute-shader backend (feature `wgpu`): Vulkan, Metal or DX12 through wgpu.

use crate::error::{Error, Result};

/// The adapter wgpu would use (`WGPU_BACKEND` and friends are honoured), described in words; a
/// typed error when there is none.
pub fn probe() -> Result<String> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    };
    let adapter = pollster::block_on(instance.request_adapter(&options)).map_err(|e| Error::Backend {
        backend: "wgpu",
        reason: format!("no GPU adapter found ({e}); on Linux install a Vulkan driver (e.g. mesa-vulkan-drivers)"),
    })?;
    let info = adapter.get_info();
    Ok(format!(
        "{} ({:?}, {:?})",
        info.name, info.device_type, info.backend
    ))
}
