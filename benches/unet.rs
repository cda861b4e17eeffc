//! U-Net benchmark: a full training step (forward, cross-entropy, backward, Adam) and inference
//! on one backend, per batch size and precision, median of timed steps after warm-up. The same
//! measurements as `magnet bench` (both call `magnet::bench::run`); `benches/torch_unet.py` times
//! the model in PyTorch and `benches/compare_unet.sh` puts the two side by side.
//!
//! Run with `cargo bench --bench unet [--features cuda]`. Settings from the environment:
//! - `MAGNET_BENCH_BACKEND`: `cpu`, `cuda` or `wgpu`; default `cuda` when built in and a device
//!   is found, else `cpu`;
//! - `MAGNET_BENCH_SIZE`, `MAGNET_BENCH_BASE`, `MAGNET_BENCH_BATCHES` (comma-separated): default
//!   the paper's network (256, 64, `1,8,32`) on a GPU, and a small one (64, 16, `1,4`) on the CPU,
//!   where the paper's takes minutes per step;
//! - `MAGNET_BENCH_WARMUP` (default 5), `MAGNET_BENCH_REPEATS` (default 20 on a GPU, 5 on the
//!   CPU);
//! - `MAGNET_BENCH_OUTPUT`: also write the records to this CSV file.

use magnet::bench::{self, BenchConfig, PrecisionControl};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn config(gpu: bool) -> BenchConfig {
    let defaults = BenchConfig::default();
    let (size, base, batches, repeats) = if gpu {
        (256, 64, defaults.batches.clone(), defaults.repeats)
    } else {
        (64, 16, vec![1, 4], 5)
    };
    let batches = std::env::var("MAGNET_BENCH_BATCHES")
        .ok()
        .and_then(|v| v.split(',').map(|b| b.trim().parse().ok()).collect())
        .unwrap_or(batches);
    BenchConfig {
        size: env_usize("MAGNET_BENCH_SIZE", size),
        base_channels: env_usize("MAGNET_BENCH_BASE", base),
        batches,
        warmup: env_usize("MAGNET_BENCH_WARMUP", defaults.warmup),
        repeats: env_usize("MAGNET_BENCH_REPEATS", repeats),
        ..defaults
    }
}

fn bench_on<B: PrecisionControl>(backend: &B, gpu: bool) -> magnet::Result<()> {
    let cfg = config(gpu);
    println!(
        "magnet U-Net base {}, {}×{}, {} on {}; {} warm-up steps, median of {}",
        cfg.base_channels,
        cfg.size,
        cfg.size,
        backend.name(),
        backend.device_name(),
        cfg.warmup,
        cfg.repeats
    );
    println!("{}", bench::table_header());
    let records = bench::run(backend, &cfg, |r| println!("{}", bench::table_row(r)))?;
    if let Ok(path) = std::env::var("MAGNET_BENCH_OUTPUT") {
        let mut text = format!("{}\n", bench::CSV_HEADER);
        for r in &records {
            text.push_str(&r.csv_line());
            text.push('\n');
        }
        std::fs::write(&path, text).map_err(|source| magnet::Error::Io {
            path: path.into(),
            source,
        })?;
    }
    Ok(())
}

fn main() -> magnet::Result<()> {
    let choice = std::env::var("MAGNET_BENCH_BACKEND").unwrap_or_default();
    match choice.as_str() {
        "cpu" => bench_on(&magnet::CpuBackend::new(), false),
        #[cfg(feature = "cuda")]
        "cuda" => bench_on(&magnet::backend::CudaBackend::new(0)?, true),
        #[cfg(feature = "wgpu")]
        "wgpu" => bench_on(&magnet::backend::WgpuBackend::new()?, true),
        "" => {
            #[cfg(feature = "cuda")]
            if let Ok(b) = magnet::backend::CudaBackend::new(0) {
                return bench_on(&b, true);
            }
            bench_on(&magnet::CpuBackend::new(), false)
        }
        other => Err(magnet::Error::invalid(
            "bench",
            format!("MAGNET_BENCH_BACKEND={other:?} is not a backend of this build"),
        )),
    }
}
