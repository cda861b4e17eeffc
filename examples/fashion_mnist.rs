//! Image classification as in MagmaDNN's examples: a small CNN (conv, relu, max pool, conv, relu,
//! max pool, flatten, dense, relu, dense) trained with Adam on Fashion-MNIST, reporting the test
//! accuracy after every epoch, on the CPU backend.
//!
//! ```text
//! cargo run --release --example fashion_mnist
//! ```
//!
//! The data is the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist`),
//! or any folder of MNIST-format IDX files named by `$FASHION_MNIST_DIR`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use magnet::data::{ClassificationDataset, Mnist, Split};
use magnet::layers::{self, ConvConfig};
use magnet::loss::{self, CrossEntropyConfig};
use magnet::metrics::{self, ConfusionMatrix};
use magnet::optim::{Adam, AdamConfig, Optimizer};
use magnet::{CpuBackend, Executor, Graph, Mode, NodeId};
use rand::seq::SliceRandom;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

const BATCH: usize = 100;
const EPOCHS: usize = 8;
const LR: f32 = 1e-3;
const SEED: u64 = 0;

/// The network's input, label, loss and confusion-count nodes.
struct Net {
    image: NodeId,
    labels: NodeId,
    loss: NodeId,
    counts: NodeId,
}

fn main() -> ExitCode {
    let dir = std::env::var_os("FASHION_MNIST_DIR").map_or_else(
        || PathBuf::from("/usr/share/datasets/fashion-mnist"),
        PathBuf::from,
    );
    if !dir.is_dir() {
        eprintln!(
            "Fashion-MNIST not found in {}: install it with `apt-get install \
             dataset-fashion-mnist`, or set FASHION_MNIST_DIR to a folder of its IDX files",
            dir.display()
        );
        return ExitCode::FAILURE;
    }
    match run(dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: PathBuf) -> magnet::Result<()> {
    let train = Mnist::new(&dir, Split::Train)?;
    let test = Mnist::new(&dir, Split::Test)?;
    let (rows, cols) = train.image_size();
    let mut g = Graph::<CpuBackend>::new();
    let net = build(&mut g, rows, cols, train.classes())?;
    println!(
        "Fashion-MNIST: {} training / {} test images of {rows}×{cols}; CNN with {} parameters, \
         Adam lr {LR}, batch {BATCH}, CPU",
        train.len(),
        test.len(),
        g.num_trainable()
    );
    let mut exec = Executor::new(CpuBackend::new(), g, SEED)?;
    let mut adam = Adam::new(AdamConfig::new(LR))?;
    let mut order: Vec<usize> = (0..train.len()).collect();
    let start = Instant::now();
    for epoch in 1..=EPOCHS {
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(SEED + epoch as u64));
        let mut total = 0.0;
        let batches = order.chunks_exact(BATCH);
        let steps = batches.len();
        for indices in batches {
            let (images, labels) = train.batch(indices)?;
            exec.forward(&[(net.image, &images), (net.labels, &labels)], Mode::Train)?;
            exec.backward(net.loss)?;
            adam.step(&mut exec)?;
            total += exec.value(net.loss)?.data()[0];
        }
        let accuracy = test_accuracy(&mut exec, &net, &test)?;
        println!(
            "epoch {epoch}  train loss {:.4}  test accuracy {:.2}%  {:.0} s",
            total / steps as f32,
            100.0 * accuracy,
            start.elapsed().as_secs_f32()
        );
    }
    Ok(())
}

/// conv 3×3 (16) → relu → max pool → conv 3×3 (32) → relu → max pool → flatten → dense 128 →
/// relu → dense (classes), with softmax cross-entropy and confusion counts on the logits.
fn build(
    g: &mut Graph<CpuBackend>,
    rows: usize,
    cols: usize,
    classes: usize,
) -> magnet::Result<Net> {
    let image = g.input("image", [BATCH, rows, cols, 1])?;
    let x = layers::conv2d(g, "conv1", image, ConvConfig::new(16, 3).padding(1))?;
    let x = layers::relu(g, x)?;
    let x = layers::maxpool2d(g, x, 2, 2)?;
    let x = layers::conv2d(g, "conv2", x, ConvConfig::new(32, 3).padding(1))?;
    let x = layers::relu(g, x)?;
    let x = layers::maxpool2d(g, x, 2, 2)?;
    let x = layers::flatten(g, x)?;
    let x = layers::dense(g, "fc1", x, 128)?;
    let x = layers::relu(g, x)?;
    let logits = layers::dense(g, "fc2", x, classes)?;
    let labels = g.input("labels", [BATCH])?;
    let loss = loss::cross_entropy(g, logits, labels, &CrossEntropyConfig::default())?;
    let counts = metrics::confusion_counts(g, logits, labels, None)?;
    Ok(Net {
        image,
        labels,
        loss,
        counts,
    })
}

/// The fraction of `test` images whose highest logit is their class (a last partial batch is
/// left out; 10 000 test images fill whole batches).
fn test_accuracy(exec: &mut Executor<CpuBackend>, net: &Net, test: &Mnist) -> magnet::Result<f64> {
    let mut matrix = ConfusionMatrix::new(test.classes());
    let all: Vec<usize> = (0..test.len()).collect();
    for indices in all.chunks_exact(BATCH) {
        let (images, labels) = test.batch(indices)?;
        exec.forward(&[(net.image, &images), (net.labels, &labels)], Mode::Eval)?;
        matrix.add_node(exec, net.counts)?;
    }
    Ok(matrix.pooled().pixel_accuracy.unwrap_or(0.0))
}
