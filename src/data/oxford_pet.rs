//! The Oxford-IIIT Pet data set: `images/<name>.jpg` and `annotations/trimaps/<name>.png`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::data::decode::Channels;
use crate::data::{
    ClassMap, Dataset, ImageMaskFolder, ImageMaskFolderConfig, Sample, IGNORE_INDEX,
};
use crate::error::{Error, Result};

/// What the trimap's border class (value 3, "not classified") becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrimapBorder {
    /// [`IGNORE_INDEX`]: border pixels count in neither the loss nor the metrics.
    #[default]
    Ignore,
    /// Class 1, pet: the outline is part of the animal.
    Pet,
}

/// Which images of the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PetSplit {
    /// Every image in `images/`.
    #[default]
    All,
    /// The names in `annotations/trainval.txt`.
    TrainVal,
    /// The names in `annotations/test.txt`.
    Test,
}

/// Options of [`OxfordPet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OxfordPetConfig {
    pub border: TrimapBorder,
    pub split: PetSplit,
    /// [`Channels::Rgb`] by default: the set has a few grayscale and CMYK JPEGs.
    pub channels: Channels,
}

impl Default for OxfordPetConfig {
    fn default() -> Self {
        OxfordPetConfig {
            border: TrimapBorder::Ignore,
            split: PetSplit::All,
            channels: Channels::Rgb,
        }
    }
}

/// Oxford-IIIT Pet as foreground segmentation: class 0 background, class 1 pet. Trimap values are
/// 1 pet, 2 background, 3 border (see [`TrimapBorder`]). Images have varied sizes, so a batch needs
/// a resize (`transform::Pipeline::resize`).
#[derive(Debug, Clone)]
pub struct OxfordPet {
    inner: ImageMaskFolder,
}

impl OxfordPet {
    /// Lists `root/images` and `root/annotations/trimaps` (and the split's list file). Errors when
    /// a folder or list file is missing, an image has no trimap, a listed name has no image, or
    /// the set is empty.
    pub fn new(root: impl AsRef<Path>, config: OxfordPetConfig) -> Result<Self> {
        let root = root.as_ref();
        let border = match config.border {
            TrimapBorder::Ignore => IGNORE_INDEX,
            TrimapBorder::Pet => 1,
        };
        let folder = ImageMaskFolderConfig {
            images: PathBuf::from("images"),
            masks: Path::new("annotations").join("trimaps"),
            mask_suffix: String::new(),
            class_map: ClassMap::new(&[(1, 1), (2, 0), (3, border)])?,
            channels: config.channels,
        };
        let mut inner = ImageMaskFolder::new(root, folder)?;
        let list = match config.split {
            PetSplit::All => return Ok(OxfordPet { inner }),
            PetSplit::TrainVal => root.join("annotations").join("trainval.txt"),
            PetSplit::Test => root.join("annotations").join("test.txt"),
        };
        let names = read_list(&list)?;
        let stems: HashSet<String> = inner.stems().into_iter().collect();
        if let Some(missing) = names.iter().find(|n| !stems.contains(*n)) {
            return Err(Error::data(
                &list,
                format!("lists {missing}, which has no image in images/"),
            ));
        }
        if names.is_empty() {
            return Err(Error::data(
                &list,
                "empty data set: the list names no image",
            ));
        }
        inner.select(&names);
        Ok(OxfordPet { inner })
    }

    /// The underlying image and mask pairs.
    pub fn files(&self) -> &ImageMaskFolder {
        &self.inner
    }
}

/// The first word of every non-empty line that is not a `#` comment.
fn read_list(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::data(path, "split list not found")
        } else {
            Error::Io {
                path: path.to_path_buf(),
                source: e,
            }
        }
    })?;
    Ok(text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

impl Dataset for OxfordPet {
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
