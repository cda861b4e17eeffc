//! Cross-backend verification: every backend primitive, forward and backward, run on a backend
//! and on the reference (the CPU backend on one thread), on small awkward shapes (batch 1, odd
//! sizes, channel counts that are not multiples of 4, stride 2, padding 0 and 1), compared
//! element by element with a tolerance written beside each case ([`cases`]).
//!
//! The comparison itself ([`Tol`], [`compare`]) and the seeded data ([`random_vec`]) are shared
//! with the test suite, which checks the same primitives against float64 references.

mod cases;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::{Backend, CpuBackend};
use crate::error::{Error, Result};

/// An element-wise tolerance: `|got − want| <= abs + rel·|want|`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tol {
    pub rel: f64,
    pub abs: f64,
}

/// The unit roundoff of f32, 2⁻²⁴.
pub const F32_U: f64 = 1.0 / (1u64 << 24) as f64;

impl Tol {
    /// Relative and absolute parts.
    pub const fn rel_abs(rel: f64, abs: f64) -> Self {
        Tol { rel, abs }
    }

    /// Bit-exact equality.
    pub const fn exact() -> Self {
        Tol { rel: 0.0, abs: 0.0 }
    }

    /// The looser of two tolerances, part by part.
    pub fn max(self, other: Tol) -> Tol {
        Tol::rel_abs(self.rel.max(other.rel), self.abs.max(other.abs))
    }

    /// Both parts multiplied by `factor`.
    pub fn scale(self, factor: f64) -> Tol {
        Tol::rel_abs(self.rel * factor, self.abs * factor)
    }

    /// For f32 sums of `k` products of magnitude ≤ 1 compared to an exact (f64) result: the
    /// rounding error of such a sum is at most about `k·u·Σ|terms| ≤ k²·u` in the worst case and
    /// about `√k·u·‖terms‖` in practice; `4·k·u` absolute (plus a few ulps relative) sits an order
    /// of magnitude above the practical error and far below the O(1) error of a wrong index.
    pub fn accumulated(k: usize) -> Self {
        Tol::rel_abs(8.0 * F32_U, 4.0 * k.max(1) as f64 * F32_U)
    }

    /// Whether `got` is within the tolerance of `want`; identical values pass even when
    /// infinite, NaN never does.
    pub fn accepts(&self, got: f64, want: f64) -> bool {
        got == want || (got - want).abs() <= self.abs + self.rel * want.abs()
    }

    /// The relative error of `got`, with magnitudes of `want` below `abs / rel` counted as
    /// `abs / rel`, so that `relative_error <= rel` exactly when [`Tol::accepts`] (for `rel > 0`).
    pub fn relative_error(&self, got: f64, want: f64) -> f64 {
        if got == want {
            return 0.0;
        }
        let diff = (got - want).abs();
        if diff.is_nan() {
            return f64::INFINITY;
        }
        let floor = if self.rel > 0.0 {
            self.abs / self.rel
        } else {
            0.0
        };
        let scale = want.abs() + floor;
        if scale > 0.0 {
            diff / scale
        } else {
            f64::INFINITY
        }
    }
}

impl std::fmt::Display for Tol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rel == 0.0 && self.abs == 0.0 {
            write!(f, "exact")
        } else {
            write!(f, "{:.1e} (+{:.1e} abs)", self.rel, self.abs)
        }
    }
}

/// How a vector compares to a reference under a tolerance.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Elements compared.
    pub len: usize,
    /// Elements outside the tolerance.
    pub bad: usize,
    /// The element furthest outside the tolerance (index, `|diff| / allowed`), if any is.
    pub worst: Option<(usize, f64)>,
    /// The largest [`Tol::relative_error`] over the elements.
    pub max_relative_error: f64,
}

impl Comparison {
    /// Every element within the tolerance.
    pub fn passed(&self) -> bool {
        self.bad == 0
    }
}

/// Compares `got` with `want` element by element; an error when the lengths differ.
pub fn compare<W: Copy + Into<f64>>(got: &[f32], want: &[W], tol: Tol) -> Result<Comparison> {
    if got.len() != want.len() {
        return Err(Error::Length {
            op: "compare",
            expected: want.len(),
            got: got.len(),
        });
    }
    let mut out = Comparison {
        len: got.len(),
        bad: 0,
        worst: None,
        max_relative_error: 0.0,
    };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g as f64, w.into());
        out.max_relative_error = out.max_relative_error.max(tol.relative_error(g, w));
        if !tol.accepts(g, w) {
            out.bad += 1;
            let diff = (g - w).abs();
            let excess = if diff.is_nan() {
                f64::INFINITY
            } else {
                diff / (tol.abs + tol.rel * w.abs()).max(f64::MIN_POSITIVE)
            };
            if out.worst.is_none_or(|(_, e)| excess > e) {
                out.worst = Some((i, excess));
            }
        }
    }
    Ok(out)
}

/// `len` numbers uniform in `[-1, 1]`, the same for the same seed on every platform.
pub fn random_vec(len: usize, seed: u64) -> Vec<f32> {
    random_range(len, seed, -1.0, 1.0)
}

/// `len` numbers uniform in `[lo, hi]` (swapped when `lo > hi`; NaN when a bound is not finite).
pub fn random_range(len: usize, seed: u64, lo: f32, hi: f32) -> Vec<f32> {
    if !(lo.is_finite() && hi.is_finite()) {
        return vec![f32::NAN; len];
    }
    let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(lo..=hi)).collect()
}

/// One verified case: an op on one shape on one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseResult {
    /// The primitive and direction (`conv2d backward_filter`).
    pub op: String,
    /// The shape and settings, in words (`1×7×9×5 k3 s2 p0 → 3`).
    pub shape: String,
    /// The backend checked ([`crate::backend::Memory::name`]).
    pub backend: &'static str,
    /// The largest [`Tol::relative_error`] over every output of the case.
    pub max_relative_error: f64,
    pub tol: Tol,
    /// Why the tolerance has its size.
    pub reason: &'static str,
    /// Elements outside the tolerance, over every output.
    pub bad: usize,
    /// An error returned by the backend or the reference instead of outputs.
    pub error: Option<String>,
}

impl CaseResult {
    /// No error and every element within the tolerance.
    pub fn passed(&self) -> bool {
        self.error.is_none() && self.bad == 0
    }
}

/// Runs every case on `backend` and on the reference (the CPU backend on a one-thread rayon
/// pool, so the CPU backend's own row checks that splitting work across threads changes nothing
/// beyond rounding). Fails only when the reference pool cannot be created; a case that fails
/// or errors is a row of the result.
pub fn verify_backend<B: Backend>(backend: &B) -> Result<Vec<CaseResult>> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| Error::invalid("verify", format!("one-thread pool: {e}")))?;
    let mut ctx = cases::Ctx {
        backend,
        reference: CpuBackend::new(),
        pool,
        results: Vec::new(),
    };
    cases::run_all(&mut ctx);
    Ok(ctx.results)
}

/// The results as a table with a header line: op, shape, backend, max relative error,
/// tolerance, pass.
pub fn format_table(results: &[CaseResult]) -> String {
    let op_w = results.iter().map(|r| r.op.len()).max().unwrap_or(2).max(2);
    let shape_w = results
        .iter()
        .map(|r| r.shape.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!(
        "{:op_w$}  {:shape_w$}  {:7}  {:>12}  {:>22}  pass\n",
        "op", "shape", "backend", "max rel err", "tolerance"
    );
    for r in results {
        let pad = shape_w - r.shape.chars().count();
        let status = match &r.error {
            Some(e) => format!("ERROR: {e}"),
            None if r.bad > 0 => format!("FAIL ({} elements)", r.bad),
            None => "ok".to_string(),
        };
        out.push_str(&format!(
            "{:op_w$}  {}{}  {:7}  {:>12.2e}  {:>22}  {status}\n",
            r.op,
            r.shape,
            " ".repeat(pad),
            r.backend,
            r.max_relative_error,
            r.tol.to_string(),
        ));
    }
    out
}
