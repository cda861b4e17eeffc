//! MNIST and Fashion-MNIST: IDX files, plain or gzip-compressed.
//!
//! An IDX file is a big-endian header — two zero bytes, a type code (0x08 for unsigned bytes),
//! the number of dimensions — then one u32 per dimension, then the data, row-major.

use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;

use crate::data::classification::{ClassificationDataset, LabeledImage, Split};
use crate::error::{Error, Result};
use crate::tensor::HostTensor;

/// An IDX array of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

/// Reads the IDX file at `path` (gzip-compressed when it starts with gzip's magic bytes). Errors
/// naming the file on a bad header, a type other than unsigned bytes, or a length that differs
/// from what the header's sizes imply.
pub fn read_idx(path: impl AsRef<Path>) -> Result<Idx> {
    let path = path.as_ref();
    let raw = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| Error::data(path, format!("corrupt gzip data: {e}")))?;
        out
    } else {
        raw
    };
    parse_idx(path, bytes)
}

fn parse_idx(path: &Path, mut bytes: Vec<u8>) -> Result<Idx> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(Error::data(path, "not an IDX file (bad magic number)"));
    }
    if bytes[2] != 0x08 {
        return Err(Error::data(
            path,
            format!(
                "IDX element type 0x{:02x}; only unsigned bytes (0x08) are supported",
                bytes[2]
            ),
        ));
    }
    let rank = bytes[3] as usize;
    let header = 4 + 4 * rank;
    if rank == 0 || bytes.len() < header {
        return Err(Error::data(
            path,
            format!(
                "IDX header of {rank} dimensions does not fit in {} bytes",
                bytes.len()
            ),
        ));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let got = bytes.len() - header;
    if expected != Some(got) {
        return Err(Error::data(
            path,
            format!("IDX header sizes {dims:?} disagree with the file length: {got} data bytes"),
        ));
    }
    bytes.drain(..header);
    Ok(Idx { dims, data: bytes })
}

/// MNIST-format images `[rows, cols, 1]` scaled to [0, 1] with their labels; classes are
/// `max label + 1` (10 for MNIST and Fashion-MNIST). Everything is held in memory as bytes.
#[derive(Debug, Clone)]
pub struct Mnist {
    images: Vec<u8>,
    labels: Vec<u8>,
    rows: usize,
    cols: usize,
    classes: usize,
}

impl Mnist {
    /// `train-images-idx3-ubyte` and `train-labels-idx1-ubyte` (or `t10k-…` for the test split)
    /// in `dir`, each plain or with `.gz`.
    pub fn new(dir: impl AsRef<Path>, split: Split) -> Result<Self> {
        let dir = dir.as_ref();
        let prefix = match split {
            Split::Train => "train",
            Split::Test => "t10k",
        };
        let images = find(dir, &format!("{prefix}-images-idx3-ubyte"))?;
        let labels = find(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
        Mnist::from_files(images, labels)
    }

    /// An images file `[n, rows, cols]` and a labels file `[n]`. Errors naming the file when a
    /// header is bad, the ranks are wrong, or the counts differ.
    pub fn from_files(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Self> {
        let (images_path, labels_path) = (images.as_ref(), labels.as_ref());
        let images = read_idx(images_path)?;
        let labels = read_idx(labels_path)?;
        let &[n, rows, cols] = images.dims.as_slice() else {
            return Err(Error::data(
                images_path,
                format!(
                    "expected 3 dimensions [n, rows, cols], got {:?}",
                    images.dims
                ),
            ));
        };
        if labels.dims.len() != 1 {
            return Err(Error::data(
                labels_path,
                format!("expected 1 dimension [n], got {:?}", labels.dims),
            ));
        }
        if labels.dims[0] != n {
            return Err(Error::data(
                labels_path,
                format!(
                    "{} labels for {n} images in {}",
                    labels.dims[0],
                    images_path.display()
                ),
            ));
        }
        if n == 0 {
            return Err(Error::data(images_path, "empty data set: no images"));
        }
        let classes = labels
            .data
            .iter()
            .copied()
            .max()
            .map_or(0, |m| m as usize + 1);
        Ok(Mnist {
            images: images.data,
            labels: labels.data,
            rows,
            cols,
            classes,
        })
    }

    /// `(rows, cols)` of every image.
    pub fn image_size(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// Every label, in order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }
}

/// `dir/name`, or `dir/name.gz` when only that exists.
fn find(dir: &Path, name: &str) -> Result<PathBuf> {
    let plain = dir.join(name);
    let gz = dir.join(format!("{name}.gz"));
    if plain.is_file() {
        Ok(plain)
    } else if gz.is_file() {
        Ok(gz)
    } else {
        Err(Error::data(plain, "file not found (nor with .gz)"))
    }
}

impl ClassificationDataset for Mnist {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn classes(&self) -> usize {
        self.classes
    }

    fn get(&self, index: usize) -> Result<LabeledImage> {
        let pixels = self.rows * self.cols;
        let Some(&label) = self.labels.get(index) else {
            return Err(Error::invalid(
                "Mnist::get",
                format!("index {index} out of {}", self.labels.len()),
            ));
        };
        let data = self.images[index * pixels..(index + 1) * pixels]
            .iter()
            .map(|&b| f32::from(b) / 255.0)
            .collect();
        Ok(LabeledImage {
            image: HostTensor::new([self.rows, self.cols, 1], data)?,
            label: label as usize,
        })
    }
}
