//! The U-Net paper's experiment: a U-Net trained on the ISBI 2012 EM slices (0–23 train, 24–29
//! test; membranes are class 1), once with Adam and once with SGD + momentum from the same initial
//! weights, scored on the test slices after a third, two thirds and all of the epochs.
//!
//! ```text
//! cargo run --release --example isbi_experiment                      # CPU size: 128×128, base 16
//! cargo build --release --example isbi_experiment --features cuda    # full size on a GPU:
//! target/release/examples/isbi_experiment --backend cuda --size 512 --base 64 --batch 1 --epochs 30
//! ```
//!
//! The data is read from `--data`, else `$MAGNET_DATA_DIR/isbi2012-em`, else
//! `../shared/data/isbi2012-em` beside the crate (or the current directory). Slices (512×512) are
//! resized to `--size` (images with a linear filter, masks by nearest neighbour; nothing changes
//! at 512); training adds random horizontal and vertical flips.
//!
//! `--out` (default `runs/isbi`) receives `init.h5`, the initial weights as a magnet checkpoint
//! in PyTorch's state_dict layout (`benches/torch_isbi.py` starts PyTorch from it), and
//! `results.json`, rewritten after every evaluation. Both optimisers start from the weights the
//! seed gives; the run checks that the second starts from the same values as the first.

#[path = "isbi_experiment/output.rs"]
mod output;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use magnet::bench::PrecisionControl;
use magnet::data::{Dataset, Isbi2012, Isbi2012Config, Pipeline, Transformed};
use magnet::models::{Architecture, UNetConfig, Upsampling};
use magnet::optim::LrSchedule;
use magnet::train::{LossKind, OptimizerKind, TrainConfig, Trainer};
use magnet::{CpuBackend, Error, Result};

use output::{InitialWeights, Results, Row};

type Data = Arc<dyn Dataset>;

/// Which backend trains the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    Cpu,
    Cuda,
    Wgpu,
}

/// The U-Net paper's ISBI 2012 experiment: Adam and SGD + momentum from the same initial weights.
#[derive(Debug, Parser)]
struct Args {
    /// The backend (cuda and wgpu need the build features of the same names).
    #[arg(long, value_enum, default_value = "cpu")]
    backend: BackendChoice,
    /// The CUDA device ordinal (with --backend cuda).
    #[arg(long, default_value_t = 0)]
    device: usize,
    /// Side of the square the slices are resized to (a multiple of 16; 512 keeps them as they are).
    #[arg(long, default_value_t = 128)]
    size: usize,
    /// Channels of the U-Net's first level (64 in the paper).
    #[arg(long, default_value_t = 16)]
    base: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Epochs per optimiser; the test set is scored after a third, two thirds and all of them.
    #[arg(long, default_value_t = 90)]
    epochs: usize,
    /// Allows TF32 arithmetic in convolutions and matrix products (CUDA only; strict fp32 without).
    #[arg(long)]
    tf32: bool,
    /// Folder for init.h5 and results.json.
    #[arg(long, default_value = "runs/isbi")]
    out: PathBuf,
    /// The isbi2012-em folder (images/, masks/).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Seed of the initial weights, the shuffling and the flips.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Writes init.h5 and stops (to start PyTorch while magnet trains).
    #[arg(long)]
    init_only: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(root) = data_dir(args.data.as_deref()) else {
        return ExitCode::FAILURE;
    };
    match run(&args, &root) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `explicit`, else `$MAGNET_DATA_DIR/isbi2012-em`, else `../shared/data/isbi2012-em` from the
/// crate root (or the current directory); `None`, after saying where it looked, when it is not
/// there.
fn data_dir(explicit: Option<&Path>) -> Option<PathBuf> {
    let path = match (explicit, std::env::var_os("MAGNET_DATA_DIR")) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(dir)) => PathBuf::from(dir).join("isbi2012-em"),
        (None, None) => std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
            .join("../shared/data/isbi2012-em"),
    };
    if path.join("images").is_dir() && path.join("masks").is_dir() {
        Some(path)
    } else {
        eprintln!(
            "ISBI 2012 data not found: looked for images/ and masks/ in {}\n\
             (pass --data DIR, or set MAGNET_DATA_DIR to the folder that holds isbi2012-em/)",
            path.display()
        );
        None
    }
}

/// Opens the chosen backend and runs the experiment on it.
fn run(args: &Args, root: &Path) -> Result<()> {
    if args.device != 0 && args.backend != BackendChoice::Cuda {
        return Err(Error::invalid(
            "isbi_experiment",
            "--device selects a CUDA device; use it with --backend cuda",
        ));
    }
    match args.backend {
        BackendChoice::Cpu => experiment(CpuBackend::new(), args, root),
        BackendChoice::Cuda => {
            #[cfg(feature = "cuda")]
            {
                experiment(magnet::backend::CudaBackend::new(args.device)?, args, root)
            }
            #[cfg(not(feature = "cuda"))]
            {
                Err(Error::Backend {
                    backend: "cuda",
                    reason: "this build has no CUDA support; rebuild with --features cuda".into(),
                })
            }
        }
        BackendChoice::Wgpu => {
            #[cfg(feature = "wgpu")]
            {
                experiment(magnet::backend::WgpuBackend::new()?, args, root)
            }
            #[cfg(not(feature = "wgpu"))]
            {
                Err(Error::Backend {
                    backend: "wgpu",
                    reason: "this build has no wgpu support; rebuild with --features wgpu".into(),
                })
            }
        }
    }
}

/// One optimiser of the experiment.
struct OptimizerRun {
    name: &'static str,
    kind: OptimizerKind,
    lr: f64,
}

const OPTIMIZERS: [OptimizerRun; 2] = [
    OptimizerRun {
        name: "Adam",
        kind: OptimizerKind::Adam,
        lr: 1e-3,
    },
    OptimizerRun {
        name: "SGD + momentum 0.9",
        kind: OptimizerKind::Sgd {
            momentum: 0.9,
            nesterov: false,
        },
        lr: 1e-2,
    },
];

fn experiment<B: PrecisionControl>(backend: B, args: &Args, root: &Path) -> Result<()> {
    if args.size == 0 || args.size % 16 != 0 {
        return Err(Error::invalid(
            "isbi_experiment",
            format!(
                "--size {} must be a positive multiple of 16 (the U-Net pools 4 times)",
                args.size
            ),
        ));
    }
    let tf32 = backend.allow_tf32(args.tf32)?;
    if args.tf32 && !tf32 {
        return Err(Error::invalid(
            "isbi_experiment",
            format!("--tf32: the {} backend has no TF32 mode", backend.name()),
        ));
    }
    std::fs::create_dir_all(&args.out).map_err(|source| Error::Io {
        path: args.out.clone(),
        source,
    })?;

    let (train, test) = Isbi2012::train_test(root, Isbi2012Config::default())?;
    let augment = Pipeline::new(args.seed)
        .resize(args.size, args.size)
        .horizontal_flip(0.5)
        .vertical_flip(0.5);
    let train: Data = Arc::new(Transformed::new(train, augment));
    let test: Data = Arc::new(Transformed::new(
        test,
        Pipeline::new(args.seed).resize(args.size, args.size),
    ));
    let device = backend.device_name();
    println!(
        "ISBI 2012 from {}: {} training / {} test slices at {s}×{s}, membrane = class 1\n\
         backend {} ({device}), {}",
        root.display(),
        train.len(),
        test.len(),
        backend.name(),
        if args.tf32 {
            "TF32 allowed"
        } else {
            "strict fp32"
        },
        s = args.size,
    );

    let mut results = Results::new(args, backend.name(), &device, &args.out);
    let mut initial: Option<InitialWeights> = None;
    let total = Instant::now();
    for run in &OPTIMIZERS {
        let mut trainer = Trainer::new(backend.clone(), config(args, run), args.size, args.size)?;
        results.params = trainer.executor().graph().num_trainable();
        let weights = InitialWeights::of(trainer.executor())?;
        match &initial {
            None => {
                output::save_init(&trainer, &args.out.join("init.h5"))?;
                println!(
                    "initial weights (seed {}) written to {}",
                    args.seed,
                    args.out.join("init.h5").display()
                );
                initial = Some(weights);
            }
            Some(first) => {
                first.check_same(&weights, run.name)?;
                println!(
                    "{}: same initial weights as {} (checked)",
                    run.name, OPTIMIZERS[0].name
                );
            }
        }
        if args.init_only {
            return Ok(());
        }
        train_one(&mut trainer, run, args, &train, &test, &mut results)?;
    }
    println!("\n{}", output::markdown(&results.rows));
    println!(
        "results in {}; total wall time {:.0} s",
        results.path().display(),
        total.elapsed().as_secs_f32()
    );
    Ok(())
}

fn config(args: &Args, run: &OptimizerRun) -> TrainConfig {
    TrainConfig {
        arch: Architecture::UNet,
        model: UNetConfig {
            in_channels: 1,
            classes: 2,
            base_channels: args.base,
            upsampling: Upsampling::Transposed,
        },
        epochs: args.epochs,
        batch_size: args.batch,
        optimizer: run.kind,
        lr: run.lr as f32,
        weight_decay: 0.0,
        schedule: LrSchedule::Constant,
        loss: LossKind::CrossEntropy,
        ignore_index: None,
        seed: args.seed,
        out_dir: None,
        progress: false,
    }
}

/// The epochs after which the test set is scored: a third, two thirds and all (each once).
fn evaluation_points(epochs: usize) -> Vec<usize> {
    let mut points = vec![epochs / 3, 2 * epochs / 3, epochs];
    points.dedup();
    points
}

/// Trains one optimiser, scoring the test set at the evaluation points; each score is added to
/// `results` and the results file rewritten, so an interrupted run keeps what it measured.
fn train_one<B: PrecisionControl>(
    trainer: &mut Trainer<B>,
    run: &OptimizerRun,
    args: &Args,
    train: &Data,
    test: &Data,
    results: &mut Results,
) -> Result<()> {
    println!(
        "\n{}, lr {}: U-Net (base {}, {} parameters), batch {}, {} epochs",
        run.name, run.lr, args.base, results.params, args.batch, args.epochs
    );
    let start = Instant::now();
    for stop in evaluation_points(args.epochs) {
        trainer.fit_until(stop, train.clone(), test.clone(), |r| {
            println!(
                "  epoch {:2}  train loss {:.4}  test loss {:.4}  {:.1} s",
                r.epoch, r.train_loss, r.val_loss, r.seconds
            )
        })?;
        let eval = trainer.evaluate(test.clone())?;
        results.rows.push(Row {
            optimizer: run.name,
            lr: run.lr,
            epoch: stop,
            train_loss: trainer.history().records.last().map(|r| r.train_loss),
            test_loss: eval.loss,
            pooled: eval.matrix.pooled(),
            per_image: eval.matrix.mean_per_image(),
            seconds: start.elapsed().as_secs_f64(),
        });
        results.write()?;
    }
    Ok(())
}
