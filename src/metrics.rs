//! Segmentation metrics: a confusion matrix of (true class, predicted class) pixel counts, and the
//! intersection over union (IoU), Dice and pixel accuracy derived from it.
//!
//! The counts come from the device: [`confusion_counts`] adds a node computing per-image counts
//! of the argmax of the logits against the labels ([`crate::backend::LossOps::confusion_matrix`]),
//! and [`ConfusionMatrix::add_node`] downloads them (only `N × C × C` numbers) and accumulates
//! them as u64 on the host.
//!
//! Two families of scores, never mixed:
//! - [`ConfusionMatrix::pooled`]: **dataset-level**, every pixel of every image pooled into one
//!   matrix, then per-class `IoU = TP / (TP + FP + FN)`, `Dice = 2TP / (2TP + FP + FN)`, and
//!   `pixel accuracy = Σ TP / Σ pixels`. Large images and large objects weigh more.
//! - [`ConfusionMatrix::mean_per_image`]: **mean over images**, each image scored on its own,
//!   then averaged. A class absent from both the truth and the prediction of an image (TP + FP +
//!   FN = 0) has no score in that image and is excluded from that image's mean and from the
//!   class's average; an image without any counted pixel (all ignored) is left out.
//!
//! In both, a class with no score anywhere is `None` and left out of the mean over classes.

use crate::backend::{Backend, ConfusionParams};
use crate::error::{Error, Result};
use crate::graph::ops::ConfusionCounts;
use crate::graph::{Executor, Graph, NodeId};
use crate::tensor::{HostTensor, Shape, TensorDesc};

/// Adds a node with the per-image confusion counts `[N, C, C]` (`[image, true, predicted]`, f32,
/// exact up to 2^24 per cell) of `logits` (`[N, C]` or NHWC `[N, H, W, C]`) against `labels` (class
/// indices as f32, the logits' shape without the class axis), skipping pixels labelled
/// `ignore_index`. The node is computed by every forward that feeds the labels.
pub fn confusion_counts<B: Backend>(
    g: &mut Graph<B>,
    logits: NodeId,
    labels: NodeId,
    ignore_index: Option<usize>,
) -> Result<NodeId> {
    let ignore_index = ignore_index
        .map(|i| {
            u32::try_from(i).map_err(|_| {
                Error::invalid(
                    "confusion_matrix",
                    format!("ignore_index {i} does not fit in u32"),
                )
            })
        })
        .transpose()?;
    g.apply(ConfusionCounts { ignore_index }, &[logits, labels])
}

/// Runs [`crate::backend::LossOps::confusion_matrix`] on device buffers and downloads the
/// `[images, C, C]` counts.
pub fn confusion_counts_of<B: Backend>(
    backend: &B,
    p: &ConfusionParams,
    logits: &B::Buffer,
    labels: &B::Buffer,
) -> Result<HostTensor> {
    p.validate("confusion_matrix")?;
    let shape = Shape::new([p.images, p.classes, p.classes]);
    let mut counts = backend.alloc(&TensorDesc::f32(shape.clone()))?;
    backend.confusion_matrix(p, logits, labels, &mut counts)?;
    backend.to_host(&counts, &shape)
}

/// Scores of one family (see the module documentation): per class, `None` where the class has no
/// score, and means over the classes that have one.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// `TP / (TP + FP + FN)` per class.
    pub class_iou: Vec<Option<f64>>,
    /// Mean of the defined `class_iou` (pooled), or mean over images of each image's mean IoU.
    pub mean_iou: Option<f64>,
    /// `2TP / (2TP + FP + FN)` per class.
    pub class_dice: Vec<Option<f64>>,
    /// Mean of the defined `class_dice` (pooled), or mean over images of each image's mean Dice.
    pub mean_dice: Option<f64>,
    /// Correctly classified pixels over counted pixels.
    pub pixel_accuracy: Option<f64>,
}

/// Per-class IoU and Dice of one `C × C` matrix; `None` for classes with TP + FP + FN = 0.
fn class_scores(counts: &[u64], classes: usize) -> (Vec<Option<f64>>, Vec<Option<f64>>) {
    (0..classes)
        .map(|c| {
            let tp = counts[c * classes + c];
            let truth: u64 = counts[c * classes..(c + 1) * classes].iter().sum();
            let predicted: u64 = (0..classes).map(|t| counts[t * classes + c]).sum();
            let (fn_, fp) = (truth - tp, predicted - tp);
            if tp + fp + fn_ == 0 {
                return (None, None);
            }
            let (tp, fp, fn_) = (tp as f64, fp as f64, fn_ as f64);
            (
                Some(tp / (tp + fp + fn_)),
                Some(2.0 * tp / (2.0 * tp + fp + fn_)),
            )
        })
        .unzip()
}

fn mean_defined(v: &[Option<f64>]) -> Option<f64> {
    let defined: Vec<f64> = v.iter().flatten().copied().collect();
    (!defined.is_empty()).then(|| defined.iter().sum::<f64>() / defined.len() as f64)
}

fn accuracy(counts: &[u64], classes: usize) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    let correct: u64 = (0..classes).map(|c| counts[c * classes + c]).sum();
    (total > 0).then(|| correct as f64 / total as f64)
}

/// Running sums of per-image scores.
#[derive(Debug, Clone, PartialEq, Default)]
struct ImageSums {
    images: u64,
    class_iou: Vec<f64>,
    class_dice: Vec<f64>,
    /// Images in which each class has a score.
    class_images: Vec<u64>,
    mean_iou: f64,
    mean_dice: f64,
    accuracy: f64,
}

/// Pixel counts of (true class, predicted class), pooled over every image added, plus running
/// per-image scores. See the module documentation for the two families of scores.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfusionMatrix {
    classes: usize,
    /// `counts[t · C + k]`: pixels of true class `t` predicted as `k`.
    counts: Vec<u64>,
    per_image: ImageSums,
}

impl ConfusionMatrix {
    /// An empty matrix for `classes` classes.
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix {
            classes,
            counts: vec![0; classes * classes],
            per_image: ImageSums {
                class_iou: vec![0.0; classes],
                class_dice: vec![0.0; classes],
                class_images: vec![0; classes],
                ..ImageSums::default()
            },
        }
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// The pooled counts, row-major `[true, predicted]`.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// Pixels of true class `truth` predicted as `predicted` (0 outside the classes).
    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        if truth < self.classes && predicted < self.classes {
            self.counts[truth * self.classes + predicted]
        } else {
            0
        }
    }

    /// Images that contributed to [`ConfusionMatrix::mean_per_image`] (those with at least one
    /// counted pixel).
    pub fn images(&self) -> u64 {
        self.per_image.images
    }

    /// Forgets everything added so far.
    pub fn reset(&mut self) {
        *self = ConfusionMatrix::new(self.classes);
    }

    /// Adds one image's `C × C` counts (row-major `[true, predicted]`).
    pub fn add_image(&mut self, counts: &[u64]) -> Result<()> {
        let c = self.classes;
        if counts.len() != c * c {
            return Err(Error::Length {
                op: "confusion_matrix",
                expected: c * c,
                got: counts.len(),
            });
        }
        for (total, &n) in self.counts.iter_mut().zip(counts) {
            *total += n;
        }
        let Some(acc) = accuracy(counts, c) else {
            return Ok(());
        };
        let (iou, dice) = class_scores(counts, c);
        let s = &mut self.per_image;
        s.images += 1;
        s.accuracy += acc;
        s.mean_iou += mean_defined(&iou).unwrap_or(0.0);
        s.mean_dice += mean_defined(&dice).unwrap_or(0.0);
        for k in 0..c {
            if let (Some(i), Some(d)) = (iou[k], dice[k]) {
                s.class_iou[k] += i;
                s.class_dice[k] += d;
                s.class_images[k] += 1;
            }
        }
        Ok(())
    }

    /// Adds the `[N, C, C]` counts of [`confusion_counts`] (or [`confusion_counts_of`]), one
    /// image at a time; the values must be non-negative integers.
    pub fn add_counts(&mut self, counts: &HostTensor) -> Result<()> {
        let c = self.classes;
        if c == 0 {
            return Err(Error::invalid("confusion_matrix", "a matrix of 0 classes"));
        }
        let dims = counts.shape().dims();
        if dims.len() != 3 || dims[1] != c || dims[2] != c {
            return Err(Error::shape(
                "confusion_matrix",
                format!("counts must be [images, {c}, {c}]"),
                &[counts.shape()],
            ));
        }
        // Every count is checked before any is added, so a bad tensor leaves the matrix alone.
        let mut parsed = Vec::with_capacity(counts.data().len());
        for &v in counts.data() {
            if !(v >= 0.0 && v.fract() == 0.0) {
                return Err(Error::invalid(
                    "confusion_matrix",
                    format!("count {v} is not a non-negative integer"),
                ));
            }
            parsed.push(v as u64);
        }
        for image in parsed.chunks_exact(c * c) {
            self.add_image(image)?;
        }
        Ok(())
    }

    /// Downloads the counts node `node` (made by [`confusion_counts`]) from the executor's last
    /// forward and adds them.
    pub fn add_node<B: Backend>(&mut self, exec: &Executor<B>, node: NodeId) -> Result<()> {
        self.add_counts(&exec.value(node)?)
    }

    /// Adds everything `other` (same number of classes) accumulated.
    pub fn merge(&mut self, other: &ConfusionMatrix) -> Result<()> {
        if other.classes != self.classes {
            return Err(Error::invalid(
                "confusion_matrix",
                format!("merging {} classes into {}", other.classes, self.classes),
            ));
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        let (s, o) = (&mut self.per_image, &other.per_image);
        s.images += o.images;
        s.accuracy += o.accuracy;
        s.mean_iou += o.mean_iou;
        s.mean_dice += o.mean_dice;
        for k in 0..self.classes {
            s.class_iou[k] += o.class_iou[k];
            s.class_dice[k] += o.class_dice[k];
            s.class_images[k] += o.class_images[k];
        }
        Ok(())
    }

    /// Dataset-level scores: all pixels pooled into one matrix.
    pub fn pooled(&self) -> Scores {
        let (class_iou, class_dice) = class_scores(&self.counts, self.classes);
        Scores {
            mean_iou: mean_defined(&class_iou),
            mean_dice: mean_defined(&class_dice),
            class_iou,
            class_dice,
            pixel_accuracy: accuracy(&self.counts, self.classes),
        }
    }

    /// Scores averaged over images: each image's mean IoU, mean Dice and pixel accuracy averaged
    /// over the images; per class, the average over the images where the class has a score.
    pub fn mean_per_image(&self) -> Scores {
        let s = &self.per_image;
        let over = |sum: f64, n: u64| (n > 0).then(|| sum / n as f64);
        let per_class = |sums: &[f64]| -> Vec<Option<f64>> {
            sums.iter()
                .zip(&s.class_images)
                .map(|(&sum, &n)| over(sum, n))
                .collect()
        };
        Scores {
            class_iou: per_class(&s.class_iou),
            mean_iou: over(s.mean_iou, s.images),
            class_dice: per_class(&s.class_dice),
            mean_dice: over(s.mean_dice, s.images),
            pixel_accuracy: over(s.accuracy, s.images),
        }
    }
}
