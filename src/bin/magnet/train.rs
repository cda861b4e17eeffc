//! `magnet train`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use magnet::backend::Backend;
use magnet::models::{Architecture, UNetConfig, Upsampling};
use magnet::optim::LrSchedule;
use magnet::train::{LossKind, OptimizerKind, TrainConfig, Trainer};
use magnet::Result;

use magnet::dist::DistEnv;

use crate::backend::{with_backend, BackendChoice};
use crate::datasets::{DataArgs, Opened};

#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, default_value_t = 8)]
    pub epochs: usize,
    #[arg(long, value_enum, default_value = "adam")]
    pub optimizer: OptimizerArg,
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f32,
    /// SGD momentum.
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f32,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    #[arg(long, value_enum, default_value = "constant")]
    pub schedule: ScheduleArg,
    #[arg(long, value_enum, default_value = "ce")]
    pub loss: LossArg,
    /// Focal loss γ.
    #[arg(long, default_value_t = 2.0)]
    pub gamma: f32,
    #[arg(long, value_enum, default_value = "unet")]
    pub arch: ArchArg,
    #[arg(long, value_enum, default_value = "transposed")]
    pub upsampling: UpsamplingArg,
    /// Channels of the first level (64 is the paper's 31 M-parameter U-Net).
    #[arg(long, default_value_t = 16)]
    pub base_channels: usize,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendChoice,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Fraction of the data held out for validation (ISBI and synthetic data have their own).
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Random flips of the training images.
    #[arg(long)]
    pub augment: bool,
    /// Folder for checkpoints (best.h5, last.h5), log.csv and curves.png.
    #[arg(long, default_value = "runs/latest")]
    pub out: PathBuf,
    /// Start from these weights (a magnet checkpoint or one converted from PyTorch).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Continue the run saved in this checkpoint (weights, optimiser state, epoch).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Data-parallel training on this many GPUs of this machine (one process each, NCCL;
    /// `--batch` is per GPU). Across machines, start one process per GPU with torchrun's
    /// variables instead (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT).
    #[arg(long, default_value_t = 1)]
    pub gpus: usize,
    /// In data-parallel training, normalise batch norm with the statistics of all GPUs' batches
    /// (PyTorch's SyncBatchNorm) instead of each GPU's own.
    #[arg(long)]
    pub sync_bn: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    Sgd,
    Nesterov,
    Adam,
    Adamw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScheduleArg {
    Constant,
    /// Halve the rate every third of the run.
    Step,
    Cosine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LossArg {
    Ce,
    Focal,
    Dice,
    CeDice,
    /// Cross-entropy weighted by the distance to the object.
    Distance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    Unet,
    Resunet,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum UpsamplingArg {
    Transposed,
    Bilinear,
}

impl TrainArgs {
    fn config(&self, opened: &Opened) -> TrainConfig {
        let optimizer = match self.optimizer {
            OptimizerArg::Sgd => OptimizerKind::Sgd {
                momentum: self.momentum,
                nesterov: false,
            },
            OptimizerArg::Nesterov => OptimizerKind::Sgd {
                momentum: self.momentum,
                nesterov: true,
            },
            OptimizerArg::Adam => OptimizerKind::Adam,
            OptimizerArg::Adamw => OptimizerKind::AdamW,
        };
        let schedule = match self.schedule {
            ScheduleArg::Constant => LrSchedule::Constant,
            ScheduleArg::Step => LrSchedule::Step {
                step_size: self.epochs.div_ceil(3),
                gamma: 0.5,
            },
            ScheduleArg::Cosine => LrSchedule::Cosine {
                t_max: self.epochs,
                eta_min: 0.0,
            },
        };
        let loss = match self.loss {
            LossArg::Ce => LossKind::CrossEntropy,
            LossArg::Focal => LossKind::Focal { gamma: self.gamma },
            LossArg::Dice => LossKind::Dice,
            LossArg::CeDice => LossKind::CrossEntropyDice,
            LossArg::Distance => LossKind::DistanceAware,
        };
        TrainConfig {
            arch: match self.arch {
                ArchArg::Unet => Architecture::UNet,
                ArchArg::Resunet => Architecture::ResUNet,
            },
            model: UNetConfig {
                in_channels: opened.channels,
                classes: opened.classes,
                base_channels: self.base_channels,
                upsampling: match self.upsampling {
                    UpsamplingArg::Transposed => Upsampling::Transposed,
                    UpsamplingArg::Bilinear => Upsampling::Bilinear,
                },
            },
            epochs: self.epochs,
            batch_size: self.batch,
            optimizer,
            lr: self.lr,
            weight_decay: self.weight_decay,
            schedule,
            loss,
            ignore_index: Some(magnet::data::IGNORE_INDEX as usize),
            seed: self.seed,
            out_dir: Some(self.out.clone()),
            progress: true,
        }
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    let dist = DistEnv::from_env()?;
    if dist.is_none() && args.gpus > 1 {
        // This process only starts and watches the workers, which see the variables and train.
        let forwarded: Vec<String> = std::env::args().skip(1).collect();
        return magnet::dist::launch::run_workers(args.gpus, &forwarded);
    }
    let opened = args.data.open(args.val_fraction, args.seed, args.augment)?;
    let mut config = args.config(&opened);
    if let Some(env) = dist {
        config.progress = env.rank == 0;
        return train_distributed(&args, config, opened, &env);
    }
    println!(
        "{} ({} classes, {} channels): {} training / {} validation images at {}×{}",
        args.data.data,
        opened.classes,
        opened.channels,
        opened.train.len(),
        opened.validation.len(),
        args.data.size,
        args.data.size
    );
    with_backend!(args.backend, |backend| train_on(
        backend, &args, config, opened
    ))
}

/// One rank of a data-parallel run on the GPU `LOCAL_RANK`.
#[cfg(feature = "cuda")]
fn train_distributed(
    args: &TrainArgs,
    config: TrainConfig,
    opened: Opened,
    env: &DistEnv,
) -> Result<()> {
    use magnet::dist::ParallelConfig;
    let (backend, collective) = crate::backend::open_rank("train", args.backend, env)?;
    if env.rank == 0 {
        println!(
            "data parallel: {} ranks, batch {} per rank ({} in all)",
            env.world_size,
            config.batch_size,
            config.batch_size * env.world_size
        );
    }
    let mut trainer = prepare(backend, args, config)?;
    let parallel = ParallelConfig {
        sync_batch_norm: args.sync_bn,
        ..ParallelConfig::default()
    };
    trainer.distribute(Box::new(collective), parallel)?;
    fit(trainer, args, opened)
}

#[cfg(not(feature = "cuda"))]
fn train_distributed(_: &TrainArgs, _: TrainConfig, _: Opened, _: &DistEnv) -> Result<()> {
    Err(crate::backend::no_nccl())
}

/// The trainer with the weights or the run to continue loaded.
fn prepare<B: Backend>(backend: B, args: &TrainArgs, config: TrainConfig) -> Result<Trainer<B>> {
    let size = args.data.size;
    let mut trainer = Trainer::new(backend, config, size, size)?;
    if let Some(path) = &args.weights {
        load_weights(&mut trainer, path)?;
    }
    if let Some(path) = &args.resume {
        resume(&mut trainer, path)?;
    }
    Ok(trainer)
}

fn train_on<B: Backend>(
    backend: B,
    args: &TrainArgs,
    config: TrainConfig,
    opened: Opened,
) -> Result<()> {
    fit(prepare(backend, args, config)?, args, opened)
}

/// Trains, printing each epoch (rank 0 only in a data-parallel run).
fn fit<B: Backend>(mut trainer: Trainer<B>, args: &TrainArgs, opened: Opened) -> Result<()> {
    let device = trainer.executor().backend().device_name();
    let quiet = trainer.rank().0 != 0;
    let params = trainer.executor().graph().num_trainable();
    let c = trainer.config();
    if !quiet {
        println!(
        "{} with {params} parameters on {device}; {} lr {} ({:?}), loss {}, batch {}, {} epochs",
        c.arch.name(),
        c.optimizer.name(),
        c.lr,
        c.schedule,
        c.loss.name(),
        c.batch_size,
        c.epochs
    );
        println!("epoch  train loss  val loss  mIoU   Dice   pixel acc  mIoU/image  img/s");
    }
    let history = trainer.fit(opened.train, opened.validation, |r| {
        if quiet {
            return;
        }
        println!(
            "{:5}  {:10.4}  {:8.4}  {:.3}  {:.3}  {:9.3}  {:10.3}  {:5.1}",
            r.epoch,
            r.train_loss,
            r.val_loss,
            r.val_miou,
            r.val_dice,
            r.val_pixel_accuracy,
            r.val_miou_per_image,
            r.images_per_second
        )
    })?;
    if let Some(best) = history.best().filter(|_| !quiet) {
        println!(
            "best validation mIoU {:.3} (epoch {}); checkpoints, log.csv and curves.png in {}",
            best.val_miou,
            best.epoch,
            args.out.display()
        );
    }
    Ok(())
}

#[cfg(feature = "hdf5")]
fn load_weights<B: Backend>(trainer: &mut Trainer<B>, path: &std::path::Path) -> Result<()> {
    trainer.load_weights(path)
}

#[cfg(feature = "hdf5")]
fn resume<B: Backend>(trainer: &mut Trainer<B>, path: &std::path::Path) -> Result<()> {
    trainer.resume(path)
}

#[cfg(not(feature = "hdf5"))]
fn load_weights<B: Backend>(_: &mut Trainer<B>, path: &std::path::Path) -> Result<()> {
    Err(magnet::Error::data(
        path,
        "this build has no HDF5 support; rebuild with the `hdf5` feature",
    ))
}

#[cfg(not(feature = "hdf5"))]
fn resume<B: Backend>(trainer: &mut Trainer<B>, path: &std::path::Path) -> Result<()> {
    load_weights(trainer, path)
}
