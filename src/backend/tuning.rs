//! How a backend runs each convolution shape it has met: the ways it timed (layout, algorithm,
//! scratch memory, milliseconds) and the one in use. The CUDA backend reports its cuDNN plans
//! (`CudaBackend::take_conv_tunings`); `magnet bench --profile` prints them.
//!
//! What a scratch budget shared by every convolution of a step would cost ([`budget_curve`]):
//! under a budget each convolution runs its fastest timed way whose scratch (workspace and
//! copies) fits, or its way with the least scratch where none fits, as a `ConvScratchLimit`
//! with `operand_multiple` 0 and `floor_bytes` the budget asks of the CUDA backend. It is a
//! model built from one-off timings of each way; a profile's measured convolution times say how
//! close it comes. The CUDA backend's `Fp32ConvScratch::Fitted` applies [`least_budget`].

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

/// A budget and what the step's convolutions would take under it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetPoint {
    /// No call's scratch exceeds it, unless the call has no way within it.
    pub budget_bytes: u64,
    /// The most scratch one call takes under it.
    pub largest_scratch_bytes: u64,
    /// Milliseconds of the step's convolutions: each call's timed way, times its calls per step.
    pub conv_ms: f64,
}

/// The timed ways of a convolution.
fn timed(t: &ConvTuning) -> impl Iterator<Item = (&ConvWay, f64)> + Clone {
    t.ways.iter().filter_map(|w| Some((w, w.ms?)))
}

/// Calls per step of `t` over `steps` steps.
fn per_step(t: &ConvTuning, steps: u64) -> f64 {
    t.calls as f64 / steps.max(1) as f64
}

/// Milliseconds per step of the convolutions' ways in use, from their timings; `None` where a
/// way in use was not timed.
pub fn conv_ms_in_use(tunings: &[ConvTuning], steps: u64) -> Option<f64> {
    tunings
        .iter()
        .map(|t| Some(t.in_use()?.ms? * per_step(t, steps)))
        .sum()
}

/// The way `t` runs under `budget`: its fastest timed way within the budget, else the one with
/// the least scratch (the faster of equals).
fn way_within(t: &ConvTuning, budget: u64) -> Option<(u64, f64)> {
    let ways = timed(t).map(|(w, ms)| (w.scratch_bytes(), ms));
    let fits = ways
        .clone()
        .filter(|&(bytes, _)| bytes <= budget)
        .min_by(|a, b| a.1.total_cmp(&b.1));
    fits.or_else(|| ways.min_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1))))
}

/// Every budget at which the step's convolution time drops, smallest first: the frontier of
/// time against memory. The last point is the fastest the timed ways allow. Convolutions with
/// no timed way are left out.
pub fn budget_curve(tunings: &[ConvTuning], steps: u64) -> Vec<BudgetPoint> {
    let mut budgets: Vec<u64> = tunings
        .iter()
        .flat_map(|t| timed(t).map(|(w, _)| w.scratch_bytes()))
        .collect();
    budgets.sort_unstable();
    budgets.dedup();
    let mut curve: Vec<BudgetPoint> = Vec::new();
    for budget in budgets {
        let (mut largest, mut conv_ms) = (0, 0.0);
        for t in tunings {
            if let Some((bytes, ms)) = way_within(t, budget) {
                largest = largest.max(bytes);
                conv_ms += ms * per_step(t, steps);
            }
        }
        if curve.last().is_none_or(|last| conv_ms < last.conv_ms) {
            curve.push(BudgetPoint {
                budget_bytes: budget,
                largest_scratch_bytes: largest,
                conv_ms,
            });
        }
    }
    curve
}

/// The point of `curve` with the smallest budget whose convolution time is within `slack` (a
/// fraction: 0.1 is 10 %) of the fastest the curve reaches.
pub fn least_budget(curve: &[BudgetPoint], slack: f64) -> Option<BudgetPoint> {
    let fastest = curve.last()?.conv_ms;
    curve
        .iter()
        .find(|p| p.conv_ms <= fastest * (1.0 + slack))
        .copied()
}
