//! `magnet bench --profile`'s convolution report: how each convolution shape ran, and what a
//! scratch budget shared by all of them would cost the step (`magnet::bench::budget_curve`).

use magnet::backend::ConvTuning;
use magnet::bench::{budget_curve, conv_ms_in_use};

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// Prints each convolution's way in use and the budget curve; `measured_ms` is the profile's
/// convolution time per step, beside which the timings' prediction is printed.
pub fn print(convolutions: &[ConvTuning], steps: u64, measured_ms: f64) {
    if convolutions.is_empty() {
        return;
    }
    println!("convolutions, the way each runs (ms: one call, timed at the shape's first call):");
    println!(
        "{:<16} {:>5} {:>16} {:>7} {:>5} {:>9} {:<6} {:<28} {:>9} {:>8} {:>8} {:>8}",
        "kind",
        "batch",
        "in×h×w→out",
        "kernel",
        "calls",
        "limit MiB",
        "layout",
        "algorithm",
        "work MiB",
        "copy MiB",
        "ms",
        "ms/step"
    );
    for t in convolutions {
        let p = &t.params;
        let per_step = t.calls as f64 / steps.max(1) as f64;
        let Some(way) = t.in_use() else {
            continue;
        };
        let ms = way.ms.map_or("-".to_string(), |ms| format!("{ms:.3}"));
        let ms_per_step = way
            .ms
            .map_or("-".to_string(), |ms| format!("{:.3}", ms * per_step));
        let limit = t
            .scratch_limit
            .map_or("-".to_string(), |b| format!("{:.1}", mib(b)));
        println!(
            "{:<16} {:>5} {:>16} {:>7} {:>5.0} {:>9} {:<6} {:<28} {:>9.1} {:>8.1} {:>8} {:>8}",
            t.kind.name(),
            p.batch,
            format!("{}×{}×{}→{}", p.in_channels, p.in_h, p.in_w, p.out_channels),
            format!("{}×{}/{}", p.kernel[0], p.kernel[1], p.stride[0]),
            per_step,
            limit,
            way.layout.name(),
            way.algorithm,
            mib(way.workspace_bytes),
            mib(way.copy_bytes),
            ms,
            ms_per_step
        );
    }
    let predicted = conv_ms_in_use(convolutions, steps)
        .map_or("not every way in use was timed".to_string(), |ms| {
            format!("{ms:.2} ms")
        });
    println!(
        "convolutions per step: {predicted} from those timings, {measured_ms:.2} ms measured \
         in this profile"
    );
    let curve = budget_curve(convolutions, steps);
    if curve.len() > 1 {
        println!(
            "a scratch budget shared by every convolution (--fp32-conv-scratch 0 \
             --fp32-conv-scratch-floor MIB), from the same timings:"
        );
        println!(
            "{:>12} {:>20} {:>18}",
            "budget MiB", "largest scratch MiB", "convolution ms/step"
        );
        for point in curve {
            println!(
                "{:>12.1} {:>20.1} {:>18.2}",
                mib(point.budget_bytes),
                mib(point.largest_scratch_bytes),
                point.conv_ms
            );
        }
    }
}
