//! The Carvana car-masking data set: `imgs/<id>.jpg` and `masks/<id>_mask.gif` (or `.png`).

use std::path::{Path, PathBuf};

use crate::data::decode::Channels;
use crate::data::{ClassMap, Dataset, ImageMaskFolder, ImageMaskFolderConfig, Sample};
use crate::error::Result;

/// Carvana: class 0 background, class 1 car (any nonzero mask value).
#[derive(Debug, Clone)]
pub struct Carvana {
    inner: ImageMaskFolder,
}

impl Carvana {
    /// Lists `root/imgs` and `root/masks`; `channels` is usually [`Channels::Rgb`]. Errors when a
    /// folder is missing, an image has no `<id>_mask.*`, or there are no images.
    pub fn new(root: impl AsRef<Path>, channels: Channels) -> Result<Self> {
        let config = ImageMaskFolderConfig {
            images: PathBuf::from("imgs"),
            masks: PathBuf::from("masks"),
            mask_suffix: "_mask".to_string(),
            class_map: ClassMap::nonzero(),
            channels,
        };
        Ok(Carvana {
            inner: ImageMaskFolder::new(root, config)?,
        })
    }

    /// The underlying image and mask pairs.
    pub fn files(&self) -> &ImageMaskFolder {
        &self.inner
    }
}

impl Dataset for Carvana {
    fn len(&self) -> usize {
        self.inner.len()
    }

    fn classes(&self) -> usize {
        2
    }

    fn get(&self, index: usize) -> Result<Sample> {
        self.inner.get(index)
    }
}
