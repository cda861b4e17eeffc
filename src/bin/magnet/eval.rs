//! `magnet eval`: the metrics of a checkpoint on a data set.

use std::path::PathBuf;

use clap::Args;
use magnet::Result;

use crate::backend::BackendChoice;
use crate::datasets::DataArgs;

#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// The checkpoint to evaluate.
    #[arg(long)]
    pub weights: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Evaluate every image instead of the validation part (the split `magnet train` used with
    /// the same --seed and --val-fraction; ISBI: slices 24–29).
    #[arg(long)]
    pub all: bool,
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendChoice,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[cfg(not(feature = "hdf5"))]
pub fn run(args: EvalArgs) -> Result<()> {
    Err(magnet::Error::data(
        &args.weights,
        "this build has no HDF5 support; rebuild with the `hdf5` feature",
    ))
}

#[cfg(feature = "hdf5")]
pub fn run(args: EvalArgs) -> Result<()> {
    use crate::backend::with_backend;
    use crate::datasets::AnyDataset;
    use magnet::io::checkpoint::{model_config_from_attrs, read_checkpoint_meta};
    use magnet::metrics::Scores;
    use magnet::optim::LrSchedule;
    use magnet::train::{LossKind, OptimizerKind, TrainConfig, Trainer};

    let meta = read_checkpoint_meta(&args.weights)?;
    let (arch, model) = model_config_from_attrs(&args.weights, &meta.config)?;
    let data: AnyDataset = if args.all {
        args.data.open_whole()?.0
    } else {
        args.data
            .open(args.val_fraction, args.seed, false)?
            .validation
    };
    let config = TrainConfig {
        arch,
        model,
        epochs: 1,
        batch_size: args.batch,
        optimizer: OptimizerKind::Adam,
        lr: 1e-3,
        weight_decay: 0.0,
        schedule: LrSchedule::Constant,
        loss: LossKind::CrossEntropy,
        ignore_index: Some(magnet::data::IGNORE_INDEX as usize),
        seed: args.seed,
        out_dir: None,
        progress: false,
    };
    let size = args.data.size;
    let evaluation = with_backend!(args.backend, |backend| {
        let mut trainer = Trainer::new(backend, config, size, size)?;
        trainer.load_weights(&args.weights)?;
        trainer.evaluate(data)
    })?;
    let pooled = evaluation.matrix.pooled();
    let per_image = evaluation.matrix.mean_per_image();
    if args.json {
        let scores = |s: &Scores| {
            serde_json::json!({
                "mean_iou": s.mean_iou,
                "mean_dice": s.mean_dice,
                "pixel_accuracy": s.pixel_accuracy,
                "class_iou": s.class_iou,
                "class_dice": s.class_dice,
            })
        };
        let out = serde_json::json!({
            "weights": args.weights,
            "images": evaluation.matrix.images(),
            "loss": evaluation.loss,
            "dataset_level": scores(&pooled),
            "mean_per_image": scores(&per_image),
        });
        println!("{out}");
        return Ok(());
    }
    let fmt = |v: Option<f64>| v.map_or_else(|| "  -  ".to_string(), |v| format!("{v:.4}"));
    println!(
        "{} images, cross-entropy {:.4}",
        evaluation.matrix.images(),
        evaluation.loss
    );
    println!("dataset level (pixels pooled over all images):");
    println!(
        "  mean IoU {}  mean Dice {}  pixel accuracy {}",
        fmt(pooled.mean_iou),
        fmt(pooled.mean_dice),
        fmt(pooled.pixel_accuracy)
    );
    for (class, (iou, dice)) in pooled.class_iou.iter().zip(&pooled.class_dice).enumerate() {
        println!("  class {class}: IoU {}  Dice {}", fmt(*iou), fmt(*dice));
    }
    println!("mean per image (each image scored, then averaged):");
    println!(
        "  mean IoU {}  mean Dice {}  pixel accuracy {}",
        fmt(per_image.mean_iou),
        fmt(per_image.mean_dice),
        fmt(per_image.pixel_accuracy)
    );
    Ok(())
}
