//! The Trainer's loop: runs are reproducible bit for bit, and a run paused with `fit_until` and
//! continued is the same run as one `fit`.

use std::sync::Arc;

use magnet::data::{Dataset, Pipeline, Synthetic, SyntheticConfig, Transformed};
use magnet::models::{Architecture, UNetConfig, Upsampling};
use magnet::optim::LrSchedule;
use magnet::train::{LossKind, OptimizerKind, TrainConfig, Trainer};
use magnet::CpuBackend;

const SIZE: usize = 32;

fn config(epochs: usize) -> TrainConfig {
    TrainConfig {
        arch: Architecture::UNet,
        model: UNetConfig {
            in_channels: 3,
            classes: 3,
            base_channels: 4,
            upsampling: Upsampling::Transposed,
        },
        epochs,
        batch_size: 4,
        optimizer: OptimizerKind::Adam,
        lr: 1e-3,
        weight_decay: 0.0,
        schedule: LrSchedule::Step {
            step_size: 1,
            gamma: 0.5,
        },
        loss: LossKind::CrossEntropy,
        ignore_index: None,
        seed: 3,
        out_dir: None,
        progress: false,
    }
}

fn data(seed: u64) -> Arc<dyn Dataset> {
    let set = Synthetic::new(SyntheticConfig {
        samples: 8,
        size: SIZE,
        seed,
        ..Default::default()
    })
    .unwrap();
    let flips = Pipeline::new(7).horizontal_flip(0.5).vertical_flip(0.5);
    Arc::new(Transformed::new(set, flips))
}

fn weights(trainer: &Trainer<CpuBackend>) -> Vec<Vec<f32>> {
    let exec = trainer.executor();
    exec.graph()
        .trainable_ids()
        .into_iter()
        .map(|id| exec.tensor(id).unwrap().data().to_vec())
        .collect()
}

#[test]
fn a_run_fitted_in_pieces_matches_one_fit_bit_for_bit() {
    let (train, validation) = (data(0), data(1));
    let mut whole = Trainer::new(CpuBackend::new(), config(3), SIZE, SIZE).unwrap();
    whole
        .fit(train.clone(), validation.clone(), |_| {})
        .unwrap();

    let mut pieces = Trainer::new(CpuBackend::new(), config(3), SIZE, SIZE).unwrap();
    let mut seen = Vec::new();
    pieces
        .fit_until(1, train.clone(), validation.clone(), |r| seen.push(r.epoch))
        .unwrap();
    assert_eq!(pieces.history().records.len(), 1);
    let after_one = pieces.evaluate(validation.clone()).unwrap();
    assert_eq!(after_one.loss, pieces.history().records[0].val_loss);
    pieces
        .fit(train.clone(), validation.clone(), |r| seen.push(r.epoch))
        .unwrap();
    assert_eq!(seen, [1, 2, 3]);

    for (a, b) in whole
        .history()
        .records
        .iter()
        .zip(&pieces.history().records)
    {
        assert_eq!(a.epoch, b.epoch);
        assert_eq!(a.learning_rate, b.learning_rate);
        assert_eq!(a.train_loss, b.train_loss, "epoch {}", a.epoch);
        assert_eq!(a.val_loss, b.val_loss, "epoch {}", a.epoch);
        assert_eq!(a.val_miou, b.val_miou, "epoch {}", a.epoch);
    }
    assert_eq!(weights(&whole), weights(&pieces));
}

#[test]
fn training_twice_from_one_seed_gives_the_same_weights_bit_for_bit() {
    let run = || {
        let mut trainer = Trainer::new(CpuBackend::new(), config(2), SIZE, SIZE).unwrap();
        trainer.fit(data(0), data(1), |_| {}).unwrap();
        weights(&trainer)
    };
    assert!(run() == run(), "two identical runs differ");
}

#[test]
fn fitting_past_the_configured_epochs_is_an_error() {
    let mut trainer = Trainer::new(CpuBackend::new(), config(2), SIZE, SIZE).unwrap();
    let err = trainer
        .fit_until(3, data(0), data(1), |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("epoch 3 of a 2-epoch run"), "{err}");
    assert!(trainer.history().records.is_empty());
}
