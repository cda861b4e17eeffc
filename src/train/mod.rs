//! Training: epochs over a data set with validation metrics, progress, checkpoints, a CSV log
//! and a plot.

pub mod history;
pub mod plot;

pub use history::{EpochRecord, History};
pub use plot::plot_history;
