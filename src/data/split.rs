//! Subsets of a data set and a seeded train / validation split.

use std::sync::Arc;

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{Dataset, Sample};
use crate::error::{Error, Result};

/// The samples of a shared data set at the given indices, in that order.
#[derive(Debug)]
pub struct Subset<D> {
    dataset: Arc<D>,
    indices: Vec<usize>,
}

impl<D> Clone for Subset<D> {
    fn clone(&self) -> Self {
        Subset {
            dataset: Arc::clone(&self.dataset),
            indices: self.indices.clone(),
        }
    }
}

impl<D: Dataset> Subset<D> {
    /// Errors when an index is out of range.
    pub fn new(dataset: Arc<D>, indices: Vec<usize>) -> Result<Self> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= dataset.len()) {
            return Err(Error::invalid(
                "Subset",
                format!("index {bad} out of {}", dataset.len()),
            ));
        }
        Ok(Subset { dataset, indices })
    }

    /// The indices into the full data set.
    pub fn indices(&self) -> &[usize] {
        &self.indices
    }

    /// The full data set.
    pub fn dataset(&self) -> &D {
        &self.dataset
    }

    fn full_index(&self, index: usize) -> Result<usize> {
        self.indices.get(index).copied().ok_or_else(|| {
            Error::invalid(
                "Subset",
                format!("index {index} out of {}", self.indices.len()),
            )
        })
    }
}

impl<D: Dataset> Dataset for Subset<D> {
    fn len(&self) -> usize {
        self.indices.len()
    }

    fn classes(&self) -> usize {
        self.dataset.classes()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        self.dataset.get(self.full_index(index)?)
    }

    fn get_epoch(&self, index: usize, epoch: usize) -> Result<Sample> {
        self.dataset.get_epoch(self.full_index(index)?, epoch)
    }
}

/// Splits `dataset` at random (seeded) into `(train, validation)`, with `round(len × fraction)`
/// samples for validation; each part keeps its indices in increasing order. Errors unless both
/// parts are non-empty.
pub fn split<D: Dataset>(
    dataset: D,
    validation_fraction: f64,
    seed: u64,
) -> Result<(Subset<D>, Subset<D>)> {
    let n = dataset.len();
    let validation = (n as f64 * validation_fraction).round();
    if !(0.0..=1.0).contains(&validation_fraction) || validation < 1.0 || validation >= n as f64 {
        return Err(Error::invalid(
            "split",
            format!(
                "a validation fraction of {validation_fraction} of {n} samples leaves an empty \
                 training or validation set"
            ),
        ));
    }
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in (1..n).rev() {
        order.swap(i, rng.random_range(0..=i));
    }
    let (val, train) = order.split_at(validation as usize);
    let (mut train, mut val) = (train.to_vec(), val.to_vec());
    train.sort_unstable();
    val.sort_unstable();
    let dataset = Arc::new(dataset);
    Ok((
        Subset {
            dataset: Arc::clone(&dataset),
            indices: train,
        },
        Subset {
            dataset,
            indices: val,
        },
    ))
}
