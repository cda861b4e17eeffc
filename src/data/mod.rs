//! Data sets of images and segmentation masks.

pub mod synthetic;

pub use synthetic::{Synthetic, SyntheticConfig};

use crate::error::Result;

/// An image and its mask: `image` is `height × width × channels` (row-major, channels last, values
/// around [0, 1]); `mask` holds one class index per pixel.
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
}
