//! The WGSL compute-shader backend (feature `wgpu`): Vulkan, Metal or DX12 through wgpu.
//!
//! Every kernel is a compute shader from `shaders/*.wgsl`, compiled once per entry point and
//! specialisation (`override` constants) and cached. Kernels only *record* work: dispatches and
//! uploads go into one pending command encoder, which is submitted when it grows long, and by
//! [`Memory::download`] and [`Memory::sync`], the only calls that wait for the device (besides
//! the label check of the losses, see `loss.rs`).
//!
//! Buffers are storage buffers of f32 with their element count. A shader binds its inputs as
//! read-only storage at bindings `0..i`, its outputs as read-write storage at `i..i + o`, and a
//! small uniform block of parameters (32-bit words) at `i + o`.
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

/// Threads per workgroup of the one-thread-per-element kernels (`WG` in the shaders).
pub(crate) const WG: u32 = 256;

/// Dispatches recorded before the pending encoder is submitted without being asked to.
const MAX_PENDING: u32 = 64;

/// A shader file of `shaders/`, embedded in the library.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

macro_rules! shader {
    ($name:literal) => {
        $crate::backend::wgpu::Shader {
            name: $name,
            source: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $name)),
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

struct Context {
    device: wgpu::Device,
    queue: wgpu::Queue,
    name: String,
    max_binding: u64,
    max_groups: u32,
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
        let adapter = request_adapter()?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let desc = wgpu::DeviceDescriptor {
            label: Some("magnet"),
            required_features: wgpu::Features::empty(),
            required_limits: limits.clone(),
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
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        Ok(WgpuBackend {
            ctx: Arc::new(Context {
                device,
                queue,
                name: format!("{} ({:?}, {:?})", info.name, info.device_type, info.backend),
                max_binding,
                max_groups: limits.max_compute_workgroups_per_dimension,
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

    /// A zero-filled internal storage buffer of `words` 32-bit words.
    pub(crate) fn scratch(&self, op: &'static str, words: usize) -> Result<wgpu::Buffer> {
        let size = (words.max(1) as u64) * 4;
        if size > self.ctx.max_binding {
            return Err(self.too_large(op, size));
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

    fn too_large(&self, op: &'static str, bytes: u64) -> Error {
        Error::invalid(
            op,
            format!(
                "a buffer of {bytes} bytes exceeds the device's storage binding limit of {} bytes",
                self.ctx.max_binding
            ),
        )
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
            bind_group_layouts: &[Some(&layout)],
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

    /// Records one dispatch of `k` over `groups` workgroups (see [`Self::grid`]) with the given
    /// read-only inputs, read-write outputs and uniform parameter words.
    pub(crate) fn dispatch(
        &self,
        op: &'static str,
        k: Kernel<'_>,
        inputs: &[&wgpu::Buffer],
        outputs: &[&wgpu::Buffer],
        params: &[u32],
        groups: [u32; 3],
    ) -> Result<()> {
        if groups.contains(&0) {
            return Ok(());
        }
        for b in inputs.iter().chain(outputs) {
            if b.size() > self.ctx.max_binding {
                return Err(self.too_large(op, b.size()));
            }
        }
        let pipeline = self.pipeline(&k, inputs.len(), outputs.len())?;
        // Uniform blocks are padded to 16 bytes.
        let mut words = params.to_vec();
        words.resize(params.len().div_ceil(4).max(1) * 4, 0);
        let uniform = self
            .device()
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: None,
                contents: bytemuck::cast_slice(&words),
                usage: wgpu::BufferUsages::UNIFORM,
            });
        let mut entries: Vec<wgpu::BindGroupEntry> = inputs
            .iter()
            .chain(outputs)
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: (inputs.len() + outputs.len()) as u32,
            resource: uniform.as_entire_binding(),
        });
        let bind_group = self.device().create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.layout,
            entries: &entries,
        });
        self.record(|encoder| {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(k.entry),
                timestamp_writes: None,
            });
            pass.set_pipeline(&pipeline.pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
        Ok(())
    }

    /// A grid of `count` workgroups folded into x and y so neither exceeds the device's limit;
    /// shaders number their workgroup `id.x + id.y · num_workgroups.x` and skip ids ≥ `count`.
    pub(crate) fn grid(&self, op: &'static str, count: usize) -> Result<[u32; 3]> {
        let max = self.ctx.max_groups.max(1) as usize;
        if count == 0 {
            return Ok([0, 1, 1]);
        }
        let x = count.min(max);
        let y = count.div_ceil(x);
        if y > max {
            return Err(Error::invalid(
                op,
                format!("{count} workgroups exceed the device's dispatch limit"),
            ));
        }
        Ok([x as u32, y as u32, 1])
    }

    /// The grid of a one-thread-per-element kernel over `n` elements.
    pub(crate) fn grid_for(&self, op: &'static str, n: usize) -> Result<[u32; 3]> {
        self.grid(op, n.div_ceil(WG as usize))
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

    fn alloc(&self, desc: &TensorDesc) -> Result<WgpuBuffer> {
        let len = product("alloc", desc.shape.dims())?;
        let bytes = (len.max(1) as u64)
            .checked_mul(desc.dtype.size_bytes() as u64)
            .ok_or_else(|| Error::invalid("alloc", "size overflows"))?;
        if bytes > self.ctx.max_binding {
            return Err(self.too_large("alloc", bytes));
        }
        // wgpu zero-fills new buffers.
        let buf = self.device().create_buffer(&wgpu::BufferDescriptor {
            label: None,
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
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
