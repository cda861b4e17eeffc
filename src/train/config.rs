//! What a training run is: model, optimiser, loss, schedule and bookkeeping.

use std::path::PathBuf;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::loss::{self, CrossEntropyConfig, DiceConfig, DistanceWeightConfig};
use crate::models::{Architecture, UNetConfig};
use crate::optim::{Adam, AdamConfig, LrSchedule, Optimizer, Sgd, SgdConfig};

/// The optimiser and its hyper-parameters (PyTorch's defaults where not given).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerKind {
    /// SGD with this momentum (0 for plain SGD) and optional Nesterov.
    Sgd {
        momentum: f32,
        nesterov: bool,
    },
    Adam,
    /// Adam with decoupled weight decay.
    AdamW,
}

impl OptimizerKind {
    /// The name used on the command line and in checkpoints.
    pub fn name(&self) -> &'static str {
        match self {
            OptimizerKind::Sgd { .. } => "sgd",
            OptimizerKind::Adam => "adam",
            OptimizerKind::AdamW => "adamw",
        }
    }

    /// A new optimiser of this kind.
    pub fn build<B: Backend>(&self, lr: f32, weight_decay: f32) -> Result<Box<dyn Optimizer<B>>> {
        Ok(match *self {
            OptimizerKind::Sgd { momentum, nesterov } => {
                let cfg = SgdConfig::new(lr)
                    .momentum(momentum)
                    .nesterov(nesterov)
                    .weight_decay(weight_decay);
                Box::new(Sgd::new(cfg)?)
            }
            OptimizerKind::Adam => {
                Box::new(Adam::new(AdamConfig::new(lr).weight_decay(weight_decay))?)
            }
            OptimizerKind::AdamW => {
                Box::new(Adam::new(AdamConfig::adamw(lr).weight_decay(weight_decay))?)
            }
        })
    }
}

/// The training loss of a segmentation model (all pixel-wise over NHWC logits).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossKind {
    CrossEntropy,
    /// Focal loss with this γ.
    Focal {
        gamma: f32,
    },
    /// Soft Dice over the classes.
    Dice,
    /// Cross-entropy plus soft Dice.
    CrossEntropyDice,
    /// Cross-entropy weighted by the distance to the object ([`loss::DistanceWeightConfig`]).
    DistanceAware,
}

impl LossKind {
    /// The name used on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            LossKind::CrossEntropy => "ce",
            LossKind::Focal { .. } => "focal",
            LossKind::Dice => "dice",
            LossKind::CrossEntropyDice => "ce+dice",
            LossKind::DistanceAware => "distance",
        }
    }

    /// Adds this loss of `logits` against `labels` to `g`.
    pub fn build<B: Backend>(
        &self,
        g: &mut Graph<B>,
        logits: NodeId,
        labels: NodeId,
        ignore_index: Option<usize>,
    ) -> Result<NodeId> {
        let ce = CrossEntropyConfig {
            ignore_index,
            ..Default::default()
        };
        let dice = DiceConfig {
            ignore_index,
            ..Default::default()
        };
        match *self {
            LossKind::CrossEntropy => loss::cross_entropy(g, logits, labels, &ce),
            LossKind::Focal { gamma } => loss::focal_loss(g, logits, labels, gamma, &ce),
            LossKind::Dice => loss::soft_dice(g, logits, labels, &dice),
            LossKind::CrossEntropyDice => {
                loss::cross_entropy_plus_dice(g, logits, labels, &ce, &dice, 1.0)
            }
            LossKind::DistanceAware => loss::distance_weighted_cross_entropy(
                g,
                logits,
                labels,
                &DistanceWeightConfig::default(),
                &ce,
            ),
        }
    }
}

/// A training run's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    pub arch: Architecture,
    pub model: UNetConfig,
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimizerKind,
    /// Base learning rate (the schedule scales it per epoch).
    pub lr: f32,
    pub weight_decay: f32,
    pub schedule: LrSchedule,
    pub loss: LossKind,
    /// Label value of pixels that count for nothing (loss and metrics).
    pub ignore_index: Option<usize>,
    /// Seeds initialisation, shuffling, augmentation and dropout.
    pub seed: u64,
    /// Where checkpoints (`best.h5`, `last.h5`), `log.csv` and `curves.png` go; `None` keeps
    /// nothing on disk.
    pub out_dir: Option<PathBuf>,
    /// Draw a progress bar on standard error.
    pub progress: bool,
}

impl TrainConfig {
    /// Rejects empty runs and invalid schedules.
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 || self.batch_size == 0 {
            return Err(Error::invalid(
                "train",
                "epochs and batch size must be at least 1",
            ));
        }
        if self.lr.is_nan() || self.lr <= 0.0 {
            return Err(Error::invalid(
                "train",
                format!("learning rate {} must be > 0", self.lr),
            ));
        }
        self.schedule.validate()
    }
}
