//! `magnet bench`: times U-Net training steps and inference on a backend.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use magnet::bench::{self, mib, BenchConfig, BenchRecord, Part, Precision, PrecisionControl};
use magnet::dist::{Collective, DistEnv};
use magnet::{Error, Result};

use crate::backend::{with_backend, BackendChoice};
use crate::conv_report;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendChoice,
    /// Image side in pixels (a multiple of 16).
    #[arg(long, default_value_t = 256)]
    pub size: usize,
    /// Channels of the first level (64 is the paper's 31 M-parameter U-Net).
    #[arg(long, default_value_t = 64)]
    pub base: usize,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub batches: Vec<usize>,
    /// Precisions, comma-separated: fp32 (strict), tf32 (where the backend has it).
    #[arg(long, value_delimiter = ',', default_value = "fp32,tf32")]
    pub modes: Vec<String>,
    /// What to time, comma-separated: train (forward, loss, backward, Adam), inference.
    #[arg(long, value_delimiter = ',', default_value = "train,inference")]
    pub parts: Vec<String>,
    /// Untimed steps before timing.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Timed steps; the median is reported.
    #[arg(long, default_value_t = 20)]
    pub repeats: usize,
    /// Print one JSON object per measurement instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write the measurements to this CSV file.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Time data-parallel training on this many GPUs of this machine (one process each, NCCL;
    /// the batch sizes are per GPU). Rank 0 prints and writes.
    #[arg(long, default_value_t = 1)]
    pub gpus: usize,
    /// How much a strict-fp32 convolution may allocate while it runs (workspace and NCHW
    /// copies), as a multiple of its largest operand, or `none` for whatever its fastest
    /// algorithm needs (CUDA only; default: a budget per step fitted with slack 0.1, see
    /// --fp32-conv-scratch-fit).
    #[arg(long, value_parser = parse_scratch_limit)]
    pub fp32_conv_scratch: Option<ScratchLimit>,
    /// The least that the scratch limit allows any convolution, MiB (CUDA only; default 64;
    /// alone, it sets a limit of one largest operand).
    #[arg(long)]
    pub fp32_conv_scratch_floor: Option<usize>,
    /// Fit one scratch budget shared by every strict-fp32 convolution of a step, per
    /// measurement: the least whose convolution time, predicted from the first warm-up step's
    /// timings, is within this fraction (e.g. 0.1) of the fastest (CUDA only; at least 2
    /// warm-up steps: the second tunes within the budget).
    #[arg(long, conflicts_with_all = ["fp32_conv_scratch", "fp32_conv_scratch_floor"])]
    pub fp32_conv_scratch_fit: Option<f32>,
    /// Instead of timing whole steps, time every op of the training step (the backend
    /// synchronised around each) and print where the time goes, per batch size and mode.
    #[arg(long)]
    pub profile: bool,
    /// With --profile: write every way each convolution shape timed (CSV, one row per way, for
    /// every batch size and mode) to this file (CUDA only).
    #[arg(long, requires = "profile")]
    pub conv_report: Option<PathBuf>,
}

/// `--fp32-conv-scratch`: a multiple of the largest operand, or no limit (`None`).
#[derive(Debug, Clone, Copy)]
pub struct ScratchLimit(Option<f32>);

fn parse_scratch_limit(text: &str) -> std::result::Result<ScratchLimit, String> {
    if text == "none" {
        return Ok(ScratchLimit(None));
    }
    match text.parse::<f32>() {
        Ok(multiple) if multiple.is_finite() && multiple >= 0.0 => Ok(ScratchLimit(Some(multiple))),
        _ => Err(format!(
            "{text:?} is neither a multiple (a number ≥ 0) nor `none`"
        )),
    }
}

impl BenchArgs {
    /// Applies the backend settings of the command line to `backend`.
    fn configure<B: PrecisionControl>(&self, backend: &B) -> Result<()> {
        let applied = if let Some(slack) = self.fp32_conv_scratch_fit {
            Some((
                "--fp32-conv-scratch-fit",
                backend.fit_fp32_conv_scratch(slack),
            ))
        } else if self.fp32_conv_scratch.is_some() || self.fp32_conv_scratch_floor.is_some() {
            let multiple = self
                .fp32_conv_scratch
                .map_or(Some(1.0), |ScratchLimit(m)| m);
            let floor = self.fp32_conv_scratch_floor.map(|mib| mib << 20);
            Some((
                "--fp32-conv-scratch",
                backend.limit_fp32_conv_scratch(multiple, floor),
            ))
        } else {
            None
        };
        match applied {
            Some((flag, false)) => Err(Error::invalid(
                "bench",
                format!("{flag} does not apply to the {} backend", backend.name()),
            )),
            _ => Ok(()),
        }
    }

    fn config(&self) -> Result<BenchConfig> {
        let precisions = self
            .modes
            .iter()
            .map(|m| {
                Precision::from_name(m).ok_or_else(|| {
                    Error::invalid("bench", format!("unknown mode {m:?} (fp32, tf32)"))
                })
            })
            .collect::<Result<_>>()?;
        let parts = self
            .parts
            .iter()
            .map(|p| {
                Part::from_name(p).ok_or_else(|| {
                    Error::invalid("bench", format!("unknown part {p:?} (train, inference)"))
                })
            })
            .collect::<Result<_>>()?;
        let cfg = BenchConfig {
            size: self.size,
            base_channels: self.base,
            batches: self.batches.clone(),
            precisions,
            parts,
            warmup: self.warmup,
            repeats: self.repeats,
            ..BenchConfig::default()
        };
        cfg.validate()?;
        if let Some(slack) = self.fp32_conv_scratch_fit {
            if !(slack.is_finite() && slack >= 0.0) || self.warmup < 2 {
                return Err(Error::invalid(
                    "bench",
                    format!(
                        "--fp32-conv-scratch-fit needs a slack ≥ 0 (got {slack}) and at least 2 \
                         warm-up steps (got {}): the first times every way, the second tunes \
                         within the budget",
                        self.warmup
                    ),
                ));
            }
        }
        Ok(cfg)
    }
}

pub fn run(args: BenchArgs) -> Result<()> {
    let cfg = args.config()?;
    let dist = DistEnv::from_env()?;
    if dist.is_none() && args.gpus > 1 {
        let forwarded: Vec<String> = std::env::args().skip(1).collect();
        return magnet::dist::launch::run_workers(args.gpus, &forwarded);
    }
    if let Some(env) = dist {
        return bench_distributed(&args, &cfg, &env);
    }
    if args.profile {
        return with_backend!(args.backend, |backend| {
            args.configure(&backend)?;
            profile_on(&backend, &cfg, args.conv_report.as_deref())
        });
    }
    with_backend!(args.backend, |backend| bench_on(
        &backend, &args, &cfg, None
    ))
}

/// Prints the op times of a training step for every batch size and mode of `cfg`, and writes
/// the convolutions' ways to `conv_report` where given.
fn profile_on<B: PrecisionControl>(
    backend: &B,
    cfg: &BenchConfig,
    conv_report: Option<&Path>,
) -> Result<()> {
    let mut ways_csv = format!("{}\n", conv_report::CSV_HEADER);
    for &batch in &cfg.batches {
        for &precision in &cfg.precisions {
            let step = bench::profile_training_step(backend, cfg, batch, precision)?;
            let profile = step.ops;
            let steps = cfg.repeats as f64;
            let total = profile.total_seconds();
            println!(
                "\n{} on {}, U-Net base {} at {}², batch {batch}, {}: {:.2} ms per step \
                 (ops timed one by one)",
                backend.name(),
                backend.device_name(),
                cfg.base_channels,
                cfg.size,
                precision.name(),
                total / steps * 1e3
            );
            println!(
                "{:<22} {:<8} {:>7} {:>10} {:>6}",
                "op", "pass", "calls", "ms/step", "share"
            );
            for row in profile.rows() {
                println!(
                    "{:<22} {:<8} {:>7.0} {:>10.3} {:>5.1}%",
                    row.op,
                    row.pass.name(),
                    row.calls as f64 / steps,
                    row.seconds / steps * 1e3,
                    100.0 * row.seconds / total.max(1e-12)
                );
            }
            if let Some(m) = step.memory {
                println!(
                    "memory, MiB: peak {:.0} = {:.0} between steps ({:.0} the executor's plan, \
                     {:.0} parameters, gradients and optimiser state) + {:.0} within a step \
                     (workspaces, per-call scratch)",
                    mib(m.peak),
                    mib(m.between_steps),
                    mib(m.plan),
                    mib(m.tensors()),
                    mib(m.within_step())
                );
            }
            let convolution_seconds: f64 = profile
                .rows()
                .iter()
                .filter(|r| matches!(r.op, "conv2d" | "conv_transpose2d"))
                .map(|r| r.seconds)
                .sum();
            let report = conv_report::render(
                &step.convolutions,
                cfg.repeats as u64,
                convolution_seconds / steps * 1e3,
            );
            if !report.is_empty() {
                println!("{report}");
            }
            for line in conv_report::csv_lines(&step.convolutions, cfg.repeats as u64) {
                ways_csv.push_str(&line);
                ways_csv.push('\n');
            }
        }
    }
    if let Some(path) = conv_report {
        if ways_csv.lines().count() < 2 {
            return Err(Error::invalid(
                "bench",
                format!(
                    "--conv-report: the {} backend reports no convolution tunings",
                    backend.name()
                ),
            ));
        }
        magnet::io::atomic::write_bytes(path, ways_csv.as_bytes())?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// One rank of a data-parallel benchmark on the GPU `LOCAL_RANK`.
#[cfg(feature = "cuda")]
fn bench_distributed(args: &BenchArgs, cfg: &BenchConfig, env: &DistEnv) -> Result<()> {
    let (backend, collective) = crate::backend::open_rank("bench", args.backend, env)?;
    bench_on(&backend, args, cfg, Some(Box::new(collective)))
}

#[cfg(not(feature = "cuda"))]
fn bench_distributed(_: &BenchArgs, _: &BenchConfig, _: &DistEnv) -> Result<()> {
    Err(crate::backend::no_nccl())
}

fn bench_on<B: PrecisionControl>(
    backend: &B,
    args: &BenchArgs,
    cfg: &BenchConfig,
    collective: Option<Box<dyn Collective<B>>>,
) -> Result<()> {
    args.configure(backend)?;
    // In a data-parallel run only rank 0 reports.
    let quiet = collective.as_ref().is_some_and(|c| c.rank() != 0);
    if !args.json && !quiet {
        println!(
            "U-Net base {}, {}×{}×{} → {} classes, {:.1} M parameters, {:.1} GFLOP forward per image",
            cfg.base_channels,
            cfg.size,
            cfg.size,
            cfg.in_channels,
            cfg.classes,
            cfg.parameter_count()? as f64 / 1e6,
            cfg.forward_gflop_per_image()
        );
        println!(
            "{} on {}; {} warm-up steps, median of {}",
            backend.name(),
            backend.device_name(),
            cfg.warmup,
            cfg.repeats
        );
        println!("{}", bench::table_header());
    }
    let json = args.json;
    let print = |r: &BenchRecord| {
        if quiet {
            return;
        }
        if json {
            println!("{}", r.json_line());
        } else {
            println!("{}", bench::table_row(r));
        }
        // Rows appear as they are measured, even through a pipe.
        let _ = std::io::stdout().flush();
    };
    let records = match collective {
        Some(c) => bench::run_data_parallel(backend, cfg, c, print)?,
        None => bench::run(backend, cfg, print)?,
    };
    if let Some(path) = args.output.as_ref().filter(|_| !quiet) {
        let mut text = format!("{}\n", bench::CSV_HEADER);
        for r in &records {
            text.push_str(&r.csv_line());
            text.push('\n');
        }
        magnet::io::atomic::write_bytes(path, text.as_bytes())?;
        if !json {
            println!("wrote {}", path.display());
        }
    }
    Ok(())
}
