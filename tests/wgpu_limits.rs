//! The wgpu backend on devices with lowered limits, so that kernels split their work across many
//! dispatches on tensors of a few thousand elements: storage bindings of 4 KiB whose offsets
//! align to 256 bytes, 3 workgroups per dispatch dimension (grids fold, with spare workgroups),
//! buffers of at most 1 MiB and WebGPU's default workgroup memory. Every op whose kernels split
//! is compared with the CPU backend with the tolerances of `magnet verify`
//! (`src/verify/cases.rs`); a small U-Net trains step for step with the CPU on a device with
//! 24 KiB bindings; what cannot be split is a typed error naming the op, the size and the limit.
//!
//! Runs when `MAGNET_TEST_BACKENDS` selects wgpu (or is unset and an adapter exists).

#![cfg(feature = "wgpu")]

mod common;

use std::sync::OnceLock;

use common::*;
use magnet::backend::*;
use magnet::data::{Batch, Dataset, Synthetic, SyntheticConfig};
use magnet::loss::{self, CrossEntropyConfig};
use magnet::models::{UNet, UNetConfig, Upsampling};
use magnet::optim::{Optimizer, Sgd, SgdConfig};
use magnet::{Executor, Graph, HostTensor, Mode, Shape, TensorDesc};

/// Bytes one storage binding of the small device covers.
const BINDING: u64 = 4096;
/// Bytes one buffer of the small device holds.
const BUFFER: u64 = 1 << 20;
/// Workgroups per dispatch dimension of the small device.
const GROUPS: u32 = 3;
/// Storage binding of the U-Net device: its largest weight (18 KiB) is bound whole.
const UNET_BINDING: u64 = 24 << 10;

/// `limits` lowered to `binding` bytes per storage binding, with offsets aligned to at least 256
/// bytes and WebGPU's default workgroup memory.
fn lower(limits: &mut ::wgpu::Limits, binding: u64) {
    limits.max_storage_buffer_binding_size = binding;
    limits.min_storage_buffer_offset_alignment =
        limits.min_storage_buffer_offset_alignment.max(256);
    limits.max_compute_workgroup_storage_size = limits
        .max_compute_workgroup_storage_size
        .min(::wgpu::Limits::default().max_compute_workgroup_storage_size);
}

/// The small device, shared by the tests (shaders compile once).
fn open_small() -> Result<WgpuBackend, String> {
    static DEVICE: OnceLock<Result<WgpuBackend, String>> = OnceLock::new();
    let open = || {
        WgpuBackend::with_limits(|l| {
            lower(l, BINDING);
            l.max_buffer_size = BUFFER;
            l.max_compute_workgroups_per_dimension = GROUPS;
        })
        .map_err(|e| e.to_string())
    };
    DEVICE.get_or_init(open).clone()
}

/// Runs `body` on the small device when wgpu is selected.
fn on_small(body: impl FnOnce(&WgpuBackend)) {
    on_backend(&Selection::from_env(), "wgpu", open_small, body);
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The outputs of a case, downloaded.
type Outputs = Vec<Vec<f32>>;

/// Runs generic case `$f` with `$p` on the CPU and on `$b` and compares every output.
macro_rules! same_as_cpu {
    ($b:expr, $f:ident, $p:expr, $tol:expr, $what:expr) => {
        compare(&$f(&CpuBackend::new(), $p), &$f($b, $p), $tol, &$what)
    };
}

fn compare(want: &[Vec<f32>], got: &[Vec<f32>], tol: Tol, what: &str) {
    assert_eq!(want.len(), got.len(), "{what}: output count");
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        assert_close(g, w, tol, &format!("{what}, output {i}"));
    }
}

/// `len` elements, checked to exceed a binding of the small device (the case would not split
/// otherwise).
fn big(len: usize) -> usize {
    assert!(
        len as u64 * 4 > BINDING,
        "{len} elements fit in one binding: the case would not split"
    );
    len
}

fn up<M: Backend>(m: &M, data: &[f32]) -> M::Buffer {
    upload_vec(m, data)
}

/// An output filled with a sentinel: an element a split skips shows.
fn out<M: Backend>(m: &M, len: usize) -> M::Buffer {
    garbage(m, [len])
}

fn get<M: Backend>(m: &M, bufs: &[&M::Buffer]) -> Outputs {
    bufs.iter().map(|b| download(m, b)).collect()
}

// The cases by family, declared after the macro they use.
#[path = "wgpu_limits/losses.rs"]
mod losses;
#[path = "wgpu_limits/spatial.rs"]
mod spatial;
#[path = "wgpu_limits/tensors.rs"]
mod tensors;

use spatial::conv;

// ---------------------------------------------------------------------------------------------
// A U-Net training step
// ---------------------------------------------------------------------------------------------

/// Losses of three SGD-momentum steps of a small U-Net (2×64×64 RGB, base 2, bilinear) and its
/// first-layer weights.
fn train<B: Backend>(backend: B, batch: &Batch) -> (Vec<f32>, HostTensor) {
    let mut g = Graph::<B>::new();
    let cfg = UNetConfig {
        in_channels: 3,
        classes: 3,
        base_channels: 2,
        upsampling: Upsampling::Bilinear,
    };
    let net = UNet::build(&mut g, cfg, 2, 64, 64).expect("unet");
    let labels = g.input("labels", [2, 64, 64]).expect("labels");
    let ce = CrossEntropyConfig::default();
    let loss = loss::cross_entropy(&mut g, net.logits, labels, &ce).expect("loss");
    let mut exec = Executor::new(backend, g, 11).expect("executor");
    let mut sgd = Sgd::new(SgdConfig::new(0.05).momentum(0.9)).expect("sgd");
    let mut losses = Vec::new();
    for _ in 0..3 {
        let inputs = [(net.image, &batch.images), (labels, &batch.labels)];
        exec.forward(&inputs, Mode::Train).expect("forward");
        exec.backward(loss).expect("backward");
        sgd.step(&mut exec).expect("step");
        losses.push(exec.value(loss).expect("loss value").data()[0]);
    }
    let id = exec
        .graph()
        .tensor_id("inc.double_conv.0.weight")
        .expect("weight");
    (losses, exec.tensor(id).expect("weights"))
}

#[test]
fn unet_trains_step_for_step_with_small_bindings() {
    let data = Synthetic::new(SyntheticConfig {
        samples: 2,
        size: 64,
        seed: 4,
        ..Default::default()
    })
    .expect("synthetic data");
    let samples = [data.get(0).expect("sample"), data.get(1).expect("sample")];
    let batch = Batch::from_samples(&samples, vec![0, 1]).expect("batch");
    let (cpu_losses, cpu_weights) = train(CpuBackend::new(), &batch);
    let open = || WgpuBackend::with_limits(|l| lower(l, UNET_BINDING)).map_err(|e| e.to_string());
    on_backend(&Selection::from_env(), "wgpu", open, |b| {
        let (losses, weights) = train(b.clone(), &batch);
        // Sums round differently per backend (~1e-6 relative) and momentum amplifies that over
        // the steps, as in tests/backend_training.rs; a wrong window changes the first loss by
        // far more.
        let tol = Tol::rel_abs(2e-3, 1e-5);
        assert_close(&losses, &cpu_losses, tol, "loss per step");
        let tol = Tol::rel_abs(2e-3, 1e-4);
        assert_close(
            weights.data(),
            cpu_weights.data(),
            tol,
            "first-layer weights",
        );
    });
}

// ---------------------------------------------------------------------------------------------
// What cannot be split
// ---------------------------------------------------------------------------------------------

/// Asserts that `message` names `op` and the numbers `sizes`.
fn names(message: &str, op: &str, sizes: &[u64]) {
    assert!(message.contains(op), "{message:?} does not name {op}");
    for s in sizes {
        assert!(
            message.contains(&s.to_string()),
            "{message:?} does not say {s}"
        );
    }
}

#[test]
fn what_cannot_split_is_a_typed_error() {
    on_small(|b| {
        // A tensor is one buffer.
        let e = expect_err("alloc beyond the buffer size", || {
            b.alloc(&TensorDesc::f32([BUFFER as usize / 4 + 1]))
        });
        names(&e, "alloc", &[BUFFER + 4, BUFFER]);
        // An output row's window of input rows: 3 rows of 400 × 3 floats.
        let p = conv([1, 4, 400, 3, 2, 3, 1, 1, 1]);
        let x = zeros(b, p.input_shape());
        let w = zeros(b, p.weight_shape());
        let mut y = zeros(b, p.output_shape());
        let e = expect_err("one output row beyond a binding", || {
            b.conv2d_forward(&p, &x, &w, &mut y)
        });
        names(&e, "conv2d_forward", &[BINDING]);
        // Weights are bound whole: 3×3×16×16 floats.
        let p = conv([1, 4, 4, 16, 16, 3, 1, 1, 1]);
        let (x, w) = (zeros(b, p.input_shape()), zeros(b, p.weight_shape()));
        let mut y = zeros(b, p.output_shape());
        let e = expect_err("weights beyond a binding", || {
            b.conv2d_forward(&p, &x, &w, &mut y)
        });
        names(&e, "conv2d_forward", &[9216, BINDING]);
        // A softmax row is read three times: it cannot be cut.
        let (x, mut y) = (zeros_len(b, 2 * 2000), zeros_len(b, 2 * 2000));
        let e = expect_err("a softmax row beyond a binding", || {
            b.softmax(2, 2000, false, &x, &mut y)
        });
        names(&e, "softmax", &[8000, BINDING]);
        // A column of the distance transform spans its image.
        let grid = ImageGridParams {
            batch: 1,
            height: 40,
            width: 40,
        };
        let (mask, mut d) = (zeros_len(b, 1600), zeros_len(b, 1600));
        let e = expect_err("an image beyond a binding", || {
            b.distance_transform(&grid, &mask, &mut d)
        });
        names(&e, "distance_transform", &[6400, BINDING]);
        // The device keeps working after the errors.
        let mut z = zeros_len(b, 2000);
        ok(b.fill(&mut z, 2.0), "fill");
        assert_close(
            &download(b, &z),
            &[2.0f32; 2000],
            Tol::exact(),
            "fill after errors",
        );
    });
}

/// The case the split exists for: a U-Net activation of 512 MiB (8×512×512×64 f32) on the
/// device's own limits (bindings of 128 MiB on lavapipe and many GPUs). Slow on a software
/// device and needs about 2 GiB of memory: run with `--ignored`.
#[test]
#[ignore]
fn activations_beyond_a_binding_on_the_full_device() {
    on_backend(&Selection::from_env(), "wgpu", open_wgpu, |b| {
        let shape = [8, 512, 512, 64];
        let len: usize = shape.iter().product();
        let mut x = zeros(b, shape);
        ok(b.fill(&mut x, 0.5), "fill");
        let mut square = zeros(b, shape);
        ok(b.unary(UnaryOp::Square, &x, &mut square), "square");
        // Sums of 0.25 and products of powers of two below 2^24: exact.
        let mut sums = zeros_len(b, 64);
        let (whole, channels) = (Shape::new(shape), Shape::new([1, 1, 1, 64]));
        ok(
            b.reduce(ReduceOp::Sum, &square, &whole, &channels, &mut sums),
            "reduce",
        );
        let want = 0.25 * (len / 64) as f32;
        assert_close(&download(b, &sums), &[want; 64], Tol::exact(), "sums");
        let p = conv([8, 512, 512, 64, 1, 1, 1, 0, 1]);
        let w = up(b, &[1.0 / 64.0; 64]);
        let mut y = zeros(b, p.output_shape());
        ok(b.conv2d_forward(&p, &x, &w, &mut y), "conv2d_forward");
        assert_close(
            &download(b, &y),
            &vec![0.5f32; len / 64],
            Tol::exact(),
            "1×1 conv",
        );
    });
}
