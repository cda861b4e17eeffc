//! Segmentation data in two folders: `images/` and `masks/`, paired by file stem.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::data::decode::{self, Channels};
use crate::data::{ClassMap, Dataset, Sample};
use crate::error::{Error, Result};

/// Where the images and masks are and how masks become classes.
#[derive(Debug, Clone)]
pub struct ImageMaskFolderConfig {
    /// The images' folder, relative to the root (`images`).
    pub images: PathBuf,
    /// The masks' folder, relative to the root (`masks`).
    pub masks: PathBuf,
    /// What a mask's stem adds to its image's stem (`""`; Carvana uses `"_mask"`).
    pub mask_suffix: String,
    /// Mask pixel values to classes ([`ClassMap::binary`]: 0 → 0, 255 → 1).
    pub class_map: ClassMap,
    /// Channels of the decoded images ([`Channels::Auto`]).
    pub channels: Channels,
}

impl Default for ImageMaskFolderConfig {
    fn default() -> Self {
        ImageMaskFolderConfig {
            images: PathBuf::from("images"),
            masks: PathBuf::from("masks"),
            mask_suffix: String::new(),
            class_map: ClassMap::binary(),
            channels: Channels::Auto,
        }
    }
}

/// Images and masks paired by file stem (`images/a.jpg` with `masks/a.png`: the extensions may
/// differ). Files are listed and paired at construction, in natural order of their names (`2`
/// before `10`); they are decoded at [`Dataset::get`].
///
/// Images are grayscale or colour, 8-bit, scaled to [0, 1]; masks are read as 8-bit gray values
/// and mapped to classes by the [`ClassMap`].
#[derive(Debug, Clone)]
pub struct ImageMaskFolder {
    pairs: Vec<(PathBuf, PathBuf)>,
    class_map: ClassMap,
    channels: Channels,
}

impl ImageMaskFolder {
    /// Lists `root/images` and `root/masks` (or the configured folders). Errors when a folder is
    /// missing, an image has no mask, two masks share a stem, or there are no images. Masks without
    /// an image are ignored.
    pub fn new(root: impl AsRef<Path>, config: ImageMaskFolderConfig) -> Result<Self> {
        let root = root.as_ref();
        let (image_dir, mask_dir) = (root.join(&config.images), root.join(&config.masks));
        let images = decode::list_images(&image_dir)?;
        let masks = decode::list_images(&mask_dir)?;
        let mut by_stem: HashMap<String, PathBuf> = HashMap::new();
        for mask in masks {
            let Some(stem) = decode::stem(&mask) else {
                continue;
            };
            if let Some(other) = by_stem.insert(stem, mask.clone()) {
                return Err(Error::data(
                    &mask,
                    format!("two masks for one image: this and {}", other.display()),
                ));
            }
        }
        let mut pairs = Vec::with_capacity(images.len());
        for image in images {
            let key = decode::stem(&image).map(|s| s + &config.mask_suffix);
            match key.and_then(|k| by_stem.get(&k)) {
                Some(mask) => pairs.push((image, mask.clone())),
                None => {
                    return Err(Error::data(
                        &image,
                        format!(
                            "image without mask: no {}{}.* in {}",
                            decode::stem(&image).unwrap_or_default(),
                            config.mask_suffix,
                            mask_dir.display()
                        ),
                    ))
                }
            }
        }
        if pairs.is_empty() {
            return Err(Error::data(&image_dir, "empty data set: no images found"));
        }
        Ok(ImageMaskFolder {
            pairs,
            class_map: config.class_map,
            channels: config.channels,
        })
    }

    /// A data set from explicit `(image, mask)` paths. Errors when the list is empty or a file is
    /// missing.
    pub fn from_pairs(
        pairs: Vec<(PathBuf, PathBuf)>,
        class_map: ClassMap,
        channels: Channels,
    ) -> Result<Self> {
        if pairs.is_empty() {
            return Err(Error::data(
                PathBuf::new(),
                "empty data set: no (image, mask) pairs",
            ));
        }
        for (image, mask) in &pairs {
            for file in [image, mask] {
                if !file.is_file() {
                    return Err(Error::data(file, "file not found"));
                }
            }
        }
        Ok(ImageMaskFolder {
            pairs,
            class_map,
            channels,
        })
    }

    /// The `(image, mask)` paths of sample `index`.
    pub fn paths(&self, index: usize) -> Option<(&Path, &Path)> {
        self.pairs
            .get(index)
            .map(|(i, m)| (i.as_path(), m.as_path()))
    }

    /// The mapping from mask values to classes.
    pub fn class_map(&self) -> &ClassMap {
        &self.class_map
    }

    /// The image stems, in order.
    pub(crate) fn stems(&self) -> Vec<String> {
        self.pairs
            .iter()
            .map(|(image, _)| decode::stem(image).unwrap_or_default())
            .collect()
    }

    /// Reorders the pairs by image stem, following `order` (stems absent from it are dropped).
    pub(crate) fn select(&mut self, order: &[String]) {
        let mut by_stem: HashMap<String, (PathBuf, PathBuf)> = self
            .pairs
            .drain(..)
            .map(|p| (decode::stem(&p.0).unwrap_or_default(), p))
            .collect();
        self.pairs = order.iter().filter_map(|s| by_stem.remove(s)).collect();
    }
}

impl Dataset for ImageMaskFolder {
    fn len(&self) -> usize {
        self.pairs.len()
    }

    fn classes(&self) -> usize {
        self.class_map.classes()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        let (image_path, mask_path) = self.pairs.get(index).ok_or_else(|| {
            Error::invalid(
                "ImageMaskFolder::get",
                format!("index {index} out of {}", self.pairs.len()),
            )
        })?;
        let image = decode::load_image(image_path, self.channels)?;
        let (height, width, mut mask) = decode::load_mask(mask_path)?;
        if (height, width) != (image.height, image.width) {
            return Err(Error::data(
                mask_path,
                format!(
                    "mask is {height}×{width} (h×w) but its image {} is {}×{}",
                    image_path.display(),
                    image.height,
                    image.width
                ),
            ));
        }
        self.class_map.apply(mask_path, &mut mask)?;
        Ok(Sample {
            height,
            width,
            channels: image.channels,
            image: image.data,
            mask,
        })
    }
}
