//! Data-parallel training: ranks that average their gradients train exactly like one process
//! with the combined batch; buckets go out in the order backward finishes them; the trainer's
//! ranks stay in lockstep and only rank 0 writes; the rendezvous hands rank 0's token to all.
//!
//! The host collective (threads of this process) runs on every selected backend. NCCL runs when
//! CUDA is selected: a communicator of one rank on any GPU, and two ranks on two GPUs when
//! `MAGNET_TEST_GPUS=2` (or more) says the machine has them.

mod common;

use std::net::TcpListener;
use std::time::Duration;

use common::{assert_close, Tol};
use magnet::backend::Memory;
use magnet::data::{Batch, Dataset, Synthetic, SyntheticConfig};
use magnet::dist::{
    rendezvous, Collective, DataParallel, DistEnv, HostCollective, ParallelConfig, Reduction,
};
use magnet::layers::{self, ConvConfig};
use magnet::loss::{self, CrossEntropyConfig};
use magnet::models::{UNet, UNetConfig, Upsampling};
use magnet::optim::{Optimizer, Sgd, SgdConfig};
use magnet::{Backend, Executor, Graph, Mode, NodeId};

const SIZE: usize = 16;
const STEPS: usize = 4;
const RANKS: usize = 2;
const PER_RANK: usize = 2;

/// A small convolutional segmenter without batch norm (whose per-rank statistics would differ
/// from the combined batch's by design).
struct Net<B: Backend> {
    exec: Executor<B>,
    image: NodeId,
    labels: NodeId,
    loss: NodeId,
}

/// A base-4 U-Net: batch norm after every convolution. Its executor keeps only the loss, as the
/// trainer's does, so backward recomputes batch norm's outputs from the saved (with
/// synchronised batch norm, the combined) statistics.
fn unet<B: Backend>(backend: B, batch: usize, seed: u64) -> Net<B> {
    let mut g = Graph::<B>::new();
    let cfg = UNetConfig {
        in_channels: 3,
        classes: 3,
        base_channels: 4,
        upsampling: Upsampling::Transposed,
    };
    let net = UNet::build(&mut g, cfg, batch, SIZE, SIZE).unwrap();
    let labels = g.input("labels", [batch, SIZE, SIZE]).unwrap();
    let loss =
        loss::cross_entropy(&mut g, net.logits, labels, &CrossEntropyConfig::default()).unwrap();
    let mut exec = Executor::new(backend, g, seed).unwrap();
    exec.keep_only(&[loss]).unwrap();
    Net {
        exec,
        image: net.image,
        labels,
        loss,
    }
}

fn net<B: Backend>(backend: B, batch: usize, seed: u64) -> Net<B> {
    let mut g = Graph::<B>::new();
    let image = g.input("image", [batch, SIZE, SIZE, 3]).unwrap();
    let labels = g.input("labels", [batch, SIZE, SIZE]).unwrap();
    let mut x = image;
    for (name, channels) in [("conv1", 8), ("conv2", 8)] {
        x = layers::conv2d(&mut g, name, x, ConvConfig::new(channels, 3).padding(1)).unwrap();
        x = layers::relu(&mut g, x).unwrap();
    }
    let logits = layers::conv2d(&mut g, "out", x, ConvConfig::new(3, 1)).unwrap();
    let loss = loss::cross_entropy(&mut g, logits, labels, &CrossEntropyConfig::default()).unwrap();
    Net {
        exec: Executor::new(backend, g, seed).unwrap(),
        image,
        labels,
        loss,
    }
}

/// `STEPS` batches of `RANKS · PER_RANK` synthetic images.
fn batches() -> Vec<Vec<magnet::data::Sample>> {
    let data = Synthetic::new(SyntheticConfig {
        samples: STEPS * RANKS * PER_RANK,
        size: SIZE,
        seed: 3,
        ..Default::default()
    })
    .unwrap();
    (0..STEPS)
        .map(|s| {
            (0..RANKS * PER_RANK)
                .map(|i| data.get(s * RANKS * PER_RANK + i).unwrap())
                .collect()
        })
        .collect()
}

/// Every named tensor (parameters and batch-norm running statistics), concatenated.
fn weights<B: Backend>(exec: &Executor<B>) -> Vec<f32> {
    let graph = exec.graph();
    graph
        .tensors()
        .iter()
        .flat_map(|spec| {
            let id = graph.tensor_id(&spec.name).unwrap();
            exec.tensor(id).unwrap().data().to_vec()
        })
        .collect()
}

/// Every trainable tensor, concatenated.
fn trainable_weights<B: Backend>(exec: &Executor<B>) -> Vec<f32> {
    exec.graph()
        .trainable_ids()
        .into_iter()
        .flat_map(|t| exec.tensor(t).unwrap().data().to_vec())
        .collect()
}

/// Trains `net` on `samples[step][range]` for every step, averaging gradients through
/// `parallel` when given; the losses and the final weights.
fn train<B: Backend>(
    net: &mut Net<B>,
    mut parallel: Option<&mut DataParallel<B>>,
    samples: &[Vec<magnet::data::Sample>],
    range: std::ops::Range<usize>,
) -> (Vec<f32>, Vec<f32>) {
    let mut sgd = Sgd::new(SgdConfig::new(0.1).momentum(0.9)).unwrap();
    let mut losses = Vec::new();
    for step in samples {
        let batch = Batch::from_samples(&step[range.clone()], range.clone().collect()).unwrap();
        let feeds = [(net.image, &batch.images), (net.labels, &batch.labels)];
        match parallel.as_deref_mut() {
            Some(p) => {
                p.forward(&mut net.exec, &feeds, Mode::Train).unwrap();
                p.backward(&mut net.exec, net.loss).unwrap();
            }
            None => {
                net.exec.forward(&feeds, Mode::Train).unwrap();
                net.exec.backward(net.loss).unwrap();
            }
        }
        sgd.step(&mut net.exec).unwrap();
        losses.push(net.exec.value(net.loss).unwrap().data()[0]);
    }
    (losses, weights(&net.exec))
}

type MakeCollective<B> = Box<dyn FnOnce(&B) -> Box<dyn Collective<B>> + Send>;

/// Trains `build`'s network on `RANKS` threads, rank `r` on backend `open(r)` with its own seed
/// (so only the broadcast can make the weights agree), and checks the ranks against one process
/// that trains on `reference` with the combined batch.
fn check_against_combined_batch<B: Backend>(
    build: fn(B, usize, u64) -> Net<B>,
    config: ParallelConfig,
    open: impl Fn(usize) -> B + Sync,
    collectives: Vec<MakeCollective<B>>,
    reference: B,
) {
    let samples = batches();
    let (want_losses, want_weights) = train(
        &mut build(reference, RANKS * PER_RANK, 7),
        None,
        &samples,
        0..RANKS * PER_RANK,
    );
    let results: Vec<(Vec<f32>, Vec<f32>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = collectives
            .into_iter()
            .enumerate()
            .map(|(rank, make)| {
                let (open, samples) = (&open, &samples);
                scope.spawn(move || {
                    let backend = open(rank);
                    let collective = make(&backend);
                    let mut net = build(backend, PER_RANK, 7 + rank as u64);
                    let mut parallel =
                        DataParallel::new(collective, &mut net.exec, config).unwrap();
                    let range = rank * PER_RANK..(rank + 1) * PER_RANK;
                    train(&mut net, Some(&mut parallel), samples, range)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, (_, w)) in results.iter().enumerate().skip(1) {
        assert!(
            w == &results[0].1,
            "rank {rank}'s tensors differ from rank 0's: the averaged gradients must be identical"
        );
    }
    // Each rank's loss is the mean over its images; their mean is the combined batch's.
    let mean_losses: Vec<f32> = (0..STEPS)
        .map(|s| results.iter().map(|(l, _)| l[s]).sum::<f32>() / RANKS as f32)
        .collect();
    // The combined batch sums its gradient over 4 images at once, the ranks over 2 and then
    // average: the same terms added in another order (~1e-7 relative per step); four momentum
    // steps leave them ~1e-5 apart. A missing or doubled average is off by 2×.
    assert_close(
        &mean_losses,
        &want_losses,
        Tol::rel_abs(1e-4, 1e-6),
        "mean loss of the ranks per step",
    );
    assert_close(
        &results[0].1,
        &want_weights,
        Tol::rel_abs(1e-4, 1e-5),
        "weights after data-parallel training",
    );
}

fn host_group<B: Backend>() -> Vec<MakeCollective<B>> {
    HostCollective::group(RANKS)
        .unwrap()
        .into_iter()
        .map(|c| -> MakeCollective<B> { Box::new(move |_| Box::new(c)) })
        .collect()
}

#[test]
fn host_ranks_match_one_process_with_the_combined_batch() {
    for_each_backend!(|b| {
        check_against_combined_batch(
            net,
            ParallelConfig::default(),
            |_| b.clone(),
            host_group(),
            b.clone(),
        );
    });
}

/// With synchronised batch norm a U-Net trained on two ranks normalises with the combined
/// batch's statistics, so it matches the single process too (per-rank batch norm would not).
#[test]
fn synchronised_batch_norm_matches_the_combined_batch() {
    let config = ParallelConfig {
        sync_batch_norm: true,
        ..ParallelConfig::default()
    };
    for_each_backend!(|b| {
        check_against_combined_batch(unet, config, |_| b.clone(), host_group(), b.clone());
    });
}

/// A collective of one rank that records the length of every all-reduce.
struct Recording(std::sync::Arc<std::sync::Mutex<Vec<Vec<usize>>>>);

impl<B: Memory> Collective<B> for Recording {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce(
        &mut self,
        b: &B,
        _: Reduction,
        buffers: &mut [&mut B::Buffer],
    ) -> magnet::Result<()> {
        let lens = buffers.iter().map(|x| b.len(x)).collect();
        self.0.lock().unwrap().push(lens);
        Ok(())
    }
    fn broadcast(&mut self, _: &B, _: usize, _: &mut [&mut B::Buffer]) -> magnet::Result<()> {
        Ok(())
    }
    fn wait(&mut self, _: &B) -> magnet::Result<()> {
        Ok(())
    }
}

#[test]
fn buckets_go_out_in_the_order_backward_finishes_them() {
    let mut net = net(magnet::CpuBackend::new(), PER_RANK, 1);
    let calls = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // Buckets of one byte hold one tensor each, so the order is visible.
    let config = ParallelConfig {
        bucket_bytes: 1,
        ..ParallelConfig::default()
    };
    let mut parallel =
        DataParallel::new(Box::new(Recording(calls.clone())), &mut net.exec, config).unwrap();
    let specs = net.exec.graph().tensors().to_vec();
    let names: Vec<Vec<&str>> = parallel
        .buckets()
        .iter()
        .map(|b| b.iter().map(|t| specs[t.index()].name.as_str()).collect())
        .collect();
    assert_eq!(
        names,
        [
            ["out.bias"],
            ["out.weight"],
            ["conv2.bias"],
            ["conv2.weight"],
            ["conv1.bias"],
            ["conv1.weight"]
        ],
        "buckets from the output back to the input (a bias is added after its convolution)"
    );
    let samples = batches();
    train(&mut net, Some(&mut parallel), &samples[..1], 0..PER_RANK);
    let want: Vec<Vec<usize>> = parallel
        .buckets()
        .iter()
        .map(|b| b.iter().map(|t| specs[t.index()].shape.numel()).collect())
        .collect();
    assert_eq!(
        *calls.lock().unwrap(),
        want,
        "one all-reduce per bucket, in bucket order"
    );
}

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn env(rank: usize, world_size: usize, port: u16) -> DistEnv {
    DistEnv {
        rank,
        world_size,
        local_rank: rank,
        master_addr: "127.0.0.1".into(),
        master_port: port,
    }
}

#[test]
fn rendezvous_hands_rank_0s_token_to_every_rank() {
    let port = free_port();
    let tokens: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..3)
            .map(|rank| {
                scope.spawn(move || {
                    rendezvous::share_from_rank0(
                        &env(rank, 3, port),
                        Duration::from_secs(20),
                        || Ok(b"the token".to_vec()),
                    )
                    .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(tokens.iter().all(|t| t == b"the token"), "{tokens:?}");
}

#[test]
fn rendezvous_with_a_peer_of_another_run_fails_with_a_reason() {
    let port = free_port();
    let (master, peer) = std::thread::scope(|scope| {
        let master = scope.spawn(move || {
            rendezvous::share_from_rank0(&env(0, 3, port), Duration::from_secs(5), || Ok(vec![1]))
        });
        let peer = scope.spawn(move || {
            rendezvous::share_from_rank0(&env(1, 2, port), Duration::from_secs(5), || {
                unreachable!("only rank 0 makes the token")
            })
        });
        (master.join().unwrap(), peer.join().unwrap())
    });
    let message = master.unwrap_err().to_string();
    assert!(message.contains("rank 1 of 2"), "{message}");
    assert!(peer.is_err(), "the peer gets no token");
}

#[test]
fn rendezvous_without_rank_0_times_out_with_a_reason() {
    let port = free_port();
    let err =
        rendezvous::share_from_rank0(&env(1, 2, port), Duration::from_millis(300), || Ok(vec![]))
            .unwrap_err()
            .to_string();
    assert!(err.contains("rank 0 did not answer"), "{err}");
    assert!(err.contains(&port.to_string()), "{err}");
}

#[test]
fn environment_in_torchrun_style() {
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    };
    assert_eq!(DistEnv::from_lookup(vars(&[])).unwrap(), None);
    assert_eq!(
        DistEnv::from_lookup(vars(&[("WORLD_SIZE", "4"), ("RANK", "3")]))
            .unwrap()
            .unwrap(),
        DistEnv {
            rank: 3,
            world_size: 4,
            local_rank: 3,
            master_addr: "127.0.0.1".into(),
            master_port: 29500
        }
    );
    let full = [
        ("WORLD_SIZE", "16"),
        ("RANK", "9"),
        ("LOCAL_RANK", "1"),
        ("MASTER_ADDR", "node0"),
        ("MASTER_PORT", "1234"),
    ];
    let env = DistEnv::from_lookup(|n| {
        full.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.to_string())
    })
    .unwrap()
    .unwrap();
    assert_eq!(
        (
            env.rank,
            env.local_rank,
            env.master_addr.as_str(),
            env.master_port
        ),
        (9, 1, "node0", 1234)
    );
    for (bad, says) in [
        (&[("WORLD_SIZE", "2")][..], "RANK is not"),
        (&[("WORLD_SIZE", "2"), ("RANK", "2")][..], "0..WORLD_SIZE=2"),
        (
            &[("WORLD_SIZE", "two"), ("RANK", "0")][..],
            "WORLD_SIZE=\"two\"",
        ),
        (
            &[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "70000")][..],
            "not a port",
        ),
    ] {
        let err = DistEnv::from_lookup(|n| {
            bad.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains(says), "{err} should say {says}");
    }
}

/// Two trainers on threads: after an epoch their weights are identical, rank 0 has written the
/// run's files and validated, rank 1 neither.
#[test]
fn trainer_ranks_stay_in_lockstep_and_only_rank_0_writes() {
    use magnet::models::{Architecture, UNetConfig, Upsampling};
    use magnet::optim::LrSchedule;
    use magnet::train::{LossKind, OptimizerKind, TrainConfig, Trainer};

    let dir = tempfile::tempdir().unwrap();
    let data = |seed| {
        Synthetic::new(SyntheticConfig {
            samples: 8,
            size: 16,
            seed,
            ..Default::default()
        })
        .unwrap()
    };
    let results: Vec<(Vec<f32>, f32)> = std::thread::scope(|scope| {
        let handles: Vec<_> = HostCollective::group(RANKS)
            .unwrap()
            .into_iter()
            .enumerate()
            .map(|(rank, collective)| {
                let dir = dir.path().to_path_buf();
                scope.spawn(move || {
                    let config = TrainConfig {
                        arch: Architecture::UNet,
                        model: UNetConfig {
                            in_channels: 3,
                            classes: 3,
                            base_channels: 4,
                            upsampling: Upsampling::Transposed,
                        },
                        epochs: 1,
                        batch_size: 2,
                        optimizer: OptimizerKind::Adam,
                        lr: 1e-3,
                        weight_decay: 0.0,
                        schedule: LrSchedule::Constant,
                        loss: LossKind::CrossEntropy,
                        ignore_index: None,
                        seed: rank as u64,
                        out_dir: Some(dir),
                        progress: false,
                    };
                    let mut trainer =
                        Trainer::new(magnet::CpuBackend::new(), config, 16, 16).unwrap();
                    trainer
                        .distribute(Box::new(collective), ParallelConfig::default())
                        .unwrap();
                    assert_eq!(trainer.rank(), (rank, RANKS));
                    let history = trainer.fit(data(1), data(2), |_| {}).unwrap();
                    let val_loss = history.records[0].val_loss;
                    (trainable_weights(trainer.executor()), val_loss)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    // Batch-norm running statistics are each rank's own; the trained weights are shared.
    assert!(results[0].0 == results[1].0, "the ranks' weights diverged");
    assert!(results[0].1.is_finite(), "rank 0 validates");
    assert!(results[1].1.is_nan(), "rank 1 leaves validation to rank 0");
    for file in ["log.csv", "curves.png", "last.h5", "best.h5"] {
        assert!(dir.path().join(file).is_file(), "rank 0 writes {file}");
    }
}

/// NCCL on CUDA: a communicator of one rank on the first GPU (any CUDA machine), then two ranks
/// on two GPUs matching one GPU with the combined batch when `MAGNET_TEST_GPUS` ≥ 2.
#[cfg(feature = "cuda")]
mod nccl {
    use super::*;
    use magnet::backend::{CudaBackend, NcclCollective};

    const GPUS_VAR: &str = "MAGNET_TEST_GPUS";

    /// Whether CUDA is selected and opens (listed but unavailable fails the test).
    fn cuda_selected() -> bool {
        let selection = common::Selection::from_env();
        if !selection.wants("cuda") {
            return false;
        }
        match common::open_cuda() {
            Ok(_) => true,
            Err(reason) => {
                selection.unavailable("cuda", &reason);
                false
            }
        }
    }

    #[test]
    fn nccl_world_of_one_reduces_and_broadcasts_in_place() {
        if !cuda_selected() {
            return;
        }
        let backend = CudaBackend::new(0).unwrap();
        let id = NcclCollective::unique_id().unwrap();
        let mut nccl = NcclCollective::new(&backend, 0, 1, &id).unwrap();
        assert_eq!((nccl.rank(), nccl.world_size()), (0, 1));
        let data: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 3.0).collect();
        let mut a = backend
            .to_device(&magnet::HostTensor::new([1000], data.clone()).unwrap())
            .unwrap();
        let mut empty = backend.alloc(&magnet::TensorDesc::f32([0])).unwrap();
        nccl.all_reduce(&backend, Reduction::Mean, &mut [&mut a, &mut empty])
            .unwrap();
        nccl.broadcast(&backend, 0, &mut [&mut a]).unwrap();
        nccl.wait(&backend).unwrap();
        assert_eq!(backend.download(&a).unwrap(), data, "one rank: identity");
        let err = nccl
            .broadcast(&backend, 1, &mut [&mut a])
            .unwrap_err()
            .to_string();
        assert!(err.contains("root 1"), "{err}");
        assert!(
            NcclCollective::new(&backend, 0, 1, &id[..5]).is_err(),
            "a short id is an error"
        );
    }

    #[test]
    fn two_gpus_match_one_gpu_with_the_combined_batch() {
        if !cuda_selected() {
            return;
        }
        let wanted: usize = match std::env::var(GPUS_VAR) {
            Ok(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("{GPUS_VAR}={v:?} is not a number")),
            Err(_) => {
                eprintln!(
                    "[nccl] two-GPU test skipped: set {GPUS_VAR}=2 on a machine with two GPUs"
                );
                return;
            }
        };
        if wanted < RANKS {
            eprintln!("[nccl] two-GPU test skipped: {GPUS_VAR}={wanted}");
            return;
        }
        let port = free_port();
        let collectives: Vec<MakeCollective<CudaBackend>> = (0..RANKS)
            .map(|rank| -> MakeCollective<CudaBackend> {
                Box::new(move |backend: &CudaBackend| {
                    let env = env(rank, RANKS, port);
                    Box::new(
                        NcclCollective::from_env(backend, &env, Duration::from_secs(60)).unwrap(),
                    )
                })
            })
            .collect();
        // Direct convolutions: whatever algorithm cuDNN times fastest for a batch of 2 or of 4,
        // it rounds as a sum of products (Winograd's transforms would add their own error).
        let gpu = |rank: usize| {
            let backend = CudaBackend::new(rank).unwrap_or_else(|e| {
                panic!("{GPUS_VAR}={wanted} but GPU {rank} cannot be opened: {e}")
            });
            backend.set_direct_convolutions(true);
            backend
        };
        check_against_combined_batch(net, ParallelConfig::default(), gpu, collectives, gpu(0));
    }
}
