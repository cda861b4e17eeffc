//! Model predictions to HDF5, batch by batch: `logits` N×C×H×W float32 (PyTorch's layout) and
//! `masks` N×H×W uint8 (the arg-max class), both chunked by sample and gzip-compressed, with the
//! root attributes `classes` and `layout` = "NCHW".

use std::path::Path;

use crate::error::{Error, Result};
use crate::io::hdf5::{AttrValue, H5Writer, WriteOptions};
use crate::tensor::HostTensor;

/// Writes predictions for `n` images of `height × width` with `classes` classes; the file
/// appears at its path only when [`PredictionWriter::finish`] succeeds.
#[derive(Debug)]
pub struct PredictionWriter {
    writer: H5Writer,
    n: usize,
    height: usize,
    width: usize,
    classes: usize,
    written: usize,
}

impl PredictionWriter {
    /// Starts the file at `path`.
    pub fn create(
        path: impl AsRef<Path>,
        n: usize,
        height: usize,
        width: usize,
        classes: usize,
    ) -> Result<Self> {
        let writer = H5Writer::create(path)?;
        let chunks = WriteOptions::gzip(1, 4);
        if n > 0 {
            writer.create_empty::<f32>("logits", &[n, classes, height, width], chunks)?;
            writer.create_empty::<u8>("masks", &[n, height, width], chunks)?;
        }
        writer.set_attr("/", "classes", &AttrValue::UInt(classes as u64))?;
        writer.set_attr("/", "layout", &"NCHW".into())?;
        Ok(PredictionWriter {
            writer,
            n,
            height,
            width,
            classes,
            written: 0,
        })
    }

    /// Appends a batch of NHWC logits `[b, height, width, classes]` (magnet's layout).
    pub fn write_batch(&mut self, logits: &HostTensor) -> Result<()> {
        let (h, w, c) = (self.height, self.width, self.classes);
        let b = match logits.shape().dims() {
            &[b, lh, lw, lc] if (lh, lw, lc) == (h, w, c) => b,
            _ => {
                return Err(Error::Hdf5 {
                    path: self.writer.path().to_path_buf(),
                    reason: format!(
                        "predictions of shape {} for images {h}×{w} with {c} classes",
                        logits.shape()
                    ),
                })
            }
        };
        if self.written + b > self.n {
            return Err(Error::Hdf5 {
                path: self.writer.path().to_path_buf(),
                reason: format!("more than the {} predictions announced", self.n),
            });
        }
        let data = logits.data();
        let mut nchw = vec![0.0; data.len()];
        let mut masks = vec![0u8; b * h * w];
        for (p, scores) in data.chunks(c).enumerate() {
            let (image, pixel) = (p / (h * w), p % (h * w));
            let mut best = 0;
            for (k, &s) in scores.iter().enumerate() {
                nchw[(image * c + k) * h * w + pixel] = s;
                if s > scores[best] {
                    best = k;
                }
            }
            masks[p] = best.min(u8::MAX as usize) as u8;
        }
        self.writer.write_rows("logits", self.written, &nchw)?;
        self.writer.write_rows("masks", self.written, &masks)?;
        self.written += b;
        Ok(())
    }

    /// Renames the finished file into place; errors unless all `n` predictions were written.
    pub fn finish(self) -> Result<()> {
        if self.written != self.n {
            return Err(Error::Hdf5 {
                path: self.writer.path().to_path_buf(),
                reason: format!("{} of {} predictions written", self.written, self.n),
            });
        }
        self.writer.finish()
    }
}
