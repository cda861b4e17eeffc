//! Data sets of images and segmentation masks, classification data, transforms and batching.

pub mod carvana;
pub mod cifar;
pub mod class_folder;
pub mod class_map;
pub mod classification;
mod decode;
#[cfg(feature = "hdf5")]
pub mod hdf5;
pub mod image_folder;
pub mod isbi;
pub mod loader;
pub mod mnist;
pub mod oxford_pet;
pub mod split;
pub mod synthetic;
pub mod transform;

pub use carvana::Carvana;
pub use cifar::{Cifar, CifarLabels};
pub use class_folder::{ClassFolder, ClassFolderConfig};
pub use class_map::ClassMap;
pub use classification::{ClassificationDataset, LabeledImage, Split};
pub use decode::{load_image, Channels, Pixels};
#[cfg(feature = "hdf5")]
pub use hdf5::{Hdf5Segmentation, Hdf5SegmentationConfig, ImageLayout};
pub use image_folder::{ImageMaskFolder, ImageMaskFolderConfig};
pub use isbi::{Isbi2012, Isbi2012Config, IsbiForeground};
pub use loader::{Batch, BatchLoader, Batches, LoaderConfig, Shard};
pub use mnist::{read_idx, Idx, Mnist};
pub use oxford_pet::{OxfordPet, OxfordPetConfig, PetSplit, TrimapBorder};
pub use split::{split, Subset};
pub use synthetic::{Synthetic, SyntheticConfig};
pub use transform::{Pipeline, Transform, Transformed};

use std::sync::Arc;

use crate::error::Result;

/// The class value of a mask pixel to ignore: it counts in neither the loss nor the metrics
/// (PyTorch's `ignore_index`). Data sets map "don't care" pixels to it, such as the border of the
/// Oxford-IIIT Pet trimaps; in a [`Batch`]'s f32 labels it is `255.0`. No real class may use it,
/// so a data set has at most 255 classes.
pub const IGNORE_INDEX: u8 = 255;

/// An image and its mask: `image` is `height × width × channels` (row-major, channels last, values
/// around [0, 1]); `mask` holds one class index per pixel, or [`IGNORE_INDEX`].
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub image: Vec<f32>,
    pub mask: Vec<u8>,
}

/// A finite, indexable set of samples.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;

    /// Whether there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of classes in the masks.
    fn classes(&self) -> usize;

    /// Sample `index` (< `len()`).
    fn get(&self, index: usize) -> Result<Sample>;

    /// Sample `index` as seen in `epoch`: data sets with random augmentation
    /// ([`Transformed`]) draw it from `(seed, epoch, index)`; others return [`Dataset::get`].
    fn get_epoch(&self, index: usize, epoch: usize) -> Result<Sample> {
        let _ = epoch;
        self.get(index)
    }
}

impl<D: Dataset + ?Sized> Dataset for Arc<D> {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn classes(&self) -> usize {
        (**self).classes()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        (**self).get(index)
    }

    fn get_epoch(&self, index: usize, epoch: usize) -> Result<Sample> {
        (**self).get_epoch(index, epoch)
    }
}

impl<D: Dataset + ?Sized> Dataset for Box<D> {
    fn len(&self) -> usize {
        (**self).len()
    }

    fn classes(&self) -> usize {
        (**self).classes()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        (**self).get(index)
    }

    fn get_epoch(&self, index: usize, epoch: usize) -> Result<Sample> {
        (**self).get_epoch(index, epoch)
    }
}
