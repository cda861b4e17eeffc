//! The U-Net paper's experiment at CPU size: a U-Net trained on the ISBI 2012 EM slices (0–23
//! train, 24–29 test; membranes are class 1), once with Adam and once with SGD + momentum from the
//! same initial weights, scored on the test slices after a third, two thirds and all of the epochs.
//!
//! ```text
//! cargo run --release --example isbi_experiment
//! ```
//!
//! The data is read from `$MAGNET_DATA_DIR/isbi2012-em`, else `../shared/data/isbi2012-em` beside
//! the crate. Slices are resized from 512×512 to 128×128; training adds random flips.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use magnet::data::{Dataset, Isbi2012, Isbi2012Config, Pipeline, Transformed};
use magnet::metrics::Scores;
use magnet::models::{Architecture, UNetConfig, Upsampling};
use magnet::optim::LrSchedule;
use magnet::train::{LossKind, OptimizerKind, TrainConfig, Trainer};
use magnet::CpuBackend;

const SIZE: usize = 128;
const BASE_CHANNELS: usize = 16;
const BATCH: usize = 4;
const EPOCHS: usize = 90;
const SEED: u64 = 0;

type Data = Arc<dyn Dataset>;

/// Test scores of one optimiser after some epochs.
struct Row {
    optimizer: String,
    epoch: usize,
    pooled: Scores,
    per_image: Scores,
    seconds: f32,
}

fn main() -> ExitCode {
    let Some(root) = data_dir() else {
        return ExitCode::FAILURE;
    };
    match run(root) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `$MAGNET_DATA_DIR/isbi2012-em`, else `../shared/data/isbi2012-em` from the crate root (or
/// the current directory); `None`, after saying where it looked, when it is not there.
fn data_dir() -> Option<PathBuf> {
    let path = match std::env::var_os("MAGNET_DATA_DIR") {
        Some(dir) => PathBuf::from(dir).join("isbi2012-em"),
        None => std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from("."), PathBuf::from)
            .join("../shared/data/isbi2012-em"),
    };
    if path.join("images").is_dir() && path.join("masks").is_dir() {
        Some(path)
    } else {
        eprintln!(
            "ISBI 2012 data not found: looked for images/ and masks/ in {}\n\
             (set MAGNET_DATA_DIR to the folder that holds isbi2012-em/)",
            path.display()
        );
        None
    }
}

fn run(root: PathBuf) -> magnet::Result<()> {
    let (train, test) = Isbi2012::train_test(&root, Isbi2012Config::default())?;
    let augment = Pipeline::new(SEED)
        .resize(SIZE, SIZE)
        .horizontal_flip(0.5)
        .vertical_flip(0.5);
    let train: Data = Arc::new(Transformed::new(train, augment));
    let test: Data = Arc::new(Transformed::new(
        test,
        Pipeline::new(SEED).resize(SIZE, SIZE),
    ));
    println!(
        "ISBI 2012 from {}: {} training / {} test slices at {SIZE}×{SIZE}, membrane = class 1",
        root.display(),
        train.len(),
        test.len()
    );

    let runs = [
        ("Adam", OptimizerKind::Adam, 1e-3),
        (
            "SGD + momentum 0.9",
            OptimizerKind::Sgd {
                momentum: 0.9,
                nesterov: false,
            },
            1e-2,
        ),
    ];
    let total = Instant::now();
    let mut rows = Vec::new();
    for (name, optimizer, lr) in runs {
        rows.extend(train_one(name, optimizer, lr, &train, &test)?);
    }
    println!("\n{}", markdown(&rows));
    println!("total wall time {:.0} s", total.elapsed().as_secs_f32());
    Ok(())
}

/// Trains one optimiser and scores the test set at a third, two thirds and all of the epochs.
fn train_one(
    name: &str,
    optimizer: OptimizerKind,
    lr: f32,
    train: &Data,
    test: &Data,
) -> magnet::Result<Vec<Row>> {
    let config = TrainConfig {
        arch: Architecture::UNet,
        model: UNetConfig {
            in_channels: 1,
            classes: 2,
            base_channels: BASE_CHANNELS,
            upsampling: Upsampling::Transposed,
        },
        epochs: EPOCHS,
        batch_size: BATCH,
        optimizer,
        lr,
        weight_decay: 0.0,
        schedule: LrSchedule::Constant,
        loss: LossKind::CrossEntropy,
        ignore_index: None,
        seed: SEED,
        out_dir: None,
        progress: false,
    };
    let mut trainer = Trainer::new(CpuBackend::new(), config, SIZE, SIZE)?;
    println!(
        "\n{name}, lr {lr}: U-Net (base {BASE_CHANNELS}, {} parameters), batch {BATCH}, {EPOCHS} epochs",
        trainer.executor().graph().num_trainable()
    );
    let start = Instant::now();
    let mut rows = Vec::new();
    for stop in [EPOCHS / 3, 2 * EPOCHS / 3, EPOCHS] {
        trainer.fit_until(stop, train.clone(), test.clone(), |r| {
            println!(
                "  epoch {:2}  train loss {:.4}  test loss {:.4}  {:.1} s",
                r.epoch, r.train_loss, r.val_loss, r.seconds
            )
        })?;
        let eval = trainer.evaluate(test.clone())?;
        rows.push(Row {
            optimizer: name.to_string(),
            epoch: stop,
            pooled: eval.matrix.pooled(),
            per_image: eval.matrix.mean_per_image(),
            seconds: start.elapsed().as_secs_f32(),
        });
    }
    Ok(rows)
}

/// The results as a markdown table: membrane (class 1) IoU and Dice and the pixel accuracy with
/// the test pixels pooled, the mean over both classes, and the mean over slices of each slice's
/// mean IoU.
fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| optimiser | epoch | membrane IoU | membrane Dice | pixel accuracy | mean IoU | mean Dice \
         | mean IoU per image | wall time |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.3}"));
    for r in rows {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} s |\n",
            r.optimizer,
            r.epoch,
            f(r.pooled.class_iou[1]),
            f(r.pooled.class_dice[1]),
            f(r.pooled.pixel_accuracy),
            f(r.pooled.mean_iou),
            f(r.pooled.mean_dice),
            f(r.per_image.mean_iou),
            r.seconds
        );
    }
    out
}
