//! A segmentation data set in one HDF5 file: `images` (N×H×W×C or N×C×H×W; uint8 scaled to [0, 1],
//! float32 or float64 as they are) and `masks` (N×H×W, uint8 class indices, 255 ignored). Each
//! sample is a partial read of one row of each dataset, so the file may be larger than memory.

use std::path::Path;

use crate::data::{Dataset, Sample, IGNORE_INDEX};
use crate::error::{Error, Result};
use crate::io::hdf5::{ElementType, H5Reader};

/// The axis order of the `images` dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageLayout {
    /// N×H×W×C (magnet's, NumPy's images).
    Nhwc,
    /// N×C×H×W (PyTorch's).
    Nchw,
}

/// Where the data lie in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hdf5SegmentationConfig {
    /// The images dataset, `images` by default.
    pub images: String,
    /// The masks dataset, `masks` by default.
    pub masks: String,
    /// The images' layout; `None`: the images dataset's string attribute `layout` ("NHWC" or
    /// "NCHW"), else NHWC.
    pub layout: Option<ImageLayout>,
    /// Number of classes; `None`: the integer attribute `classes` of the masks dataset or the
    /// file, else one more than the largest mask value (a pass over the masks).
    pub classes: Option<usize>,
}

impl Default for Hdf5SegmentationConfig {
    fn default() -> Self {
        Hdf5SegmentationConfig {
            images: "images".into(),
            masks: "masks".into(),
            layout: None,
            classes: None,
        }
    }
}

/// Images and masks read sample by sample from an HDF5 file.
#[derive(Debug)]
pub struct Hdf5Segmentation {
    reader: H5Reader,
    cfg: Hdf5SegmentationConfig,
    layout: ImageLayout,
    image_type: ElementType,
    len: usize,
    height: usize,
    width: usize,
    channels: usize,
    classes: usize,
}

impl Hdf5Segmentation {
    /// Opens `path` and checks that images and masks agree in count and size.
    pub fn open(path: impl AsRef<Path>, cfg: Hdf5SegmentationConfig) -> Result<Self> {
        let reader = H5Reader::open(path)?;
        let err = |reason: String| Error::data(reader.path(), reason);
        let layout = match cfg.layout {
            Some(l) => l,
            None => match reader.attr(&cfg.images, "layout")? {
                None => ImageLayout::Nhwc,
                Some(v) => match v.as_str().map(str::to_ascii_uppercase).as_deref() {
                    Some("NHWC") => ImageLayout::Nhwc,
                    Some("NCHW") => ImageLayout::Nchw,
                    _ => return Err(err(format!("'{}' has layout {v:?}", cfg.images))),
                },
            },
        };
        let dims = reader.shape(&cfg.images)?.dims().to_vec();
        let [n, h, w, c] = match (layout, dims.as_slice()) {
            (ImageLayout::Nhwc, &[n, h, w, c]) => [n, h, w, c],
            (ImageLayout::Nchw, &[n, c, h, w]) => [n, h, w, c],
            _ => {
                return Err(err(format!(
                    "'{}' of shape {dims:?} is not 4-D",
                    cfg.images
                )))
            }
        };
        let image_type = reader.element_type(&cfg.images)?;
        if image_type == ElementType::I64 {
            return Err(err(format!(
                "'{}' holds int64, not an image type",
                cfg.images
            )));
        }
        let mask_dims = reader.shape(&cfg.masks)?.dims().to_vec();
        if mask_dims != [n, h, w] {
            return Err(err(format!(
                "'{}' has shape {mask_dims:?}, the images need [{n}, {h}, {w}]",
                cfg.masks
            )));
        }
        if reader.element_type(&cfg.masks)? != ElementType::U8 {
            return Err(err(format!(
                "'{}' must hold uint8 class indices",
                cfg.masks
            )));
        }
        let mut set = Hdf5Segmentation {
            reader,
            layout,
            image_type,
            len: n,
            height: h,
            width: w,
            channels: c,
            classes: 0,
            cfg,
        };
        set.classes = set.find_classes()?;
        Ok(set)
    }

    fn find_classes(&self) -> Result<usize> {
        if let Some(c) = self.cfg.classes {
            return Ok(c);
        }
        for object in [self.cfg.masks.as_str(), "/"] {
            if let Some(v) = self.reader.attr(object, "classes")? {
                return v.as_u64().map(|c| c as usize).ok_or_else(|| {
                    Error::data(self.reader.path(), format!("attribute 'classes' is {v:?}"))
                });
            }
        }
        // About 16 MB of masks per read.
        let rows = (16 << 20) / (self.height * self.width).max(1);
        let mut largest = 0u8;
        for start in (0..self.len).step_by(rows.max(1)) {
            let end = (start + rows.max(1)).min(self.len);
            let (_, masks) = self.reader.read_rows::<u8>(&self.cfg.masks, start..end)?;
            largest = masks
                .iter()
                .filter(|&&m| m != IGNORE_INDEX)
                .fold(largest, |a, &m| a.max(m));
        }
        Ok(largest as usize + 1)
    }

    /// Sample size `(height, width, channels)`.
    pub fn sample_size(&self) -> (usize, usize, usize) {
        (self.height, self.width, self.channels)
    }

    fn image(&self, index: usize) -> Result<Vec<f32>> {
        let rows = index..index + 1;
        let name = &self.cfg.images;
        let data: Vec<f32> = match self.image_type {
            ElementType::U8 => {
                let (_, v) = self.reader.read_rows::<u8>(name, rows)?;
                v.into_iter().map(|x| x as f32 / 255.0).collect()
            }
            ElementType::F32 => self.reader.read_rows::<f32>(name, rows)?.1,
            ElementType::F64 => {
                let (_, v) = self.reader.read_rows::<f64>(name, rows)?;
                v.into_iter().map(|x| x as f32).collect()
            }
            ElementType::I64 => {
                return Err(Error::data(self.reader.path(), "int64 images"));
            }
        };
        Ok(match self.layout {
            ImageLayout::Nhwc => data,
            ImageLayout::Nchw => {
                let (h, w, c) = (self.height, self.width, self.channels);
                let mut out = vec![0.0; data.len()];
                for ch in 0..c {
                    for p in 0..h * w {
                        out[p * c + ch] = data[ch * h * w + p];
                    }
                }
                out
            }
        })
    }
}

impl Dataset for Hdf5Segmentation {
    fn len(&self) -> usize {
        self.len
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn get(&self, index: usize) -> Result<Sample> {
        if index >= self.len {
            return Err(Error::data(
                self.reader.path(),
                format!("sample {index} of {}", self.len),
            ));
        }
        let image = self.image(index)?;
        let (_, mask) = self
            .reader
            .read_rows::<u8>(&self.cfg.masks, index..index + 1)?;
        Ok(Sample {
            height: self.height,
            width: self.width,
            channels: self.channels,
            image,
            mask,
        })
    }
}
