//! Batches of samples, decoded on a background thread while the consumer trains on the previous
//! ones.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::{Dataset, Sample};
use crate::error::{Error, Result};
use crate::tensor::{HostTensor, Shape};

/// How a [`BatchLoader`] walks its data set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderConfig {
    /// Samples per batch (at least 1).
    pub batch_size: usize,
    /// A shuffled order per epoch (from `seed` and the epoch), else `0..len` in order.
    pub shuffle: bool,
    /// Drops the last batch of an epoch when it has fewer than `batch_size` samples.
    pub drop_last: bool,
    /// Batches decoded ahead of the consumer (at least 1).
    pub prefetch: usize,
    pub seed: u64,
    /// The part of each epoch this loader yields (data-parallel ranks each take one).
    pub shard: Shard,
}

/// One of `count` equal, disjoint parts of every epoch, as PyTorch's `DistributedSampler`: the
/// epoch's order (the same on every rank) is dealt out round-robin and the `len % count` samples
/// left over are dropped, so every rank has as many batches as the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Shard {
    /// The whole epoch.
    pub const WHOLE: Shard = Shard { index: 0, count: 1 };

    /// This shard's positions of an epoch's `order`.
    fn take(&self, order: &[usize]) -> Vec<usize> {
        let per_shard = order.len() / self.count;
        order
            .iter()
            .skip(self.index)
            .step_by(self.count)
            .take(per_shard)
            .copied()
            .collect()
    }
}

impl LoaderConfig {
    /// Training: shuffled, full batches only, two batches of prefetch.
    pub fn train(batch_size: usize, seed: u64) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: true,
            drop_last: true,
            prefetch: 2,
            seed,
            shard: Shard::WHOLE,
        }
    }

    /// Evaluation: in order, every sample (the last batch may be smaller).
    pub fn eval(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            prefetch: 2,
            seed: 0,
            shard: Shard::WHOLE,
        }
    }
}

/// A batch of samples of one size.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `[n, h, w, c]` images.
    pub images: HostTensor,
    /// `[n, h, w]` class indices as f32; [`crate::data::IGNORE_INDEX`] pixels are 255.0.
    pub labels: HostTensor,
    /// The data-set index of each sample in the batch.
    pub indices: Vec<usize>,
}

impl Batch {
    /// Stacks `samples` (all of one size) into a batch; errors when their sizes differ.
    pub fn from_samples(samples: &[Sample], indices: Vec<usize>) -> Result<Batch> {
        let Some(first) = samples.first() else {
            return Err(Error::invalid("Batch", "no samples"));
        };
        let (h, w, c) = (first.height, first.width, first.channels);
        let mut images = Vec::with_capacity(samples.len() * h * w * c);
        let mut labels = Vec::with_capacity(samples.len() * h * w);
        for (k, s) in samples.iter().enumerate() {
            if (s.height, s.width, s.channels) != (h, w, c) {
                let index = |k: usize| indices.get(k).copied().unwrap_or(k);
                return Err(Error::shape(
                    "Batch",
                    format!(
                        "samples {} and {} of a batch differ in size (h, w, c); give the data set \
                         one size with a resize (transform::Pipeline::resize)",
                        index(0),
                        index(k)
                    ),
                    &[
                        &Shape::new([h, w, c]),
                        &Shape::new([s.height, s.width, s.channels]),
                    ],
                ));
            }
            if s.image.len() != h * w * c || s.mask.len() != h * w {
                return Err(Error::Length {
                    op: "Batch",
                    expected: h * w * (c + 1),
                    got: s.image.len() + s.mask.len(),
                });
            }
            images.extend_from_slice(&s.image);
            labels.extend(s.mask.iter().map(|&m| f32::from(m)));
        }
        let n = samples.len();
        Ok(Batch {
            images: HostTensor::new([n, h, w, c], images)?,
            labels: HostTensor::new([n, h, w], labels)?,
            indices,
        })
    }
}

/// Yields an epoch of [`Batch`]es from a data set, decoding them on a background thread (and
/// the samples of a batch in parallel) a few batches ahead of the consumer.
pub struct BatchLoader<D> {
    dataset: Arc<D>,
    config: LoaderConfig,
}

impl<D: Dataset + 'static> BatchLoader<D> {
    /// A loader over `dataset`. Errors on a zero batch size or prefetch, or an empty data set.
    pub fn new(dataset: D, config: LoaderConfig) -> Result<Self> {
        Self::from_arc(Arc::new(dataset), config)
    }

    /// A loader over a shared data set.
    pub fn from_arc(dataset: Arc<D>, config: LoaderConfig) -> Result<Self> {
        if config.batch_size == 0 || config.prefetch == 0 {
            return Err(Error::invalid(
                "BatchLoader",
                format!(
                    "batch size {} and prefetch {} must be positive",
                    config.batch_size, config.prefetch
                ),
            ));
        }
        if dataset.is_empty() {
            return Err(Error::invalid("BatchLoader", "empty data set"));
        }
        let Shard { index, count } = config.shard;
        if count == 0 || index >= count || dataset.len() < count {
            return Err(Error::invalid(
                "BatchLoader",
                format!(
                    "shard {index} of {count} of {} samples is not a shard",
                    dataset.len()
                ),
            ));
        }
        let per_shard = dataset.len() / count;
        if config.drop_last && per_shard < config.batch_size {
            return Err(Error::invalid(
                "BatchLoader",
                format!(
                    "{per_shard} samples make no full batch of {} (drop_last)",
                    config.batch_size
                ),
            ));
        }
        Ok(BatchLoader { dataset, config })
    }

    /// The data set.
    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.config
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let n = self.dataset.len() / self.config.shard.count;
        let b = self.config.batch_size;
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// Whether an epoch has no batch (never, for a loader that was created).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The samples of `epoch` in the order they come: `0..len`, or a permutation of it seeded by
    /// the loader's seed and `epoch`, then the loader's shard of that.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        self.config.shard.take(&self.full_order(epoch))
    }

    /// The order of the whole data set in `epoch`, before sharding.
    fn full_order(&self, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            let seed = self.config.seed ^ (epoch as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            // Fisher–Yates.
            for i in (1..order.len()).rev() {
                order.swap(i, rng.random_range(0..=i));
            }
        }
        order
    }

    /// The batches of `epoch`. Decoding starts at once on a background thread; the first error
    /// (a corrupt file, samples of different sizes) is yielded and ends the epoch. Dropping the
    /// iterator stops the thread.
    pub fn epoch(&self, epoch: usize) -> Batches {
        let order = self.order(epoch);
        let (batch_size, drop_last) = (self.config.batch_size, self.config.drop_last);
        let batches: Vec<Vec<usize>> = order
            .chunks(batch_size)
            .filter(|c| !drop_last || c.len() == batch_size)
            .map(<[usize]>::to_vec)
            .collect();
        let remaining = batches.len();
        let (sender, receiver) = sync_channel(self.config.prefetch);
        let dataset = Arc::clone(&self.dataset);
        let worker = std::thread::spawn(move || {
            for indices in batches {
                let batch = load_batch(&*dataset, indices, epoch);
                let failed = batch.is_err();
                // A send error means the consumer dropped the iterator: stop quietly.
                if sender.send(batch).is_err() || failed {
                    return;
                }
            }
        });
        Batches {
            receiver: Some(receiver),
            worker: Some(worker),
            remaining,
        }
    }
}

fn load_batch<D: Dataset + ?Sized>(
    dataset: &D,
    indices: Vec<usize>,
    epoch: usize,
) -> Result<Batch> {
    let samples = indices
        .par_iter()
        .map(|&i| dataset.get_epoch(i, epoch))
        .collect::<Result<Vec<Sample>>>()?;
    Batch::from_samples(&samples, indices)
}

/// The batches of one epoch of a [`BatchLoader`], in order.
pub struct Batches {
    receiver: Option<Receiver<Result<Batch>>>,
    worker: Option<JoinHandle<()>>,
    remaining: usize,
}

impl Iterator for Batches {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Result<Batch>> {
        if self.remaining == 0 {
            return None;
        }
        match self.receiver.as_ref()?.recv() {
            Ok(Ok(batch)) => {
                self.remaining -= 1;
                Some(Ok(batch))
            }
            Ok(Err(e)) => {
                self.remaining = 0;
                Some(Err(e))
            }
            Err(_) => {
                // The worker ended without sending every batch: it panicked.
                self.remaining = 0;
                self.receiver = None;
                let _ = self.worker.take().map(JoinHandle::join);
                Some(Err(Error::invalid(
                    "BatchLoader",
                    "the loading thread stopped before the end of the epoch (a data set panicked)",
                )))
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.remaining))
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        // Closing the channel first makes a worker blocked on a full channel return.
        self.receiver = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
