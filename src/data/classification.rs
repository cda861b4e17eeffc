//! Image classification data: one label per image.

use crate::error::{Error, Result};
use crate::tensor::{HostTensor, Shape};

/// Which part of a data set that ships a training and a test part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

/// An image and its class.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledImage {
    /// `[h, w, c]`, values in [0, 1].
    pub image: HostTensor,
    /// The class index, `< classes()`.
    pub label: usize,
}

/// A finite, indexable set of labelled images.
pub trait ClassificationDataset: Send + Sync {
    /// Number of images.
    fn len(&self) -> usize;

    /// Whether there are no images.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of classes.
    fn classes(&self) -> usize;

    /// Image `index` (< `len()`) and its label.
    fn get(&self, index: usize) -> Result<LabeledImage>;

    /// The images at `indices` stacked as `[n, h, w, c]`, and their labels as f32 `[n]`. Errors
    /// when the images differ in size.
    fn batch(&self, indices: &[usize]) -> Result<(HostTensor, HostTensor)> {
        let mut images = Vec::new();
        let mut labels = Vec::with_capacity(indices.len());
        let mut shape: Option<Shape> = None;
        for &i in indices {
            let item = self.get(i)?;
            match &shape {
                Some(s) if s != item.image.shape() => {
                    return Err(Error::shape(
                        "ClassificationDataset::batch",
                        format!("image {i} differs in size from the batch's first"),
                        &[s, item.image.shape()],
                    ))
                }
                Some(_) => {}
                None => shape = Some(item.image.shape().clone()),
            }
            images.extend_from_slice(item.image.data());
            labels.push(item.label as f32);
        }
        let mut dims = vec![indices.len()];
        dims.extend_from_slice(shape.as_ref().map_or(&[0, 0, 0][..], |s| s.dims()));
        Ok((
            HostTensor::new(dims, images)?,
            HostTensor::new([indices.len()], labels)?,
        ))
    }
}
