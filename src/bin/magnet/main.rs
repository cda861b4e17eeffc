//! The `magnet` command line: train, evaluate and apply segmentation models.

mod backend;
mod bench;
mod conv_report;
mod datasets;
mod eval;
mod export;
mod info;
mod predict;
mod train;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// magnet: image segmentation with U-Nets on the CPU, CUDA and WGSL backends.
#[derive(Parser)]
#[command(name = "magnet", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a U-Net (on the built-in synthetic shapes when no data is given).
    Train(train::TrainArgs),
    /// Evaluate a checkpoint: IoU, Dice and pixel accuracy.
    Eval(eval::EvalArgs),
    /// Write mask PNGs and colour overlays (or HDF5 logits) for images.
    Predict(predict::PredictArgs),
    /// Pack a segmentation data set into one HDF5 file.
    ExportData(export::ExportArgs),
    /// Backends and devices available on this machine.
    Info,
    /// Time U-Net training steps and inference on a backend.
    Bench(bench::BenchArgs),
    /// Check every backend primitive on every backend of this machine against the CPU.
    Verify,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Predict(args) => predict::run(args),
        Command::ExportData(args) => export::run(args),
        Command::Info => info::run(),
        Command::Bench(args) => bench::run(args),
        Command::Verify => verify::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
