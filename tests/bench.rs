//! The U-Net benchmark's library function on the CPU with a tiny network: every requested
//! record is made, timed and consistent with its configuration.

use magnet::backend::{Conv2dParams, ConvKind, ConvLayout, ConvTuning, ConvWay};
use magnet::bench::{self, BenchConfig, BudgetPoint, Part, Precision, CSV_HEADER};
use magnet::graph::Pass;
use magnet::CpuBackend;

#[test]
fn tiny_unet_bench_on_cpu_gives_sane_records() {
    let cfg = BenchConfig {
        size: 32,
        base_channels: 4,
        batches: vec![1, 2],
        warmup: 1,
        repeats: 3,
        ..BenchConfig::default()
    };
    let mut seen = 0;
    let records = bench::run(&CpuBackend::new(), &cfg, |_| seen += 1).expect("bench runs");
    // batches × parts × precisions, reported as they come.
    assert_eq!(records.len(), 2 * 2 * 2);
    assert_eq!(seen, records.len());
    let params = cfg.parameter_count().expect("parameter count");
    let columns = CSV_HEADER.split(',').count();
    for r in &records {
        assert_eq!((r.engine.as_str(), r.backend.as_str()), ("magnet", "cpu"));
        assert_eq!((r.size, r.base_channels, r.params), (32, 4, params));
        assert!(cfg.batches.contains(&r.batch));
        assert_eq!(r.csv_line().split(',').count(), columns, "{}", r.csv_line());
        let json: serde_json::Value = serde_json::from_str(&r.json_line()).expect("valid JSON");
        assert_eq!(json["mode"], r.precision.name());
        // The CPU reports no device memory.
        assert_eq!(r.peak_mem_mib, None);
        match r.precision {
            Precision::Tf32 => {
                assert!(r.status.starts_with("n/a"), "{}", r.status);
                assert_eq!(r.median_ms, None);
            }
            Precision::Fp32 => {
                assert_eq!(r.status, "ok");
                let ms = r.median_ms.expect("timed");
                assert!(ms > 0.0 && ms.is_finite());
                let ips = r.images_per_s.expect("rate");
                assert!((ips - r.batch as f64 / (ms / 1e3)).abs() < 1e-6 * ips);
                let flop = cfg.forward_gflop_per_image() * 1e9 * r.batch as f64;
                let flop = flop * if r.part == Part::Train { 3.0 } else { 1.0 };
                let tflops = r.tflops.expect("throughput");
                assert!((tflops - flop / (ms / 1e3) / 1e12).abs() < 1e-6 * tflops);
            }
        }
    }
}

#[test]
fn paper_network_counts() {
    let cfg = BenchConfig::default();
    // The paper's U-Net: 31.0 M parameters, 96.3 GFLOP per 256×256 image.
    let params = cfg.parameter_count().expect("parameter count");
    assert!((31_000_000..31_100_000).contains(&params), "{params}");
    assert_eq!(
        cfg.forward_gflop_per_image(),
        bench::FORWARD_GFLOP_256_BASE64
    );
    let small = BenchConfig {
        size: 128,
        base_channels: 32,
        ..cfg
    };
    assert!((small.forward_gflop_per_image() - 96.3 / 16.0).abs() < 1e-9);
    assert!(BenchConfig {
        size: 40,
        ..small.clone()
    }
    .validate()
    .is_err());
    assert!(BenchConfig {
        batches: vec![0],
        ..small
    }
    .validate()
    .is_err());
}

#[test]
fn step_memory_splits_the_peak() {
    let mib = 1 << 20;
    let m = bench::StepMemory {
        peak: 100 * mib,
        between_steps: 70 * mib,
        plan: 50 * mib,
    };
    assert_eq!(m.tensors(), 20 * mib);
    assert_eq!(m.within_step(), 30 * mib);
}

#[test]
fn training_step_profile_names_the_ops_and_adds_up() {
    let cfg = BenchConfig {
        size: 32,
        base_channels: 4,
        warmup: 1,
        repeats: 2,
        ..BenchConfig::default()
    };
    let step = bench::profile_training_step(&CpuBackend::new(), &cfg, 2, Precision::Fp32)
        .expect("profile runs");
    // The CPU backend neither counts its memory nor reports convolution tunings.
    assert_eq!(step.memory, None);
    assert!(step.convolutions.is_empty());
    let profile = step.ops;
    let rows = profile.rows();
    let calls = |op: &str, pass: Pass| {
        rows.iter()
            .find(|r| r.op == op && r.pass == pass)
            .map_or(0, |r| r.calls)
    };
    // The U-Net has 19 convolutions and 18 batch norms (each with its ReLU, whose output the
    // next op's backward reads and gets recomputed); two profiled steps.
    assert_eq!(calls("conv2d", Pass::Forward), 2 * 19);
    assert_eq!(calls("conv2d", Pass::Backward), 2 * 19);
    assert_eq!(calls("batch_norm", Pass::Backward), 2 * 18);
    assert_eq!(calls("batch_norm", Pass::Recompute), 2 * 18);
    assert_eq!(calls("relu", Pass::Forward), 0);
    assert_eq!(calls("optimizer", Pass::Update), 2);
    assert!(
        rows.windows(2).all(|w| w[0].seconds >= w[1].seconds),
        "slowest first"
    );
    let sum: f64 = rows.iter().map(|r| r.seconds).sum();
    assert!((sum - profile.total_seconds()).abs() < 1e-9 && sum > 0.0);
    // The TF32 mode does not exist on the CPU: an error, not a silent fp32 profile.
    assert!(bench::profile_training_step(&CpuBackend::new(), &cfg, 2, Precision::Tf32).is_err());
}

/// A way of `layout` with `scratch` bytes (all workspace in NHWC; 100 bytes of copies in
/// NCHW), timed at `ms`.
fn way(layout: ConvLayout, scratch: u64, ms: Option<f64>, in_use: bool) -> ConvWay {
    let copy_bytes = if layout == ConvLayout::Nchw { 100 } else { 0 };
    ConvWay {
        layout,
        algorithm: format!("{} {scratch}", layout.name()),
        images_per_run: 4,
        workspace_bytes: scratch - copy_bytes,
        copy_bytes,
        ms,
        in_use,
    }
}

fn tuning(calls: u64, ways: Vec<ConvWay>) -> ConvTuning {
    ConvTuning {
        kind: ConvKind::Forward,
        params: Conv2dParams {
            batch: 4,
            in_h: 8,
            in_w: 8,
            in_channels: 3,
            out_channels: 5,
            kernel: [3, 3],
            stride: [1, 1],
            padding: [1, 1],
            dilation: [1, 1],
        },
        tf32: false,
        scratch_limit: None,
        calls,
        ways,
    }
}

#[test]
fn a_shared_scratch_budget_runs_each_call_its_fastest_way_within_it() {
    use ConvLayout::{Nchw, Nhwc};
    // Over 2 steps: `a` runs twice a step, `b` and `c` once.
    let a = tuning(
        4,
        vec![
            way(Nhwc, 0, Some(10.0), false),
            way(Nhwc, 100, Some(4.0), false),
            way(Nchw, 500, Some(2.0), true),
        ],
    );
    let b = tuning(
        2,
        vec![
            way(Nhwc, 0, Some(5.0), false),
            way(Nhwc, 50, Some(3.0), true),
            // Never timed: not a choice.
            way(Nhwc, 10, None, false),
        ],
    );
    // No way within 60 bytes: the least scratch, whatever the budget says.
    let c = tuning(
        2,
        vec![
            way(Nhwc, 80, Some(1.0), false),
            way(Nhwc, 60, Some(2.0), true),
        ],
    );
    let point = |budget_bytes, largest_scratch_bytes, conv_ms| BudgetPoint {
        budget_bytes,
        largest_scratch_bytes,
        conv_ms,
    };
    assert_eq!(
        bench::budget_curve(&[a.clone(), b.clone()], 2),
        [
            point(0, 0, 2.0 * 10.0 + 5.0),
            point(50, 50, 2.0 * 10.0 + 3.0),
            point(100, 100, 2.0 * 4.0 + 3.0),
            point(500, 500, 2.0 * 2.0 + 3.0),
        ]
    );
    // With `c`, budget 60 changes nothing (c already ran its 60-byte way): no point there.
    assert_eq!(
        bench::budget_curve(&[a.clone(), b.clone(), c.clone()], 2),
        [
            point(0, 60, 2.0 * 10.0 + 5.0 + 2.0),
            point(50, 60, 2.0 * 10.0 + 3.0 + 2.0),
            point(80, 80, 2.0 * 10.0 + 3.0 + 1.0),
            point(100, 100, 2.0 * 4.0 + 3.0 + 1.0),
            point(500, 500, 2.0 * 2.0 + 3.0 + 1.0),
        ]
    );
    assert_eq!(
        bench::conv_ms_in_use(&[a, b.clone(), c], 2),
        Some(4.0 + 3.0 + 2.0)
    );
    // A way in use that was not timed: no prediction.
    let mut untimed = b;
    untimed.ways[1].in_use = false;
    untimed.ways[2].in_use = true;
    assert_eq!(bench::conv_ms_in_use(&[untimed], 2), None);
    assert!(bench::budget_curve(&[], 2).is_empty());
}

#[test]
fn the_least_budget_within_a_slack_of_the_fastest() {
    let point = |mib: u64, conv_ms| BudgetPoint {
        budget_bytes: mib << 20,
        largest_scratch_bytes: mib << 20,
        conv_ms,
    };
    let curve = [
        point(0, 30.0),
        point(64, 12.0),
        point(256, 10.9),
        point(1024, 10.0),
    ];
    assert_eq!(bench::least_budget(&curve, 0.0), Some(curve[3]));
    assert_eq!(bench::least_budget(&curve, 0.1), Some(curve[2]));
    assert_eq!(bench::least_budget(&curve, 0.2), Some(curve[1]));
    assert_eq!(bench::least_budget(&curve, 5.0), Some(curve[0]));
    assert_eq!(bench::least_budget(&[], 0.1), None);
}
