//! The ISBI 2012 EM segmentation challenge (the original U-Net paper's data): `images/N.png` and
//! `masks/N.png`, 512×512 8-bit gray; masks are 255 for cell interior and 0 for membrane.

use std::ops::Range;
use std::path::Path;

use crate::data::decode::Channels;
use crate::data::{ClassMap, Dataset, ImageMaskFolder, ImageMaskFolderConfig, Sample};
use crate::error::{Error, Result};

/// Which structure is class 1 (the other is class 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IsbiForeground {
    /// Membranes (mask value 0) are class 1, as in the U-Net paper's boundary segmentation.
    #[default]
    Membrane,
    /// Cell interiors (mask value 255) are class 1.
    Cells,
}

/// Options of [`Isbi2012`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Isbi2012Config {
    pub foreground: IsbiForeground,
    /// [`Channels::Gray`] by default.
    pub channels: Channels,
}

impl Default for Isbi2012Config {
    fn default() -> Self {
        Isbi2012Config {
            foreground: IsbiForeground::Membrane,
            channels: Channels::Gray,
        }
    }
}

/// ISBI 2012 slices, in order of their number N.
#[derive(Debug, Clone)]
pub struct Isbi2012 {
    inner: ImageMaskFolder,
    slices: Vec<usize>,
}

impl Isbi2012 {
    /// The slices of the paper-style training split (0–23).
    pub const TRAIN: Range<usize> = 0..24;
    /// The slices of the paper-style test split (24–29).
    pub const TEST: Range<usize> = 24..30;

    /// Every slice in `root/images` with its mask in `root/masks`. Errors when a folder is
    /// missing, an image has no mask, a file is not named by a number, or there are none.
    pub fn new(root: impl AsRef<Path>, config: Isbi2012Config) -> Result<Self> {
        let class_map = match config.foreground {
            IsbiForeground::Membrane => ClassMap::new(&[(0, 1), (255, 0)])?,
            IsbiForeground::Cells => ClassMap::binary(),
        };
        let folder = ImageMaskFolderConfig {
            class_map,
            channels: config.channels,
            ..Default::default()
        };
        let inner = ImageMaskFolder::new(root, folder)?;
        let mut slices = Vec::with_capacity(inner.len());
        for (i, stem) in inner.stems().iter().enumerate() {
            match stem.parse() {
                Ok(n) => slices.push(n),
                Err(_) => {
                    let path = inner
                        .paths(i)
                        .map(|p| p.0.to_path_buf())
                        .unwrap_or_default();
                    return Err(Error::data(
                        path,
                        "ISBI slices are named by their number (images/N.png)",
                    ));
                }
            }
        }
        Ok(Isbi2012 { inner, slices })
    }

    /// The slices numbered `slices`, in that order. Errors naming the first missing one.
    pub fn with_slices(
        root: impl AsRef<Path>,
        config: Isbi2012Config,
        slices: impl IntoIterator<Item = usize>,
    ) -> Result<Self> {
        let root = root.as_ref();
        let mut set = Isbi2012::new(root, config)?;
        let wanted: Vec<usize> = slices.into_iter().collect();
        if wanted.is_empty() {
            return Err(Error::data(root, "empty data set: no slices selected"));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(&twice) = wanted.iter().find(|&&n| !seen.insert(n)) {
            return Err(Error::invalid(
                "Isbi2012::with_slices",
                format!("slice {twice} selected twice"),
            ));
        }
        if let Some(&missing) = wanted.iter().find(|n| !set.slices.contains(n)) {
            return Err(Error::data(
                root.join("images").join(format!("{missing}.png")),
                "slice not found",
            ));
        }
        let names: Vec<String> = wanted.iter().map(|n| n.to_string()).collect();
        set.inner.select(&names);
        set.slices = wanted;
        Ok(set)
    }

    /// The paper-style split: slices [`Self::TRAIN`] and [`Self::TEST`] (24 / 6).
    pub fn train_test(root: impl AsRef<Path>, config: Isbi2012Config) -> Result<(Self, Self)> {
        let root = root.as_ref();
        Ok((
            Isbi2012::with_slices(root, config, Self::TRAIN)?,
            Isbi2012::with_slices(root, config, Self::TEST)?,
        ))
    }

    /// The slice number of each sample.
    pub fn slices(&self) -> &[usize] {
        &self.slices
    }

    /// The underlying image and mask pairs.
    pub fn files(&self) -> &ImageMaskFolder {
        &self.inner
    }
}

impl Dataset for Isbi2012 {
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
