//! What a scratch budget shared by every convolution would cost a step, from the ways their
//! first calls timed ([`ConvTuning`]). Under a budget each convolution runs its fastest timed
//! way whose scratch (workspace and copies) fits, or its way with the least scratch where none
//! fits, as `ConvScratchLimit { operand_multiple: 0.0, floor_bytes: budget }` asks of the CUDA
//! backend. It is a model built from one-off timings of each way; the profile's measured
//! convolution times say how close it comes.

use crate::backend::{ConvTuning, ConvWay};

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
