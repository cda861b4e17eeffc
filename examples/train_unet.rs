//! Trains a small U-Net on the built-in synthetic shapes and reports validation IoU and pixel
//! accuracy per epoch, on the CPU backend.
//!
//! ```text
//! cargo run --release --example train_unet
//! ```
//!
//! The pixel-wise cross-entropy is written with graph ops here:
//! `loss = Σ log_softmax(logits) · w`, where `w = −onehot(mask) / pixels`.

use std::time::Instant;

use magnet::data::{Dataset, Synthetic, SyntheticConfig};
use magnet::layers;
use magnet::models::{UNet, UNetConfig, Upsampling};
use magnet::optim::{Adam, AdamConfig, Optimizer};
use magnet::{CpuBackend, Executor, Graph, HostTensor, Mode};

const SIZE: usize = 64;
const BATCH: usize = 8;
const EPOCHS: usize = 20;

fn main() -> magnet::Result<()> {
    let train = Synthetic::new(SyntheticConfig {
        samples: 96,
        size: SIZE,
        ..Default::default()
    })?;
    let val = Synthetic::new(SyntheticConfig {
        samples: 16,
        size: SIZE,
        seed: 1,
        ..Default::default()
    })?;
    let classes = train.classes();

    let mut g = Graph::<CpuBackend>::new();
    let cfg = UNetConfig {
        in_channels: 3,
        classes,
        base_channels: 8,
        upsampling: Upsampling::Transposed,
    };
    let net = UNet::build(&mut g, cfg, BATCH, SIZE, SIZE)?;
    let log_probs = layers::log_softmax(&mut g, net.logits)?;
    let weights = g.input("loss_weights", [BATCH, SIZE, SIZE, classes])?;
    let weighted = layers::mul(&mut g, log_probs, weights)?;
    let loss = layers::sum(&mut g, weighted)?;
    println!(
        "U-Net with {} parameters, {} classes, {SIZE}×{SIZE}, batch {BATCH}",
        g.num_trainable(),
        classes
    );

    let mut exec = Executor::new(CpuBackend::new(), g, 0)?;
    let mut adam = Adam::new(AdamConfig::new(3e-3))?;
    for epoch in 1..=EPOCHS {
        let start = Instant::now();
        let mut total = 0.0;
        let batches = train.len() / BATCH;
        for b in 0..batches {
            let (images, masks) = batch(&train, b * BATCH)?;
            let w = loss_weights(&masks, classes)?;
            exec.forward(&[(net.image, &images), (weights, &w)], Mode::Train)?;
            exec.backward(loss)?;
            adam.step(&mut exec)?;
            total += exec.value(loss)?.data()[0];
        }
        let (iou, accuracy) = evaluate(&mut exec, &net, &val, classes)?;
        let seconds = start.elapsed().as_secs_f32();
        println!(
            "epoch {epoch:2}  loss {:.4}  val mIoU(fg) {iou:.3}  pixel acc {accuracy:.3}  {:.1} img/s",
            total / batches as f32,
            (batches * BATCH) as f32 / seconds
        );
    }
    Ok(())
}

/// Images `[BATCH, SIZE, SIZE, 3]` and masks of samples `first..first + BATCH`.
fn batch(set: &Synthetic, first: usize) -> magnet::Result<(HostTensor, Vec<u8>)> {
    let mut images = Vec::with_capacity(BATCH * SIZE * SIZE * 3);
    let mut masks = Vec::with_capacity(BATCH * SIZE * SIZE);
    for i in first..first + BATCH {
        let s = set.get(i % set.len())?;
        images.extend_from_slice(&s.image);
        masks.extend_from_slice(&s.mask);
    }
    Ok((HostTensor::new([BATCH, SIZE, SIZE, 3], images)?, masks))
}

/// `−onehot(mask) / pixels`, so that `Σ log_softmax · w` is the mean cross-entropy.
fn loss_weights(masks: &[u8], classes: usize) -> magnet::Result<HostTensor> {
    let mut w = vec![0.0; masks.len() * classes];
    let scale = -1.0 / masks.len() as f32;
    for (p, &m) in masks.iter().enumerate() {
        w[p * classes + m as usize] = scale;
    }
    HostTensor::new([BATCH, SIZE, SIZE, classes], w)
}

/// Mean IoU over the foreground classes and pixel accuracy, pooled over the validation set.
fn evaluate(
    exec: &mut Executor<CpuBackend>,
    net: &UNet,
    set: &Synthetic,
    classes: usize,
) -> magnet::Result<(f32, f32)> {
    let (mut tp, mut fp, mut fn_) = (
        vec![0usize; classes],
        vec![0usize; classes],
        vec![0usize; classes],
    );
    let mut correct = 0;
    let mut pixels = 0;
    for first in (0..set.len()).step_by(BATCH) {
        let (images, masks) = batch(set, first)?;
        exec.forward(&[(net.image, &images)], Mode::Eval)?;
        let logits = exec.value(net.logits)?;
        for (p, scores) in logits.data().chunks(classes).enumerate() {
            let predicted = (0..classes)
                .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                .unwrap_or(0);
            let truth = masks[p] as usize;
            pixels += 1;
            if predicted == truth {
                correct += 1;
                tp[truth] += 1;
            } else {
                fp[predicted] += 1;
                fn_[truth] += 1;
            }
        }
    }
    let iou: f32 = (1..classes)
        .map(|c| tp[c] as f32 / (tp[c] + fp[c] + fn_[c]).max(1) as f32)
        .sum::<f32>()
        / (classes - 1) as f32;
    Ok((iou, correct as f32 / pixels as f32))
}
