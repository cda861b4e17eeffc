//! CIFAR-10 and CIFAR-100 in their binary form: fixed-size records of label bytes followed by a
//! 32×32 image as three planes, R then G then B, each row-major.

use std::path::Path;

use crate::data::classification::{ClassificationDataset, LabeledImage, Split};
use crate::error::{Error, Result};
use crate::tensor::HostTensor;

const SIDE: usize = 32;
const PIXELS: usize = SIDE * SIDE * 3;

/// Which data set the records come from, and for CIFAR-100 which label to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CifarLabels {
    /// CIFAR-10: one label byte, 10 classes.
    Cifar10,
    /// CIFAR-100's coarse label (first of two label bytes), 20 super-classes.
    Cifar100Coarse,
    /// CIFAR-100's fine label (second of two label bytes), 100 classes.
    Cifar100Fine,
}

impl CifarLabels {
    fn label_bytes(self) -> usize {
        match self {
            CifarLabels::Cifar10 => 1,
            _ => 2,
        }
    }

    fn classes(self) -> usize {
        match self {
            CifarLabels::Cifar10 => 10,
            CifarLabels::Cifar100Coarse => 20,
            CifarLabels::Cifar100Fine => 100,
        }
    }
}

/// CIFAR images `[32, 32, 3]` scaled to [0, 1] with their labels, held in memory as bytes.
#[derive(Debug, Clone)]
pub struct Cifar {
    /// `n` images, each 3072 bytes of planes R, G, B.
    pixels: Vec<u8>,
    labels: Vec<u8>,
    kind: CifarLabels,
}

impl Cifar {
    /// CIFAR-10's `data_batch_1.bin` … `data_batch_5.bin` (train) or `test_batch.bin` (test) in
    /// `dir` (the archive's `cifar-10-batches-bin`).
    pub fn cifar10(dir: impl AsRef<Path>, split: Split) -> Result<Self> {
        let dir = dir.as_ref();
        let files: Vec<_> = match split {
            Split::Train => (1..=5)
                .map(|i| dir.join(format!("data_batch_{i}.bin")))
                .collect(),
            Split::Test => vec![dir.join("test_batch.bin")],
        };
        Cifar::from_files(&files, CifarLabels::Cifar10)
    }

    /// CIFAR-100's `train.bin` or `test.bin` in `dir` (the archive's `cifar-100-binary`), with the
    /// coarse or fine labels.
    pub fn cifar100(dir: impl AsRef<Path>, split: Split, labels: CifarLabels) -> Result<Self> {
        let name = match split {
            Split::Train => "train.bin",
            Split::Test => "test.bin",
        };
        Cifar::from_files(&[dir.as_ref().join(name)], labels)
    }

    /// The records of `files`, in order. Errors naming the file when its length is not a
    /// multiple of the record size, a label is out of range, or there are no records.
    pub fn from_files(files: &[impl AsRef<Path>], kind: CifarLabels) -> Result<Self> {
        let record = kind.label_bytes() + PIXELS;
        let mut pixels = Vec::new();
        let mut labels = Vec::new();
        for file in files {
            let path = file.as_ref();
            let bytes = std::fs::read(path).map_err(|source| Error::Io {
                path: path.to_path_buf(),
                source,
            })?;
            if bytes.len() % record != 0 {
                return Err(Error::data(
                    path,
                    format!(
                        "length {} is not a multiple of the {record}-byte record of {kind:?}",
                        bytes.len()
                    ),
                ));
            }
            for (r, rec) in bytes.chunks_exact(record).enumerate() {
                let label = match kind {
                    CifarLabels::Cifar10 | CifarLabels::Cifar100Coarse => rec[0],
                    CifarLabels::Cifar100Fine => rec[1],
                };
                if label as usize >= kind.classes() {
                    return Err(Error::data(
                        path,
                        format!(
                            "record {r} has label {label}, outside the {} classes of {kind:?}",
                            kind.classes()
                        ),
                    ));
                }
                labels.push(label);
                pixels.extend_from_slice(&rec[kind.label_bytes()..]);
            }
        }
        if labels.is_empty() {
            let path = files
                .first()
                .map(|f| f.as_ref().to_path_buf())
                .unwrap_or_default();
            return Err(Error::data(path, "empty data set: no records"));
        }
        Ok(Cifar {
            pixels,
            labels,
            kind,
        })
    }

    /// Every label, in order.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }
}

impl ClassificationDataset for Cifar {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn classes(&self) -> usize {
        self.kind.classes()
    }

    fn get(&self, index: usize) -> Result<LabeledImage> {
        let Some(&label) = self.labels.get(index) else {
            return Err(Error::invalid(
                "Cifar::get",
                format!("index {index} out of {}", self.labels.len()),
            ));
        };
        let planes = &self.pixels[index * PIXELS..(index + 1) * PIXELS];
        let plane = SIDE * SIDE;
        let mut data = Vec::with_capacity(PIXELS);
        // Planes [3, 32, 32] to channels-last [32, 32, 3].
        for p in 0..plane {
            for c in 0..3 {
                data.push(f32::from(planes[c * plane + p]) / 255.0);
            }
        }
        Ok(LabeledImage {
            image: HostTensor::new([SIDE, SIDE, 3], data)?,
            label: label as usize,
        })
    }
}
