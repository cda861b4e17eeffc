//! cuDNN through `cudarc::cudnn::sys`: the handle, owned descriptors and convolution plans (an
//! algorithm chosen once per shape, with its workspace size).
//!
//! Tensors are NHWC (`CUDNN_TENSOR_NHWC`) and filters `[out, kh, kw, in]`, which is cuDNN's NHWC
//! filter format (K × R × S × C). In strict fp32 a shape may instead run in NCHW on transposed
//! copies (`cudnnTransformTensor`) when that times faster at its first use. Algorithms come from cuDNN's heuristics
//! (`cudnnGetConvolution*Algorithm_v7`); all are timed on the first call of each shape
//! and ordered fastest first (as PyTorch's `cudnn.benchmark` does), except that the one with the
//! smallest workspace among those within timing noise of the fastest goes first where that saves
//! a sizeable workspace. Workspaces
//! are allocated for each call from the stream's memory pool and freed after it in stream
//! order, so memory holds only the running call's (as PyTorch's caching allocator does). A
//! strict-fp32 call's workspace and NCHW copies together stay within a [`ConvScratchLimit`]
//! where one is set.
//! In strict fp32 mode the
//! descriptor's math type is `CUDNN_FMA_MATH` and candidates that need tensor cores are skipped;
//! with [`ConvMath::direct_only`], so are the Winograd and FFT algorithms.
//! Should cuDNN refuse the chosen algorithm when it runs, the next candidate is tried and
//! remembered.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::Arc;

use cudarc::cudnn::sys;
use cudarc::driver::{CudaContext, CudaEvent, CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use super::{backend_error, driver_error};
use crate::backend::{Conv2dParams, ConvKind};
use crate::error::Result;

mod fitting;
mod report;

/// Workspaces above this size are not considered (the next candidate is used instead).
const MAX_WORKSPACE: usize = 4 << 30;

/// Candidates this much slower than the fastest (relative, and absolute milliseconds) count as
/// equally fast: among those, the smallest workspace wins, where it saves at least
/// [`WORKSPACE_WORTH_SAVING`] bytes; and NHWC in place wins over NCHW copies.
const TIMING_NOISE: (f32, f32) = (0.02, 0.002);

/// Less than this saved is not worth a candidate that timed slower.
const WORKSPACE_WORTH_SAVING: usize = 16 << 20;

/// What arithmetic a convolution may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ConvMath {
    /// TF32 tensor cores (else strict fp32 products).
    pub tf32: bool,
    /// Only algorithms that sum products directly (no Winograd or FFT transforms, whose rounding
    /// grows with the transform), in strict fp32 mode.
    pub direct_only: bool,
    /// Computes in NCHW on transposed copies of the NHWC operands (chosen per shape by timing,
    /// in strict fp32 mode only; see [`Dnn::convolution`]).
    pub nchw: bool,
    /// The most bytes one call may allocate for its workspace and NCHW copies (`None`: no
    /// limit); see [`ConvScratchLimit`].
    pub scratch: Option<usize>,
}

/// How much device memory a strict-fp32 convolution may allocate while it runs, for its
/// workspace and (when it computes in NCHW) the copies of its operands.
///
/// The fastest strict-fp32 algorithms (FFT, Winograd) and the NCHW copies can take several
/// times a convolution's operands, and the largest convolution's scratch sets the step's peak
/// memory. Within the limit the fastest candidate is chosen by timing; NCHW copies are made a
/// few images at a time when the whole batch's would not fit; where no algorithm's workspace
/// fits, the one with the smallest is used. TF32 convolutions are not limited: their
/// tensor-core algorithms work on the NHWC buffers with small workspaces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConvScratchLimit {
    /// The limit as a multiple of the call's largest tensor operand (input, output or
    /// weights).
    pub operand_multiple: f32,
    /// The limit is never below this many bytes: small convolutions keep their fastest
    /// algorithms, whose scratch is far from setting the peak.
    pub floor_bytes: usize,
}

impl Default for ConvScratchLimit {
    /// One largest operand, at least 64 MiB (a suggestion: the backend sets no limit unless
    /// asked).
    fn default() -> Self {
        ConvScratchLimit {
            operand_multiple: 1.0,
            floor_bytes: 64 << 20,
        }
    }
}

impl ConvScratchLimit {
    /// The limit for convolution `p`, in bytes.
    pub fn bytes(&self, p: &Conv2dParams) -> usize {
        let largest = [Role::X, Role::Y, Role::W].map(|r| r.len(p));
        let operand = (largest.into_iter().max().unwrap_or(0) * std::mem::size_of::<f32>()) as f64;
        ((operand * self.operand_multiple.max(0.0) as f64) as usize).max(self.floor_bytes)
    }
}

/// What strict-fp32 convolutions may allocate while they run: workspace and NCHW copies. TF32
/// convolutions are not limited. The default is [`Fp32ConvScratch::Fitted`] with a slack of
/// 0.1: on an H100 it kept every strict-fp32 U-Net cell (training and inference, batch 8 and
/// 32) faster than PyTorch and below its memory (`benches/results/unet_h100_fit.md`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fp32ConvScratch {
    /// Whatever each call's fastest way needs (as PyTorch's `cudnn.benchmark`).
    Unlimited,
    /// Each call within a limit of its own.
    PerCall(ConvScratchLimit),
    /// One budget shared by every call of a step, fitted for each step context (an executor's
    /// plan and mode, and whether TF32 is on) at its first run. That run takes what each call's
    /// fastest way needs and times every way in both layouts; later runs are held to the least
    /// budget whose convolution time, predicted from those timings
    /// ([`crate::backend::tuning::budget_curve`]), is within `slack` (a fraction: 0.1 is 10 %)
    /// of the fastest. A step's peak holds only its largest call's scratch, so a shared budget
    /// costs less speed than a limit per call for the same memory. Calls outside an executor's
    /// steps are not limited.
    Fitted { slack: f32 },
}

impl Default for Fp32ConvScratch {
    fn default() -> Self {
        Fp32ConvScratch::Fitted { slack: 0.1 }
    }
}

/// Where strict-fp32 convolutions compute (TF32 ones always compute on the NHWC buffers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fp32ConvLayout {
    /// Each shape's first call times both layouts and keeps the faster (the default).
    #[default]
    Timed,
    /// In place on the NHWC buffers.
    Nhwc,
    /// On NCHW copies of the operands.
    Nchw,
}

/// A cuDNN status as an error naming the call.
pub(crate) fn status(call: &str, s: sys::cudnnStatus_t) -> Result<()> {
    if s == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
        return Ok(());
    }
    // SAFETY: cudnnGetErrorString returns a static NUL-terminated string for any status.
    let text = unsafe {
        let p = sys::cudnnGetErrorString(s);
        if p.is_null() {
            String::new()
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(backend_error(format!("{call}: {s:?} {text}")))
}

/// Errors (instead of letting cudarc abort) when the cuDNN library lacks a function magnet uses.
pub(crate) fn check_symbols() -> Result<()> {
    const SYMBOLS: &[&str] = &[
        "cudnnCreate",
        "cudnnSetStream",
        "cudnnGetErrorString",
        "cudnnCnnVersionCheck",
        "cudnnOpsVersionCheck",
        "cudnnCreateTensorDescriptor",
        "cudnnSetTensor4dDescriptor",
        "cudnnDestroyTensorDescriptor",
        "cudnnCreateFilterDescriptor",
        "cudnnSetFilter4dDescriptor",
        "cudnnDestroyFilterDescriptor",
        "cudnnCreateConvolutionDescriptor",
        "cudnnSetConvolution2dDescriptor",
        "cudnnSetConvolutionMathType",
        "cudnnDestroyConvolutionDescriptor",
        "cudnnGetConvolutionForwardAlgorithm_v7",
        "cudnnGetConvolutionBackwardDataAlgorithm_v7",
        "cudnnGetConvolutionBackwardFilterAlgorithm_v7",
        "cudnnGetConvolutionForwardWorkspaceSize",
        "cudnnGetConvolutionBackwardDataWorkspaceSize",
        "cudnnGetConvolutionBackwardFilterWorkspaceSize",
        "cudnnConvolutionForward",
        "cudnnConvolutionBackwardData",
        "cudnnConvolutionBackwardFilter",
    ];
    // SAFETY: the library was found by `check_libraries`; looking a symbol up calls nothing.
    let lib = unsafe { sys::culib() };
    for name in SYMBOLS {
        // SAFETY: only the symbol's presence is checked; it is never called through this type.
        if unsafe { lib.get::<unsafe extern "C" fn()>(name.as_bytes()) }.is_err() {
            return Err(backend_error(format!(
                "the cuDNN library lacks {name} (cuDNN 9 is required)"
            )));
        }
    }
    Ok(())
}

/// An owned tensor descriptor.
pub(crate) struct TensorDesc(pub(crate) sys::cudnnTensorDescriptor_t);

impl TensorDesc {
    /// An f32 tensor of NCHW sizes `[n, c, h, w]` stored NHWC.
    pub(crate) fn nhwc(dims: [usize; 4]) -> Result<Self> {
        Self::new(sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC, dims)
    }

    /// An f32 tensor of NCHW sizes `[n, c, h, w]` stored NCHW.
    fn nchw(dims: [usize; 4]) -> Result<Self> {
        Self::new(sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW, dims)
    }

    fn new(format: sys::cudnnTensorFormat_t, dims: [usize; 4]) -> Result<Self> {
        let d = int_dims("tensor", dims)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: plain descriptor creation and setup.
        unsafe {
            status(
                "cudnnCreateTensorDescriptor",
                sys::cudnnCreateTensorDescriptor(&mut raw),
            )?;
            let desc = TensorDesc(raw);
            status(
                "cudnnSetTensor4dDescriptor",
                sys::cudnnSetTensor4dDescriptor(
                    desc.0,
                    format,
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                    d[0],
                    d[1],
                    d[2],
                    d[3],
                ),
            )?;
            Ok(desc)
        }
    }
}

impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreateTensorDescriptor and destroyed once.
        unsafe { sys::cudnnDestroyTensorDescriptor(self.0) };
    }
}

/// An owned filter descriptor.
struct FilterDesc(sys::cudnnFilterDescriptor_t);

impl FilterDesc {
    /// f32 weights `[out, kh, kw, in]`: cuDNN's NHWC filter format with K = out, C = in.
    fn nhwc(out: usize, kh: usize, kw: usize, inp: usize) -> Result<Self> {
        Self::new(
            sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC,
            [out, inp, kh, kw],
        )
    }

    /// f32 weights `[out, in, kh, kw]` (KCRS).
    fn nchw(out: usize, kh: usize, kw: usize, inp: usize) -> Result<Self> {
        Self::new(
            sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
            [out, inp, kh, kw],
        )
    }

    fn new(format: sys::cudnnTensorFormat_t, kcrs: [usize; 4]) -> Result<Self> {
        let d = int_dims("filter", kcrs)?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: plain descriptor creation and setup.
        unsafe {
            status(
                "cudnnCreateFilterDescriptor",
                sys::cudnnCreateFilterDescriptor(&mut raw),
            )?;
            let desc = FilterDesc(raw);
            status(
                "cudnnSetFilter4dDescriptor",
                sys::cudnnSetFilter4dDescriptor(
                    desc.0,
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                    format,
                    d[0],
                    d[1],
                    d[2],
                    d[3],
                ),
            )?;
            Ok(desc)
        }
    }
}

impl Drop for FilterDesc {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreateFilterDescriptor and destroyed once.
        unsafe { sys::cudnnDestroyFilterDescriptor(self.0) };
    }
}

/// An owned convolution descriptor.
struct ConvDesc(sys::cudnnConvolutionDescriptor_t);

impl ConvDesc {
    fn new(p: &Conv2dParams) -> Result<Self> {
        let g = [
            p.padding[0],
            p.padding[1],
            p.stride[0],
            p.stride[1],
            p.dilation[0],
            p.dilation[1],
        ];
        let g: Vec<i32> = g
            .iter()
            .map(|&v| i32::try_from(v).map_err(|_| backend_error("convolution geometry overflows")))
            .collect::<Result<_>>()?;
        let mut raw = std::ptr::null_mut();
        // SAFETY: plain descriptor creation and setup.
        unsafe {
            status(
                "cudnnCreateConvolutionDescriptor",
                sys::cudnnCreateConvolutionDescriptor(&mut raw),
            )?;
            let desc = ConvDesc(raw);
            status(
                "cudnnSetConvolution2dDescriptor",
                sys::cudnnSetConvolution2dDescriptor(
                    desc.0,
                    g[0],
                    g[1],
                    g[2],
                    g[3],
                    g[4],
                    g[5],
                    sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                ),
            )?;
            Ok(desc)
        }
    }

    fn set_math(&self, math: sys::cudnnMathType_t) -> Result<()> {
        // SAFETY: a live descriptor.
        status("cudnnSetConvolutionMathType", unsafe {
            sys::cudnnSetConvolutionMathType(self.0, math)
        })
    }
}

impl Drop for ConvDesc {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreateConvolutionDescriptor and destroyed once.
        unsafe { sys::cudnnDestroyConvolutionDescriptor(self.0) };
    }
}

fn int_dims(what: &str, dims: [usize; 4]) -> Result<[i32; 4]> {
    let mut out = [0i32; 4];
    for (o, d) in out.iter_mut().zip(dims) {
        *o = i32::try_from(d).map_err(|_| {
            backend_error(format!("{what} size {dims:?} exceeds cuDNN's int range"))
        })?;
    }
    Ok(out)
}

/// cuDNN's `cudnnConvolution*AlgoPerf_t` (all three share this layout), read with plain
/// integers so that values unknown to the bindings cannot form invalid enums.
#[repr(C)]
#[derive(Clone, Copy)]
struct AlgoPerf {
    algo: u32,
    status: u32,
    time: f32,
    memory: usize,
    determinism: u32,
    math_type: u32,
    reserved: [i32; 3],
}

/// One runnable choice: algorithm (as its integer value), math type and workspace bytes.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    algo: u32,
    math: sys::cudnnMathType_t,
    workspace: usize,
    /// Milliseconds of one run, once timed.
    ms: Option<f32>,
}

/// The operands of a convolution by what they are: input-like, output-like, weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    X,
    Y,
    W,
}

impl Role {
    /// Elements of this operand of `p`.
    fn len(self, p: &Conv2dParams) -> usize {
        match self {
            Role::X => p.input_shape().numel(),
            Role::Y => p.output_shape().numel(),
            Role::W => p.weight_shape().numel(),
        }
    }

    /// Elements of this operand per image (none for the weights, which every image shares).
    fn image_len(self, p: &Conv2dParams) -> usize {
        match self {
            Role::W => 0,
            _ => self.len(&Conv2dParams { batch: 1, ..*p }),
        }
    }
}

impl ConvKind {
    /// The roles of [`ConvPtrs`]' `a`, `b` and `out`.
    fn roles(self) -> [Role; 3] {
        match self {
            ConvKind::Forward => [Role::X, Role::W, Role::Y],
            ConvKind::BackwardData => [Role::Y, Role::W, Role::X],
            ConvKind::BackwardFilter => [Role::X, Role::Y, Role::W],
        }
    }
}

/// How a strict-fp32 convolution runs in NCHW on NHWC buffers: per role, the operand as stored
/// (NHWC, weights `[out, kh, kw, in]`) and as cuDNN computes on it (NCHW, KCRS), both as tensor
/// descriptors for `cudnnTransformTensor`, and the element count.
struct Staging {
    layouts: [(TensorDesc, TensorDesc, usize); 3],
}

impl Staging {
    fn new(p: &Conv2dParams) -> Result<Self> {
        let x = [p.batch, p.in_channels, p.in_h, p.in_w];
        let y = [p.batch, p.out_channels, p.out_h(), p.out_w()];
        let w = [p.out_channels, p.in_channels, p.kernel[0], p.kernel[1]];
        let pair = |d: [usize; 4]| -> Result<(TensorDesc, TensorDesc, usize)> {
            Ok((
                TensorDesc::nhwc(d)?,
                TensorDesc::nchw(d)?,
                d.iter().product(),
            ))
        };
        Ok(Staging {
            layouts: [pair(x)?, pair(y)?, pair(w)?],
        })
    }

    fn layout(&self, role: Role) -> &(TensorDesc, TensorDesc, usize) {
        &self.layouts[role as usize]
    }

    /// Bytes of the three copies.
    fn bytes(&self) -> usize {
        self.layouts.iter().map(|l| l.2).sum::<usize>() * std::mem::size_of::<f32>()
    }
}

/// Images per NCHW copy of convolution `p` under a scratch limit of `scratch` bytes: as many
/// as keep the copies within half the limit (the other half is left for the workspace); the
/// whole batch without a limit; `None` when even one image's copies exceed it.
fn images_per_copy(p: &Conv2dParams, scratch: Option<usize>) -> Option<usize> {
    let Some(limit) = scratch else {
        return Some(p.batch);
    };
    let f32_bytes = std::mem::size_of::<f32>();
    let per_image = (Role::X.image_len(p) + Role::Y.image_len(p)) * f32_bytes;
    let weights = Role::W.len(p) * f32_bytes;
    let images = (limit / 2).checked_sub(weights)? / per_image.max(1);
    (images > 0).then_some(images.min(p.batch))
}

/// Splits `batch` images into as few runs of at most `most` images as possible, of sizes that
/// differ by at most one: `(first image, images)` of each.
fn batch_chunks(batch: usize, most: usize) -> Vec<(usize, usize)> {
    let count = batch.div_ceil(most.max(1)).max(1);
    let (base, longer) = (batch / count, batch % count);
    let mut first = 0;
    (0..count)
        .map(|i| {
            let images = base + usize::from(i < longer);
            first += images;
            (first - images, images)
        })
        .collect()
}

/// Descriptors and candidate algorithms of one convolution shape.
struct ConvPlan {
    x: TensorDesc,
    w: FilterDesc,
    conv: ConvDesc,
    y: TensorDesc,
    /// Set when the convolution runs in NCHW on transposed copies of its operands.
    staging: Option<Staging>,
    candidates: Vec<Candidate>,
    /// Index of the candidate in use.
    current: usize,
    /// Whether the candidates have been timed and ordered fastest first.
    tuned: bool,
}

/// A convolution as its callers ask for it (and a plan's key).
type ConvKey = (ConvKind, Conv2dParams, ConvMath);

/// How a convolution ran at its last call, and how often since the last report.
#[derive(Debug, Clone, Copy)]
struct ConvUse {
    calls: u64,
    nchw: bool,
    /// Images per NCHW run.
    images: usize,
}

/// The cuDNN state of a backend. Used under the backend's lock only.
pub(crate) struct Dnn {
    handle: sys::cudnnHandle_t,
    stream: Arc<CudaStream>,
    plans: HashMap<ConvKey, ConvPlan>,
    /// Whether each strict-fp32 convolution runs clearly faster in NCHW, by timing at its first
    /// use.
    nchw_faster: HashMap<ConvKey, bool>,
    /// Those timings, milliseconds of a whole call: `[NHWC, NCHW with its copies]`.
    layout_ms: HashMap<ConvKey, [f32; 2]>,
    /// Calls since the last report.
    uses: HashMap<ConvKey, ConvUse>,
    fitting: fitting::Fitting,
}

// SAFETY: the handle and descriptors are only used by one thread at a time (behind a mutex),
// which cuDNN allows.
unsafe impl Send for Dnn {}

impl Drop for Dnn {
    fn drop(&mut self) {
        self.plans.clear();
        // SAFETY: created by cudnnCreate and destroyed once.
        unsafe { sys::cudnnDestroy(self.handle) };
    }
}

fn math_of(v: u32) -> Option<sys::cudnnMathType_t> {
    use sys::cudnnMathType_t::*;
    Some(match v {
        0 => CUDNN_DEFAULT_MATH,
        1 => CUDNN_TENSOR_OP_MATH,
        2 => CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION,
        3 => CUDNN_FMA_MATH,
        _ => return None,
    })
}

fn fwd_algo(v: u32) -> Option<sys::cudnnConvolutionFwdAlgo_t> {
    use sys::cudnnConvolutionFwdAlgo_t::*;
    Some(match v {
        0 => CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        1 => CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        2 => CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        3 => CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        4 => CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        5 => CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        6 => CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        7 => CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
        _ => return None,
    })
}

fn bwd_data_algo(v: u32) -> Option<sys::cudnnConvolutionBwdDataAlgo_t> {
    use sys::cudnnConvolutionBwdDataAlgo_t::*;
    Some(match v {
        0 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
        1 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_1,
        2 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
        3 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING,
        4 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD,
        5 => CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED,
        _ => return None,
    })
}

fn bwd_filter_algo(v: u32) -> Option<sys::cudnnConvolutionBwdFilterAlgo_t> {
    use sys::cudnnConvolutionBwdFilterAlgo_t::*;
    Some(match v {
        0 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
        1 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1,
        2 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
        3 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
        4 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD,
        5 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED,
        6 => CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING,
        _ => return None,
    })
}

/// Whether an algorithm's arithmetic is a plain sum of products (no FFT or Winograd transforms,
/// whose rounding errors grow with the tile size), for [`ConvMath::direct_only`].
fn is_direct(kind: ConvKind, algo: u32) -> bool {
    match kind {
        ConvKind::Forward => algo <= 3,
        ConvKind::BackwardData => algo <= 1,
        ConvKind::BackwardFilter => algo <= 1 || algo == 3,
    }
}

/// Device memory addresses of one convolution call: input-like, weights-like, output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvPtrs {
    /// `x` (forward, backward-filter) or `dy` (backward-data).
    pub a: u64,
    /// `w` (forward, backward-data) or `dy` (backward-filter).
    pub b: u64,
    /// The output: `y`, `dx` or `dw`.
    pub out: u64,
}

impl Dnn {
    /// A handle on `stream`, after cuDNN's own version checks.
    pub(crate) fn new(ctx: &Arc<CudaContext>, stream: &Arc<CudaStream>) -> Result<Self> {
        ctx.bind_to_thread()
            .map_err(|e| driver_error("binding the context", e))?;
        // SAFETY: plain library calls; the stream outlives the handle (held in `Dnn`).
        unsafe {
            status("cudnnCnnVersionCheck", sys::cudnnCnnVersionCheck())?;
            status("cudnnOpsVersionCheck", sys::cudnnOpsVersionCheck())?;
            let mut handle = std::ptr::null_mut();
            status("cudnnCreate", sys::cudnnCreate(&mut handle))?;
            let dnn = Dnn {
                handle,
                stream: stream.clone(),
                plans: HashMap::new(),
                nchw_faster: HashMap::new(),
                layout_ms: HashMap::new(),
                uses: HashMap::new(),
                fitting: fitting::Fitting::default(),
            };
            status(
                "cudnnSetStream",
                sys::cudnnSetStream(dnn.handle, stream.cu_stream() as _),
            )?;
            Ok(dnn)
        }
    }

    /// A workspace of `bytes` bytes for one call (`None` for none); dropping it frees it in
    /// stream order, after the call's work.
    fn workspace(&self, bytes: usize) -> Result<Option<CudaSlice<u8>>> {
        if bytes == 0 {
            return Ok(None);
        }
        // SAFETY: a workspace is scratch memory that cuDNN writes before reading.
        let ws = unsafe { self.stream.alloc::<u8>(bytes) }
            .map_err(|e| driver_error(&format!("allocating a {bytes}-byte workspace"), e))?;
        Ok(Some(ws))
    }

    /// The device address of a workspace (0 for none).
    fn address(&self, ws: &Option<CudaSlice<u8>>) -> u64 {
        ws.as_ref().map_or(0, |w| w.device_ptr(&self.stream).0)
    }

    /// Creates the plan of `(kind, p, math)`: descriptors and the heuristics' candidates.
    fn plan(&mut self, kind: ConvKind, p: &Conv2dParams, math: ConvMath) -> Result<&mut ConvPlan> {
        let key = (kind, *p, math);
        if !self.plans.contains_key(&key) {
            let plan = self.make_plan(kind, p, math)?;
            self.plans.insert(key, plan);
        }
        Ok(self.plans.get_mut(&key).expect("inserted above"))
    }

    fn make_plan(&self, kind: ConvKind, p: &Conv2dParams, mode: ConvMath) -> Result<ConvPlan> {
        let tf32 = mode.tf32;
        let staging = mode.nchw.then(|| Staging::new(p)).transpose()?;
        let [xd, yd] = [
            [p.batch, p.in_channels, p.in_h, p.in_w],
            [p.batch, p.out_channels, p.out_h(), p.out_w()],
        ];
        let (kh, kw) = (p.kernel[0], p.kernel[1]);
        let (x, y, w) = if staging.is_some() {
            (
                TensorDesc::nchw(xd)?,
                TensorDesc::nchw(yd)?,
                FilterDesc::nchw(p.out_channels, kh, kw, p.in_channels)?,
            )
        } else {
            (
                TensorDesc::nhwc(xd)?,
                TensorDesc::nhwc(yd)?,
                FilterDesc::nhwc(p.out_channels, kh, kw, p.in_channels)?,
            )
        };
        let conv = ConvDesc::new(p)?;
        let base_math = if tf32 {
            sys::cudnnMathType_t::CUDNN_DEFAULT_MATH
        } else {
            sys::cudnnMathType_t::CUDNN_FMA_MATH
        };
        conv.set_math(base_math)?;

        const MAX_ALGOS: usize = 16;
        let zero = AlgoPerf {
            algo: 0,
            status: 0,
            time: 0.0,
            memory: 0,
            determinism: 0,
            math_type: 0,
            reserved: [0; 3],
        };
        let mut perf = [zero; MAX_ALGOS];
        let mut returned = 0i32;
        let h = self.handle;
        // SAFETY: live handle and descriptors; `perf` holds MAX_ALGOS results of the layout
        // cuDNN writes (AlgoPerf mirrors cudnnConvolution*AlgoPerf_t).
        let s = unsafe {
            match kind {
                ConvKind::Forward => sys::cudnnGetConvolutionForwardAlgorithm_v7(
                    h,
                    x.0,
                    w.0,
                    conv.0,
                    y.0,
                    MAX_ALGOS as i32,
                    &mut returned,
                    perf.as_mut_ptr().cast(),
                ),
                ConvKind::BackwardData => sys::cudnnGetConvolutionBackwardDataAlgorithm_v7(
                    h,
                    w.0,
                    y.0,
                    conv.0,
                    x.0,
                    MAX_ALGOS as i32,
                    &mut returned,
                    perf.as_mut_ptr().cast(),
                ),
                ConvKind::BackwardFilter => sys::cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                    h,
                    x.0,
                    y.0,
                    conv.0,
                    w.0,
                    MAX_ALGOS as i32,
                    &mut returned,
                    perf.as_mut_ptr().cast(),
                ),
            }
        };
        status("cudnnGetConvolution*Algorithm_v7", s)?;

        // What the call's scratch limit leaves for the workspace, after the NCHW copies.
        let bound = mode.scratch.map_or(MAX_WORKSPACE, |limit| {
            let copies = staging.as_ref().map_or(0, Staging::bytes);
            limit.saturating_sub(copies).min(MAX_WORKSPACE)
        });
        let mut candidates = Vec::new();
        // Used only when no candidate fits the bound: the one with the smallest workspace.
        let mut thriftiest: Option<Candidate> = None;
        for r in &perf[..(returned.max(0) as usize).min(MAX_ALGOS)] {
            if r.status != sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS as u32 {
                continue;
            }
            let Some(math) = math_of(r.math_type) else {
                continue;
            };
            let tensor_ops = matches!(
                math,
                sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH
                    | sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION
            );
            if !tf32 && (tensor_ops || (mode.direct_only && !is_direct(kind, r.algo))) {
                continue;
            }
            let math = if tf32 { math } else { base_math };
            if conv.set_math(math).is_err() {
                continue;
            }
            let Ok(workspace) = workspace_size(h, kind, &x, &w, &conv, &y, r.algo) else {
                continue;
            };
            let candidate = Candidate {
                algo: r.algo,
                math,
                workspace,
                ms: None,
            };
            if workspace <= bound {
                candidates.push(candidate);
            } else if workspace <= MAX_WORKSPACE
                && thriftiest.is_none_or(|t| workspace < t.workspace)
            {
                thriftiest = Some(candidate);
            }
        }
        if candidates.is_empty() {
            candidates.extend(thriftiest);
        }
        if candidates.is_empty() {
            return Err(backend_error(format!(
                "cuDNN offers no {} algorithm for {kind:?} {p:?} (heuristics returned {returned})",
                if tf32 { "" } else { "strict fp32" }
            )));
        }
        Ok(ConvPlan {
            x,
            w,
            conv,
            y,
            staging,
            candidates,
            current: 0,
            tuned: false,
        })
    }

    /// A start and an end event that can time work on the stream.
    fn timing_events(&self) -> Result<(CudaEvent, CudaEvent)> {
        let event = || {
            self.stream
                .context()
                .new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(|e| driver_error("creating a timing event", e))
        };
        Ok((event()?, event()?))
    }

    /// Times every candidate the heuristics offer on the call's own buffers
    /// (each run twice, the second run timed) and orders them fastest first; candidates cuDNN
    /// refuses go last. Each run overwrites the output, which the real call then writes again.
    fn tune(
        &mut self,
        kind: ConvKind,
        p: &Conv2dParams,
        math: ConvMath,
        ptrs: &ConvPtrs,
    ) -> Result<()> {
        let (start, end) = self.timing_events()?;
        // Every candidate, as PyTorch's exhaustive search does: the heuristics' order is only a
        // guess.
        let count = self.plan(kind, p, math)?.candidates.len();
        let mut timed: Vec<(f32, usize)> = Vec::with_capacity(count);
        for i in 0..count {
            let cand = self.plan(kind, p, math)?.candidates[i];
            // A workspace that does not fit in memory now rules its candidate out.
            let Ok(workspace) = self.workspace(cand.workspace) else {
                continue;
            };
            let ws = self.address(&workspace);
            let h = self.handle;
            let stream = self.stream.clone();
            let plan = self.plan(kind, p, math)?;
            plan.conv.set_math(cand.math)?;
            if run_conv(h, kind, plan, cand, ptrs, ws) != sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
                continue;
            }
            start
                .record(&stream)
                .map_err(|e| driver_error("recording a timing event", e))?;
            let s = run_conv(h, kind, plan, cand, ptrs, ws);
            end.record(&stream)
                .map_err(|e| driver_error("recording a timing event", e))?;
            end.synchronize()
                .map_err(|e| driver_error("timing a convolution", e))?;
            if s == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS {
                let ms = start
                    .elapsed_ms(&end)
                    .map_err(|e| driver_error("timing a convolution", e))?;
                timed.push((ms, i));
            }
        }
        let plan = self.plan(kind, p, math)?;
        plan.tuned = true;
        timed.sort_by(|a, b| a.0.total_cmp(&b.0));
        // Within timing noise of the fastest, a much smaller workspace goes first.
        if let Some(&(fastest, first)) = timed.first() {
            let near = fastest * (1.0 + TIMING_NOISE.0) + TIMING_NOISE.1;
            let workspace = |k: usize| plan.candidates[timed[k].1].workspace;
            let thriftiest = (0..timed.len())
                .filter(|&k| timed[k].0 <= near)
                .min_by_key(|&k| workspace(k))
                .unwrap_or(0);
            let fastest_workspace = plan.candidates[first].workspace;
            if fastest_workspace - workspace(thriftiest) >= WORKSPACE_WORTH_SAVING {
                let chosen = timed.remove(thriftiest);
                timed.insert(0, chosen);
            }
        }
        let mut order: Vec<Candidate> = timed
            .iter()
            .map(|&(ms, i)| Candidate {
                ms: Some(ms),
                ..plan.candidates[i]
            })
            .collect();
        for (i, c) in plan.candidates.iter().enumerate() {
            if !timed.iter().any(|&(_, j)| j == i) {
                order.push(*c);
            }
        }
        plan.candidates = order;
        plan.current = 0;
        Ok(())
    }

    /// Runs convolution `kind` of `p`, overwriting the output (beta = 0).
    ///
    /// cuDNN's strict-fp32 kernels are often much faster on NCHW than on NHWC (its TF32 ones are
    /// fastest on NHWC), so in strict fp32 each shape's first call times both: in place on the
    /// NHWC buffers, and on NCHW copies (transposes included, a few images at a time where the
    /// scratch limit asks for it); the copies are kept only when they are faster beyond timing
    /// noise.
    pub(crate) fn convolution(
        &mut self,
        kind: ConvKind,
        p: &Conv2dParams,
        math: ConvMath,
        layout: Fp32ConvLayout,
        ptrs: ConvPtrs,
    ) -> Result<()> {
        let key = (kind, *p, math);
        let images = images_per_copy(p, math.scratch);
        let nchw = !math.tf32
            && match (layout, self.nchw_faster.get(&key), images) {
                (Fp32ConvLayout::Nhwc, _, _) => false,
                (Fp32ConvLayout::Nchw, _, _) => true,
                (Fp32ConvLayout::Timed, Some(&nchw), _) => nchw,
                (Fp32ConvLayout::Timed, None, None) => {
                    self.nchw_faster.insert(key, false);
                    false
                }
                (Fp32ConvLayout::Timed, None, Some(images)) => {
                    let nhwc_ms = self.time(|dnn| dnn.run_planned(kind, p, math, ptrs))?;
                    let nchw_ms = self.time(|dnn| dnn.run_staged(kind, p, math, images, ptrs))?;
                    // The copies cost memory while the call runs: worth it only beyond timing
                    // noise.
                    let faster = nchw_ms * (1.0 + TIMING_NOISE.0) + TIMING_NOISE.1 < nhwc_ms;
                    self.nchw_faster.insert(key, faster);
                    self.layout_ms.insert(key, [nhwc_ms, nchw_ms]);
                    faster
                }
            };
        // Forced to NCHW where one image's copies exceed the limit: one at a time.
        let images = if nchw { images.unwrap_or(1) } else { p.batch };
        let first_run = self.fitting.first_run();
        for uses in [
            Some(&mut self.uses),
            first_run.then_some(&mut self.fitting.uses),
        ]
        .into_iter()
        .flatten()
        {
            let calls = uses.get(&key).map_or(0, |u| u.calls) + 1;
            uses.insert(
                key,
                ConvUse {
                    calls,
                    nchw,
                    images,
                },
            );
        }
        if nchw {
            self.run_staged(kind, p, math, images, ptrs)
        } else {
            self.run_planned(kind, p, math, ptrs)
        }
    }

    /// Milliseconds of the second of two runs of `run` (the first tunes its algorithms).
    fn time(&mut self, mut run: impl FnMut(&mut Self) -> Result<()>) -> Result<f32> {
        run(self)?;
        let (start, end) = self.timing_events()?;
        start
            .record(&self.stream)
            .map_err(|e| driver_error("recording a timing event", e))?;
        run(self)?;
        end.record(&self.stream)
            .map_err(|e| driver_error("recording a timing event", e))?;
        end.synchronize()
            .map_err(|e| driver_error("timing a convolution", e))?;
        start
            .elapsed_ms(&end)
            .map_err(|e| driver_error("timing a convolution", e))
    }

    /// Runs convolution `kind` of `p` in NCHW, at most `images` images at a time: each run's
    /// NHWC operands are transposed into staging buffers and its result transposed back (a
    /// weight gradient summed over the runs).
    fn run_staged(
        &mut self,
        kind: ConvKind,
        p: &Conv2dParams,
        math: ConvMath,
        images: usize,
        ptrs: ConvPtrs,
    ) -> Result<()> {
        let math = ConvMath { nchw: true, ..math };
        let chunks = batch_chunks(p.batch, images);
        let longest = chunks.iter().map(|c| c.1).max().unwrap_or(p.batch);
        let longest = Conv2dParams {
            batch: longest,
            ..*p
        };
        let lens = kind.roles().map(|r| r.len(&longest));
        let scratch = |len: usize| {
            // SAFETY: staging buffers are written in full (transform or convolution) before
            // they are read.
            unsafe { self.stream.alloc::<f32>(len.max(1)) }
                .map_err(|e| driver_error("allocating a convolution staging buffer", e))
        };
        let (sa, sb, mut sout) = (scratch(lens[0])?, scratch(lens[1])?, scratch(lens[2])?);
        let stream = self.stream.clone();
        let staged = ConvPtrs {
            a: sa.device_ptr(&stream).0,
            b: sb.device_ptr(&stream).0,
            out: sout.device_ptr_mut(&stream).0,
        };
        let h = self.handle;
        let [role_a, role_b, role_out] = kind.roles();
        for (i, &(first, count)) in chunks.iter().enumerate() {
            let chunk = Conv2dParams { batch: count, ..*p };
            let plan = self.plan(kind, &chunk, math)?;
            let Some(staging) = &plan.staging else {
                return Err(backend_error("an NCHW convolution plan without staging"));
            };
            let [a, b, out] = [role_a, role_b, role_out].map(|r| {
                let (stored, computed, _) = staging.layout(r);
                let offset = first * r.image_len(p) * std::mem::size_of::<f32>();
                (stored.0, computed.0, offset as u64)
            });
            transform(h, a.0, ptrs.a + a.2, a.1, staged.a, 0.0)?;
            // The weights are the same for every run.
            if i == 0 || role_b != Role::W {
                transform(h, b.0, ptrs.b + b.2, b.1, staged.b, 0.0)?;
            }
            self.run_planned(kind, &chunk, math, staged)?;
            // A weight gradient adds up over the runs; an output's runs are disjoint.
            let beta = if i > 0 && role_out == Role::W {
                1.0
            } else {
                0.0
            };
            transform(h, out.1, staged.out, out.0, ptrs.out + out.2, beta)?;
        }
        Ok(())
    }

    /// Runs convolution `kind` of `p` on buffers in the plan's layout.
    fn run_planned(
        &mut self,
        kind: ConvKind,
        p: &Conv2dParams,
        math: ConvMath,
        ptrs: ConvPtrs,
    ) -> Result<()> {
        if !self.plan(kind, p, math)?.tuned {
            self.tune(kind, p, math, &ptrs)?;
        }
        let mut last_error = None;
        loop {
            let (cand, count) = {
                let plan = self.plan(kind, p, math)?;
                if plan.current >= plan.candidates.len() {
                    break;
                }
                (plan.candidates[plan.current], plan.candidates.len())
            };
            let workspace = self.workspace(cand.workspace)?;
            let ws = self.address(&workspace);
            let h = self.handle;
            let plan = self.plan(kind, p, math)?;
            plan.conv.set_math(cand.math)?;
            let s = run_conv(h, kind, plan, cand, &ptrs, ws);
            match s {
                sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS => return Ok(()),
                sys::cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED
                | sys::cudnnStatus_t::CUDNN_STATUS_BAD_PARAM
                | sys::cudnnStatus_t::CUDNN_STATUS_EXECUTION_FAILED
                    if plan.current + 1 < count =>
                {
                    last_error = Some(s);
                    plan.current += 1;
                }
                other => {
                    return status(
                        &format!("cuDNN {kind:?} with algorithm {} on {p:?}", cand.algo),
                        other,
                    )
                }
            }
        }
        Err(backend_error(format!(
            "cuDNN refused every {kind:?} algorithm for {p:?} (last: {last_error:?})"
        )))
    }
}

fn workspace_size(
    h: sys::cudnnHandle_t,
    kind: ConvKind,
    x: &TensorDesc,
    w: &FilterDesc,
    conv: &ConvDesc,
    y: &TensorDesc,
    algo: u32,
) -> Result<usize> {
    let mut bytes = 0usize;
    let bad = || backend_error(format!("unknown cuDNN {kind:?} algorithm {algo}"));
    // SAFETY: live handle and descriptors; `bytes` is a valid out-pointer.
    let s = unsafe {
        match kind {
            ConvKind::Forward => sys::cudnnGetConvolutionForwardWorkspaceSize(
                h,
                x.0,
                w.0,
                conv.0,
                y.0,
                fwd_algo(algo).ok_or_else(bad)?,
                &mut bytes,
            ),
            ConvKind::BackwardData => sys::cudnnGetConvolutionBackwardDataWorkspaceSize(
                h,
                w.0,
                y.0,
                conv.0,
                x.0,
                bwd_data_algo(algo).ok_or_else(bad)?,
                &mut bytes,
            ),
            ConvKind::BackwardFilter => sys::cudnnGetConvolutionBackwardFilterWorkspaceSize(
                h,
                x.0,
                y.0,
                conv.0,
                w.0,
                bwd_filter_algo(algo).ok_or_else(bad)?,
                &mut bytes,
            ),
        }
    };
    status("cudnnGetConvolution*WorkspaceSize", s)?;
    Ok(bytes)
}

/// Writes the f32 tensor at `src` (described by `src_desc`) to `dst` in `dst_desc`'s layout,
/// plus `beta` times what `dst` held.
fn transform(
    h: sys::cudnnHandle_t,
    src_desc: sys::cudnnTensorDescriptor_t,
    src: u64,
    dst_desc: sys::cudnnTensorDescriptor_t,
    dst: u64,
    beta: f32,
) -> Result<()> {
    let one = 1.0f32;
    // SAFETY: live handle; both descriptors have the same sizes and describe the buffers behind
    // the pointers.
    let s = unsafe {
        sys::cudnnTransformTensor(
            h,
            &one as *const f32 as *const c_void,
            src_desc,
            src as *const c_void,
            &beta as *const f32 as *const c_void,
            dst_desc,
            dst as *mut c_void,
        )
    };
    status("cudnnTransformTensor", s)
}

fn run_conv(
    h: sys::cudnnHandle_t,
    kind: ConvKind,
    plan: &ConvPlan,
    cand: Candidate,
    ptrs: &ConvPtrs,
    ws: u64,
) -> sys::cudnnStatus_t {
    let one = 1.0f32;
    let zero = 0.0f32;
    let alpha = &one as *const f32 as *const c_void;
    let beta = &zero as *const f32 as *const c_void;
    let (a, b, out) = (
        ptrs.a as *const c_void,
        ptrs.b as *const c_void,
        ptrs.out as *mut c_void,
    );
    let ws_ptr = ws as *mut c_void;
    // SAFETY: live handle and descriptors describing the buffers behind the pointers, whose
    // lengths the caller checked; the workspace holds at least `cand.workspace` bytes.
    unsafe {
        match kind {
            ConvKind::Forward => match fwd_algo(cand.algo) {
                Some(algo) => sys::cudnnConvolutionForward(
                    h,
                    alpha,
                    plan.x.0,
                    a,
                    plan.w.0,
                    b,
                    plan.conv.0,
                    algo,
                    ws_ptr,
                    cand.workspace,
                    beta,
                    plan.y.0,
                    out,
                ),
                None => sys::cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED,
            },
            ConvKind::BackwardData => match bwd_data_algo(cand.algo) {
                Some(algo) => sys::cudnnConvolutionBackwardData(
                    h,
                    alpha,
                    plan.w.0,
                    b,
                    plan.y.0,
                    a,
                    plan.conv.0,
                    algo,
                    ws_ptr,
                    cand.workspace,
                    beta,
                    plan.x.0,
                    out,
                ),
                None => sys::cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED,
            },
            ConvKind::BackwardFilter => match bwd_filter_algo(cand.algo) {
                Some(algo) => sys::cudnnConvolutionBackwardFilter(
                    h,
                    alpha,
                    plan.x.0,
                    a,
                    plan.y.0,
                    b,
                    plan.conv.0,
                    algo,
                    ws_ptr,
                    cand.workspace,
                    beta,
                    plan.w.0,
                    out,
                ),
                None => sys::cudnnStatus_t::CUDNN_STATUS_NOT_SUPPORTED,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_chunks_cover_the_batch_in_near_equal_runs() {
        for batch in 1..40 {
            for most in 1..=batch + 1 {
                let chunks = batch_chunks(batch, most);
                assert_eq!(chunks.len(), batch.div_ceil(most), "{batch} by {most}");
                let mut next = 0;
                for &(first, images) in &chunks {
                    assert_eq!(first, next, "{batch} by {most}: contiguous");
                    assert!(
                        (1..=most).contains(&images),
                        "{batch} by {most}: {chunks:?}"
                    );
                    next += images;
                }
                assert_eq!(next, batch, "{batch} by {most}: covers the batch");
                let sizes = chunks.iter().map(|c| c.1);
                let spread = sizes.clone().max().unwrap() - sizes.min().unwrap();
                assert!(spread <= 1, "{batch} by {most}: {chunks:?}");
            }
        }
    }

    /// A 3 × 3 convolution, padding 1, of `batch` images of `h × w`.
    fn conv(
        batch: usize,
        in_channels: usize,
        out_channels: usize,
        h: usize,
        w: usize,
    ) -> Conv2dParams {
        Conv2dParams {
            batch,
            in_h: h,
            in_w: w,
            in_channels,
            out_channels,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
        }
    }

    #[test]
    fn copies_take_at_most_half_the_limit() {
        // 2 images of 64 → 66 channels at 128 × 130: 8.25 MiB of copies per image.
        let p = conv(8, 64, 66, 128, 130);
        let image = (64 + 66) * 128 * 130 * 4;
        let weights = 66 * 9 * 64 * 4;
        assert_eq!(images_per_copy(&p, None), Some(8), "no limit: the batch");
        for images in 1..=8 {
            let limit = 2 * (weights + images * image);
            assert_eq!(images_per_copy(&p, Some(limit)), Some(images));
            assert_eq!(
                images_per_copy(&p, Some(limit - 2)),
                Some(images - 1).filter(|&n| n > 0)
            );
        }
        assert_eq!(
            images_per_copy(&p, Some(1 << 30)),
            Some(8),
            "never more than the batch"
        );
        assert_eq!(
            images_per_copy(&p, Some(weights)),
            None,
            "the weights alone exceed half"
        );
    }

    #[test]
    fn the_limit_scales_with_the_largest_operand_above_its_floor() {
        let p = conv(4, 8, 32, 16, 16);
        let output = 4 * 32 * 16 * 16 * 4;
        let limit = |operand_multiple, floor_bytes| {
            ConvScratchLimit {
                operand_multiple,
                floor_bytes,
            }
            .bytes(&p)
        };
        assert_eq!(limit(1.0, 0), output);
        assert_eq!(limit(2.5, 0), output * 5 / 2);
        assert_eq!(limit(1.0, output * 3), output * 3, "the floor");
        // With few images and many channels the weights are the largest operand.
        let deep = conv(1, 512, 512, 16, 16);
        let weights = 512 * 9 * 512 * 4;
        let deep_limit = ConvScratchLimit {
            operand_multiple: 1.0,
            floor_bytes: 0,
        };
        assert_eq!(deep_limit.bytes(&deep), weights);
    }
}
