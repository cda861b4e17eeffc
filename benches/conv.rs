//! CPU convolution benchmark: a 3×3, 64→64, padding-1 convolution on a 1×256×256×64 NHWC input,
//! forward, backward-data and backward-filter. Prints the median of several timed repeats after
//! warm-up runs, in ms and GFLOP/s; `benches/torch_conv.py` times the same work in PyTorch.
//!
//! Run with `cargo bench --bench conv` (release build). `MAGNET_BENCH_REPEATS` sets the number of
//! timed repeats (default 15).

use std::hint::black_box;
use std::time::Instant;

use magnet::backend::{Conv2dParams, ConvOps, CpuBackend, Memory};
use magnet::TensorDesc;

/// Median of `repeats` timings of `f` in milliseconds, after `warmup` untimed runs.
fn median_ms(warmup: usize, repeats: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<f64> = (0..repeats)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Deterministic values in [-1, 1).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn main() -> magnet::Result<()> {
    let repeats = std::env::var("MAGNET_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let p = Conv2dParams {
        batch: 1,
        in_h: 256,
        in_w: 256,
        in_channels: 64,
        out_channels: 64,
        kernel: [3, 3],
        stride: [1, 1],
        padding: [1, 1],
        dilation: [1, 1],
    };
    let cpu = CpuBackend::new();
    let upload = |shape, seed| -> magnet::Result<_> {
        let desc = TensorDesc::f32(shape);
        let mut buf = cpu.alloc(&desc)?;
        cpu.upload(&values(desc.shape.numel(), seed), &mut buf)?;
        Ok(buf)
    };
    let x = upload(p.input_shape(), 1)?;
    let w = upload(p.weight_shape(), 2)?;
    let dy = upload(p.output_shape(), 3)?;
    let mut y = cpu.alloc(&TensorDesc::f32(p.output_shape()))?;
    let mut dx = cpu.alloc(&TensorDesc::f32(p.input_shape()))?;
    let mut dw = cpu.alloc(&TensorDesc::f32(p.weight_shape()))?;

    // 2·P·K·Cout multiply-adds per pass, the same for all three.
    let k = p.kernel[0] * p.kernel[1] * p.in_channels;
    let gflop = 2.0 * (p.batch * p.out_h() * p.out_w() * k * p.out_channels) as f64 / 1e9;
    let warmup = 3;
    let fwd = median_ms(warmup, repeats, || {
        cpu.conv2d_forward(&p, &x, &w, &mut y).unwrap();
        black_box(&y);
    });
    let bwd_data = median_ms(warmup, repeats, || {
        cpu.conv2d_backward_data(&p, &dy, &w, &mut dx).unwrap();
        black_box(&dx);
    });
    let bwd_filter = median_ms(warmup, repeats, || {
        cpu.conv2d_backward_filter(&p, &x, &dy, &mut dw).unwrap();
        black_box(&dw);
    });
    let total = median_ms(warmup, repeats, || {
        cpu.conv2d_forward(&p, &x, &w, &mut y).unwrap();
        cpu.conv2d_backward_data(&p, &dy, &w, &mut dx).unwrap();
        cpu.conv2d_backward_filter(&p, &x, &dy, &mut dw).unwrap();
        black_box((&y, &dx, &dw));
    });

    println!(
        "magnet conv2d 1x256x256x64 3x3 64->64 pad 1, {} threads, median of {repeats}",
        rayon::current_num_threads()
    );
    for (name, ms, flops) in [
        ("forward", fwd, gflop),
        ("backward_data", bwd_data, gflop),
        ("backward_filter", bwd_filter, gflop),
        ("total", total, 3.0 * gflop),
    ] {
        println!("{name:>16}: {ms:8.2} ms {:7.1} GFLOP/s", flops / ms * 1e3);
    }
    Ok(())
}
