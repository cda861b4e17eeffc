//! First-contact checks of the CUDA backend, one layer at a time, so that a failure on a new
//! machine names the layer that broke: memory transfers (driver), one NVRTC kernel, broadcasting,
//! a reduction, cuBLAS, cuDNN convolution and the batch-norm kernels, each against the CPU backend.
//!
//! Skipped (with a note on stderr) when no CUDA device can be opened, unless
//! `MAGNET_TEST_BACKENDS` lists `cuda`, in which case an unavailable device is a failure.

#![cfg(feature = "cuda")]

use magnet::backend::{
    BatchNormParams, BinaryOp, Conv2dParams, ConvOps, CudaBackend, ElementwiseOps, Fp32ConvLayout,
    GemmParams, MatmulOps, Memory, NormOps, ReduceOp, ReduceOps, UnaryOp,
};
use magnet::{CpuBackend, Shape, TensorDesc};

/// The backend on device 0 with direct convolutions (the tight cross-checks), or `None` (skip)
/// when it cannot be opened and was not asked for.
fn cuda() -> Option<CudaBackend> {
    match CudaBackend::new(0) {
        Ok(b) => {
            b.set_direct_convolutions(true);
            Some(b)
        }
        Err(e) => {
            let listed = std::env::var("MAGNET_TEST_BACKENDS")
                .unwrap_or_default()
                .split(',')
                .any(|s| s.trim().eq_ignore_ascii_case("cuda"));
            assert!(
                !listed,
                "MAGNET_TEST_BACKENDS lists cuda but the backend is unavailable: {e}"
            );
            eprintln!("[backend cuda] skipped: {e}");
            None
        }
    }
}

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| magnet::backend::rng::uniform(seed as u64, i) * 2.0 - 1.0)
        .collect()
}

#[track_caller]
fn assert_close(what: &str, got: &[f32], want: &[f32], rel: f32, abs: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let bad: Vec<(usize, f32, f32)> = got
        .iter()
        .zip(want)
        .enumerate()
        .filter(|(_, (g, w))| !(**g == **w || (*g - *w).abs() <= abs + rel * w.abs()))
        .map(|(i, (g, w))| (i, *g, *w))
        .collect();
    assert!(
        bad.is_empty(),
        "{what}: {} of {} elements differ; first (index, got, want): {:?}",
        bad.len(),
        got.len(),
        &bad[..bad.len().min(5)]
    );
}

fn upload<B: Memory>(b: &B, data: &[f32]) -> B::Buffer {
    let mut buf = b
        .alloc(&TensorDesc::f32([data.len()]))
        .unwrap_or_else(|e| panic!("[{}] alloc: {e}", b.name()));
    b.upload(data, &mut buf)
        .unwrap_or_else(|e| panic!("[{}] upload: {e}", b.name()));
    buf
}

fn zeros<B: Memory>(b: &B, len: usize) -> B::Buffer {
    b.alloc(&TensorDesc::f32([len]))
        .unwrap_or_else(|e| panic!("[{}] alloc: {e}", b.name()))
}

fn download<B: Memory>(b: &B, buf: &B::Buffer) -> Vec<f32> {
    b.download(buf)
        .unwrap_or_else(|e| panic!("[{}] download: {e}", b.name()))
}

#[test]
fn cuda_memory_round_trip() {
    let Some(g) = cuda() else { return };
    eprintln!("[backend cuda] device: {}", g.device_name());
    let zero = zeros(&g, 1000);
    assert_eq!(download(&g, &zero), vec![0.0; 1000], "alloc is zeroed");
    let data = values(1000, 1);
    let buf = upload(&g, &data);
    assert_eq!(download(&g, &buf), data, "upload / download");
    let mut dst = zeros(&g, 1000);
    g.copy(&buf, &mut dst).expect("copy");
    assert_eq!(download(&g, &dst), data, "device copy");
    let empty = zeros(&g, 0);
    assert_eq!(download(&g, &empty), Vec::<f32>::new(), "empty buffer");
    let mut short = zeros(&g, 3);
    assert!(
        g.upload(&data, &mut short).is_err(),
        "upload into a short buffer"
    );
    g.sync().expect("sync");
}

#[test]
fn cuda_nvrtc_kernels_fill_and_relu() {
    let Some(g) = cuda() else { return };
    let mut y = zeros(&g, 1000);
    g.fill(&mut y, -0.375).expect("fill (first NVRTC compile)");
    assert_eq!(download(&g, &y), vec![-0.375; 1000], "fill");
    let x = values(1000, 2);
    let xb = upload(&g, &x);
    g.unary(UnaryOp::Relu, &xb, &mut y).expect("relu");
    let want: Vec<f32> = x.iter().map(|&v| if v > 0.0 { v } else { 0.0 }).collect();
    assert_eq!(download(&g, &y), want, "relu");
}

#[test]
fn cuda_binary_broadcast_and_reduce_match_cpu() {
    let Some(g) = cuda() else { return };
    let c = CpuBackend::new();
    let (sa, sb) = (Shape::new([2, 3, 1, 5]), Shape::new([3, 4, 1]));
    let out = sa.broadcast(&sb).expect("broadcast");
    let (a, b) = (values(sa.numel(), 3), values(sb.numel(), 4));
    let mut yc = zeros(&c, out.numel());
    c.binary(
        BinaryOp::Mul,
        &upload(&c, &a),
        &sa,
        &upload(&c, &b),
        &sb,
        &mut yc,
    )
    .expect("cpu binary");
    let cpu = download(&c, &yc);
    let mut yg = zeros(&g, out.numel());
    g.binary(
        BinaryOp::Mul,
        &upload(&g, &a),
        &sa,
        &upload(&g, &b),
        &sb,
        &mut yg,
    )
    .expect("cuda binary");
    let gpu = download(&g, &yg);
    assert_close("binary mul [2,3,1,5] × [3,4,1]", &gpu, &cpu, 0.0, 0.0);

    // Bias gradient (columns), a row reduction and a full reduction.
    let x = values(4 * 33 * 7, 5);
    let xs = Shape::new([4, 33, 7]);
    for (ys, op) in [
        (Shape::new([7]), ReduceOp::Sum),
        (Shape::new([4, 33, 1]), ReduceOp::Mean),
        (Shape::new([1]), ReduceOp::Max),
        (Shape::new([4, 1, 7]), ReduceOp::Sum),
    ] {
        let mut yc = zeros(&c, ys.numel());
        c.reduce(op, &upload(&c, &x), &xs, &ys, &mut yc)
            .expect("cpu reduce");
        let mut yg = zeros(&g, ys.numel());
        g.reduce(op, &upload(&g, &x), &xs, &ys, &mut yg)
            .expect("cuda reduce");
        assert_close(
            &format!("reduce {op:?} to {ys}"),
            &download(&g, &yg),
            &download(&c, &yc),
            1e-6,
            1e-6,
        );
    }
}

#[test]
fn cuda_cublas_gemm_matches_cpu() {
    let Some(g) = cuda() else { return };
    let c = CpuBackend::new();
    let (m, n, k) = (7, 5, 9);
    for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
        let p = GemmParams {
            m,
            n,
            k,
            trans_a,
            trans_b,
            alpha: 0.75,
            beta: -0.5,
        };
        let (a, b, c0) = (values(m * k, 6), values(k * n, 7), values(m * n, 8));
        let mut cc = upload(&c, &c0);
        c.gemm(&p, &upload(&c, &a), &upload(&c, &b), &mut cc)
            .expect("cpu gemm");
        let mut cg = upload(&g, &c0);
        g.gemm(&p, &upload(&g, &a), &upload(&g, &b), &mut cg)
            .expect("cuda gemm");
        assert_close(
            &format!("gemm trans ({trans_a}, {trans_b})"),
            &download(&g, &cg),
            &download(&c, &cc),
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn cuda_cudnn_conv_matches_cpu() {
    let Some(g) = cuda() else { return };
    // Strict fp32 computes in place on NHWC or on NCHW copies, whichever times faster; both.
    for layout in [Fp32ConvLayout::Nhwc, Fp32ConvLayout::Nchw] {
        g.set_fp32_conv_layout(layout);
        conv_matches_cpu(&g, &format!("{layout:?}"));
    }
}

fn conv_matches_cpu(g: &CudaBackend, layout: &str) {
    let g = g.clone();
    let c = CpuBackend::new();
    let p = Conv2dParams {
        batch: 2,
        in_h: 9,
        in_w: 11,
        in_channels: 5,
        out_channels: 7,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
    };
    let x = values(p.input_shape().numel(), 9);
    let w = values(p.weight_shape().numel(), 10);
    let dy = values(p.output_shape().numel(), 11);
    let k = 3 * 3 * 5;
    let tol = 4.0 * k as f32 / (1u32 << 24) as f32 * 4.0;

    let mut yc = zeros(&c, p.output_shape().numel());
    c.conv2d_forward(&p, &upload(&c, &x), &upload(&c, &w), &mut yc)
        .expect("cpu conv");
    let mut yg = zeros(&g, p.output_shape().numel());
    g.conv2d_forward(&p, &upload(&g, &x), &upload(&g, &w), &mut yg)
        .expect("cuda conv2d_forward (cuDNN)");
    assert_close(
        &format!("conv2d_forward ({layout})"),
        &download(&g, &yg),
        &download(&c, &yc),
        1e-5,
        tol,
    );

    let mut dxc = zeros(&c, x.len());
    c.conv2d_backward_data(&p, &upload(&c, &dy), &upload(&c, &w), &mut dxc)
        .expect("cpu backward data");
    let mut dxg = zeros(&g, x.len());
    g.conv2d_backward_data(&p, &upload(&g, &dy), &upload(&g, &w), &mut dxg)
        .expect("cuda conv2d_backward_data (cuDNN)");
    assert_close(
        &format!("conv2d_backward_data ({layout})"),
        &download(&g, &dxg),
        &download(&c, &dxc),
        1e-5,
        tol * 2.0,
    );

    let mut dwc = zeros(&c, w.len());
    c.conv2d_backward_filter(&p, &upload(&c, &x), &upload(&c, &dy), &mut dwc)
        .expect("cpu backward filter");
    let mut dwg = zeros(&g, w.len());
    g.conv2d_backward_filter(&p, &upload(&g, &x), &upload(&g, &dy), &mut dwg)
        .expect("cuda conv2d_backward_filter (cuDNN)");
    // Sums over 2·9·11 output pixels.
    assert_close(
        &format!("conv2d_backward_filter ({layout})"),
        &download(&g, &dwg),
        &download(&c, &dwc),
        1e-5,
        4.0 * 198.0 / (1u32 << 24) as f32 * 4.0,
    );
}

/// The default strict-fp32 convolutions may use Winograd or FFT transforms (the fastest by
/// timing, as PyTorch with TF32 off), which round differently from a sum of products: by about
/// 1e-6 of the sum of the terms' magnitudes, so the tolerance is 1e-5 of that (at most `k` for
/// `k` products of values in [-1, 1)). A wrong algorithm or layout is off by O(1).
#[test]
fn cuda_cudnn_fastest_fp32_conv_stays_within_transform_rounding() {
    let Some(g) = cuda() else { return };
    g.set_direct_convolutions(false);
    let c = CpuBackend::new();
    let p = Conv2dParams {
        batch: 2,
        in_h: 32,
        in_w: 32,
        in_channels: 64,
        out_channels: 64,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
    };
    let x = values(p.input_shape().numel(), 21);
    let w = values(p.weight_shape().numel(), 22);
    let dy = values(p.output_shape().numel(), 23);
    let terms = |k: usize| 1e-5 * k as f32;

    let (mut yc, mut yg) = (zeros(&c, dy.len()), zeros(&g, dy.len()));
    c.conv2d_forward(&p, &upload(&c, &x), &upload(&c, &w), &mut yc)
        .expect("cpu conv");
    g.conv2d_forward(&p, &upload(&g, &x), &upload(&g, &w), &mut yg)
        .expect("cuda conv2d_forward");
    let (got, want) = (download(&g, &yg), download(&c, &yc));
    assert_close("fastest conv2d_forward", &got, &want, 1e-4, terms(9 * 64));

    let (mut dxc, mut dxg) = (zeros(&c, x.len()), zeros(&g, x.len()));
    c.conv2d_backward_data(&p, &upload(&c, &dy), &upload(&c, &w), &mut dxc)
        .expect("cpu backward data");
    g.conv2d_backward_data(&p, &upload(&g, &dy), &upload(&g, &w), &mut dxg)
        .expect("cuda conv2d_backward_data");
    let (got, want) = (download(&g, &dxg), download(&c, &dxc));
    assert_close(
        "fastest conv2d_backward_data",
        &got,
        &want,
        1e-4,
        terms(9 * 64),
    );

    let (mut dwc, mut dwg) = (zeros(&c, w.len()), zeros(&g, w.len()));
    c.conv2d_backward_filter(&p, &upload(&c, &x), &upload(&c, &dy), &mut dwc)
        .expect("cpu backward filter");
    g.conv2d_backward_filter(&p, &upload(&g, &x), &upload(&g, &dy), &mut dwg)
        .expect("cuda conv2d_backward_filter");
    let (got, want) = (download(&g, &dwg), download(&c, &dwc));
    assert_close(
        "fastest conv2d_backward_filter",
        &got,
        &want,
        1e-4,
        terms(2 * 32 * 32),
    );
}

#[test]
fn cuda_batch_norm_matches_cpu() {
    let Some(g) = cuda() else { return };
    let c = CpuBackend::new();
    let p = BatchNormParams {
        rows: 2 * 9 * 11,
        channels: 5,
        eps: 1e-5,
        momentum: 0.1,
        relu: false,
    };
    let x = values(p.rows * p.channels, 12);
    let gamma: Vec<f32> = values(5, 13).iter().map(|v| 1.0 + 0.5 * v).collect();
    let beta = values(5, 14);
    let var: Vec<f32> = values(5, 15).iter().map(|v| 1.0 + 0.5 * v).collect();
    let mean = values(5, 16);
    let outputs = |run: &dyn Fn() -> [Vec<f32>; 5]| run();
    let cpu = outputs(&|| {
        let (mut y, mut sm, mut si) = (zeros(&c, x.len()), zeros(&c, 5), zeros(&c, 5));
        let (mut rm, mut rv) = (upload(&c, &mean), upload(&c, &var));
        c.batch_norm_train(
            &p,
            &upload(&c, &x),
            &upload(&c, &gamma),
            &upload(&c, &beta),
            &mut y,
            &mut sm,
            &mut si,
            &mut rm,
            &mut rv,
        )
        .expect("cpu batch norm");
        [&y, &sm, &si, &rm, &rv].map(|b| download(&c, b))
    });
    let gpu = outputs(&|| {
        let (mut y, mut sm, mut si) = (zeros(&g, x.len()), zeros(&g, 5), zeros(&g, 5));
        let (mut rm, mut rv) = (upload(&g, &mean), upload(&g, &var));
        g.batch_norm_train(
            &p,
            &upload(&g, &x),
            &upload(&g, &gamma),
            &upload(&g, &beta),
            &mut y,
            &mut sm,
            &mut si,
            &mut rm,
            &mut rv,
        )
        .expect("cuda batch_norm_train (cuDNN)");
        [&y, &sm, &si, &rm, &rv].map(|b| download(&g, b))
    });
    for (i, name) in [
        "y",
        "save_mean",
        "save_invstd",
        "running_mean",
        "running_var",
    ]
    .iter()
    .enumerate()
    {
        assert_close(
            &format!("batch_norm_train {name}"),
            &gpu[i],
            &cpu[i],
            1e-5,
            1e-5,
        );
    }
}

#[test]
fn cuda_tf32_mode_runs_conv_and_gemm() {
    let Some(g) = cuda() else { return };
    let c = CpuBackend::new();
    g.set_tf32(true).expect("set_tf32(true)");
    assert!(g.tf32());
    let p = Conv2dParams {
        batch: 1,
        in_h: 16,
        in_w: 16,
        in_channels: 32,
        out_channels: 32,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
    };
    let x = values(p.input_shape().numel(), 17);
    let w = values(p.weight_shape().numel(), 18);
    let mut yc = zeros(&c, p.output_shape().numel());
    c.conv2d_forward(&p, &upload(&c, &x), &upload(&c, &w), &mut yc)
        .expect("cpu conv");
    let mut yg = zeros(&g, p.output_shape().numel());
    g.conv2d_forward(&p, &upload(&g, &x), &upload(&g, &w), &mut yg)
        .expect("cuda conv2d_forward with TF32");
    // TF32 keeps 10 mantissa bits of each input: ~1e-3 relative per product, sums of 288.
    assert_close(
        "conv2d_forward (TF32)",
        &download(&g, &yg),
        &download(&c, &yc),
        1e-2,
        5e-2,
    );

    let gp = GemmParams {
        m: 64,
        n: 48,
        k: 80,
        trans_a: false,
        trans_b: true,
        alpha: 1.0,
        beta: 0.0,
    };
    let (a, b) = (values(64 * 80, 19), values(48 * 80, 20));
    let mut cc = zeros(&c, 64 * 48);
    c.gemm(&gp, &upload(&c, &a), &upload(&c, &b), &mut cc)
        .expect("cpu gemm");
    let mut cg = zeros(&g, 64 * 48);
    g.gemm(&gp, &upload(&g, &a), &upload(&g, &b), &mut cg)
        .expect("cuda gemm with TF32");
    assert_close(
        "gemm (TF32)",
        &download(&g, &cg),
        &download(&c, &cc),
        1e-2,
        5e-2,
    );
    g.set_tf32(false).expect("set_tf32(false)");
}
