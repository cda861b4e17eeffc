//! How a backend runs each convolution shape it has met: the ways it timed (layout, algorithm,
//! scratch memory, milliseconds) and the one in use. The CUDA backend reports its cuDNN plans
//! (`CudaBackend::take_conv_tunings`); `magnet bench --profile` prints them beside what a shared
//! scratch budget would cost (`bench::budget_curve`).

use super::Conv2dParams;

/// Which convolution primitive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConvKind {
    Forward,
    BackwardData,
    BackwardFilter,
}

impl ConvKind {
    /// `forward`, `backward-data` or `backward-filter`.
    pub fn name(self) -> &'static str {
        match self {
            ConvKind::Forward => "forward",
            ConvKind::BackwardData => "backward-data",
            ConvKind::BackwardFilter => "backward-filter",
        }
    }
}

/// Where a convolution computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvLayout {
    /// In place on the NHWC buffers.
    Nhwc,
    /// On NCHW copies of the operands.
    Nchw,
}

impl ConvLayout {
    /// `nhwc` or `nchw`.
    pub fn name(self) -> &'static str {
        match self {
            ConvLayout::Nhwc => "nhwc",
            ConvLayout::Nchw => "nchw",
        }
    }
}

/// One way to run a convolution shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvWay {
    pub layout: ConvLayout,
    /// The algorithm by its library name.
    pub algorithm: String,
    /// Images per run: the batch, or fewer where copies are made a few images at a time.
    pub images_per_run: usize,
    pub workspace_bytes: u64,
    /// The copies of the operands (NCHW only).
    pub copy_bytes: u64,
    /// Milliseconds of one whole call this way (copies' transposes included), from the timings
    /// at the shape's first call; `None` where that was not timed.
    pub ms: Option<f64>,
    /// Whether calls run this way now.
    pub in_use: bool,
}

impl ConvWay {
    /// What the call allocates while it runs: workspace and copies.
    pub fn scratch_bytes(&self) -> u64 {
        self.workspace_bytes + self.copy_bytes
    }
}

/// A convolution shape, how often it ran since the last report, and its ways.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvTuning {
    pub kind: ConvKind,
    pub params: Conv2dParams,
    /// TF32 tensor cores (else strict fp32).
    pub tf32: bool,
    /// The scratch limit its calls ran under, bytes (`None`: none).
    pub scratch_limit: Option<u64>,
    pub calls: u64,
    pub ways: Vec<ConvWay>,
}

impl ConvTuning {
    /// The way calls run now.
    pub fn in_use(&self) -> Option<&ConvWay> {
        self.ways.iter().find(|w| w.in_use)
    }
}
