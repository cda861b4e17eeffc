//! Learning-rate schedules by epoch, with the closed forms of PyTorch's `StepLR` and
//! `CosineAnnealingLR`.

use std::f64::consts::PI;

use crate::error::{Error, Result};

/// How the learning rate changes from epoch to epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSchedule {
    /// The base rate throughout.
    Constant,
    /// `base · gamma^⌊epoch / step_size⌋` (PyTorch's `StepLR`).
    Step { step_size: usize, gamma: f32 },
    /// `eta_min + (base − eta_min) · (1 + cos(π · epoch / t_max)) / 2` (PyTorch's
    /// `CosineAnnealingLR`; past `t_max` the cosine continues, as PyTorch's does).
    Cosine { t_max: usize, eta_min: f32 },
}

impl LrSchedule {
    /// Errors on a zero period.
    pub fn validate(&self) -> Result<()> {
        match *self {
            LrSchedule::Step { step_size: 0, .. } | LrSchedule::Cosine { t_max: 0, .. } => Err(
                Error::invalid("lr schedule", "the period must be at least one epoch"),
            ),
            _ => Ok(()),
        }
    }

    /// The learning rate of `epoch` (0-based) for a base rate `base`.
    pub fn lr(&self, base: f32, epoch: usize) -> f32 {
        match *self {
            LrSchedule::Constant => base,
            LrSchedule::Step { step_size, gamma } => {
                base * gamma.powi((epoch / step_size.max(1)) as i32)
            }
            LrSchedule::Cosine { t_max, eta_min } => {
                let phase = PI * epoch as f64 / t_max.max(1) as f64;
                let (base, eta_min) = (base as f64, eta_min as f64);
                (eta_min + (base - eta_min) * (1.0 + phase.cos()) / 2.0) as f32
            }
        }
    }
}
