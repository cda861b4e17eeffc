//! The WGSL compute-shader backend (feature `wgpu`): Vulkan, Metal or DX12 through wgpu.
//!
//! Every kernel is a compute shader from `shaders/*.wgsl`, compiled once per entry point and
//! specialisation (`override` constants) and cached. Kernels only *record* work: dispatches and
//! uploads go into one pending command encoder, which is submitted when it grows long, and by
//! [`Memory::download`] and [`Memory::sync`], the only calls that wait for the device (besides
//! the label check of the losses, see `loss.rs`).
//!
//! Buffers are storage buffers of f32 with their element count, one wgpu buffer each, of up to
//! the device's `max_buffer_size`. A shader binds its inputs as read-only storage at bindings
//! `0..i`, its outputs as read-write storage at `i..i + o`, and a small uniform block of
//! parameters (32-bit words) at `i + o`; group 1 holds the window of the dispatch. A storage
//! binding may be smaller than a buffer (`max_storage_buffer_binding_size`), so kernels run in as
//! many dispatches as their buffers need windows (`window.rs`, `shaders/window.wgsl`).
//!
//! Errors the device reports asynchronously (validation, out of memory) are kept and returned by
//! the next call that waits.

mod conv;
mod elementwise;
mod layout;
mod loss;
mod matmul;
mod norm;
mod optim;
mod pool;
mod reduce;
mod resample;
mod window;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use wgpu::util::DeviceExt;

use crate::backend::Memory;
use crate::error::{Error, Result};
use crate::tensor::TensorDesc;

/// The adapter wgpu would use (`WGPU_BACKEND` and friends are honoured), described in words; a
/// typed error when there is none.
pub fn probe() -> Result<String> {
    let adapter = request_adapter()?;
    let info = adapter.get_info();
    Ok(format!(
        "{} ({:?}, {:?})",
        info.name, info.device_type, info.backend
    ))
}

fn request_adapter() -> Result<wgpu::Adapter> {
    let instance =
        wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle_from_env());
    let options = wgpu::RequestAdapterOptions {
        power_preference: wgpu::PowerPreference::HighPerformance,
        ..Default::default()
    };
    pollster::block_on(instance.request_adapter(&options)).map_err(|e| {
        backend_error(format!(
            "no GPU adapter found ({e}); on Linux install a Vulkan driver (e.g. mesa-vulkan-drivers)"
        ))
    })
}

/// An `Error::Backend` of this backend.
pub(crate) fn backend_error(reason: impl Into<String>) -> Error {
    Error::Backend {
        backend: "wgpu",
        reason: reason.into(),
    }
}

/// Threads per workgroup of the one-thread-per-index kernels (`WG` in `shaders/window.wgsl`).
pub(crate) const WG: usize = 256;

/// Dispatches recorded before the pending encoder is submitted without being asked to.
const MAX_PENDING: u32 = 64;

/// A shader file of `shaders/`, embedded in the library after the prelude `window.wgsl`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

macro_rules! shader {
    ($name:literal) => {
        $crate::backend::wgpu::Shader {
            name: $name,
            source: concat!(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/window.wgsl")),
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $name))
            ),
        }
    };
}
pub(crate) use shader;

/// One kernel launch: a shader entry point with its specialisation constants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kernel<'a> {
    pub shader: Shader,
    pub entry: &'static str,
    pub constants: &'a [(&'static str, f64)],
}

impl<'a> Kernel<'a> {
    /// `entry` of `shader` without specialisation.
    pub fn new(shader: Shader, entry: &'static str) -> Self {
        Kernel {
            shader,
            entry,
            constants: &[],
        }
    }

    /// `entry` of `shader` with `override` constants set.
    pub fn with(shader: Shader, entry: &'static str, constants: &'a [(&'static str, f64)]) -> Self {
        Kernel {
            shader,
            entry,
            constants,
        }
    }
}

/// What identifies a compiled pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    shader: &'static str,
    entry: &'static str,
    constants: Vec<(&'static str, u64)>,
    inputs: usize,
    outputs: usize,
}

struct Pipeline {
    pipeline: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// The command encoder that collects work until the next submission.
#[derive(Default)]
struct Pending {
    encoder: Option<wgpu::CommandEncoder>,
    dispatches: u32,
}

/// The device limits the kernels are split by.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Bytes one storage binding may cover.
    max_binding: u64,
    /// Bytes one buffer may hold.
    max_buffer: u64,
    /// The alignment of a storage binding's offset, in bytes.
    align: u64,
    /// Workgroups along one dimension of a dispatch.
    max_groups: u32,
}

struct Context {
    device: wgpu::Device,
    queue: wgpu::Queue,
    name: String,
    limits: Limits,
    /// The layout of group 1, the window uniform every pipeline shares.
    window_layout: wgpu::BindGroupLayout,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    pending: Mutex<Pending>,
    /// The first error the device reported since the last wait.
    error: Arc<Mutex<Option<String>>>,
}

/// The wgpu backend. Cheap to clone (the device is shared).
#[derive(Clone)]
pub struct WgpuBackend {
    ctx: Arc<Context>,
}

impl std::fmt::Debug for WgpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WgpuBackend")
            .field("device", &self.ctx.name)
            .finish()
    }
}

/// A device buffer of f32: a wgpu storage buffer and its element count.
#[derive(Debug)]
pub struct WgpuBuffer {
    buf: wgpu::Buffer,
    len: usize,
}

impl WgpuBuffer {
    /// The underlying wgpu buffer (at least 4 bytes, even when empty).
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buf
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Errors unless `buf` holds exactly `expected` elements.
pub(crate) fn check_len(op: &'static str, buf: &WgpuBuffer, expected: usize) -> Result<()> {
    if buf.len != expected {
        return Err(Error::Length {
            op,
            expected,
            got: buf.len,
        });
    }
    Ok(())
}

/// A value as a 32-bit word of a uniform block, or an error naming `op` when it does not fit.
pub(crate) fn word(op: &'static str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::invalid(op, format!("size {v} exceeds 2^32 - 1")))
}

/// The product of `sizes`, or an invalid-argument error when it overflows.
pub(crate) fn product(op: &'static str, sizes: &[usize]) -> Result<usize> {
    sizes
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .ok_or_else(|| Error::invalid(op, format!("sizes {sizes:?} overflow")))
}

impl WgpuBackend {
    /// Opens the adapter wgpu prefers (a discrete GPU first) with its full limits; a typed
    /// `Error::Backend` when there is no adapter or no device.
    pub fn new() -> Result<Self> {
        Self::with_limits(|_| {})
    }

    /// Opens the adapter wgpu prefers with its limits as changed by `adjust`: lower maxima or
    /// coarser alignments than the adapter's (beyond them, a typed `Error::Backend`). Kernels
    /// then split their work by these limits, as on a device that has them, e.g. a storage
    /// binding of a few KiB to run the split paths on small tensors.
    pub fn with_limits(adjust: impl FnOnce(&mut wgpu::Limits)) -> Result<Self> {
        let adapter = request_adapter()?;
        let info = adapter.get_info();
        let mut limits = adapter.limits();
        adjust(&mut limits);
        let desc = wgpu::DeviceDescriptor {
            label: Some("magnet"),
            required_features: wgpu::Features::empty(),
            required_limits: limits,
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| backend_error(format!("cannot open {}: {e}", info.name)))?;
        let error = Arc::new(Mutex::new(None::<String>));
        let slot = error.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            let mut s = lock(&slot);
            if s.is_none() {
                *s = Some(e.to_string());
            }
        }));
        // The device enforces what was granted, which is what the kernels must respect.
        let granted = device.limits();
        let limits = Limits {
            max_binding: granted
                .max_storage_buffer_binding_size
                .min(granted.max_buffer_size),
            max_buffer: granted.max_buffer_size,
            align: u64::from(granted.min_storage_buffer_offset_alignment.max(4)),
            max_groups: granted.max_compute_workgroups_per_dimension.max(1),
        };
        let window_layout = window::layout(&device);
        Ok(WgpuBackend {
            ctx: Arc::new(Context {
                device,
                queue,
                name: format!("{} ({:?}, {:?})", info.name, info.device_type, info.backend),
                limits,
                window_layout,
                pipelines: Mutex::new(HashMap::new()),
                pending: Mutex::new(Pending::default()),
                error,
            }),
        })
    }

    fn device(&self) -> &wgpu::Device {
        &self.ctx.device
    }

    /// Returns (and clears) the error the device reported since the last check.
    fn take_error(&self) -> Result<()> {
        match lock(&self.ctx.error).take() {
            Some(e) => Err(backend_error(e)),
            None => Ok(()),
        }
    }

    /// Runs `f` on the pending encoder (creating it when needed).
    fn record(&self, f: impl FnOnce(&mut wgpu::CommandEncoder)) {
        let mut pending = lock(&self.ctx.pending);
        let encoder = pending.encoder.get_or_insert_with(|| {
            self.device()
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None })
        });
        f(encoder);
        pending.dispatches += 1;
        if pending.dispatches >= MAX_PENDING {
            Self::submit_locked(&self.ctx, &mut pending);
        }
    }

    fn submit_locked(ctx: &Context, pending: &mut Pending) {
        if let Some(encoder) = pending.encoder.take() {
            ctx.queue.submit([encoder.finish()]);
        }
        pending.dispatches = 0;
    }

    /// Submits the pending work without waiting for it.
    pub fn flush(&self) {
        let mut pending = lock(&self.ctx.pending);
        Self::submit_locked(&self.ctx, &mut pending);
    }

    /// Submits the pending work, waits for it, and copies the first `words` 32-bit words of
    /// `src` back; reports any error the device raised meanwhile.
    pub(crate) fn read_back(&self, src: &wgpu::Buffer, words: usize) -> Result<Vec<u32>> {
        let staging = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: words.max(1) as u64 * 4,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.copy_raw(src, &staging, words);
        self.flush();
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        match rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(backend_error(format!("reading a buffer back: {e}"))),
            Err(_) => return Err(backend_error("reading a buffer back: the map was dropped")),
        }
        let view = staging
            .get_mapped_range(..)
            .map_err(|e| backend_error(format!("reading a buffer back: {e}")))?;
        let out: Vec<u32> = bytemuck::cast_slice(&view)[..words].to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }

    fn wait(&self) -> Result<()> {
        self.device()
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| backend_error(format!("waiting for the device: {e}")))?;
        self.take_error()
    }

    /// An internal storage buffer holding `data` (tables of taps, scratch sums).
    pub(crate) fn storage_from<T: bytemuck::Pod>(&self, data: &[T]) -> wgpu::Buffer {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let contents: Vec<u8> = if bytes.len() < 4 {
            vec![0; 4]
        } else {
            bytes.to_vec()
        };
        self.device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: &contents,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
            })
    }

    /// A zero-filled storage buffer of `words` 32-bit words (at least one), within the device's
    /// buffer size and the 32-bit element indices of the shaders.
    pub(crate) fn scratch(&self, op: &'static str, words: usize) -> Result<wgpu::Buffer> {
        if u32::try_from(words).is_err() {
            return Err(Error::invalid(
                op,
                format!("a buffer of {words} elements exceeds the 2^32 - 1 that shaders index"),
            ));
        }
        let size = (words.max(1) as u64) * 4;
        if size > self.ctx.limits.max_buffer {
            return Err(Error::invalid(
                op,
                format!(
                    "a buffer of {size} bytes exceeds the device's maximum buffer size of {} bytes",
                    self.ctx.limits.max_buffer
                ),
            ));
        }
        Ok(self.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        }))
    }

    fn pipeline(&self, k: &Kernel<'_>, inputs: usize, outputs: usize) -> Result<Arc<Pipeline>> {
        let key = PipelineKey {
            shader: k.shader.name,
            entry: k.entry,
            constants: k.constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
            inputs,
            outputs,
        };
        if let Some(p) = lock(&self.ctx.pipelines).get(&key) {
            return Ok(p.clone());
        }
        let device = self.device();
        let storage = |read_only: bool, binding: u32| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Storage { read_only },
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        };
        let mut entries: Vec<wgpu::BindGroupLayoutEntry> = (0..inputs + outputs)
            .map(|i| storage(i < inputs, i as u32))
            .collect();
        entries.push(wgpu::BindGroupLayoutEntry {
            binding: (inputs + outputs) as u32,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: false,
                min_binding_size: None,
            },
            count: None,
        });
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(k.entry),
            entries: &entries,
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(k.entry),
            bind_group_layouts: &[Some(&layout), Some(&self.ctx.window_layout)],
            immediate_size: 0,
        });
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(k.shader.name),
            source: wgpu::ShaderSource::Wgsl(k.shader.source.into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(k.entry),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(k.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: k.constants,
                ..Default::default()
            },
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(backend_error(format!(
                "shaders/{} entry point {}: {e}",
                k.shader.name, k.entry
            )));
        }
        let p = Arc::new(Pipeline { pipeline, layout });
        lock(&self.ctx.pipelines).insert(key, p.clone());
        Ok(p)
    }

    /// Records `dst[..] = src[..]` for `words` 32-bit words.
    pub(crate) fn copy_raw(&self, src: &wgpu::Buffer, dst: &wgpu::Buffer, words: usize) {
        if words == 0 {
            return;
        }
        self.record(|encoder| encoder.copy_buffer_to_buffer(src, 0, dst, 0, words as u64 * 4));
    }
}

impl Memory for WgpuBackend {
    type Buffer = WgpuBuffer;

    fn name(&self) -> &'static str {
        "wgpu"
    }

    fn device_name(&self) -> String {
        self.ctx.name.clone()
    }

    /// A tensor is one wgpu buffer, so it holds at most the device's `max_buffer_size` bytes (2 GiB
    /// on DX12 and Linux Vulkan drivers but NVIDIA's, more there and on Metal) and 2^32 - 1
    /// elements (the shaders' indices are 32-bit); kernels bind it in windows when it is larger
    /// than one storage binding. Larger tensors are an `InvalidArgument` error.
    fn alloc(&self, desc: &TensorDesc) -> Result<WgpuBuffer> {
        let len = product("alloc", desc.shape.dims())?;
        // Every dtype is f32 today: one 32-bit word per element. wgpu zero-fills new buffers.
        let buf = self.scratch("alloc", len)?;
        Ok(WgpuBuffer { buf, len })
    }

    fn len(&self, buf: &WgpuBuffer) -> usize {
        buf.len
    }

    fn upload(&self, data: &[f32], dst: &mut WgpuBuffer) -> Result<()> {
        check_len("upload", dst, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        // Staged through the pending encoder, so the copy stays ordered with the kernels
        // recorded before and after it.
        let staging = self
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(data),
                usage: wgpu::BufferUsages::COPY_SRC,
            });
        self.copy_raw(&staging, &dst.buf, data.len());
        Ok(())
    }

    fn download(&self, src: &WgpuBuffer) -> Result<Vec<f32>> {
        let words = self.read_back(&src.buf, src.len)?;
        Ok(words.into_iter().map(f32::from_bits).collect())
    }

    fn copy(&self, src: &WgpuBuffer, dst: &mut WgpuBuffer) -> Result<()> {
        check_len("copy", dst, src.len)?;
        self.copy_raw(&src.buf, &dst.buf, src.len);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.flush();
        self.wait()
    }
}
