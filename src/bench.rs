//! Timing the U-Net on a backend: a full training step (forward, cross-entropy, backward, Adam)
//! and inference (evaluation-mode forward), per batch size and arithmetic precision.
//!
//! Each measurement builds the network for its batch size, runs `warmup` untimed steps, then
//! `repeats` timed steps with the backend synchronised before and after each
//! ([`crate::backend::Memory::sync`]), and reports the median. A step includes uploading the
//! batch from host memory, as in training. `magnet bench`, `benches/unet.rs` and
//! `benches/torch_unet.py` (the same model in PyTorch) write the same columns
//! ([`CSV_HEADER`]).

use std::time::Instant;

pub use crate::backend::tuning::{budget_curve, conv_ms_in_use, least_budget, BudgetPoint};

use crate::backend::{Backend, ConvTuning, CpuBackend};
use crate::dist::{Collective, DataParallel, ParallelConfig};
use crate::error::{Error, Result};
use crate::graph::{Executor, Graph, Mode, NodeId, Pass, Profile};
use crate::loss::{self, CrossEntropyConfig};
use crate::models::{UNet, UNetConfig, Upsampling};
use crate::optim::{Adam, AdamConfig, Optimizer};
use crate::tensor::HostTensor;
use crate::verify::random_range;

/// Forward GFLOP per 256×256 RGB image of the 64-channel U-Net (2 classes), counting a
/// multiply-add as two operations; it scales with the pixels and with the square of the width.
pub const FORWARD_GFLOP_256_BASE64: f64 = 96.3;

/// Arithmetic of convolutions and matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Strict IEEE fp32.
    Fp32,
    /// TF32 tensor cores (inputs rounded to 10 mantissa bits, fp32 accumulation).
    Tf32,
}

impl Precision {
    /// `fp32` or `tf32`, as in the output's `mode` column.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
        }
    }

    /// The precision called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "fp32" => Some(Precision::Fp32),
            "tf32" => Some(Precision::Tf32),
            _ => None,
        }
    }
}

/// What is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// Forward (training mode), cross-entropy, backward and one Adam step.
    Train,
    /// Forward in evaluation mode (running batch-norm statistics), no loss.
    Inference,
}

impl Part {
    /// `train` or `inference`, as in the output's `part` column.
    pub fn name(self) -> &'static str {
        match self {
            Part::Train => "train",
            Part::Inference => "inference",
        }
    }

    /// The part called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "train" => Some(Part::Train),
            "inference" => Some(Part::Inference),
            _ => None,
        }
    }

    /// Work relative to one forward: a training step counts as three (forward, and a backward
    /// of about twice its cost).
    pub fn forward_multiple(self) -> f64 {
        match self {
            Part::Train => 3.0,
            Part::Inference => 1.0,
        }
    }
}

/// What to time: the model, the batch sizes, precisions and parts, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchConfig {
    /// Image side (square images); a positive multiple of 16.
    pub size: usize,
    /// Channels of the first level (64: the paper's 31.0 M-parameter U-Net).
    pub base_channels: usize,
    pub in_channels: usize,
    pub classes: usize,
    pub batches: Vec<usize>,
    pub precisions: Vec<Precision>,
    pub parts: Vec<Part>,
    /// Untimed steps before the timed ones (algorithm selection, kernel compilation, caches).
    pub warmup: usize,
    /// Timed steps; the median is reported.
    pub repeats: usize,
    /// Seeds the weights and the random batch.
    pub seed: u64,
}

impl Default for BenchConfig {
    /// The paper's network at 256×256 RGB, 2 classes, batches 1, 8 and 32, fp32 and TF32,
    /// training and inference, 5 warm-up and 20 timed steps.
    fn default() -> Self {
        BenchConfig {
            size: 256,
            base_channels: 64,
            in_channels: 3,
            classes: 2,
            batches: vec![1, 8, 32],
            precisions: vec![Precision::Fp32, Precision::Tf32],
            parts: vec![Part::Train, Part::Inference],
            warmup: 5,
            repeats: 20,
            seed: 0,
        }
    }
}

impl BenchConfig {
    /// Rejects sizes the U-Net cannot take, empty lists, zero batches and no timed steps.
    pub fn validate(&self) -> Result<()> {
        if self.size == 0 || self.size % 16 != 0 {
            return Err(Error::invalid(
                "bench",
                format!("image size {} must be a positive multiple of 16", self.size),
            ));
        }
        if self.base_channels == 0 || self.in_channels == 0 || self.classes == 0 {
            return Err(Error::invalid(
                "bench",
                "channels and classes must be at least 1",
            ));
        }
        if self.batches.is_empty() || self.batches.contains(&0) {
            return Err(Error::invalid(
                "bench",
                format!("batch sizes {:?} must be non-empty and >= 1", self.batches),
            ));
        }
        if self.precisions.is_empty() || self.parts.is_empty() || self.repeats == 0 {
            return Err(Error::invalid(
                "bench",
                "at least one precision, one part and one timed repeat are needed",
            ));
        }
        Ok(())
    }

    /// The U-Net this configuration times.
    pub fn model(&self) -> UNetConfig {
        UNetConfig {
            in_channels: self.in_channels,
            classes: self.classes,
            base_channels: self.base_channels,
            upsampling: Upsampling::Transposed,
        }
    }

    /// Forward GFLOP per image: [`FORWARD_GFLOP_256_BASE64`] scaled by `(size/256)²` and
    /// `(base/64)²`.
    pub fn forward_gflop_per_image(&self) -> f64 {
        let s = self.size as f64 / 256.0;
        let c = self.base_channels as f64 / 64.0;
        FORWARD_GFLOP_256_BASE64 * s * s * c * c
    }

    /// Trainable parameters of the network.
    pub fn parameter_count(&self) -> Result<usize> {
        let mut g = Graph::<CpuBackend>::new();
        UNet::build(&mut g, self.model(), 1, self.size, self.size)?;
        Ok(g.num_trainable())
    }
}

/// How a backend's convolutions and matrix products compute: TF32 or strict fp32, and what
/// strict-fp32 convolutions may allocate.
pub trait PrecisionControl: Backend {
    /// Allows or forbids TF32 arithmetic; `Ok(false)` when the backend has no TF32 mode (the
    /// default), in which case [`Precision::Tf32`] is reported as not applicable.
    fn allow_tf32(&self, allow: bool) -> Result<bool> {
        let _ = allow;
        Ok(false)
    }

    /// Limits the scratch memory of a strict-fp32 convolution call to `operand_multiple` times
    /// its largest operand (`None`: no limit), and never below `floor_bytes` (`None`: the
    /// backend's default); `false` when the backend has no such setting (the default).
    fn limit_fp32_conv_scratch(
        &self,
        operand_multiple: Option<f32>,
        floor_bytes: Option<usize>,
    ) -> bool {
        let _ = (operand_multiple, floor_bytes);
        false
    }

    /// Fits one scratch budget shared by every strict-fp32 convolution of a step, per step
    /// context, to the least whose convolution time is within `slack` of the fastest;
    /// `false` when the backend has no such setting (the default).
    fn fit_fp32_conv_scratch(&self, slack: f32) -> bool {
        let _ = slack;
        false
    }

    /// The budget fitted for the step context that ran last, bytes (`None`: none fitted).
    fn fitted_fp32_conv_scratch(&self) -> Option<u64> {
        None
    }

    /// How each convolution shape called since the last call runs ([`ConvTuning`]), counting
    /// calls afresh, where the backend reports it (CUDA); empty elsewhere (the default).
    fn take_conv_tunings(&self) -> Result<Vec<ConvTuning>> {
        Ok(Vec::new())
    }
}

impl PrecisionControl for CpuBackend {}

#[cfg(feature = "cuda")]
impl PrecisionControl for crate::backend::CudaBackend {
    fn allow_tf32(&self, allow: bool) -> Result<bool> {
        self.set_tf32(allow)?;
        Ok(true)
    }

    fn limit_fp32_conv_scratch(
        &self,
        operand_multiple: Option<f32>,
        floor_bytes: Option<usize>,
    ) -> bool {
        use crate::backend::{ConvScratchLimit, Fp32ConvScratch};
        let default = ConvScratchLimit::default();
        self.set_fp32_conv_scratch(operand_multiple.map_or(
            Fp32ConvScratch::Unlimited,
            |multiple| {
                Fp32ConvScratch::PerCall(ConvScratchLimit {
                    operand_multiple: multiple,
                    floor_bytes: floor_bytes.unwrap_or(default.floor_bytes),
                })
            },
        ));
        true
    }

    fn fit_fp32_conv_scratch(&self, slack: f32) -> bool {
        self.set_fp32_conv_scratch(crate::backend::Fp32ConvScratch::Fitted { slack });
        true
    }

    fn fitted_fp32_conv_scratch(&self) -> Option<u64> {
        crate::backend::CudaBackend::fitted_fp32_conv_scratch(self)
    }

    fn take_conv_tunings(&self) -> Result<Vec<ConvTuning>> {
        crate::backend::CudaBackend::take_conv_tunings(self)
    }
}

#[cfg(feature = "wgpu")]
impl PrecisionControl for crate::backend::WgpuBackend {}

/// One measurement (or why there is none). The fields are the columns of [`CSV_HEADER`].
#[derive(Debug, Clone, PartialEq)]
pub struct BenchRecord {
    /// `magnet` (or `pytorch` in the PyTorch script's output).
    pub engine: String,
    /// The backend's short name (`cpu`, `cuda`, `wgpu`).
    pub backend: String,
    /// The device in words.
    pub device: String,
    pub precision: Precision,
    pub part: Part,
    pub batch: usize,
    pub size: usize,
    pub base_channels: usize,
    pub params: usize,
    /// Median time of one step, when measured.
    pub median_ms: Option<f64>,
    pub images_per_s: Option<f64>,
    /// Achieved TFLOP/s from [`BenchConfig::forward_gflop_per_image`] and
    /// [`Part::forward_multiple`].
    pub tflops: Option<f64>,
    /// Device memory in use at its highest during the timed steps (transient scratch and
    /// workspaces included), less what was in use before the network was built (MiB), when the
    /// backend reports memory.
    pub peak_mem_mib: Option<f64>,
    /// `ok`, `n/a: ...` (not supported by the backend) or `error: ...`.
    pub status: String,
}

/// The columns of the CSV and JSON outputs, shared with `benches/torch_unet.py`.
pub const CSV_HEADER: &str =
    "engine,backend,device,mode,part,batch,size,base,params,median_ms,images_per_s,tflops,peak_mem_mib,status";

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or(String::new(), |v| format!("{v:.decimals$}"))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

impl BenchRecord {
    /// The record as a CSV line in the order of [`CSV_HEADER`] (empty fields for missing values).
    pub fn csv_line(&self) -> String {
        [
            csv_field(&self.engine),
            csv_field(&self.backend),
            csv_field(&self.device),
            self.precision.name().to_string(),
            self.part.name().to_string(),
            self.batch.to_string(),
            self.size.to_string(),
            self.base_channels.to_string(),
            self.params.to_string(),
            opt(self.median_ms, 3),
            opt(self.images_per_s, 2),
            opt(self.tflops, 3),
            opt(self.peak_mem_mib, 1),
            csv_field(&self.status),
        ]
        .join(",")
    }

    /// The record as one JSON object with the keys of [`CSV_HEADER`] (null for missing values).
    pub fn json_line(&self) -> String {
        serde_json::json!({
            "engine": self.engine,
            "backend": self.backend,
            "device": self.device,
            "mode": self.precision.name(),
            "part": self.part.name(),
            "batch": self.batch,
            "size": self.size,
            "base": self.base_channels,
            "params": self.params,
            "median_ms": self.median_ms,
            "images_per_s": self.images_per_s,
            "tflops": self.tflops,
            "peak_mem_mib": self.peak_mem_mib,
            "status": self.status,
        })
        .to_string()
    }
}

/// The header of [`table_row`]'s table.
pub fn table_header() -> String {
    format!(
        "{:9}  {:4}  {:>5}  {:>10}  {:>9}  {:>8}  {:>10}  status",
        "part", "mode", "batch", "median ms", "images/s", "TFLOP/s", "peak MiB"
    )
}

/// One record as a line of the human-readable table.
pub fn table_row(r: &BenchRecord) -> String {
    let cell = |v: Option<f64>, d: usize| v.map_or("-".to_string(), |v| format!("{v:.d$}"));
    format!(
        "{:9}  {:4}  {:>5}  {:>10}  {:>9}  {:>8}  {:>10}  {}",
        r.part.name(),
        r.precision.name(),
        r.batch,
        cell(r.median_ms, 2),
        cell(r.images_per_s, 1),
        cell(r.tflops, 3),
        cell(r.peak_mem_mib, 0),
        r.status
    )
}

/// A network, its loss and optimiser, and a fixed random batch, ready to step.
struct Runner<B: Backend> {
    exec: Executor<B>,
    image: NodeId,
    labels: NodeId,
    loss: NodeId,
    optimizer: Adam<B>,
    images: HostTensor,
    targets: HostTensor,
    /// Gradient averaging when this is one rank of a data-parallel run.
    parallel: Option<DataParallel<B>>,
}

impl<B: Backend> Runner<B> {
    fn new(backend: &B, cfg: &BenchConfig, batch: usize) -> Result<Self> {
        let mut g = Graph::new();
        let net = UNet::build(&mut g, cfg.model(), batch, cfg.size, cfg.size)?;
        let labels = g.input("labels", [batch, cfg.size, cfg.size])?;
        let loss = loss::cross_entropy(&mut g, net.logits, labels, &CrossEntropyConfig::default())?;
        let mut exec = Executor::new(backend.clone(), g, cfg.seed)?;
        // As a training run: values live only as long as the step needs them.
        exec.keep_only(&[loss])?;
        let pixels = batch * cfg.size * cfg.size;
        let images = HostTensor::new(
            [batch, cfg.size, cfg.size, cfg.in_channels],
            random_range(pixels * cfg.in_channels, cfg.seed + 1, 0.0, 1.0),
        )?;
        let classes = cfg.classes as f32;
        let targets = HostTensor::new(
            [batch, cfg.size, cfg.size],
            random_range(pixels, cfg.seed + 2, 0.0, classes - 0.01)
                .into_iter()
                .map(f32::floor)
                .collect(),
        )?;
        Ok(Runner {
            exec,
            image: net.image,
            labels,
            loss,
            // A small rate keeps the random-label training finite over many steps.
            optimizer: Adam::new(AdamConfig::new(1e-4))?,
            images,
            targets,
            parallel: None,
        })
    }

    fn step(&mut self, part: Part) -> Result<()> {
        match part {
            Part::Train => {
                self.exec.forward(
                    &[(self.image, &self.images), (self.labels, &self.targets)],
                    Mode::Train,
                )?;
                match &mut self.parallel {
                    Some(parallel) => parallel.backward(&mut self.exec, self.loss)?,
                    None => self.exec.backward(self.loss)?,
                }
                self.optimizer.step(&mut self.exec)
            }
            Part::Inference => self.exec.forward(&[(self.image, &self.images)], Mode::Eval),
        }
    }
}

/// Where the time and the memory of a training step go (see [`profile_training_step`]).
#[derive(Debug, Clone)]
pub struct StepProfile {
    /// Op times, totals over the profiled steps; the optimiser's update is the op `optimizer`
    /// of pass `update`.
    pub ops: Profile,
    /// Device memory, where the backend reports it.
    pub memory: Option<StepMemory>,
    /// How the profiled steps' convolutions ran, where the backend reports it (calls over
    /// `repeats` steps).
    pub convolutions: Vec<ConvTuning>,
}

/// Device memory of the profiled training steps, in bytes above what was in use before the
/// network was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepMemory {
    /// The highest in use during the profiled steps.
    pub peak: u64,
    /// In use between steps: parameters, gradients, optimiser state and the plan's buffers.
    pub between_steps: u64,
    /// The executor plan's buffers (values, gradients, temporaries; [`Executor::plan_bytes`]).
    pub plan: u64,
}

impl StepMemory {
    /// Parameters, their gradients and the optimiser's state.
    pub fn tensors(&self) -> u64 {
        self.between_steps.saturating_sub(self.plan)
    }

    /// Allocated within a step beyond what stays between steps: workspaces and per-call scratch.
    pub fn within_step(&self) -> u64 {
        self.peak.saturating_sub(self.between_steps)
    }
}

/// Where the time and memory of a training step go at `batch` in `precision`: `cfg.warmup`
/// steps, then `cfg.repeats` steps with every op timed with the backend synchronised around it
/// (see [`Executor::set_profiling`]).
pub fn profile_training_step<B: PrecisionControl>(
    backend: &B,
    cfg: &BenchConfig,
    batch: usize,
    precision: Precision,
) -> Result<StepProfile> {
    cfg.validate()?;
    if !backend.allow_tf32(precision == Precision::Tf32)? && precision == Precision::Tf32 {
        return Err(Error::invalid(
            "bench",
            format!("the {} backend has no TF32 mode", backend.name()),
        ));
    }
    backend.sync()?;
    let before = backend.memory_in_use();
    let mut runner = Runner::new(backend, cfg, batch)?;
    for _ in 0..cfg.warmup {
        runner.step(Part::Train)?;
    }
    backend.sync()?;
    let between_steps = backend.memory_in_use();
    backend.reset_memory_peak();
    // Counts the profiled steps' convolution calls only.
    backend.take_conv_tunings()?;
    runner.exec.set_profiling(true);
    let mut update = std::time::Duration::ZERO;
    for _ in 0..cfg.repeats {
        runner.exec.forward(
            &[
                (runner.image, &runner.images),
                (runner.labels, &runner.targets),
            ],
            Mode::Train,
        )?;
        runner.exec.backward(runner.loss)?;
        backend.sync()?;
        let start = Instant::now();
        runner.optimizer.step(&mut runner.exec)?;
        backend.sync()?;
        update += start.elapsed();
    }
    let convolutions = backend.take_conv_tunings()?;
    let mut ops = runner.exec.take_profile();
    ops.add("optimizer", Pass::Update, cfg.repeats as u64, update);
    let memory = match (before, between_steps, backend.memory_peak()) {
        (Some(before), Some(between), Some(peak)) => Some(StepMemory {
            peak: peak.saturating_sub(before),
            between_steps: between.saturating_sub(before),
            plan: runner.exec.plan_bytes(),
        }),
        _ => None,
    };
    backend.allow_tf32(false)?;
    Ok(StepProfile {
        ops,
        memory,
        convolutions,
    })
}

/// Median of the timed steps (ms), the highest device memory in use during them and the
/// strict-fp32 convolutions' fitted scratch budget, bytes, where there is one.
struct Timing {
    median_ms: f64,
    peak_bytes: Option<u64>,
    budget: Option<u64>,
}

/// Runs `cfg.warmup` steps (the first tunes convolution algorithms), then times `cfg.repeats`
/// steps; the memory peak covers the timed steps only, what a run needs after its first steps.
fn time_steps<B: PrecisionControl>(
    runner: &mut Runner<B>,
    part: Part,
    cfg: &BenchConfig,
) -> Result<Timing> {
    let b = runner.exec.backend().clone();
    for _ in 0..cfg.warmup {
        runner.step(part)?;
    }
    b.sync()?;
    b.reset_memory_peak();
    let mut times = Vec::with_capacity(cfg.repeats);
    for _ in 0..cfg.repeats {
        b.sync()?;
        let start = Instant::now();
        runner.step(part)?;
        b.sync()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(Timing {
        median_ms: times[times.len() / 2],
        peak_bytes: b.memory_peak(),
        budget: b.fitted_fp32_conv_scratch(),
    })
}

/// Times every (batch, part, precision) of `cfg` on `backend`, calling `on_record` as each
/// record is made, and returns them all. A configuration that fails (out of memory, a size the
/// backend cannot take) or a precision the backend lacks becomes a record with that status; only
/// an invalid `cfg` is an error. Leaves the backend in strict fp32.
pub fn run<B: PrecisionControl>(
    backend: &B,
    cfg: &BenchConfig,
    on_record: impl FnMut(&BenchRecord),
) -> Result<Vec<BenchRecord>> {
    run_with(backend, cfg, None, on_record)
}

/// As [`run`], as one rank of a data-parallel run over `collective` (every rank calls it with
/// the same `cfg`): training steps average their gradients over the ranks, `batch` is per rank,
/// and images/s and TFLOP/s count the images of every rank. Only training is timed; inference
/// records say so.
pub fn run_data_parallel<B: PrecisionControl>(
    backend: &B,
    cfg: &BenchConfig,
    collective: Box<dyn Collective<B>>,
    on_record: impl FnMut(&BenchRecord),
) -> Result<Vec<BenchRecord>> {
    run_with(backend, cfg, Some(collective), on_record)
}

fn run_with<B: PrecisionControl>(
    backend: &B,
    cfg: &BenchConfig,
    mut collective: Option<Box<dyn Collective<B>>>,
    mut on_record: impl FnMut(&BenchRecord),
) -> Result<Vec<BenchRecord>> {
    cfg.validate()?;
    let params = cfg.parameter_count()?;
    let ranks = collective.as_ref().map_or(1, |c| c.world_size());
    let device = match ranks {
        1 => backend.device_name(),
        n => format!("{n} × {} (NCCL data parallel)", backend.device_name()),
    };
    let mut records = Vec::new();
    for &batch in &cfg.batches {
        for &part in &cfg.parts {
            let record = |precision: Precision, status: String| BenchRecord {
                engine: "magnet".to_string(),
                backend: backend.name().to_string(),
                device: device.clone(),
                precision,
                part,
                batch,
                size: cfg.size,
                base_channels: cfg.base_channels,
                params,
                median_ms: None,
                images_per_s: None,
                tflops: None,
                peak_mem_mib: None,
                status,
            };
            backend.sync()?;
            let baseline = backend.memory_in_use();
            if ranks > 1 && part == Part::Inference {
                for &precision in &cfg.precisions {
                    let r = record(
                        precision,
                        "n/a: data-parallel runs time training only".to_string(),
                    );
                    on_record(&r);
                    records.push(r);
                }
                continue;
            }
            let mut runner = Runner::new(backend, cfg, batch).and_then(|mut runner| {
                if let Some(c) = collective.take() {
                    runner.parallel = Some(DataParallel::new(
                        c,
                        &mut runner.exec,
                        ParallelConfig::default(),
                    )?);
                }
                Ok(runner)
            });
            for &precision in &cfg.precisions {
                let r = match &mut runner {
                    Err(e) => record(precision, format!("error: {e}")),
                    Ok(runner) => match backend.allow_tf32(precision == Precision::Tf32) {
                        Ok(false) if precision == Precision::Tf32 => record(
                            precision,
                            format!("n/a: the {} backend has no TF32 mode", backend.name()),
                        ),
                        Err(e) => record(precision, format!("error: {e}")),
                        Ok(_) => match time_steps(runner, part, cfg) {
                            Err(e) => record(precision, format!("error: {e}")),
                            Ok(t) => {
                                let seconds = t.median_ms / 1e3;
                                let images = (batch * ranks) as f64;
                                let flop = cfg.forward_gflop_per_image()
                                    * 1e9
                                    * part.forward_multiple()
                                    * images;
                                let peak = t
                                    .peak_bytes
                                    .map(|p| p.saturating_sub(baseline.unwrap_or(0)));
                                BenchRecord {
                                    median_ms: Some(t.median_ms),
                                    images_per_s: Some(images / seconds),
                                    tflops: Some(flop / seconds / 1e12),
                                    peak_mem_mib: peak.map(mib),
                                    ..record(precision, ok_status(precision, t.budget))
                                }
                            }
                        },
                    },
                };
                on_record(&r);
                records.push(r);
            }
            if let Ok(runner) = runner {
                collective = collective.or(runner.parallel.map(DataParallel::into_collective));
            }
        }
    }
    backend.allow_tf32(false)?;
    Ok(records)
}

/// `bytes` in MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// `ok`, naming the strict-fp32 convolutions' scratch budget where one was fitted.
fn ok_status(precision: Precision, budget: Option<u64>) -> String {
    match budget {
        Some(bytes) if precision == Precision::Fp32 => format!(
            "ok; fp32 convolution scratch fitted to {:.0} MiB",
            mib(bytes)
        ),
        _ => "ok".to_string(),
    }
}
