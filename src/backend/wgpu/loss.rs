//! Losses with their gradients, foreground masks, the distance transform and confusion counts
//! (`shaders/loss.wgsl`).
//!
//! Scalar losses are sums of per-row terms written to scratch and summed on the device.
//!
//! Labels live on the device, so only the device can check them: a label that is neither a
//! class in `[0, classes)` nor the ignore index (for [`LossOps::foreground_mask`], one that is
//! not a non-negative integer) contributes nothing, and the shader records the first one in a
//! small status buffer. The kernels that read labels (cross-entropy, Dice, confusion counts,
//! foreground masks) then wait for those 16 bytes and return the same `InvalidArgument` error
//! as the CPU backend: the one place this backend waits outside `download` and `sync`, paid once
//! per loss evaluation so that bad labels are an error where they are used.

use super::{check_len, product, shader, word, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::*;
use crate::error::{Error, Result};

const SHADER: Shader = shader!("loss.wgsl");

/// `(ignore, has_ignore)` words.
fn ignore_words(ignore: Option<u32>) -> [u32; 2] {
    match ignore {
        Some(i) => [i, 1],
        None => [0, 0],
    }
}

impl WgpuBackend {
    /// `totals[g, c] = Σ_r data[(g·rows + r)·width + c]`.
    fn column_sums(
        &self,
        op: &'static str,
        data: &::wgpu::Buffer,
        groups: usize,
        rows: usize,
        width: usize,
        totals: &::wgpu::Buffer,
    ) -> Result<()> {
        self.dispatch(
            op,
            Kernel::new(SHADER, "column_sums"),
            &[data],
            &[totals],
            &[word(op, groups)?, word(op, rows)?, word(op, width)?],
            self.grid(op, groups * width)?,
        )
    }

    /// A fresh status buffer for one label-checking kernel: op code, row, label bits, 0.
    fn status(&self, op: &'static str) -> Result<::wgpu::Buffer> {
        self.scratch(op, 4)
    }

    /// Waits for `status` and turns a recorded bad label into the CPU backend's error.
    fn check_labels(&self, op: &'static str, status: &::wgpu::Buffer) -> Result<()> {
        let flags = self.read_back(status, 4)?;
        if flags[0] == 0 {
            return Ok(());
        }
        let what = if flags[0] == 4 {
            "is not a non-negative integer"
        } else {
            "is not a class nor the ignore index"
        };
        Err(Error::invalid(
            op,
            format!(
                "label {} of row {} {what}",
                f32::from_bits(flags[2]),
                flags[1]
            ),
        ))
    }

    /// A one-element placeholder for an absent optional input.
    fn placeholder(&self) -> ::wgpu::Buffer {
        self.storage_from(&[0.0f32])
    }
}

impl LossOps for WgpuBackend {
    fn softmax_cross_entropy(
        &self,
        p: &CrossEntropyParams,
        logits: &WgpuBuffer,
        labels: &WgpuBuffer,
        class_weights: Option<&WgpuBuffer>,
        pixel_weights: Option<&WgpuBuffer>,
        loss: &mut WgpuBuffer,
        grad: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "softmax_cross_entropy";
        p.validate(OP)?;
        let (rows, classes) = (p.rows, p.classes);
        let len = product(OP, &[rows, classes])?;
        check_len(OP, logits, len)?;
        check_len(OP, labels, rows)?;
        check_len(OP, loss, 1)?;
        check_len(OP, grad, len)?;
        if let Some(w) = class_weights {
            check_len(OP, w, classes)?;
        }
        if let Some(w) = pixel_weights {
            check_len(OP, w, rows)?;
        }
        let none = self.placeholder();
        let cw = class_weights.map_or(&none, |b| &b.buf);
        let pw = pixel_weights.map_or(&none, |b| &b.buf);
        let terms = self.scratch(OP, 2 * rows)?;
        let totals = self.scratch(OP, 2)?;
        let [ignore, has_ignore] = ignore_words(p.ignore_index);
        let status = self.status(OP)?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "ce_rows"),
            &[&logits.buf, &labels.buf, cw, pw],
            &[&grad.buf, &terms, &status],
            &[
                word(OP, rows)?,
                word(OP, classes)?,
                ignore,
                has_ignore,
                u32::from(class_weights.is_some()),
                u32::from(pixel_weights.is_some()),
                p.gamma.to_bits(),
            ],
            self.grid_for(OP, rows)?,
        )?;
        self.column_sums(OP, &terms, 1, rows, 2, &totals)?;
        let constants = [("MODE", 0.0)];
        self.dispatch(
            OP,
            Kernel::with(SHADER, "loss_finish", &constants),
            &[&totals],
            &[&grad.buf, &loss.buf],
            &[word(OP, len)?, 0],
            self.grid_for(OP, len.max(1))?,
        )?;
        self.check_labels(OP, &status)
    }

    fn sigmoid_binary_cross_entropy(
        &self,
        p: &BinaryCrossEntropyParams,
        logits: &WgpuBuffer,
        targets: &WgpuBuffer,
        pixel_weights: Option<&WgpuBuffer>,
        loss: &mut WgpuBuffer,
        grad: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "sigmoid_binary_cross_entropy";
        p.validate(OP)?;
        let n = p.len;
        check_len(OP, logits, n)?;
        check_len(OP, targets, n)?;
        check_len(OP, loss, 1)?;
        check_len(OP, grad, n)?;
        if let Some(w) = pixel_weights {
            check_len(OP, w, n)?;
        }
        let none = self.placeholder();
        let pw = pixel_weights.map_or(&none, |b| &b.buf);
        let inv_n = if n == 0 { 0.0 } else { (1.0 / n as f64) as f32 };
        let terms = self.scratch(OP, n)?;
        let totals = self.scratch(OP, 1)?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "bce_rows"),
            &[&logits.buf, &targets.buf, pw],
            &[&grad.buf, &terms],
            &[
                word(OP, n)?,
                u32::from(pixel_weights.is_some()),
                p.pos_weight.to_bits(),
                inv_n.to_bits(),
            ],
            self.grid_for(OP, n)?,
        )?;
        self.column_sums(OP, &terms, 1, n, 1, &totals)?;
        let constants = [("MODE", 1.0)];
        self.dispatch(
            OP,
            Kernel::with(SHADER, "loss_finish", &constants),
            &[&totals],
            &[&grad.buf, &loss.buf],
            &[word(OP, n)?, inv_n.to_bits()],
            [1, 1, 1],
        )
    }

    fn soft_dice(
        &self,
        p: &SoftDiceParams,
        logits: &WgpuBuffer,
        labels: &WgpuBuffer,
        loss: &mut WgpuBuffer,
        grad: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "soft_dice";
        p.validate(OP)?;
        let classes = p.classes;
        let rows = p.rows();
        let len = product(OP, &[rows, classes])?;
        check_len(OP, logits, len)?;
        check_len(OP, labels, rows)?;
        check_len(OP, loss, 1)?;
        check_len(OP, grad, len)?;
        let [ignore, has_ignore] = ignore_words(p.ignore_index);
        let terms = (p.images * (classes - p.first_class())) as f64;
        let inv_terms = if terms > 0.0 {
            (1.0 / terms) as f32
        } else {
            0.0
        };
        let words = [
            word(OP, p.images)?,
            word(OP, p.pixels_per_image)?,
            word(OP, classes)?,
            ignore,
            has_ignore,
            p.first_class() as u32,
            p.eps.to_bits(),
            inv_terms.to_bits(),
        ];
        let sums = self.scratch(OP, product(OP, &[p.images, 3, classes])?)?;
        let coef = self.scratch(OP, product(OP, &[p.images, classes, 2])?)?;
        let status = self.status(OP)?;
        // The probabilities go into `grad`, which the last pass turns into the gradient.
        self.dispatch(
            OP,
            Kernel::new(SHADER, "dice_probs"),
            &[&logits.buf, &labels.buf],
            &[&grad.buf, &status],
            &words,
            self.grid_for(OP, rows)?,
        )?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "dice_sums"),
            &[&grad.buf, &labels.buf],
            &[&sums],
            &words,
            self.grid(OP, p.images * classes)?,
        )?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "dice_coef"),
            &[&sums],
            &[&coef, &loss.buf],
            &words,
            [1, 1, 1],
        )?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "dice_grad"),
            &[&labels.buf, &coef],
            &[&grad.buf],
            &words,
            self.grid_for(OP, rows)?,
        )?;
        self.check_labels(OP, &status)
    }

    fn foreground_mask(
        &self,
        p: &ForegroundParams,
        labels: &WgpuBuffer,
        mask: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "foreground_mask";
        check_len(OP, labels, p.len)?;
        check_len(OP, mask, p.len)?;
        let (ignore, has_ignore) = match p.ignore_index {
            Some(i) => (i as f32, 1),
            None => (0.0, 0),
        };
        let status = self.status(OP)?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "foreground"),
            &[&labels.buf],
            &[&mask.buf, &status],
            &[
                word(OP, p.len)?,
                (p.background as f32).to_bits(),
                ignore.to_bits(),
                has_ignore,
            ],
            self.grid_for(OP, p.len)?,
        )?;
        self.check_labels(OP, &status)
    }

    fn distance_transform(
        &self,
        p: &ImageGridParams,
        mask: &WgpuBuffer,
        out: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "distance_transform";
        let len = p.len(OP)?;
        check_len(OP, mask, len)?;
        check_len(OP, out, len)?;
        if p.is_empty() {
            return Ok(());
        }
        let words = [
            word(OP, p.batch)?,
            word(OP, p.height)?,
            word(OP, p.width)?,
            p.empty_distance().to_bits(),
        ];
        word(OP, len)?;
        let cols = self.scratch(OP, len)?;
        let sites = self.scratch(OP, len)?;
        let bounds = self.scratch(OP, len)?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "dt_columns"),
            &[&mask.buf],
            &[&cols],
            &words,
            self.grid_for(OP, p.batch * p.width)?,
        )?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "dt_rows"),
            &[&cols],
            &[&out.buf, &sites, &bounds],
            &words,
            self.grid_for(OP, p.batch * p.height)?,
        )
    }

    fn confusion_matrix(
        &self,
        p: &ConfusionParams,
        logits: &WgpuBuffer,
        labels: &WgpuBuffer,
        counts: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "confusion_matrix";
        p.validate(OP)?;
        let classes = p.classes;
        let rows = p.rows();
        check_len(OP, logits, product(OP, &[rows, classes])?)?;
        check_len(OP, labels, rows)?;
        let cells = product(OP, &[p.images, classes, classes])?;
        check_len(OP, counts, cells)?;
        let [ignore, has_ignore] = ignore_words(p.ignore_index);
        // New buffers are zero-filled: the counters start at 0.
        let acc = self.scratch(OP, cells)?;
        let status = self.status(OP)?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "confusion_count"),
            &[&logits.buf, &labels.buf],
            &[&acc, &status],
            &[
                word(OP, rows)?,
                word(OP, p.pixels_per_image)?,
                word(OP, classes)?,
                ignore,
                has_ignore,
            ],
            self.grid_for(OP, rows)?,
        )?;
        self.dispatch(
            OP,
            Kernel::new(SHADER, "confusion_store"),
            &[&acc],
            &[&counts.buf],
            &[word(OP, cells)?, 0],
            self.grid_for(OP, cells)?,
        )?;
        self.check_labels(OP, &status)
    }
}
