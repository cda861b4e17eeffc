//! The CUDA backend (feature `cuda`), on cudarc with dynamic loading: magnet builds without CUDA
//! and finds the driver and libraries at run time.
//!
//! - one context and one stream per [`CudaBackend`]; every kernel is enqueued on that stream and
//!   only [`Memory::download`] and [`Memory::sync`] wait for it;
//! - cuDNN for convolution (forward, backward-data, backward-filter, with NHWC tensors and
//!   `[out, kh, kw, in]` filters, [`dnn`]);
//! - cuBLAS for GEMM;
//! - NVRTC-compiled kernels from `kernels/*.cu` for everything else, compiled for the device's
//!   architecture at first use and cached ([`kernels`]).
//!
//! Strict fp32 is the default: cuDNN runs with `CUDNN_FMA_MATH` and cuBLAS with its default math
//! mode, so no TF32 tensor-core arithmetic is used unless [`CudaBackend::set_tf32`] allows it.
//!
//! cudarc aborts when a library it needs is missing, so every entry point checks for the libraries
//! first and returns a typed error instead.

mod conv;
mod dnn;
mod elementwise;
mod kernels;
mod layout;
mod loss;
mod matmul;
mod nccl;
mod norm;
mod optim;
mod pool;
mod reduce;
mod resample;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DeviceRepr, DriverError,
    LaunchConfig, ValidAsZeroBits,
};

use crate::backend::{ConvTuning, Memory};
use crate::error::{Error, Result};
use crate::tensor::TensorDesc;

pub use dnn::{ConvScratchLimit, Fp32ConvLayout, Fp32ConvScratch};
use kernels::{Kernels, Module};
pub use nccl::NcclCollective;

/// The CUDA devices of this machine, by name; a typed error when the driver or a library magnet
/// needs (NVRTC, cuBLAS, cuDNN) is missing, or when there is no device.
pub fn probe() -> Result<Vec<String>> {
    check_libraries()?;
    let count = CudaContext::device_count().map_err(|e| driver_error("device count", e))?;
    if count <= 0 {
        return Err(backend_error("the CUDA driver reports no device"));
    }
    (0..count as usize)
        .map(|ordinal| {
            let ctx = CudaContext::new(ordinal).map_err(|e| driver_error("context", e))?;
            ctx.name().map_err(|e| driver_error("device name", e))
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
        Some((name, _)) => Err(backend_error(format!(
            "{name} was not found on the library path"
        ))),
        None => Ok(()),
    }
}

/// A backend error with `reason`.
pub(crate) fn backend_error(reason: impl Into<String>) -> Error {
    Error::Backend {
        backend: "cuda",
        reason: reason.into(),
    }
}

/// A CUDA driver error during `what`.
pub(crate) fn driver_error(what: &str, e: DriverError) -> Error {
    let detail = e
        .error_string()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    backend_error(format!("{what}: {e:?} {detail}").trim_end().to_string())
}

/// Errors unless `buf` holds exactly `expected` elements.
pub(crate) fn check_len(op: &'static str, buf: &CudaBuffer, expected: usize) -> Result<()> {
    if buf.len != expected {
        return Err(Error::Length {
            op,
            expected,
            got: buf.len,
        });
    }
    Ok(())
}

/// Lets the device's default memory pool keep memory freed in stream order instead of handing
/// it back to the driver at every synchronisation, so per-call scratch and workspaces are
/// recycled rather than mapped again each step. Best effort: without memory pools nothing
/// changes.
fn keep_freed_memory(ctx: &CudaContext) {
    use cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD;
    pool_attribute(ctx, CU_MEMPOOL_ATTR_RELEASE_THRESHOLD, Some(u64::MAX));
}

/// Reads (or, given a value, sets) a u64 attribute of the device's default memory pool; `None`
/// when the context allocates without memory pools or the call fails.
fn pool_attribute(
    ctx: &CudaContext,
    attribute: cudarc::driver::sys::CUmemPool_attribute,
    set: Option<u64>,
) -> Option<u64> {
    use cudarc::driver::result;
    if !ctx.has_async_alloc() {
        return None;
    }
    let mut value = set.unwrap_or(0);
    let ptr = &mut value as *mut u64 as *mut std::ffi::c_void;
    // SAFETY: the device comes from a live context; the attributes used are u64s.
    unsafe {
        let pool = result::device::get_default_mem_pool(ctx.cu_device()).ok()?;
        match set {
            Some(_) => result::mem_pool::set_attribute(pool, attribute, ptr).ok()?,
            None => result::mem_pool::get_attribute(pool, attribute, ptr).ok()?,
        }
    }
    Some(value)
}

/// Threads per block of the one-dimensional kernels.
pub(crate) const BLOCK: u32 = 256;

/// Upper bound on the blocks of a grid-stride launch (enough to fill an H200 many times over).
const MAX_BLOCKS: usize = 1 << 16;

/// A one-dimensional launch over `n` elements with grid-stride loops (`n > 0`).
pub(crate) fn grid(n: usize) -> LaunchConfig {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32;
    LaunchConfig {
        grid_dim: (blocks, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Enqueues kernel `$name` of `$module` with launch configuration `$cfg` and the given arguments,
/// each a local variable of a [`DeviceRepr`] type (device pointers are passed as `u64`).
macro_rules! launch {
    ($be:expr, $module:expr, $name:literal, $cfg:expr; $($arg:ident),* $(,)?) => {{
        use cudarc::driver::PushKernelArg as _;
        let func = $be.function($module, $name)?;
        let mut builder = $be.inner.stream.launch_builder(&func);
        $( builder.arg(&$arg); )*
        // SAFETY: the arguments match the kernel's signature in kernels/*.cu (checked by
        // reading); every pointer comes from a live buffer whose length the caller checked
        // against the sizes passed alongside it.
        unsafe { builder.launch($cfg) }
            .map(|_| ())
            .map_err(|e| $crate::backend::cuda::driver_error(concat!("launch of ", $name), e))
    }};
}
pub(crate) use launch;

/// A buffer of f32 elements in device memory.
///
/// Zero-length buffers hold one element internally, so every buffer has a valid device address.
#[derive(Debug)]
pub struct CudaBuffer {
    data: CudaSlice<f32>,
    len: usize,
}

/// The CUDA backend: one device, one stream, cuDNN and cuBLAS handles and the compiled kernels.
/// Cheap to clone (clones share everything).
#[derive(Clone)]
pub struct CudaBackend {
    inner: Arc<Inner>,
}

struct Inner {
    // Fields drop in order: library handles first, then the stream, then the context.
    dnn: Mutex<dnn::Dnn>,
    blas: Mutex<cudarc::cublas::CudaBlas>,
    kernels: Kernels,
    stream: Arc<CudaStream>,
    ctx: Arc<CudaContext>,
    tf32: AtomicBool,
    direct_convolutions: AtomicBool,
    fp32_conv_layout: Mutex<Fp32ConvLayout>,
    fp32_conv_scratch: Mutex<Fp32ConvScratch>,
    validate_labels: AtomicBool,
    name: String,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", &self.inner.name)
            .field("ordinal", &self.inner.ctx.ordinal())
            .field("tf32", &self.tf32())
            .finish()
    }
}

impl CudaBackend {
    /// Opens device `ordinal` in strict fp32 mode (no TF32). Errors when the driver or a library
    /// is missing, when there is no such device, or when a library cannot be initialised.
    pub fn new(ordinal: usize) -> Result<Self> {
        check_libraries()?;
        dnn::check_symbols()?;
        let count = CudaContext::device_count().map_err(|e| driver_error("device count", e))?;
        if ordinal >= count.max(0) as usize {
            return Err(backend_error(format!(
                "no CUDA device {ordinal} (the driver reports {count})"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| driver_error("context creation", e))?;
        keep_freed_memory(&ctx);
        // One stream per backend and no cross-stream use of buffers: cudarc's per-buffer events
        // would only cost time (and get in the way of capturing a step as a CUDA graph).
        // SAFETY: every buffer of this context is used on `stream` only.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx
            .new_stream()
            .map_err(|e| driver_error("stream creation", e))?;
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| driver_error("compute capability", e))?;
        let device = ctx.name().map_err(|e| driver_error("device name", e))?;
        let blas = cudarc::cublas::CudaBlas::new(stream.clone())
            .map_err(|e| backend_error(format!("cuBLAS initialisation: {e:?}")))?;
        let dnn = dnn::Dnn::new(&ctx, &stream)?;
        let backend = CudaBackend {
            inner: Arc::new(Inner {
                dnn: Mutex::new(dnn),
                blas: Mutex::new(blas),
                kernels: Kernels::new(major, minor),
                stream,
                ctx,
                tf32: AtomicBool::new(false),
                direct_convolutions: AtomicBool::new(false),
                fp32_conv_layout: Mutex::new(Fp32ConvLayout::Timed),
                fp32_conv_scratch: Mutex::new(Fp32ConvScratch::default()),
                validate_labels: AtomicBool::new(false),
                name: format!("{device} (compute capability {major}.{minor})"),
            }),
        };
        backend.set_tf32(false)?;
        Ok(backend)
    }

    /// Allows (`true`) or forbids (`false`, the default) TF32 tensor-core arithmetic in
    /// convolutions and matrix products. TF32 rounds the inputs of each product to 10 mantissa
    /// bits: several times faster on Ampere and later GPUs, about 1e-3 relative error.
    /// Applies to every clone of this backend.
    pub fn set_tf32(&self, allow: bool) -> Result<()> {
        self.inner.tf32.store(allow, Ordering::Relaxed);
        let blas = self.blas()?;
        let mode = if allow {
            cudarc::cublas::sys::cublasMath_t::CUBLAS_TF32_TENSOR_OP_MATH
        } else {
            cudarc::cublas::sys::cublasMath_t::CUBLAS_DEFAULT_MATH
        };
        self.bind()?;
        // SAFETY: the handle is alive (owned by `blas`) and the call only sets a mode.
        let status = unsafe { cudarc::cublas::sys::cublasSetMathMode(*blas.handle(), mode) };
        if status != cudarc::cublas::sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(backend_error(format!(
                "cublasSetMathMode({mode:?}): {status:?}"
            )));
        }
        Ok(())
    }

    /// Whether TF32 arithmetic is allowed.
    pub fn tf32(&self) -> bool {
        self.inner.tf32.load(Ordering::Relaxed)
    }

    /// Restricts (`true`) strict-fp32 convolutions to algorithms that sum products directly
    /// (implicit GEMM, GEMM, direct), or allows (`false`, the default) every fp32 algorithm
    /// cuDNN offers, Winograd and FFT included, the fastest chosen by timing (what PyTorch does
    /// with TF32 off). Transforms round differently from a sum of products, by up to ~1e-5 of the
    /// output's scale; the direct algorithms match the CPU backend to a few ulps per term, which
    /// is what the cross-checks use. Applies to every clone of this backend.
    pub fn set_direct_convolutions(&self, direct: bool) {
        self.inner
            .direct_convolutions
            .store(direct, Ordering::Relaxed);
    }

    /// Where strict-fp32 convolutions compute: timed per shape (the default), or always in one
    /// layout. Applies to every clone of this backend from its next convolution on.
    pub fn set_fp32_conv_layout(&self, layout: Fp32ConvLayout) {
        *self
            .inner
            .fp32_conv_layout
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = layout;
    }

    /// Where strict-fp32 convolutions compute (see [`CudaBackend::set_fp32_conv_layout`]).
    pub fn fp32_conv_layout(&self) -> Fp32ConvLayout {
        *self
            .inner
            .fp32_conv_layout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// What a strict-fp32 convolution may allocate while it runs, for its workspace and NCHW
    /// copies ([`Fp32ConvScratch`]): one budget per kind of step fitted from its first run (the
    /// default, slack 0.1), whatever its fastest algorithm needs (as PyTorch's
    /// `cudnn.benchmark` does), or a limit per call. On an H100 the fitted budget kept the
    /// U-Net's strict-fp32 steps within 0.85 of PyTorch's time and below its memory
    /// (`benches/results/unet_h100_fit.md`); a limit per call of one largest operand
    /// (`ConvScratchLimit::default()`) also went below PyTorch's memory but made steps up to 4×
    /// slower (`benches/results/unet_h100_scratch.md`). Applies to every clone of this backend
    /// from its next convolution on.
    pub fn set_fp32_conv_scratch(&self, scratch: Fp32ConvScratch) {
        *self
            .inner
            .fp32_conv_scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = scratch;
    }

    /// What strict-fp32 convolutions may allocate (see
    /// [`CudaBackend::set_fp32_conv_scratch`]).
    pub fn fp32_conv_scratch(&self) -> Fp32ConvScratch {
        *self
            .inner
            .fp32_conv_scratch
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The budget [`Fp32ConvScratch::Fitted`] holds the running (or last) step to, bytes;
    /// `None` under another setting, in a context's first step, or where no budget was fitted.
    pub fn fitted_fp32_conv_scratch(&self) -> Option<u64> {
        match self.fp32_conv_scratch() {
            Fp32ConvScratch::Fitted { .. } => self.dnn().ok()?.fitted_budget().map(|b| b as u64),
            _ => None,
        }
    }

    /// How each convolution shape called since the last report runs: every way its first call
    /// timed (layout, algorithm, workspace and copies, milliseconds) and the one in use, largest
    /// images first. Counting calls starts afresh.
    pub fn take_conv_tunings(&self) -> Result<Vec<ConvTuning>> {
        Ok(self.dnn()?.take_tunings())
    }

    /// Whether convolutions are restricted to direct algorithms (see
    /// [`CudaBackend::set_direct_convolutions`]).
    pub fn direct_convolutions(&self) -> bool {
        self.inner.direct_convolutions.load(Ordering::Relaxed)
    }

    /// Checks (`true`) or not (`false`, the default) the labels of the losses and metrics, and
    /// the class weights of cross-entropy, before running them, returning the CPU backend's
    /// error on a bad one. Each check waits for the device, so it is meant for tests and
    /// debugging; unchecked, a label that is neither a class nor the ignore index counts as
    /// ignored. Applies to every clone of this backend.
    pub fn set_validate_labels(&self, check: bool) {
        self.inner.validate_labels.store(check, Ordering::Relaxed);
    }

    /// Whether labels are checked (see [`CudaBackend::set_validate_labels`]).
    pub fn validate_labels(&self) -> bool {
        self.inner.validate_labels.load(Ordering::Relaxed)
    }

    /// The device's ordinal.
    pub fn ordinal(&self) -> usize {
        self.inner.ctx.ordinal()
    }

    /// Makes this backend's context current on the calling thread (needed before library calls
    /// that do not go through cudarc's safe API).
    fn bind(&self) -> Result<()> {
        self.inner
            .ctx
            .bind_to_thread()
            .map_err(|e| driver_error("binding the context", e))
    }

    fn blas(&self) -> Result<MutexGuard<'_, cudarc::cublas::CudaBlas>> {
        self.inner
            .blas
            .lock()
            .map_err(|_| backend_error("the cuBLAS handle's lock is poisoned"))
    }

    fn dnn(&self) -> Result<MutexGuard<'_, dnn::Dnn>> {
        self.inner
            .dnn
            .lock()
            .map_err(|_| backend_error("the cuDNN handle's lock is poisoned"))
    }

    /// Kernel `name` of `module`, compiled and loaded at first use.
    fn function(&self, module: Module, name: &'static str) -> Result<CudaFunction> {
        self.inner.kernels.function(&self.inner.ctx, module, name)
    }

    /// The device address of `buf` (for kernel arguments and library calls).
    fn ptr(&self, buf: &CudaBuffer) -> u64 {
        let (ptr, _record) = buf.data.device_ptr(&self.inner.stream);
        ptr
    }

    /// The device address of an optional buffer, 0 when absent.
    fn opt_ptr(&self, buf: Option<&CudaBuffer>) -> u64 {
        buf.map_or(0, |b| self.ptr(b))
    }

    /// Uninitialised device scratch of `len` elements (at least one), freed in stream order when
    /// dropped.
    fn scratch<T: DeviceRepr + ValidAsZeroBits>(&self, len: usize) -> Result<CudaSlice<T>> {
        // SAFETY: scratch is always written by a kernel before it is read.
        unsafe { self.inner.stream.alloc::<T>(len.max(1)) }
            .map_err(|e| driver_error(&format!("allocating {len} scratch elements"), e))
    }

    /// The device address of a scratch slice.
    fn slice_ptr<T>(&self, s: &CudaSlice<T>) -> u64 {
        let (ptr, _record) = s.device_ptr(&self.inner.stream);
        ptr
    }

    /// Sets the first `len` elements of `y` to `value` (`fill` without the length check).
    fn fill_n(&self, y: &mut CudaBuffer, len: usize, value: f32) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let (yp, n) = (self.ptr(y), len as u64);
        launch!(self, Module::Elementwise, "fill", grid(len); yp, n, value)
    }
}

impl Memory for CudaBackend {
    type Buffer = CudaBuffer;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn device_name(&self) -> String {
        self.inner.name.clone()
    }

    fn alloc(&self, desc: &TensorDesc) -> Result<CudaBuffer> {
        let len = desc.shape.numel();
        let data = self
            .inner
            .stream
            .alloc_zeros::<f32>(len.max(1))
            .map_err(|e| driver_error(&format!("allocating {} bytes", desc.size_bytes()), e))?;
        Ok(CudaBuffer { data, len })
    }

    fn len(&self, buf: &CudaBuffer) -> usize {
        buf.len
    }

    fn capacity(&self, buf: &CudaBuffer) -> usize {
        buf.data.len()
    }

    fn shrinks_in_place(&self) -> bool {
        true
    }

    fn reuse_as(&self, buf: &mut CudaBuffer, len: usize) -> bool {
        // Every use of a buffer reads `len` elements from the start of its allocation.
        let fits = len <= buf.data.len();
        if fits {
            buf.len = len;
        }
        fits
    }

    fn upload(&self, data: &[f32], dst: &mut CudaBuffer) -> Result<()> {
        check_len("upload", dst, data.len())?;
        if data.is_empty() {
            return Ok(());
        }
        self.inner
            .stream
            .memcpy_htod(data, &mut dst.data)
            .map_err(|e| driver_error("upload", e))
    }

    fn download(&self, src: &CudaBuffer) -> Result<Vec<f32>> {
        let mut out = vec![0.0f32; src.len];
        if src.len > 0 {
            self.inner
                .stream
                .memcpy_dtoh(&src.data.slice(..src.len), &mut out)
                .map_err(|e| driver_error("download", e))?;
        }
        self.sync()?;
        Ok(out)
    }

    fn copy(&self, src: &CudaBuffer, dst: &mut CudaBuffer) -> Result<()> {
        check_len("copy", dst, src.len)?;
        if src.len == 0 {
            return Ok(());
        }
        self.inner
            .stream
            .memcpy_dtod(
                &src.data.slice(..src.len),
                &mut dst.data.slice_mut(..src.len),
            )
            .map_err(|e| driver_error("copy", e))
    }

    /// Bytes held by live allocations of the device's default memory pool (memory the pool keeps
    /// for reuse is not counted); without memory pools, the device's used memory.
    fn memory_in_use(&self) -> Option<u64> {
        use cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_CURRENT;
        if let Some(used) = pool_attribute(&self.inner.ctx, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, None)
        {
            return Some(used);
        }
        let (free, total) = self.inner.ctx.mem_get_info().ok()?;
        Some(total.saturating_sub(free) as u64)
    }

    /// The pool's high watermark of bytes in live allocations; `None` without memory pools.
    fn memory_peak(&self) -> Option<u64> {
        use cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH;
        pool_attribute(&self.inner.ctx, CU_MEMPOOL_ATTR_USED_MEM_HIGH, None)
    }

    fn begin_step(&self, context: u64) {
        if let Fp32ConvScratch::Fitted { slack } = self.fp32_conv_scratch() {
            // A poisoned lock fails the next convolution, which says so.
            if let Ok(mut dnn) = self.dnn() {
                dnn.begin_step((context, self.tf32()), slack);
            }
        }
    }

    fn reset_memory_peak(&self) {
        use cudarc::driver::sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH;
        // The driver only takes zero, which restarts the watermark at the current use.
        pool_attribute(&self.inner.ctx, CU_MEMPOOL_ATTR_USED_MEM_HIGH, Some(0));
    }

    fn sync(&self) -> Result<()> {
        self.inner
            .stream
            .synchronize()
            .map_err(|e| driver_error("synchronising the stream", e))?;
        // Errors recorded where none could be returned (frees in destructors).
        self.inner
            .ctx
            .check_err()
            .map_err(|e| driver_error("an earlier asynchronous operation", e))
    }
}
