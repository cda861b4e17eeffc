//! Opening the data set named on the command line, resized to the model's input size.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, ValueEnum};
use magnet::data::{
    self, Carvana, Channels, ClassMap, Dataset, ImageMaskFolder, ImageMaskFolderConfig, Isbi2012,
    Isbi2012Config, IsbiForeground, OxfordPet, OxfordPetConfig, Pipeline, Synthetic,
    SyntheticConfig, Transformed, TrimapBorder,
};
use magnet::{Error, Result};

/// The layout of a data folder or file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Guess from the folder's contents or the file's extension.
    Auto,
    /// `images/` and `masks/` paired by file name, with `--mask-map`.
    Folder,
    /// Oxford-IIIT Pet: `images/*.jpg`, `annotations/trimaps/*.png`.
    Pet,
    /// Carvana: `imgs/<id>.jpg`, `masks/<id>_mask.gif`.
    Carvana,
    /// ISBI 2012 EM: `images/N.png`, `masks/N.png`; slices 0–23 train, 24–29 test.
    Isbi,
    /// An HDF5 file with `images` and `masks` datasets.
    Hdf5,
}

/// Where the data comes from and how it is prepared.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// `synthetic` (built-in shapes, no files), a data folder, or an HDF5 file.
    #[arg(long, default_value = "synthetic")]
    pub data: String,
    /// Layout of `--data`.
    #[arg(long, value_enum, default_value = "auto")]
    pub format: Format,
    /// Images are resized to SIZE × SIZE (a multiple of 16).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Mask values to classes for `folder` data, e.g. `0:0,255:1` (the default).
    #[arg(long)]
    pub mask_map: Option<String>,
    /// ISBI: the class-1 structure.
    #[arg(long, value_enum, default_value = "membrane")]
    pub isbi_foreground: IsbiTarget,
    /// Oxford Pet: the trimap's border pixels are ignored, or counted as pet.
    #[arg(long, value_enum, default_value = "ignore")]
    pub pet_border: PetBorder,
    /// Number of synthetic images (training + validation).
    #[arg(long, default_value_t = 240)]
    pub samples: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsbiTarget {
    Membrane,
    Cells,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PetBorder {
    Ignore,
    Pet,
}

/// A data set behind a pointer, so every layout has one type.
pub type AnyDataset = Arc<dyn Dataset>;

/// The training and validation parts of the data, resized, with what the model needs to know.
pub struct Opened {
    pub train: AnyDataset,
    pub validation: AnyDataset,
    pub classes: usize,
    pub channels: usize,
}

impl DataArgs {
    /// Opens the data and splits it: ISBI by its fixed slices, synthetic by generating a separate
    /// validation set, anything else by holding out `validation_fraction` at random (`seed`).
    /// Training samples get random flips when `augment`.
    pub fn open(&self, validation_fraction: f64, seed: u64, augment: bool) -> Result<Opened> {
        if self.size == 0 || self.size % 16 != 0 {
            return Err(Error::invalid(
                "--size",
                format!("{} is not a positive multiple of 16", self.size),
            ));
        }
        let (train, validation): (AnyDataset, AnyDataset) = if self.data == "synthetic" {
            let validation = (self.samples / 5).max(1);
            let config = |samples, seed| SyntheticConfig {
                samples,
                size: self.size,
                seed,
                ..Default::default()
            };
            (
                Arc::new(Synthetic::new(config(self.samples - validation, seed))?),
                Arc::new(Synthetic::new(config(validation, seed ^ 0x5eed))?),
            )
        } else {
            let path = PathBuf::from(&self.data);
            match self.resolve_format(&path)? {
                Format::Isbi => {
                    let config = Isbi2012Config {
                        foreground: self.isbi_target(),
                        ..Default::default()
                    };
                    let (train, test) = Isbi2012::train_test(&path, config)?;
                    (Arc::new(train), Arc::new(test))
                }
                format => {
                    let all = self.open_all(&path, format)?;
                    let (train, validation) = data::split(all, validation_fraction, seed)?;
                    (Arc::new(train), Arc::new(validation))
                }
            }
        };
        let classes = train.classes().max(validation.classes());
        let channels = train.get(0)?.channels;
        let mut pipeline = Pipeline::new(seed).resize(self.size, self.size);
        let eval = pipeline.clone();
        if augment {
            pipeline = pipeline.horizontal_flip(0.5).vertical_flip(0.5);
        }
        Ok(Opened {
            train: Arc::new(Transformed::new(train, pipeline)),
            validation: Arc::new(Transformed::new(validation, eval)),
            classes,
            channels,
        })
    }

    /// The whole data set (no split), resized.
    #[cfg_attr(not(feature = "hdf5"), allow(dead_code))]
    pub fn open_whole(&self) -> Result<(AnyDataset, usize, usize)> {
        if self.data == "synthetic" {
            return Err(Error::invalid("--data", "name a data folder or file"));
        }
        let path = PathBuf::from(&self.data);
        let all = self.open_all(&path, self.resolve_format(&path)?)?;
        let (classes, channels) = (all.classes(), all.get(0)?.channels);
        let resized = Transformed::new(all, Pipeline::new(0).resize(self.size, self.size));
        Ok((Arc::new(resized), classes, channels))
    }

    fn open_all(&self, path: &Path, format: Format) -> Result<AnyDataset> {
        Ok(match format {
            Format::Folder => {
                let class_map = match &self.mask_map {
                    Some(text) => parse_mask_map(text)?,
                    None => ClassMap::binary(),
                };
                Arc::new(ImageMaskFolder::new(
                    path,
                    ImageMaskFolderConfig {
                        class_map,
                        ..Default::default()
                    },
                )?)
            }
            Format::Pet => {
                let border = match self.pet_border {
                    PetBorder::Ignore => TrimapBorder::Ignore,
                    PetBorder::Pet => TrimapBorder::Pet,
                };
                Arc::new(OxfordPet::new(
                    path,
                    OxfordPetConfig {
                        border,
                        ..Default::default()
                    },
                )?)
            }
            Format::Carvana => Arc::new(Carvana::new(path, Channels::Rgb)?),
            Format::Isbi => {
                let config = Isbi2012Config {
                    foreground: self.isbi_target(),
                    ..Default::default()
                };
                Arc::new(Isbi2012::new(path, config)?)
            }
            Format::Hdf5 => open_hdf5(path)?,
            Format::Auto => unreachable!("resolved before"),
        })
    }

    fn isbi_target(&self) -> IsbiForeground {
        match self.isbi_foreground {
            IsbiTarget::Membrane => IsbiForeground::Membrane,
            IsbiTarget::Cells => IsbiForeground::Cells,
        }
    }

    /// The format `--format auto` stands for at `path`.
    fn resolve_format(&self, path: &Path) -> Result<Format> {
        if self.format != Format::Auto {
            return Ok(self.format);
        }
        if path.is_file() {
            return match path.extension().and_then(|e| e.to_str()) {
                Some("h5" | "hdf5") => Ok(Format::Hdf5),
                _ => Err(Error::data(
                    path,
                    "a file must be HDF5 (.h5); pass --format",
                )),
            };
        }
        if !path.is_dir() {
            return Err(Error::data(path, "no such file or folder"));
        }
        Ok(if path.join("annotations/trimaps").is_dir() {
            Format::Pet
        } else if path.join("imgs").is_dir() {
            Format::Carvana
        } else {
            Format::Folder
        })
    }
}

#[cfg(feature = "hdf5")]
fn open_hdf5(path: &Path) -> Result<AnyDataset> {
    Ok(Arc::new(data::Hdf5Segmentation::open(
        path,
        Default::default(),
    )?))
}

#[cfg(not(feature = "hdf5"))]
fn open_hdf5(path: &Path) -> Result<AnyDataset> {
    Err(Error::data(
        path,
        "this build has no HDF5 support; rebuild with the `hdf5` feature",
    ))
}

/// `0:0,255:1` → a class map.
fn parse_mask_map(text: &str) -> Result<ClassMap> {
    let pairs = text
        .split(',')
        .map(|pair| {
            let (value, class) = pair.split_once(':').unwrap_or((pair, ""));
            match (value.trim().parse::<u8>(), class.trim().parse::<u8>()) {
                (Ok(v), Ok(c)) => Ok((v, c)),
                _ => Err(Error::invalid(
                    "--mask-map",
                    format!("'{pair}' is not VALUE:CLASS"),
                )),
            }
        })
        .collect::<Result<Vec<_>>>()?;
    ClassMap::new(&pairs)
}
