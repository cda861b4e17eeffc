//! A small U-Net trained for a few steps on every selected backend follows the CPU backend's loss
//! curve and ends with the same weights and evaluation logits, within tolerance, with values
//! released as soon as the step is done with them; on each backend, an evaluation that keeps only
//! the logits (buffers reused between nodes) gives exactly what one keeping every value gives.

mod common;

use common::{assert_close, Tol};
use magnet::data::{Batch, Dataset, Synthetic, SyntheticConfig};
use magnet::loss::{self, CrossEntropyConfig};
use magnet::models::{UNet, UNetConfig, Upsampling};
use magnet::optim::{Optimizer, Sgd, SgdConfig};
use magnet::{Backend, CpuBackend, Executor, Graph, HostTensor, Mode};

const STEPS: usize = 6;

/// What a run gives: the loss of each step, the final first-layer weights, and the trained
/// network's evaluation logits.
struct Run {
    losses: Vec<f32>,
    weights: HostTensor,
    logits: HostTensor,
}

/// `STEPS` SGD-momentum steps, then an evaluation of the same batch.
fn train<B: Backend>(backend: B, batch: &Batch) -> Run {
    let mut g = Graph::<B>::new();
    let cfg = UNetConfig {
        in_channels: 3,
        classes: 3,
        base_channels: 4,
        upsampling: Upsampling::Transposed,
    };
    let net = UNet::build(&mut g, cfg, 2, 32, 32).unwrap();
    let labels = g.input("labels", [2, 32, 32]).unwrap();
    let loss =
        loss::cross_entropy(&mut g, net.logits, labels, &CrossEntropyConfig::default()).unwrap();
    let mut exec = Executor::new(backend, g, 11).unwrap();
    // As the trainer runs: each value lives only as long as the step needs it.
    exec.keep_only(&[loss]).unwrap();
    let mut sgd = Sgd::new(SgdConfig::new(0.05).momentum(0.9)).unwrap();
    let mut losses = Vec::new();
    for _ in 0..STEPS {
        exec.forward(
            &[(net.image, &batch.images), (labels, &batch.labels)],
            Mode::Train,
        )
        .unwrap();
        exec.backward(loss).unwrap();
        sgd.step(&mut exec).unwrap();
        losses.push(exec.value(loss).unwrap().data()[0]);
    }
    exec.keep_all();
    exec.forward(&[(net.image, &batch.images)], Mode::Eval)
        .unwrap();
    let logits = exec.value(net.logits).unwrap();
    exec.keep_only(&[net.logits]).unwrap();
    exec.forward(&[(net.image, &batch.images)], Mode::Eval)
        .unwrap();
    // The same kernels on the same shapes: where the values live must not change a bit, on any
    // backend (a kernel that leaves part of a reused buffer unwritten would).
    assert_eq!(
        exec.value(net.logits).unwrap(),
        logits,
        "keeping only the logits vs keeping every value"
    );
    let id = exec.graph().tensor_id("inc.double_conv.0.weight").unwrap();
    Run {
        losses,
        weights: exec.tensor(id).unwrap(),
        logits,
    }
}

#[test]
fn unet_training_matches_the_cpu_step_for_step() {
    let data = Synthetic::new(SyntheticConfig {
        samples: 2,
        size: 32,
        seed: 4,
        ..Default::default()
    })
    .unwrap();
    let batch =
        Batch::from_samples(&[data.get(0).unwrap(), data.get(1).unwrap()], vec![0, 1]).unwrap();
    let cpu = train(CpuBackend::new(), &batch);
    assert!(
        cpu.losses[STEPS - 1] < cpu.losses[0],
        "the CPU run must learn: {:?}",
        cpu.losses
    );
    for_each_backend!(|b| {
        let run = train(b.clone(), &batch);
        // Each step's sums (convolutions over up to 288 terms, batch-norm statistics over 2048
        // values) round differently per backend, by ~1e-6 relative; six steps of training with
        // momentum amplify that to ~1e-4. A wrong kernel changes the loss at the first step by
        // far more.
        assert_close(
            &run.losses,
            &cpu.losses,
            Tol::rel_abs(2e-3, 1e-5),
            "loss per step",
        );
        assert_close(
            run.weights.data(),
            cpu.weights.data(),
            Tol::rel_abs(2e-3, 1e-4),
            "first-layer weights after training",
        );
        // The trained weights differ by the tolerance above; the logits follow them.
        assert_close(
            run.logits.data(),
            cpu.logits.data(),
            Tol::rel_abs(5e-3, 1e-3),
            "evaluation logits after training",
        );
    });
}
