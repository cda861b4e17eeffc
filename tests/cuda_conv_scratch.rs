//! The strict-fp32 convolutions' scratch limit on CUDA ([`ConvScratchLimit`]): NCHW copies made
//! a few images at a time give the CPU backend's results, and a call's memory stays within the
//! limit where, unlimited, it does not. The tuning report names the ways each call timed, and
//! the benchmark fits a shared budget from it.
//!
//! Skipped (with a note on stderr) when no CUDA device can be opened, unless
//! `MAGNET_TEST_BACKENDS` lists `cuda`, in which case an unavailable device is a failure.

#![cfg(feature = "cuda")]

mod common;

use std::sync::Mutex;

use common::{download, upload_vec, zeros_len, Selection};
use magnet::backend::{
    Conv2dParams, ConvKind, ConvLayout, ConvOps, ConvScratchLimit, CudaBackend, Fp32ConvLayout,
    Fp32ConvScratch, Memory,
};
use magnet::bench::{self, BenchConfig, Precision};
use magnet::CpuBackend;

/// The tests measure the device's memory pool, which every test of the binary shares.
static DEVICE: Mutex<()> = Mutex::new(());

fn cuda() -> Option<CudaBackend> {
    let selection = Selection::from_env();
    if !selection.wants("cuda") {
        return None;
    }
    match common::open_cuda() {
        Ok(backend) => Some(backend),
        Err(reason) => {
            selection.unavailable("cuda", &reason);
            None
        }
    }
}

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    (0..len as u32)
        .map(|i| magnet::backend::rng::uniform(seed, i) * 2.0 - 1.0)
        .collect()
}

/// The three convolutions of `p` on `b`: (output, input gradient, weight gradient).
fn convolutions<B: ConvOps>(b: &B, p: &Conv2dParams) -> [Vec<f32>; 3] {
    let x = upload_vec(b, &values(p.input_shape().numel(), 1));
    let w = upload_vec(b, &values(p.weight_shape().numel(), 2));
    let dy = upload_vec(b, &values(p.output_shape().numel(), 3));
    let mut y = zeros_len(b, p.output_shape().numel());
    let mut dx = zeros_len(b, p.input_shape().numel());
    let mut dw = zeros_len(b, p.weight_shape().numel());
    b.conv2d_forward(p, &x, &w, &mut y).expect("forward");
    b.conv2d_backward_data(p, &dy, &w, &mut dx)
        .expect("backward data");
    b.conv2d_backward_filter(p, &x, &dy, &mut dw)
        .expect("backward filter");
    [download(b, &y), download(b, &dx), download(b, &dw)]
}

fn conv(batch: usize, channels: usize, side: usize) -> Conv2dParams {
    Conv2dParams {
        batch,
        in_h: side,
        in_w: side + 2,
        in_channels: channels,
        out_channels: channels + 2,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
    }
}

/// A limit of `bytes` for every call, whatever its operands.
fn bytes(bytes: usize) -> Fp32ConvScratch {
    Fp32ConvScratch::PerCall(ConvScratchLimit {
        operand_multiple: 0.0,
        floor_bytes: bytes,
    })
}

#[test]
fn nchw_copies_of_a_few_images_at_a_time_match_the_cpu() {
    let Some(g) = cuda() else { return };
    let _device = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    let p = conv(5, 5, 9);
    let f32_bytes = std::mem::size_of::<f32>();
    let image = (p.input_shape().numel() + p.output_shape().numel()) / p.batch * f32_bytes;
    let weights = p.weight_shape().numel() * f32_bytes;
    // Copies get half the limit: two images and the weights, so the batch of five runs as
    // 2 + 2 + 1 images (the weight gradient summed over the three).
    g.set_fp32_conv_layout(Fp32ConvLayout::Nchw);
    g.set_fp32_conv_scratch(bytes(2 * (2 * image + weights)));
    let got = convolutions(&g, &p);
    let want = convolutions(&CpuBackend::new(), &p);
    // Direct algorithms (the test backend's): sums of 45 products per output, of 5·9·11 = 495
    // per weight gradient; each within a few ulps per term of the CPU's sum.
    let terms = [45.0, 7.0 * 9.0, 495.0];
    for ((what, got, want), terms) in ["forward", "backward data", "backward filter"]
        .into_iter()
        .zip(got)
        .zip(want)
        .map(|((w, g), c)| (w, g, c))
        .zip(terms)
    {
        let tol = 16.0 * terms / (1u32 << 24) as f32;
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
            .fold(0.0f32, f32::max);
        assert!(worst <= tol, "{what}: worst difference {worst:e} > {tol:e}");
    }
}

#[test]
fn the_limit_bounds_what_a_convolution_allocates() {
    let Some(g) = cuda() else { return };
    let _device = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    // 8 × 64 × 128 × 130 floats: 32.5 MiB in, 33.5 MiB out.
    let p = conv(8, 64, 128);
    let x = upload_vec(&g, &values(p.input_shape().numel(), 1));
    let w = upload_vec(&g, &values(p.weight_shape().numel(), 2));
    let mut y = zeros_len(&g, p.output_shape().numel());
    let mut scratch = |limit: Fp32ConvScratch| -> u64 {
        g.set_fp32_conv_scratch(limit);
        // The first call tunes its algorithms; the second is what a training step repeats.
        g.conv2d_forward(&p, &x, &w, &mut y).expect("forward");
        g.sync().expect("sync");
        let before = g.memory_in_use().expect("the pool's memory in use");
        g.reset_memory_peak();
        g.conv2d_forward(&p, &x, &w, &mut y).expect("forward");
        g.sync().expect("sync");
        g.memory_peak().expect("the pool's peak") - before
    };
    g.set_fp32_conv_layout(Fp32ConvLayout::Nchw);
    let unlimited = scratch(Fp32ConvScratch::Unlimited);
    let limit = 32usize << 20;
    let limited = scratch(bytes(limit));
    // Slack for the pool's rounding of each of the call's four allocations (three copies and a
    // workspace) to its 2 MiB granularity.
    let slack = 4 * (2u64 << 20);
    assert!(
        limited <= limit as u64 + slack,
        "limited to {limit} bytes, the call took {limited}"
    );
    // Without the limit the copies of the whole batch (66 MiB) are made at once.
    assert!(
        unlimited > limit as u64 + slack,
        "unlimited, the call took only {unlimited} bytes: the test shows nothing"
    );
    // The layout timed per shape keeps to the limit as well.
    g.set_fp32_conv_layout(Fp32ConvLayout::Timed);
    let timed = scratch(bytes(limit));
    assert!(
        timed <= limit as u64 + slack,
        "timed layout: limited to {limit} bytes, the call took {timed}"
    );
}

#[test]
fn the_tuning_report_names_the_ways_timed_and_the_one_in_use() {
    let Some(g) = cuda() else { return };
    let _device = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    g.set_fp32_conv_layout(Fp32ConvLayout::Timed);
    g.set_fp32_conv_scratch(Fp32ConvScratch::Unlimited);
    let p = conv(3, 6, 20);
    let x = upload_vec(&g, &values(p.input_shape().numel(), 1));
    let w = upload_vec(&g, &values(p.weight_shape().numel(), 2));
    let mut y = zeros_len(&g, p.output_shape().numel());
    let mut dx = zeros_len(&g, p.input_shape().numel());
    g.take_conv_tunings().expect("an empty report");
    g.conv2d_forward(&p, &x, &w, &mut y).expect("forward");
    g.conv2d_forward(&p, &x, &w, &mut y).expect("forward");
    g.conv2d_backward_data(&p, &y, &w, &mut dx)
        .expect("backward data");
    let report = g.take_conv_tunings().expect("the report");
    let calls = |kind| {
        report
            .iter()
            .find(|t| t.kind == kind && t.params == p)
            .map(|t| t.calls)
    };
    assert_eq!(calls(ConvKind::Forward), Some(2));
    assert_eq!(calls(ConvKind::BackwardData), Some(1));
    assert_eq!(calls(ConvKind::BackwardFilter), None);
    let forward = report
        .iter()
        .find(|t| t.kind == ConvKind::Forward)
        .expect("the forward");
    assert!(!forward.tf32 && forward.scratch_limit.is_none());
    assert_eq!(forward.ways.iter().filter(|w| w.in_use).count(), 1);
    assert!(forward
        .in_use()
        .and_then(|w| w.ms)
        .is_some_and(|ms| ms > 0.0));
    // The timed layout ran both: in place, and on copies of all three operands.
    let timed = |layout| {
        forward
            .ways
            .iter()
            .any(|w| w.layout == layout && w.ms.is_some())
    };
    assert!(
        timed(ConvLayout::Nhwc) && timed(ConvLayout::Nchw),
        "{forward:#?}"
    );
    let operands = p.input_shape().numel() + p.output_shape().numel() + p.weight_shape().numel();
    for way in &forward.ways {
        let copies = if way.layout == ConvLayout::Nchw {
            operands as u64 * 4
        } else {
            0
        };
        assert_eq!(way.copy_bytes, copies, "{way:?}");
        assert_eq!(way.images_per_run, p.batch, "{way:?}");
    }
    // Calls are counted afresh after each report.
    assert!(g.take_conv_tunings().expect("the report").is_empty());
}

#[test]
fn a_profiled_unet_step_reports_its_convolutions_and_the_bench_fits_a_budget() {
    let Some(g) = cuda() else { return };
    let _device = DEVICE.lock().unwrap_or_else(|e| e.into_inner());
    g.set_fp32_conv_layout(Fp32ConvLayout::Timed);
    g.set_fp32_conv_scratch(Fp32ConvScratch::Unlimited);
    let cfg = BenchConfig {
        size: 32,
        base_channels: 4,
        batches: vec![2],
        precisions: vec![Precision::Fp32],
        warmup: 2,
        repeats: 2,
        ..BenchConfig::default()
    };
    let step = bench::profile_training_step(&g, &cfg, 2, Precision::Fp32).expect("profile");
    let per_step = |kind| -> u64 {
        step.convolutions
            .iter()
            .filter(|t| t.kind == kind)
            .map(|t| t.calls)
            .sum::<u64>()
            / cfg.repeats as u64
    };
    // 19 convolutions and 4 transposed ones (whose forward is a backward-data, and whose input
    // gradient a forward), each with a weight gradient.
    assert_eq!(per_step(ConvKind::Forward), 19 + 4);
    assert_eq!(per_step(ConvKind::BackwardFilter), 19 + 4);
    for t in &step.convolutions {
        assert_eq!(t.calls % cfg.repeats as u64, 0, "{t:#?}");
        assert!(t.in_use().and_then(|w| w.ms).is_some(), "{t:#?}");
    }
    assert!(bench::conv_ms_in_use(&step.convolutions, cfg.repeats as u64).is_some());
    let curve = bench::budget_curve(&step.convolutions, cfg.repeats as u64);
    assert!(!curve.is_empty());

    // Fitted: each measurement's first warm-up step times every way; the rest run within the
    // least budget whose predicted convolution time is within 10 % of the fastest.
    g.set_fp32_conv_scratch(Fp32ConvScratch::Fitted { slack: 0.1 });
    let records = bench::run(&g, &cfg, |_| {}).expect("bench");
    for r in &records {
        assert!(
            r.status
                .starts_with("ok; fp32 convolution scratch fitted to"),
            "{r:?}"
        );
    }
    let tunings = g.take_conv_tunings().expect("the report");
    g.set_fp32_conv_scratch(Fp32ConvScratch::Unlimited);
    let limited: Vec<_> = tunings
        .iter()
        .filter(|t| t.scratch_limit.is_some())
        .collect();
    assert!(!limited.is_empty(), "no call ran within a fitted budget");
    for t in limited {
        let budget = t.scratch_limit.expect("filtered");
        let way = t.in_use().expect("a way in use");
        // Within the budget, unless no way is.
        assert!(
            way.scratch_bytes() <= budget || t.ways.iter().all(|w| w.scratch_bytes() > budget),
            "{t:#?}"
        );
    }
}
