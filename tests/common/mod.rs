//! The shared harness of the backend test suites: which backends to run on, tolerances,
//! seeded data, host ⇄ device helpers and finite differences.
//!
//! A test is written once as code generic over [`magnet::Backend`] and run on every selected
//! backend with [`for_each_backend!`]:
//!
//! ```ignore
//! #[test]
//! fn relu_matches_reference() {
//!     for_each_backend!(|b| relu_case(b));
//! }
//! fn relu_case<B: Backend>(b: &B) { /* ... */ }
//! ```
//!
//! Backend selection comes from `MAGNET_TEST_BACKENDS`, a comma-separated list of backend names
//! (`cpu`, `cuda`, `wgpu`):
//! - set: exactly those backends run, and one that cannot be used (its cargo feature is not
//!   compiled in, it is not implemented yet, or it finds no device) fails the test;
//! - unset or empty: every backend usable in this build runs, and the others are reported as
//!   skipped, with the reason, on stderr.
//!
//! Adding a backend: give it an `open_*` function below, a `on_backend` line in
//! [`for_each_backend!`] under its `#[cfg(feature = ...)]`, and drop its line from
//! [`report_unbuilt`].

#![allow(dead_code)]

pub mod fixtures;
pub mod loss_reference;
pub mod reference;

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use magnet::backend::Memory;
use magnet::{Backend, CpuBackend, HostTensor, Shape, TensorDesc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The environment variable that lists the backends to test.
pub const BACKENDS_VAR: &str = "MAGNET_TEST_BACKENDS";

/// Every backend name the suite knows.
pub const KNOWN_BACKENDS: &[&str] = &["cpu", "cuda", "wgpu"];

/// Runs `|b| body` once on every selected backend; `b` is a `&B` for the backend's concrete type,
/// so `body` is usually a call to a function generic over `B: Backend`.
#[macro_export]
macro_rules! for_each_backend {
    (|$b:ident| $body:expr) => {{
        let selection = $crate::common::Selection::from_env();
        $crate::common::on_backend(&selection, "cpu", $crate::common::open_cpu, |$b| {
            $body;
        });
        #[cfg(feature = "wgpu")]
        $crate::common::on_backend(&selection, "wgpu", $crate::common::open_wgpu, |$b| {
            $body;
        });
        #[cfg(feature = "cuda")]
        $crate::common::on_backend(&selection, "cuda", $crate::common::open_cuda, |$b| {
            $body;
        });
        $crate::common::report_unbuilt(&selection);
    }};
}

/// Which backends this run should use, read from [`BACKENDS_VAR`].
#[derive(Debug, Clone)]
pub struct Selection {
    /// `None` when the variable is unset or empty: use whatever is available.
    listed: Option<Vec<String>>,
}

impl Selection {
    /// Reads [`BACKENDS_VAR`]; panics on a name the suite does not know.
    pub fn from_env() -> Self {
        let raw = std::env::var(BACKENDS_VAR).unwrap_or_default();
        Self::parse(&raw)
    }

    /// Parses a comma-separated list (empty means "every available backend").
    pub fn parse(raw: &str) -> Self {
        let names: Vec<String> = raw
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        for name in &names {
            assert!(
                KNOWN_BACKENDS.contains(&name.as_str()),
                "{BACKENDS_VAR}={raw:?} names unknown backend {name:?}; known backends: {}",
                KNOWN_BACKENDS.join(", ")
            );
        }
        Selection {
            listed: if names.is_empty() { None } else { Some(names) },
        }
    }

    /// Whether `name` was asked for explicitly.
    pub fn is_listed(&self, name: &str) -> bool {
        self.listed
            .as_ref()
            .is_some_and(|l| l.iter().any(|n| n == name))
    }

    /// Whether `name` should be tried: listed, or nothing listed.
    pub fn wants(&self, name: &str) -> bool {
        self.listed.is_none() || self.is_listed(name)
    }

    /// `name` cannot be used: fails the test when it was listed, otherwise notes the skip.
    pub fn unavailable(&self, name: &str, reason: &str) {
        if self.is_listed(name) {
            panic!("backend {name:?} is listed in {BACKENDS_VAR} but is unavailable: {reason}");
        }
        if self.listed.is_none() {
            eprintln!("[backend {name}] skipped: {reason}");
        }
    }
}

thread_local! {
    static CURRENT: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The backend the current test thread is running on, for failure messages.
pub fn current_backend() -> String {
    CURRENT.with(|c| c.borrow().clone())
}

/// Opens backend `name` with `open` if it is selected and runs `body` on it.
pub fn on_backend<B: Backend>(
    selection: &Selection,
    name: &str,
    open: impl FnOnce() -> Result<B, String>,
    body: impl FnOnce(&B),
) {
    if !selection.wants(name) {
        return;
    }
    match open() {
        Ok(backend) => {
            eprintln!("[backend {name}] running on {}", backend.device_name());
            CURRENT.with(|c| *c.borrow_mut() = name.to_string());
            body(&backend);
            CURRENT.with(|c| c.borrow_mut().clear());
        }
        Err(reason) => selection.unavailable(name, &reason),
    }
}

/// The CPU backend, always available.
pub fn open_cpu() -> Result<CpuBackend, String> {
    Ok(CpuBackend::new())
}

/// The CUDA backend on device 0, when the driver, the libraries and a device are present; with
/// label validation on, so bad labels are errors as on the CPU, and direct convolutions, whose
/// rounding is that of a sum of products like the CPU's (`tests/cuda_smoke.rs` checks the
/// default, fastest algorithms with their own tolerance).
#[cfg(feature = "cuda")]
pub fn open_cuda() -> Result<magnet::backend::CudaBackend, String> {
    let backend = magnet::backend::CudaBackend::new(0).map_err(|e| e.to_string())?;
    backend.set_validate_labels(true);
    backend.set_direct_convolutions(true);
    Ok(backend)
}

/// The wgpu backend, when an adapter is found (one device shared by every test of the binary,
/// so shaders compile once).
#[cfg(feature = "wgpu")]
pub fn open_wgpu() -> Result<magnet::backend::WgpuBackend, String> {
    use std::sync::OnceLock;
    static DEVICE: OnceLock<Result<magnet::backend::WgpuBackend, String>> = OnceLock::new();
    DEVICE
        .get_or_init(|| magnet::backend::WgpuBackend::new().map_err(|e| e.to_string()))
        .clone()
}

/// Reports the known backends this build cannot run at all.
pub fn report_unbuilt(selection: &Selection) {
    // Unused when every backend is compiled in.
    let _ = selection;
    #[cfg(not(feature = "cuda"))]
    selection.unavailable("cuda", "cargo feature `cuda` is not compiled in");
    #[cfg(not(feature = "wgpu"))]
    selection.unavailable("wgpu", "cargo feature `wgpu` is not compiled in");
}

// ---------------------------------------------------------------------------------------------
// Tolerances
// ---------------------------------------------------------------------------------------------

// The tolerance type, the comparison and the seeded data are the library's, shared with
// `magnet verify`.
#[allow(unused_imports)]
pub use magnet::verify::{random_range, random_vec, Tol, F32_U};

/// Asserts `|got[i] − want[i]| <= tol.abs + tol.rel·|want[i]|` for every `i`; on failure names
/// `what`, the backend, the number of bad elements and the worst one.
#[track_caller]
pub fn assert_close<W: Copy + Into<f64>>(got: &[f32], want: &[W], tol: Tol, what: &str) {
    let backend = current_backend();
    assert_eq!(
        got.len(),
        want.len(),
        "{what} [{backend}]: got {} elements, want {}",
        got.len(),
        want.len()
    );
    let c = magnet::verify::compare(got, want, tol).expect("lengths checked above");
    if let Some((i, _)) = c.worst {
        let (g, w) = (got[i] as f64, want[i].into());
        panic!(
            "{what} [{backend}]: {} of {} elements outside |got - want| <= {:e} + {:e}·|want|; \
             worst at index {i}: got {g:e}, want {w:e}, |diff| {:e}, allowed {:e}",
            c.bad,
            got.len(),
            tol.abs,
            tol.rel,
            (g - w).abs(),
            tol.abs + tol.rel * w.abs(),
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Seeded data
// ---------------------------------------------------------------------------------------------

/// `len` numbers in `[-1, 1]` whose magnitudes are at least `gap` (for functions with a kink
/// or a pole at 0, so that finite differences do not straddle it).
pub fn random_away_from_zero(len: usize, seed: u64, gap: f32) -> Vec<f32> {
    random_vec(len, seed)
        .into_iter()
        .map(|v| {
            let mag = gap + (1.0 - gap) * v.abs();
            if v < 0.0 {
                -mag
            } else {
                mag
            }
        })
        .collect()
}

/// A random permutation of `len` distinct values evenly spaced in `[-1, 1]`: any two differ by
/// at least `2 / len`, so a max is never tied and survives a finite-difference step smaller than
/// half that gap.
pub fn distinct_vec(len: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<f32> = (0..len)
        .map(|i| -1.0 + 2.0 * (i as f32 + 0.5) / len.max(1) as f32)
        .collect();
    // Fisher–Yates with the seeded generator.
    for i in (1..len).rev() {
        let j = rng.random_range(0..=i);
        v.swap(i, j);
    }
    v
}

/// Widens to f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Rounds to f32 (what a reference's inputs must be before being fed to a backend).
pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

// ---------------------------------------------------------------------------------------------
// Host ⇄ device
// ---------------------------------------------------------------------------------------------

/// Uploads `data` as a tensor of `shape`.
#[track_caller]
pub fn upload<B: Memory>(b: &B, data: &[f32], shape: impl Into<Shape>) -> B::Buffer {
    let host = HostTensor::new(shape, data.to_vec()).expect("host tensor of matching length");
    b.to_device(&host)
        .unwrap_or_else(|e| panic!("[{}] upload failed: {e}", b.name()))
}

/// Uploads a flat vector (shape `[len]`).
#[track_caller]
pub fn upload_vec<B: Memory>(b: &B, data: &[f32]) -> B::Buffer {
    upload(b, data, [data.len()])
}

/// A zero-filled buffer of `shape`.
#[track_caller]
pub fn zeros<B: Memory>(b: &B, shape: impl Into<Shape>) -> B::Buffer {
    b.alloc(&TensorDesc::f32(shape))
        .unwrap_or_else(|e| panic!("[{}] alloc failed: {e}", b.name()))
}

/// A buffer of `shape` filled with a large sentinel, for outputs a kernel must overwrite: a kernel
/// that accumulates into its output, or skips elements, shows up as values near the sentinel.
#[track_caller]
pub fn garbage<B: Memory>(b: &B, shape: impl Into<Shape>) -> B::Buffer {
    let shape = shape.into();
    let data = vec![GARBAGE; shape.numel()];
    upload(b, &data, shape)
}

/// The value [`garbage`] fills with.
pub const GARBAGE: f32 = 7777.0;

/// A zero-filled buffer of `len` elements.
#[track_caller]
pub fn zeros_len<B: Memory>(b: &B, len: usize) -> B::Buffer {
    zeros(b, [len])
}

/// Downloads `buf` to the host.
#[track_caller]
pub fn download<B: Memory>(b: &B, buf: &B::Buffer) -> Vec<f32> {
    b.download(buf)
        .unwrap_or_else(|e| panic!("[{}] download failed: {e}", b.name()))
}

/// Unwraps a kernel's result, naming the op and backend on error.
#[track_caller]
pub fn ok<T>(res: magnet::Result<T>, what: &str) {
    if let Err(e) = res {
        panic!("{what} [{}]: unexpected error: {e}", current_backend());
    }
}

/// Asserts that `f` returns `Err` (and does not panic); returns the error's message.
#[track_caller]
pub fn expect_err<T>(what: &str, f: impl FnOnce() -> magnet::Result<T>) -> String {
    let backend = current_backend();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Err(e)) => e.to_string(),
        Ok(Ok(_)) => panic!("{what} [{backend}]: bad input was accepted (expected Err)"),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("<non-string panic>");
            panic!("{what} [{backend}]: panicked on bad input instead of returning Err: {msg}")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Finite differences
// ---------------------------------------------------------------------------------------------

/// The step of the central differences: small enough that the truncation error `h²·f'''/6` is
/// ~1e-9 for the smooth maps tested, large enough that f64 rounding (`1e-16·|L| / h`) is ~1e-11.
pub const FD_STEP: f64 = 1e-4;

/// Central finite differences `(L(x + h·e_i) − L(x − h·e_i)) / 2h` of a scalar loss.
pub fn fd_grad(x: &[f64], h: f64, loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut xp = x.to_vec();
    (0..x.len())
        .map(|i| {
            xp[i] = x[i] + h;
            let lp = loss(&xp);
            xp[i] = x[i] - h;
            let lm = loss(&xp);
            xp[i] = x[i];
            (lp - lm) / (2.0 * h)
        })
        .collect()
}

/// `Σ y·r`: the scalar loss whose gradient with respect to `y` is `r`.
pub fn dot(y: &[f64], r: &[f64]) -> f64 {
    assert_eq!(y.len(), r.len(), "dot of vectors of different lengths");
    y.iter().zip(r).map(|(a, b)| a * b).sum()
}

/// Checks a backend's gradient against central finite differences of the f64 reference, after
/// checking that the reference's own analytic gradient agrees with those differences (so the
/// analytic references can be trusted by other suites). `tol` is the backend's f32 tolerance;
/// the reference must agree to 1e-6, far above the ~1e-9 truncation error of the differences.
#[track_caller]
pub fn check_gradient(got: &[f32], fd: &[f64], analytic: &[f64], tol: Tol, what: &str) {
    let mut worst = (0usize, 0.0f64);
    for (i, (&a, &f)) in analytic.iter().zip(fd).enumerate() {
        let excess = (a - f).abs() / (1e-6 + 1e-6 * f.abs());
        // NaN counts as the worst.
        let excess = if excess.is_nan() {
            f64::INFINITY
        } else {
            excess
        };
        if excess > worst.1 {
            worst = (i, excess);
        }
    }
    assert_eq!(
        analytic.len(),
        fd.len(),
        "{what}: reference gradient length"
    );
    assert!(
        worst.1 <= 1.0,
        "{what}: the f64 reference gradient disagrees with finite differences at {}: \
         analytic {:e}, finite differences {:e}",
        worst.0,
        analytic[worst.0],
        fd[worst.0]
    );
    assert_close(got, fd, tol, what);
}

/// The project root, read at run time so test executables built on one machine find the
/// repository's files on another (falls back to the directory the tests were built in).
pub fn project_root() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
