//! What each epoch of training measured, and the CSV log of it.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::Result;
use crate::io::atomic::write_bytes;

/// One epoch's numbers. Validation metrics are dataset-level (pixels pooled over the validation
/// set) unless named `per_image`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: usize,
    pub learning_rate: f32,
    /// Mean training loss over the epoch's batches.
    pub train_loss: f32,
    pub val_loss: f32,
    /// Mean IoU over the classes (pixels pooled over the validation set).
    pub val_miou: f32,
    /// Mean Dice over the classes (pixels pooled).
    pub val_dice: f32,
    /// Fraction of validation pixels classified correctly.
    pub val_pixel_accuracy: f32,
    /// Mean over validation images of each image's mean IoU.
    pub val_miou_per_image: f32,
    pub seconds: f32,
    pub images_per_second: f32,
}

/// The records of every epoch so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    pub records: Vec<EpochRecord>,
}

const HEADER: &str =
    "epoch,learning_rate,train_loss,val_loss,val_miou,val_dice,val_pixel_accuracy,\
val_miou_per_image,seconds,images_per_second";

impl History {
    /// The history as CSV text with a header line.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(HEADER);
        out.push('\n');
        for r in &self.records {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{:.3},{:.2}",
                r.epoch,
                r.learning_rate,
                r.train_loss,
                r.val_loss,
                r.val_miou,
                r.val_dice,
                r.val_pixel_accuracy,
                r.val_miou_per_image,
                r.seconds,
                r.images_per_second
            );
        }
        out
    }

    /// Writes the CSV log to `path` (atomically).
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        write_bytes(path, self.to_csv().as_bytes())
    }

    /// The record with the highest validation mean IoU.
    pub fn best(&self) -> Option<&EpochRecord> {
        self.records
            .iter()
            .max_by(|a, b| a.val_miou.total_cmp(&b.val_miou))
    }
}
