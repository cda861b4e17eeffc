//! The only place that knows about hardware.
//!
//! [`Backend`] is the union of a few op families ([`Memory`], [`ConvOps`], [`NormOps`],
//! [`PoolOps`], [`ResampleOps`], [`LayoutOps`], [`ElementwiseOps`], [`ReduceOps`], [`MatmulOps`],
//! [`OptimOps`], [`LossOps`]). Kernels take their shapes in plain parameter structs ([`params`]),
//! read inputs through `&Buffer` and write outputs through `&mut Buffer`. Kernels may only enqueue
//! work; only [`Memory::download`] and [`Memory::sync`] wait for it.
//!
//! Every kernel checks the lengths of the buffers it is given against its parameters and returns
//! a typed error on a mismatch: a backend never panics on bad input.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod params;
pub mod plan;
pub mod rng;
pub mod tuning;
#[cfg(feature = "wgpu")]
pub mod wgpu;

#[cfg(feature = "wgpu")]
pub use self::wgpu::{WgpuBackend, WgpuBuffer};
pub use cpu::CpuBackend;
#[cfg(feature = "cuda")]
pub use cuda::{ConvScratchLimit, CudaBackend, Fp32ConvLayout, Fp32ConvScratch, NcclCollective};
pub use params::*;
pub use tuning::{ConvKind, ConvLayout, ConvTuning, ConvWay};

use crate::error::Result;
use crate::tensor::{HostTensor, Shape, TensorDesc};

/// Device memory: allocation and host ⇄ device transfer.
pub trait Memory: Clone + Send + Sync + 'static {
    /// A device buffer of f32 elements.
    type Buffer: Send + Sync + 'static;

    /// Short lower-case name (`cpu`, `cuda`, `wgpu`), as used in `MAGNET_TEST_BACKENDS`.
    fn name(&self) -> &'static str;

    /// The device in words (e.g. the GPU's name).
    fn device_name(&self) -> String;

    /// A zero-filled buffer for `desc`.
    fn alloc(&self, desc: &TensorDesc) -> Result<Self::Buffer>;

    /// Number of elements in `buf`.
    fn len(&self, buf: &Self::Buffer) -> usize;

    /// Elements `buf` has room for: at least its length (the default: exactly its length).
    fn capacity(&self, buf: &Self::Buffer) -> usize {
        self.len(buf)
    }

    /// Makes `buf` a buffer of `len` elements in place, for reuse by a tensor of another size
    /// (its contents are unspecified afterwards); `false` when it cannot (the default, unless
    /// the length is already `len`).
    fn reuse_as(&self, buf: &mut Self::Buffer, len: usize) -> bool {
        self.len(buf) == len
    }

    /// Whether [`Memory::reuse_as`] gives any buffer any length up to its capacity (the
    /// default: no, only its own length).
    fn shrinks_in_place(&self) -> bool {
        false
    }

    /// Copies host data into `dst`, which must hold exactly `data.len()` elements.
    fn upload(&self, data: &[f32], dst: &mut Self::Buffer) -> Result<()>;

    /// Waits for pending work and copies `src` to the host.
    fn download(&self, src: &Self::Buffer) -> Result<Vec<f32>>;

    /// Copies `src` into `dst` (same length).
    fn copy(&self, src: &Self::Buffer, dst: &mut Self::Buffer) -> Result<()>;

    /// Waits for all enqueued work.
    fn sync(&self) -> Result<()>;

    /// Bytes of device memory held by live allocations (on CUDA: of the device's memory pool,
    /// which may also hold other users' allocations when shared), or `None` when the backend
    /// cannot tell (the default).
    fn memory_in_use(&self) -> Option<u64> {
        None
    }

    /// The highest [`Memory::memory_in_use`] since the last [`Memory::reset_memory_peak`]
    /// (transient scratch included), or `None` when the backend cannot tell (the default).
    fn memory_peak(&self) -> Option<u64> {
        None
    }

    /// Starts a new [`Memory::memory_peak`] from the memory in use now.
    fn reset_memory_peak(&self) {}

    /// Called by the executor as each forward begins; `context` names its plan and mode (the
    /// same for every step of them, unique in the process). A backend may fit settings per
    /// context: CUDA fits the strict-fp32 convolutions' shared scratch budget
    /// (`Fp32ConvScratch::Fitted`). Nothing by default.
    fn begin_step(&self, context: u64) {
        let _ = context;
    }

    /// Allocates a buffer and uploads `host` into it.
    fn to_device(&self, host: &HostTensor) -> Result<Self::Buffer> {
        let mut buf = self.alloc(&host.desc())?;
        self.upload(host.data(), &mut buf)?;
        Ok(buf)
    }

    /// Downloads `buf` as a host tensor of `shape`.
    fn to_host(&self, buf: &Self::Buffer, shape: &Shape) -> Result<HostTensor> {
        HostTensor::new(shape.clone(), self.download(buf)?)
    }
}

/// Convolution: forward, backward-data (which is also transposed convolution's forward) and
/// backward-filter. Input NHWC, weights `[out, kh, kw, in]`, output NHWC.
pub trait ConvOps: Memory {
    /// `y = conv(x, w)`.
    fn conv2d_forward(
        &self,
        p: &Conv2dParams,
        x: &Self::Buffer,
        w: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// `dx = conv_transpose(dy, w)`: the gradient of the input, overwriting `dx`.
    fn conv2d_backward_data(
        &self,
        p: &Conv2dParams,
        dy: &Self::Buffer,
        w: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;

    /// `dw = Σ x ⋆ dy`: the gradient of the weights, overwriting `dw`.
    fn conv2d_backward_filter(
        &self,
        p: &Conv2dParams,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        dw: &mut Self::Buffer,
    ) -> Result<()>;
}

/// Batch normalisation over the last axis (channels of NHWC, features of N×C).
pub trait NormOps: Memory {
    /// Normalises with the batch statistics, saves the batch mean and `1/sqrt(var + eps)` for the
    /// backward pass, and updates the running averages (unbiased variance, as PyTorch). The
    /// output is `(x − mean)·(γ·invstd) + β` with the saved (f32) `invstd`, ReLU'd when
    /// `p.relu`, so that [`NormOps::batch_norm_apply`] reproduces it bit for bit.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_train(
        &self,
        p: &BatchNormParams,
        x: &Self::Buffer,
        gamma: &Self::Buffer,
        beta: &Self::Buffer,
        y: &mut Self::Buffer,
        save_mean: &mut Self::Buffer,
        save_invstd: &mut Self::Buffer,
        running_mean: &mut Self::Buffer,
        running_var: &mut Self::Buffer,
    ) -> Result<()>;

    /// The output of [`NormOps::batch_norm_train`] again, from the statistics it saved (the
    /// running averages are not touched): backward recomputes it instead of keeping it.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_apply(
        &self,
        p: &BatchNormParams,
        x: &Self::Buffer,
        gamma: &Self::Buffer,
        beta: &Self::Buffer,
        save_mean: &Self::Buffer,
        save_invstd: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// Normalises with the running statistics (ReLU'd when `p.relu`).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_inference(
        &self,
        p: &BatchNormParams,
        x: &Self::Buffer,
        gamma: &Self::Buffer,
        beta: &Self::Buffer,
        running_mean: &Self::Buffer,
        running_var: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// Gradients of the training-mode forward with respect to `x`, `gamma` and `beta`. With
    /// `p.relu`, `dy` is the gradient of the ReLU'd output, masked where the recomputed
    /// `(x − mean)·(γ·invstd) + β` is not positive (`beta` is read only then).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward(
        &self,
        p: &BatchNormParams,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        gamma: &Self::Buffer,
        beta: &Self::Buffer,
        save_mean: &Self::Buffer,
        save_invstd: &Self::Buffer,
        dx: &mut Self::Buffer,
        dgamma: &mut Self::Buffer,
        dbeta: &mut Self::Buffer,
    ) -> Result<()>;
}

/// Max pooling. Padding counts as -inf; ties send the gradient to the first maximum in the
/// window (row-major), as PyTorch does.
pub trait PoolOps: Memory {
    fn max_pool2d_forward(
        &self,
        p: &Pool2dParams,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// `dx` (overwritten) from the forward's input, output and output gradient.
    fn max_pool2d_backward(
        &self,
        p: &Pool2dParams,
        x: &Self::Buffer,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
}

/// Bilinear resampling.
pub trait ResampleOps: Memory {
    fn upsample_bilinear2d_forward(
        &self,
        p: &UpsampleParams,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// `dx` (overwritten) from the output gradient.
    fn upsample_bilinear2d_backward(
        &self,
        p: &UpsampleParams,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
}

/// Concatenation and split along the last axis (channels of NHWC).
pub trait LayoutOps: Memory {
    /// `y[r, :] = [parts[0][r, :], parts[1][r, :], ...]` for `rows` rows; each part is given with
    /// its width (number of channels).
    fn concat_last(
        &self,
        rows: usize,
        parts: &[(&Self::Buffer, usize)],
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// The inverse of [`LayoutOps::concat_last`]: scatters the columns of `x` into the parts.
    fn split_last(
        &self,
        rows: usize,
        x: &Self::Buffer,
        parts: &mut [(&mut Self::Buffer, usize)],
    ) -> Result<()>;
}

/// Elementwise maps, their gradients, and seeded dropout.
pub trait ElementwiseOps: Memory {
    /// `y = f(x)`.
    fn unary(&self, op: UnaryOp, x: &Self::Buffer, y: &mut Self::Buffer) -> Result<()>;

    /// `dx = dy · f'(x)`, given `saved`: the forward's output `y` where
    /// [`UnaryOp::backward_from_output`], else its input `x`.
    fn unary_backward(
        &self,
        op: UnaryOp,
        saved: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;

    /// `y = a ∘ b` with NumPy broadcasting; `y` has the broadcast shape of `a_shape` and `b_shape`.
    fn binary(
        &self,
        op: BinaryOp,
        a: &Self::Buffer,
        a_shape: &Shape,
        b: &Self::Buffer,
        b_shape: &Shape,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// Sets every element of `y` to `value`.
    fn fill(&self, y: &mut Self::Buffer, value: f32) -> Result<()>;

    /// `y += alpha · x` (same length).
    fn axpy(&self, alpha: f32, x: &Self::Buffer, y: &mut Self::Buffer) -> Result<()>;

    /// `y = x · keep / (1 - p)`, where `keep` is `rng::uniform(seed, i) >= p` for element `i`, so
    /// every backend draws the same mask from the same seed.
    fn dropout_forward(
        &self,
        p: f32,
        seed: u64,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// `dx = dy · keep / (1 - p)` with the mask of the forward's seed.
    fn dropout_backward(
        &self,
        p: f32,
        seed: u64,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
}

/// Reductions and softmax.
pub trait ReduceOps: Memory {
    /// Reduces `x` to `y_shape`, which broadcasts to `x_shape` (right-aligned): every axis where
    /// `y_shape` has 1 (or is missing) and `x_shape` does not is reduced.
    fn reduce(
        &self,
        op: ReduceOp,
        x: &Self::Buffer,
        x_shape: &Shape,
        y_shape: &Shape,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// Repeats `x` along the axes where `x_shape` has 1 (or is missing) to fill `y_shape`: the
    /// adjoint of a sum [`ReduceOps::reduce`]. The default adds `x` to a zero buffer; backends
    /// override it with a direct kernel.
    fn broadcast_to(
        &self,
        x: &Self::Buffer,
        x_shape: &Shape,
        y_shape: &Shape,
        y: &mut Self::Buffer,
    ) -> Result<()>
    where
        Self: ElementwiseOps,
    {
        let zeros = self.alloc(&TensorDesc::f32(y_shape.clone()))?;
        self.binary(BinaryOp::Add, x, x_shape, &zeros, y_shape, y)
    }

    /// Softmax (or log-softmax when `log`) over the last axis of a `rows × cols` tensor.
    fn softmax(
        &self,
        rows: usize,
        cols: usize,
        log: bool,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// Gradient of [`ReduceOps::softmax`] from its output `y` and the output gradient `dy`.
    fn softmax_backward(
        &self,
        rows: usize,
        cols: usize,
        log: bool,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
}

/// Dense matrix products.
pub trait MatmulOps: Memory {
    /// Row-major `C = alpha · op(A) · op(B) + beta · C`.
    fn gemm(
        &self,
        p: &GemmParams,
        a: &Self::Buffer,
        b: &Self::Buffer,
        c: &mut Self::Buffer,
    ) -> Result<()>;
}

/// Fused optimiser updates, one kernel per parameter tensor.
pub trait OptimOps: Memory {
    /// One SGD step on `param` with its gradient and momentum buffer.
    fn sgd_step(
        &self,
        p: &SgdParams,
        param: &mut Self::Buffer,
        grad: &Self::Buffer,
        momentum: &mut Self::Buffer,
    ) -> Result<()>;

    /// One Adam / AdamW step on `param` with its gradient and moment buffers.
    fn adam_step(
        &self,
        p: &AdamParams,
        param: &mut Self::Buffer,
        grad: &Self::Buffer,
        m: &mut Self::Buffer,
        v: &mut Self::Buffer,
    ) -> Result<()>;
}

/// Losses with their gradients, fused so that one kernel gives both, and the label maps the
/// losses and metrics need (foreground masks, distance transforms, confusion counts).
///
/// Labels are class indices stored as f32 (`0.0, 1.0, ...`). A label that is not an integer in
/// `[0, classes)` and not the ignore index is an `InvalidArgument` error where a backend can
/// check it: the CPU returns it from the call; a GPU backend may also return it at the next wait
/// ([`Memory::download`], [`Memory::sync`]), or, where it cannot check at all, treat the row as
/// ignored.
pub trait LossOps: Memory {
    /// Softmax cross-entropy of `logits` (`rows × classes`) against `labels` (`rows`), writing
    /// the scalar loss to `loss` (`[1]`) and `dL/dlogits` to `grad` (`rows × classes`).
    ///
    /// With `a_i = w[y_i] · pw_i` (class weight of the row's label, 1 without `class_weights`,
    /// times the row's pixel weight, 1 without `pixel_weights`) and `p = softmax(logits_i)`:
    ///
    /// `L = Σ_i a_i · (1 − p_{y_i})^γ · (−log p_{y_i}) / Σ_i a_i`
    ///
    /// over the rows whose label is not `ignore_index`. With γ = 0 and no pixel weights this is
    /// PyTorch's `F.cross_entropy(reduction='mean', weight=w, ignore_index=i)`; pixel weights
    /// scale both a row's numerator and denominator terms, so a weight map only shifts
    /// attention between pixels and never rescales the loss as a whole. With γ > 0 it is the
    /// focal loss of Lin et al. with per-class α = `class_weights`, under the same normaliser.
    /// When `Σ a_i = 0` (every row ignored, or weights all zero) the loss and gradient are 0,
    /// where PyTorch returns NaN.
    ///
    /// The gradient of row `i` is `a_i / Σa · g_i · (p − onehot(y_i))` with
    /// `g_i = (1 − p_y)^γ − γ · p_y · (1 − p_y)^(γ−1) · log p_y` (1 for γ = 0); ignored rows get 0.
    #[allow(clippy::too_many_arguments)]
    fn softmax_cross_entropy(
        &self,
        p: &CrossEntropyParams,
        logits: &Self::Buffer,
        labels: &Self::Buffer,
        class_weights: Option<&Self::Buffer>,
        pixel_weights: Option<&Self::Buffer>,
        loss: &mut Self::Buffer,
        grad: &mut Self::Buffer,
    ) -> Result<()>;

    /// Sigmoid binary cross-entropy of `logits` against `targets` in `[0, 1]` (same length),
    /// writing the scalar loss to `loss` (`[1]`) and `dL/dlogits` to `grad`:
    ///
    /// `L = (1/len) · Σ_i pw_i · (pos_weight · t_i · softplus(−x_i) + (1 − t_i) · softplus(x_i))`
    ///
    /// which is PyTorch's `binary_cross_entropy_with_logits(x, t, weight=pw,
    /// pos_weight=pos_weight, reduction='mean')`; as there, pixel weights rescale terms but the
    /// mean still divides by the number of elements. `softplus` is evaluated as
    /// `max(x, 0) + log1p(exp(−|x|))`, so large logits neither overflow nor lose the loss.
    fn sigmoid_binary_cross_entropy(
        &self,
        p: &BinaryCrossEntropyParams,
        logits: &Self::Buffer,
        targets: &Self::Buffer,
        pixel_weights: Option<&Self::Buffer>,
        loss: &mut Self::Buffer,
        grad: &mut Self::Buffer,
    ) -> Result<()>;

    /// Soft Dice loss over the softmax of `logits` (`images · pixels_per_image × classes`)
    /// against one-hot `labels` (`images · pixels_per_image`), writing the scalar loss to `loss`
    /// (`[1]`) and `dL/dlogits` to `grad`. For each group of rows `b` (an image, or the whole
    /// batch when `images` is 1) and class `c`, over the non-ignored pixels:
    ///
    /// `D_bc = (2 · Σ p_c · t_c + ε) / (Σ p_c + Σ t_c + ε)`,  `L = mean_{b, c} (1 − D_bc)`
    ///
    /// where `c` runs over every class, or `1..classes` without the background.
    fn soft_dice(
        &self,
        p: &SoftDiceParams,
        logits: &Self::Buffer,
        labels: &Self::Buffer,
        loss: &mut Self::Buffer,
        grad: &mut Self::Buffer,
    ) -> Result<()>;

    /// `mask = 1` where a label is neither `background` nor the ignore index, else 0. A label
    /// that is not a non-negative integer is an error where it can be checked.
    fn foreground_mask(
        &self,
        p: &ForegroundParams,
        labels: &Self::Buffer,
        mask: &mut Self::Buffer,
    ) -> Result<()>;

    /// The exact Euclidean distance from every pixel to the nearest foreground pixel (`mask >
    /// 0.5`) of its image, 0 on the foreground; `mask` and `out` are `batch × height × width`.
    /// Pixels are unit squares (distance between neighbours 1). An image without foreground
    /// gets [`ImageGridParams::empty_distance`] (its diagonal) everywhere.
    ///
    /// Linear time: Felzenszwalb & Huttenlocher's lower envelope of parabolas computes squared
    /// distances along one axis, then along the other. Squared distances are integers, exact in
    /// f32 below 2^24 (images up to about 2896 pixels on a side).
    fn distance_transform(
        &self,
        p: &ImageGridParams,
        mask: &Self::Buffer,
        out: &mut Self::Buffer,
    ) -> Result<()>;

    /// Per-image confusion counts: `counts[img, t, k]` (`images × classes × classes`) is the
    /// number of pixels of image `img` whose label is `t` and whose `argmax` logit is `k` (the
    /// first maximum on ties), skipping ignored pixels. Counts are f32 and exact up to 2^24 per
    /// cell (a 4096 × 4096 image).
    fn confusion_matrix(
        &self,
        p: &ConfusionParams,
        logits: &Self::Buffer,
        labels: &Self::Buffer,
        counts: &mut Self::Buffer,
    ) -> Result<()>;
}

/// Everything a network, its losses and its optimisers need from a device.
pub trait Backend:
    Memory
    + ConvOps
    + NormOps
    + PoolOps
    + ResampleOps
    + LayoutOps
    + ElementwiseOps
    + ReduceOps
    + MatmulOps
    + OptimOps
    + LossOps
{
}

impl<T> Backend for T where
    T: Memory
        + ConvOps
        + NormOps
        + PoolOps
        + ResampleOps
        + LayoutOps
        + ElementwiseOps
        + ReduceOps
        + MatmulOps
        + OptimOps
        + LossOps
{
}
