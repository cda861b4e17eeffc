//! `magnet bench --profile`'s convolution report: how each convolution shape ran, and what a
//! scratch budget shared by all of them would cost the step (`magnet::bench::budget_curve`).

use magnet::backend::ConvTuning;
use magnet::bench::{budget_curve, conv_ms_in_use, mib};

/// The columns of [`csv_lines`]: a convolution, then one of its ways.
pub const CSV_HEADER: &str =
    "mode,kind,batch,in_channels,in_h,in_w,out_channels,kernel_h,kernel_w,\
stride,padding,calls_per_step,scratch_limit_bytes,layout,algorithm,images_per_run,workspace_bytes,\
copy_bytes,ms,in_use";

/// One CSV line per way of every convolution (columns of [`CSV_HEADER`]; `ms` empty where not
/// timed), calls counted over `steps` steps.
pub fn csv_lines(convolutions: &[ConvTuning], steps: u64) -> Vec<String> {
    let mut lines = Vec::new();
    for t in convolutions {
        let p = &t.params;
        let per_step = t.calls as f64 / steps.max(1) as f64;
        let limit = t.scratch_limit.map_or(String::new(), |b| b.to_string());
        for w in &t.ways {
            lines.push(format!(
                "{},{},{},{},{},{},{},{},{},{},{},{per_step},{limit},{},{},{},{},{},{},{}",
                if t.tf32 { "tf32" } else { "fp32" },
                t.kind.name(),
                p.batch,
                p.in_channels,
                p.in_h,
                p.in_w,
                p.out_channels,
                p.kernel[0],
                p.kernel[1],
                p.stride[0],
                p.padding[0],
                w.layout.name(),
                w.algorithm,
                w.images_per_run,
                w.workspace_bytes,
                w.copy_bytes,
                w.ms.map_or(String::new(), |ms| ms.to_string()),
                w.in_use
            ));
        }
    }
    lines
}

/// Each convolution's way in use and the budget curve; `measured_ms` is the profile's
/// convolution time per step, beside which the timings' prediction is written. Empty without
/// convolutions.
pub fn render(convolutions: &[ConvTuning], steps: u64, measured_ms: f64) -> String {
    if convolutions.is_empty() {
        return String::new();
    }
    let mut lines = vec![
        "convolutions, the way each runs (ms: one call, timed at the shape's first call):"
            .to_string(),
    ];
    lines.push(format!(
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
    ));
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
        lines.push(format!(
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
        ));
    }
    let predicted = conv_ms_in_use(convolutions, steps)
        .map_or("not every way in use was timed".to_string(), |ms| {
            format!("{ms:.2} ms")
        });
    lines.push(format!(
        "convolutions per step: {predicted} from those timings, {measured_ms:.2} ms measured \
         in this profile"
    ));
    let curve = budget_curve(convolutions, steps);
    if curve.len() > 1 {
        lines.push(
            "a scratch budget shared by every convolution (--fp32-conv-scratch 0 \
             --fp32-conv-scratch-floor MIB), from the same timings:"
                .to_string(),
        );
        lines.push(format!(
            "{:>12} {:>20} {:>18}",
            "budget MiB", "largest scratch MiB", "convolution ms/step"
        ));
        for point in curve {
            lines.push(format!(
                "{:>12.1} {:>20.1} {:>18.2}",
                mib(point.budget_bytes),
                mib(point.largest_scratch_bytes),
                point.conv_ms
            ));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use magnet::backend::{Conv2dParams, ConvKind, ConvLayout, ConvWay};

    use super::*;

    fn way(layout: ConvLayout, algorithm: &str, workspace_mib: u64, ms: f64) -> ConvWay {
        ConvWay {
            layout,
            algorithm: algorithm.to_string(),
            images_per_run: 8,
            workspace_bytes: workspace_mib << 20,
            copy_bytes: if layout == ConvLayout::Nchw {
                96 << 20
            } else {
                0
            },
            ms: Some(ms),
            in_use: false,
        }
    }

    #[test]
    fn the_report_shows_the_way_in_use_and_the_budgets() {
        assert_eq!(render(&[], 2, 1.0), "");
        let mut ways = vec![
            way(ConvLayout::Nhwc, "IMPLICIT_GEMM", 0, 3.0),
            way(ConvLayout::Nchw, "FFT_TILING", 160, 1.5),
        ];
        ways[1].in_use = true;
        let tuning = ConvTuning {
            kind: ConvKind::BackwardFilter,
            params: Conv2dParams {
                batch: 8,
                in_h: 256,
                in_w: 256,
                in_channels: 64,
                out_channels: 64,
                kernel: [3, 3],
                stride: [1, 1],
                padding: [1, 1],
                dilation: [1, 1],
            },
            tf32: false,
            scratch_limit: None,
            calls: 4,
            ways,
        };
        let lines = csv_lines(std::slice::from_ref(&tuning), 2);
        assert_eq!(lines.len(), 2, "a line per way");
        assert_eq!(
            lines[1],
            format!(
                "fp32,backward-filter,8,64,256,256,64,3,3,1,1,2,,nchw,FFT_TILING,8,{},{},1.5,true",
                160 << 20,
                96 << 20
            )
        );
        assert_eq!(lines[0].split(',').count(), CSV_HEADER.split(',').count());
        let text = render(&[tuning], 2, 3.25);
        let row = text
            .lines()
            .find(|l| l.starts_with("backward-filter"))
            .expect("a row per convolution");
        for cell in [
            "64×256×256→64",
            "3×3/1",
            "nchw",
            "FFT_TILING",
            "160.0",
            "96.0",
            "1.500",
        ] {
            assert!(row.contains(cell), "{cell:?} missing from {row:?}");
        }
        // Two calls a step of 1.5 ms: 3 ms predicted.
        assert!(
            text.contains("3.00 ms from those timings, 3.25 ms measured"),
            "{text}"
        );
        // No budget: 2 × 3 ms in NHWC; 256 MiB: 2 × 1.5 ms.
        let budgets: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.contains("budget MiB"))
            .collect();
        assert_eq!(budgets.len(), 3, "{text}");
        assert!(budgets[1].split_whitespace().eq(["0.0", "0.0", "6.00"]));
        assert!(budgets[2].split_whitespace().eq(["256.0", "256.0", "3.00"]));
    }
}
