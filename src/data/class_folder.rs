//! ImageNet-style classification folders: `root/<class>/<image>`.

use std::path::{Path, PathBuf};

use crate::data::classification::{ClassificationDataset, LabeledImage};
use crate::data::decode::{self, Channels};
use crate::data::transform;
use crate::error::{Error, Result};
use crate::tensor::HostTensor;

/// Options of [`ClassFolder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassFolderConfig {
    /// [`Channels::Rgb`] by default.
    pub channels: Channels,
    /// `(height, width)` to resize every image to (linear filter); `None` keeps their sizes.
    pub size: Option<(usize, usize)>,
}

impl Default for ClassFolderConfig {
    fn default() -> Self {
        ClassFolderConfig {
            channels: Channels::Rgb,
            size: None,
        }
    }
}

/// One sub-folder per class, classes numbered in the sorted order of the folder names (as
/// torchvision's `ImageFolder`); images are the files with an image extension, in natural order.
/// Files are listed at construction and decoded at `get`.
#[derive(Debug, Clone)]
pub struct ClassFolder {
    classes: Vec<String>,
    files: Vec<(PathBuf, usize)>,
    config: ClassFolderConfig,
}

impl ClassFolder {
    /// Lists `root`. Errors when it is missing, has no class folder, or no image at all.
    pub fn new(root: impl AsRef<Path>, config: ClassFolderConfig) -> Result<Self> {
        let root = root.as_ref();
        if let Some((h, w)) = config.size {
            if h == 0 || w == 0 {
                return Err(Error::invalid("ClassFolder", format!("resize to {h}×{w}")));
            }
        }
        let mut folders = decode::list_dir(root, true)?;
        folders.sort();
        let mut classes = Vec::with_capacity(folders.len());
        let mut files = Vec::new();
        for (label, folder) in folders.iter().enumerate() {
            classes.push(
                folder
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned(),
            );
            files.extend(decode::list_images(folder)?.into_iter().map(|f| (f, label)));
        }
        if classes.is_empty() {
            return Err(Error::data(root, "empty data set: no class folders"));
        }
        if files.is_empty() {
            return Err(Error::data(
                root,
                "empty data set: no images in the class folders",
            ));
        }
        Ok(ClassFolder {
            classes,
            files,
            config,
        })
    }

    /// The class names; a label indexes this list.
    pub fn class_names(&self) -> &[String] {
        &self.classes
    }

    /// The path of image `index`.
    pub fn path(&self, index: usize) -> Option<&Path> {
        self.files.get(index).map(|(p, _)| p.as_path())
    }
}

impl ClassificationDataset for ClassFolder {
    fn len(&self) -> usize {
        self.files.len()
    }

    fn classes(&self) -> usize {
        self.classes.len()
    }

    fn get(&self, index: usize) -> Result<LabeledImage> {
        let Some((path, label)) = self.files.get(index) else {
            return Err(Error::invalid(
                "ClassFolder::get",
                format!("index {index} out of {}", self.files.len()),
            ));
        };
        let px = decode::load_image(path, self.config.channels)?;
        let (h, w, c) = (px.height, px.width, px.channels);
        let (image, shape) = match self.config.size {
            Some((th, tw)) if h > 0 && w > 0 => (
                transform::resize_image(&px.data, [h, w, c], th, tw),
                [th, tw, c],
            ),
            Some(_) => return Err(Error::data(path, "image of zero size")),
            None => (px.data, [h, w, c]),
        };
        Ok(LabeledImage {
            image: HostTensor::new(shape, image)?,
            label: *label,
        })
    }
}
