//! Plain parameter structs of the backend primitives, with their shape rules.
//!
//! Every struct validates itself (`validate`) so a backend can reject nonsense with a typed error
//! before touching memory.

use crate::error::{Error, Result};
use crate::tensor::Shape;

/// A 2-D convolution over NHWC input with `[out, kh, kw, in]` weights.
///
/// The same struct describes the transposed convolution: its forward is this convolution's
/// backward-data, so `in_h` / `in_w` are the transposed convolution's *output* size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Conv2dParams {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl Conv2dParams {
    /// Output height, `(in + 2p - d(k-1) - 1) / s + 1`.
    pub fn out_h(&self) -> usize {
        conv_out_size(
            self.in_h,
            self.kernel[0],
            self.stride[0],
            self.padding[0],
            self.dilation[0],
        )
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        conv_out_size(
            self.in_w,
            self.kernel[1],
            self.stride[1],
            self.padding[1],
            self.dilation[1],
        )
    }

    /// `[batch, in_h, in_w, in_channels]`.
    pub fn input_shape(&self) -> Shape {
        Shape::new([self.batch, self.in_h, self.in_w, self.in_channels])
    }

    /// `[batch, out_h, out_w, out_channels]`.
    pub fn output_shape(&self) -> Shape {
        Shape::new([self.batch, self.out_h(), self.out_w(), self.out_channels])
    }

    /// `[out_channels, kh, kw, in_channels]`.
    pub fn weight_shape(&self) -> Shape {
        Shape::new([
            self.out_channels,
            self.kernel[0],
            self.kernel[1],
            self.in_channels,
        ])
    }

    /// Rejects zero sizes, zero strides or dilations, and kernels larger than the padded input.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        let sizes = [
            self.batch,
            self.in_h,
            self.in_w,
            self.in_channels,
            self.out_channels,
        ];
        if sizes.contains(&0) || self.kernel.contains(&0) {
            return Err(Error::invalid(
                op,
                format!("zero-sized convolution {self:?}"),
            ));
        }
        if self.stride.contains(&0) || self.dilation.contains(&0) {
            return Err(Error::invalid(op, "stride and dilation must be at least 1"));
        }
        for axis in 0..2 {
            let input = [self.in_h, self.in_w][axis] + 2 * self.padding[axis];
            let extent = self.dilation[axis] * (self.kernel[axis] - 1) + 1;
            if extent > input {
                return Err(Error::shape(
                    op,
                    format!("kernel extent {extent} exceeds padded input {input}"),
                    &[&self.input_shape(), &self.weight_shape()],
                ));
            }
        }
        Ok(())
    }
}

fn conv_out_size(
    input: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    dilation: usize,
) -> usize {
    (input + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1
}

/// Batch normalisation over the channels (last axis) of a tensor seen as `rows × channels`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchNormParams {
    /// Elements per channel: `N·H·W` for NHWC, `N` for N×C.
    pub rows: usize,
    pub channels: usize,
    /// Added to the variance before the square root (PyTorch: 1e-5).
    pub eps: f32,
    /// Weight of the new batch statistic in the running averages (PyTorch: 0.1).
    pub momentum: f32,
    /// Whether a ReLU follows in the same pass: the output is `max(0, bn(x))` and backward takes
    /// the gradient of that output, masking it where the recomputed `bn(x)` is not positive.
    pub relu: bool,
}

impl BatchNormParams {
    /// Rejects empty tensors, a single element per channel in training, and a negative eps.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        if self.rows == 0 || self.channels == 0 {
            return Err(Error::invalid(op, "empty batch-norm input"));
        }
        if self.eps.is_nan() || self.eps <= 0.0 || !(0.0..=1.0).contains(&self.momentum) {
            return Err(Error::invalid(op, "eps must be > 0 and momentum in [0, 1]"));
        }
        Ok(())
    }
}

/// 2-D pooling over NHWC input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pool2dParams {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
}

impl Pool2dParams {
    /// Output height (floor mode, as PyTorch's default).
    pub fn out_h(&self) -> usize {
        conv_out_size(
            self.in_h,
            self.kernel[0],
            self.stride[0],
            self.padding[0],
            1,
        )
    }

    /// Output width.
    pub fn out_w(&self) -> usize {
        conv_out_size(
            self.in_w,
            self.kernel[1],
            self.stride[1],
            self.padding[1],
            1,
        )
    }

    /// `[batch, in_h, in_w, channels]`.
    pub fn input_shape(&self) -> Shape {
        Shape::new([self.batch, self.in_h, self.in_w, self.channels])
    }

    /// `[batch, out_h, out_w, channels]`.
    pub fn output_shape(&self) -> Shape {
        Shape::new([self.batch, self.out_h(), self.out_w(), self.channels])
    }

    /// Rejects zero sizes, padding over half the kernel (as PyTorch does) and windows larger
    /// than the padded input.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        let sizes = [self.batch, self.in_h, self.in_w, self.channels];
        if sizes.contains(&0) || self.kernel.contains(&0) || self.stride.contains(&0) {
            return Err(Error::invalid(op, format!("zero-sized pooling {self:?}")));
        }
        for axis in 0..2 {
            if 2 * self.padding[axis] > self.kernel[axis] {
                return Err(Error::invalid(
                    op,
                    "padding must be at most half the kernel",
                ));
            }
            if self.kernel[axis] > [self.in_h, self.in_w][axis] + 2 * self.padding[axis] {
                return Err(Error::shape(
                    op,
                    format!("pooling window {:?} exceeds the padded input", self.kernel),
                    &[&self.input_shape()],
                ));
            }
        }
        Ok(())
    }
}

/// Bilinear resampling of NHWC input to `out_h × out_w`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UpsampleParams {
    pub batch: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub channels: usize,
    pub out_h: usize,
    pub out_w: usize,
    /// PyTorch's `align_corners`: true maps corner pixel centres onto each other; false maps
    /// pixel edges (`src = (dst + 0.5) · in / out - 0.5`, clamped at 0).
    pub align_corners: bool,
}

impl UpsampleParams {
    /// `[batch, in_h, in_w, channels]`.
    pub fn input_shape(&self) -> Shape {
        Shape::new([self.batch, self.in_h, self.in_w, self.channels])
    }

    /// `[batch, out_h, out_w, channels]`.
    pub fn output_shape(&self) -> Shape {
        Shape::new([self.batch, self.out_h, self.out_w, self.channels])
    }

    /// Rejects empty inputs or outputs.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        let sizes = [
            self.batch,
            self.in_h,
            self.in_w,
            self.channels,
            self.out_h,
            self.out_w,
        ];
        if sizes.contains(&0) {
            return Err(Error::invalid(
                op,
                format!("zero-sized resampling {self:?}"),
            ));
        }
        Ok(())
    }
}

/// Row-major GEMM: `C = alpha · op(A) · op(B) + beta · C`, `op(A)` is `m × k`, `op(B)` is `k × n`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GemmParams {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// A is stored `k × m` and used transposed.
    pub trans_a: bool,
    /// B is stored `n × k` and used transposed.
    pub trans_b: bool,
    pub alpha: f32,
    pub beta: f32,
}

/// Elementwise functions of one tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UnaryOp {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    /// Natural logarithm.
    Log,
    Neg,
    Abs,
    Sqrt,
    Square,
    /// `scale · x + shift`.
    Affine {
        scale: f32,
        shift: f32,
    },
}

impl UnaryOp {
    /// Whether the derivative is computed from the forward's output `y` (else from its input
    /// `x`): ReLU from `y > 0` (the same as `x > 0`), sigmoid, tanh, exp and sqrt from `y`,
    /// the affine map and negation from neither; log, abs and square need `x`.
    pub fn backward_from_output(self) -> bool {
        !matches!(self, UnaryOp::Log | UnaryOp::Abs | UnaryOp::Square)
    }

    /// `(code, scale, shift)`: how the GPU kernels (`kernels/elementwise.cu`,
    /// `shaders/elementwise.wgsl`) number this op, with the parameters of `Affine`.
    pub fn kernel_code(self) -> (u32, f32, f32) {
        match self {
            UnaryOp::Relu => (0, 0.0, 0.0),
            UnaryOp::Sigmoid => (1, 0.0, 0.0),
            UnaryOp::Tanh => (2, 0.0, 0.0),
            UnaryOp::Exp => (3, 0.0, 0.0),
            UnaryOp::Log => (4, 0.0, 0.0),
            UnaryOp::Neg => (5, 0.0, 0.0),
            UnaryOp::Abs => (6, 0.0, 0.0),
            UnaryOp::Sqrt => (7, 0.0, 0.0),
            UnaryOp::Square => (8, 0.0, 0.0),
            UnaryOp::Affine { scale, shift } => (9, scale, shift),
        }
    }
}

/// Elementwise functions of two tensors, with NumPy broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

/// Reductions over the axes where the output shape has 1 and the input does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
}

/// PyTorch's SGD: weight decay, momentum with dampening, optional Nesterov.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdParams {
    pub lr: f32,
    pub momentum: f32,
    pub dampening: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
    /// The momentum buffer is set to the gradient instead of being blended, as PyTorch does on
    /// the first step.
    pub first_step: bool,
}

impl SgdParams {
    /// Rejects negative or non-finite rates and Nesterov without momentum or with dampening.
    pub fn validate(&self) -> Result<()> {
        const OP: &str = "sgd_step";
        non_negative(OP, "learning rate", self.lr)?;
        non_negative(OP, "momentum", self.momentum)?;
        non_negative(OP, "weight decay", self.weight_decay)?;
        if !self.dampening.is_finite() {
            return Err(Error::invalid(OP, "dampening must be finite"));
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::invalid(
                OP,
                "Nesterov momentum requires a momentum and zero dampening",
            ));
        }
        Ok(())
    }
}

/// PyTorch's Adam and AdamW.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamParams {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: decay the weights directly instead of adding `wd · p` to the gradient.
    pub decoupled_weight_decay: bool,
    /// 1-based step count, for bias correction.
    pub step: u64,
}

/// Softmax cross-entropy (optionally focal) over the last axis of a `rows × classes` tensor, with
/// one class index per row; see [`crate::backend::LossOps::softmax_cross_entropy`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CrossEntropyParams {
    /// Rows (samples of N×C, pixels of NHWC).
    pub rows: usize,
    pub classes: usize,
    /// Rows with this label contribute nothing (PyTorch's `ignore_index`, e.g. 255 for VOC
    /// borders).
    pub ignore_index: Option<u32>,
    /// Focal-loss exponent γ ≥ 0: each row's loss is multiplied by `(1 − p_y)^γ`. 0 is plain
    /// cross-entropy.
    pub gamma: f32,
}

impl CrossEntropyParams {
    /// Rejects no classes, a negative or non-finite γ, and a size overflow.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        if self.classes == 0 {
            return Err(Error::invalid(op, "cross-entropy needs at least one class"));
        }
        if !(self.gamma >= 0.0 && self.gamma.is_finite()) {
            return Err(Error::invalid(
                op,
                format!("focal gamma {} must be finite and >= 0", self.gamma),
            ));
        }
        checked_len(op, &[self.rows, self.classes]).map(|_| ())
    }
}

/// Sigmoid binary cross-entropy of `len` logits against targets in `[0, 1]`; see
/// [`crate::backend::LossOps::sigmoid_binary_cross_entropy`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BinaryCrossEntropyParams {
    /// Number of logits (and targets).
    pub len: usize,
    /// Weight of the positive term (PyTorch's `pos_weight`, one value for every element); 1 is
    /// the plain loss.
    pub pos_weight: f32,
}

impl BinaryCrossEntropyParams {
    /// Rejects a negative or non-finite `pos_weight`.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        if !(self.pos_weight >= 0.0 && self.pos_weight.is_finite()) {
            return Err(Error::invalid(
                op,
                format!("pos_weight {} must be finite and >= 0", self.pos_weight),
            ));
        }
        Ok(())
    }
}

/// Soft Dice loss over the softmax of `images × pixels_per_image` rows of `classes` logits; see
/// [`crate::backend::LossOps::soft_dice`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SoftDiceParams {
    /// Groups of rows whose sums form one Dice term per class: images for a per-image Dice, 1
    /// for a Dice pooled over the whole batch.
    pub images: usize,
    pub pixels_per_image: usize,
    pub classes: usize,
    /// Pixels with this label are left out of every sum.
    pub ignore_index: Option<u32>,
    /// Smoothing ε added to numerator and denominator (> 0 keeps empty classes finite).
    pub eps: f32,
    /// Whether class 0 (background) takes part in the mean over classes.
    pub include_background: bool,
}

impl SoftDiceParams {
    /// Rows of the logits, `images · pixels_per_image`.
    pub fn rows(&self) -> usize {
        self.images * self.pixels_per_image
    }

    /// Classes that take part in the mean: `1..classes` without the background, else all.
    pub fn first_class(&self) -> usize {
        usize::from(!self.include_background)
    }

    /// Rejects no classes left after excluding the background, a negative ε and size overflow.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        if self.classes <= self.first_class() {
            return Err(Error::invalid(
                op,
                format!(
                    "{} class(es) leave no class for the Dice mean (include_background = {})",
                    self.classes, self.include_background
                ),
            ));
        }
        if !(self.eps >= 0.0 && self.eps.is_finite()) {
            return Err(Error::invalid(
                op,
                format!("eps {} must be finite and >= 0", self.eps),
            ));
        }
        checked_len(op, &[self.images, self.pixels_per_image, self.classes]).map(|_| ())
    }
}

/// A batch of `height × width` single-channel images (masks, distance maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ImageGridParams {
    pub batch: usize,
    pub height: usize,
    pub width: usize,
}

impl ImageGridParams {
    /// `batch · height · width`, or an error on overflow.
    pub fn len(&self, op: &'static str) -> Result<usize> {
        checked_len(op, &[self.batch, self.height, self.width])
    }

    /// Whether the grid holds no pixel.
    pub fn is_empty(&self) -> bool {
        self.batch == 0 || self.height == 0 || self.width == 0
    }

    /// The distance given to every pixel of an image without foreground: the image diagonal
    /// `√(height² + width²)`, longer than any distance inside the image.
    pub fn empty_distance(&self) -> f32 {
        ((self.height as f64).powi(2) + (self.width as f64).powi(2)).sqrt() as f32
    }
}

/// Which labels count as foreground; see [`crate::backend::LossOps::foreground_mask`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ForegroundParams {
    /// Number of labels.
    pub len: usize,
    /// The background class; every other class is foreground.
    pub background: u32,
    /// Pixels with this label are neither foreground nor an error.
    pub ignore_index: Option<u32>,
}

/// Per-image confusion counts of `(true class, argmax class)`; see
/// [`crate::backend::LossOps::confusion_matrix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConfusionParams {
    pub images: usize,
    pub pixels_per_image: usize,
    pub classes: usize,
    /// Pixels with this label are not counted.
    pub ignore_index: Option<u32>,
}

impl ConfusionParams {
    /// Rows of the logits, `images · pixels_per_image`.
    pub fn rows(&self) -> usize {
        self.images * self.pixels_per_image
    }

    /// Rejects no classes and size overflow.
    pub fn validate(&self, op: &'static str) -> Result<()> {
        if self.classes == 0 {
            return Err(Error::invalid(
                op,
                "a confusion matrix needs at least one class",
            ));
        }
        checked_len(op, &[self.images, self.pixels_per_image, self.classes])?;
        checked_len(op, &[self.images, self.classes, self.classes]).map(|_| ())
    }
}

/// The product of `sizes`, or an invalid-argument error when it overflows.
fn checked_len(op: &'static str, sizes: &[usize]) -> Result<usize> {
    sizes
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .ok_or_else(|| Error::invalid(op, format!("sizes {sizes:?} overflow")))
}

impl AdamParams {
    /// Rejects step 0 (the count is 1-based), negative rates and betas outside [0, 1).
    pub fn validate(&self) -> Result<()> {
        const OP: &str = "adam_step";
        if self.step == 0 {
            return Err(Error::invalid(OP, "the step count is 1-based; got 0"));
        }
        non_negative(OP, "learning rate", self.lr)?;
        non_negative(OP, "eps", self.eps)?;
        non_negative(OP, "weight decay", self.weight_decay)?;
        for (name, b) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::invalid(
                    OP,
                    format!("{name} must be in [0, 1), got {b}"),
                ));
            }
        }
        Ok(())
    }
}

/// Errors unless `value` is finite and at least 0 (NaN fails too).
fn non_negative(op: &'static str, name: &str, value: f32) -> Result<()> {
    if value >= 0.0 && value.is_finite() {
        Ok(())
    } else {
        Err(Error::invalid(
            op,
            format!("{name} must be finite and >= 0, got {value}"),
        ))
    }
}
