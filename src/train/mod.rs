//! Training: epochs over a data set with validation metrics, progress, checkpoints, a CSV log
//! and a plot.

pub mod config;
pub mod history;
pub mod plot;
pub mod trainer;

pub use config::{LossKind, OptimizerKind, TrainConfig};
pub use history::{EpochRecord, History};
pub use plot::plot_history;
pub use trainer::{Evaluation, Trainer};
