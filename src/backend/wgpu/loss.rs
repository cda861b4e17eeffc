//! Losses with their gradients, foreground masks, the distance transform and confusion counts
//! (`shaders/loss.wgsl`).
//!
//! Scalar losses are sums of per-row terms written to scratch and summed on the device. Kernels
//! are split by rows (pixels), images for the column pass of the distance transform.
//!
//! Labels live on the device, so only the device can check them: a label that is neither a
//! class in `[0, classes)` nor the ignore index (for [`LossOps::foreground_mask`], one that is
//! not a non-negative integer) contributes nothing, and the shader records the first one in a
//! small status buffer. The kernels that read labels (cross-entropy, Dice, confusion counts,
//! foreground masks) then wait for those 16 bytes and return the same `InvalidArgument` error
//! as the CPU backend: the one place this backend waits outside `download` and `sync`, paid once
//! per loss evaluation so that bad labels are an error where they are used.

use std::ops::Range;

use super::window::{Arg, Work};
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
    /// `totals[c] = Σ_r data[r·width + c]`.
    fn column_sums(
        &self,
        op: &'static str,
        data: &::wgpu::Buffer,
        rows: usize,
        width: usize,
        totals: &::wgpu::Buffer,
    ) -> Result<()> {
        self.launch(
            op,
            Kernel::new(SHADER, "column_sums"),
            &[Arg::per(data, width)],
            &[Arg::whole(totals)],
            &[word(op, width)?],
            &Work::groups("row", rows, width),
        )
    }

    /// An optional input of one element per row, or the placeholder bound whole.
    fn optional<'a>(buf: Option<&'a WgpuBuffer>, none: &'a ::wgpu::Buffer) -> Arg<'a> {
        buf.map_or(Arg::whole(none), |b| Arg::per(&b.buf, 1))
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
        let terms = self.scratch(OP, 2 * rows)?;
        let totals = self.scratch(OP, 2)?;
        let [ignore, has_ignore] = ignore_words(p.ignore_index);
        let status = self.status(OP)?;
        self.launch(
            OP,
            Kernel::new(SHADER, "ce_rows"),
            &[
                Arg::per(&logits.buf, classes),
                Arg::per(&labels.buf, 1),
                Arg::whole(cw),
                Self::optional(pixel_weights, &none),
            ],
            &[
                Arg::per(&grad.buf, classes),
                Arg::per(&terms, 2),
                Arg::whole(&status),
            ],
            &[
                word(OP, classes)?,
                ignore,
                has_ignore,
                u32::from(class_weights.is_some()),
                u32::from(pixel_weights.is_some()),
                p.gamma.to_bits(),
            ],
            &Work::threads("row", rows, 1),
        )?;
        self.column_sums(OP, &terms, rows, 2, &totals)?;
        let constants = [("MODE", 0.0)];
        // At least one thread, which writes the loss.
        self.launch(
            OP,
            Kernel::with(SHADER, "loss_finish", &constants),
            &[Arg::whole(&totals)],
            &[Arg::per(&grad.buf, 1), Arg::whole(&loss.buf)],
            &[word(OP, len)?, 0],
            &Work::threads("element", len.max(1), 1),
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
        let inv_n = if n == 0 { 0.0 } else { (1.0 / n as f64) as f32 };
        let terms = self.scratch(OP, n)?;
        let totals = self.scratch(OP, 1)?;
        let element = |buf| Arg::per(buf, 1);
        self.launch(
            OP,
            Kernel::new(SHADER, "bce_rows"),
            &[
                element(&logits.buf),
                element(&targets.buf),
                Self::optional(pixel_weights, &none),
            ],
            &[element(&grad.buf), element(&terms)],
            &[
                u32::from(pixel_weights.is_some()),
                p.pos_weight.to_bits(),
                inv_n.to_bits(),
            ],
            &Work::threads("element", n, 1),
        )?;
        self.column_sums(OP, &terms, n, 1, &totals)?;
        // One thread writes the loss; the gradient, not used in this mode, binds one element.
        let constants = [("MODE", 1.0)];
        self.launch(
            OP,
            Kernel::with(SHADER, "loss_finish", &constants),
            &[Arg::whole(&totals)],
            &[element(&grad.buf), Arg::whole(&loss.buf)],
            &[word(OP, n)?, inv_n.to_bits()],
            &Work::threads("element", 1, 1),
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
        let rows_work = Work::threads("row", rows, 1);
        // The probabilities go into `grad`, which the last pass turns into the gradient.
        self.launch(
            OP,
            Kernel::new(SHADER, "dice_probs"),
            &[Arg::per(&logits.buf, classes), Arg::per(&labels.buf, 1)],
            &[Arg::per(&grad.buf, classes), Arg::whole(&status)],
            &words,
            &rows_work,
        )?;
        // A workgroup per class of every image the rows meet.
        let pixels = p.pixels_per_image;
        let images_met = move |u: Range<usize>| (u.end - 1) / pixels + 1 - u.start / pixels;
        self.launch(
            OP,
            Kernel::new(SHADER, "dice_sums"),
            &[Arg::per(&grad.buf, classes), Arg::per(&labels.buf, 1)],
            &[Arg::whole(&sums)],
            &words,
            &Work::new("row", rows, move |u| {
                let groups = images_met(u.clone()) * classes;
                (u, groups)
            }),
        )?;
        self.launch(
            OP,
            Kernel::new(SHADER, "dice_coef"),
            &[Arg::whole(&sums)],
            &[Arg::whole(&coef), Arg::whole(&loss.buf)],
            &words,
            &Work::groups("call", 1, 1),
        )?;
        self.launch(
            OP,
            Kernel::new(SHADER, "dice_grad"),
            &[Arg::per(&labels.buf, 1), Arg::whole(&coef)],
            &[Arg::per(&grad.buf, classes)],
            &words,
            &rows_work,
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
        self.launch(
            OP,
            Kernel::new(SHADER, "foreground"),
            &[Arg::per(&labels.buf, 1)],
            &[Arg::per(&mask.buf, 1), Arg::whole(&status)],
            &[
                (p.background as f32).to_bits(),
                ignore.to_bits(),
                has_ignore,
            ],
            &Work::threads("element", p.len, 1),
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
            word(OP, p.height)?,
            word(OP, p.width)?,
            p.empty_distance().to_bits(),
        ];
        word(OP, len)?;
        let cols = self.scratch(OP, len)?;
        let sites = self.scratch(OP, len)?;
        let bounds = self.scratch(OP, len)?;
        // A thread per column reads its whole image: split by images.
        let image = p.height * p.width;
        self.launch(
            OP,
            Kernel::new(SHADER, "dt_columns"),
            &[Arg::per(&mask.buf, image)],
            &[Arg::per(&cols, image)],
            &words,
            &Work::threads("image", p.batch, p.width),
        )?;
        let row = |buf| Arg::per(buf, p.width);
        self.launch(
            OP,
            Kernel::new(SHADER, "dt_rows"),
            &[row(&cols)],
            &[row(&out.buf), row(&sites), row(&bounds)],
            &words,
            &Work::threads("row", p.batch * p.height, 1),
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
        self.launch(
            OP,
            Kernel::new(SHADER, "confusion_count"),
            &[Arg::per(&logits.buf, classes), Arg::per(&labels.buf, 1)],
            &[Arg::whole(&acc), Arg::whole(&status)],
            &[
                word(OP, p.pixels_per_image)?,
                word(OP, classes)?,
                ignore,
                has_ignore,
            ],
            &Work::threads("row", rows, 1),
        )?;
        self.launch(
            OP,
            Kernel::new(SHADER, "confusion_store"),
            &[Arg::per(&acc, 1)],
            &[Arg::per(&counts.buf, 1)],
            &[],
            &Work::threads("element", cells, 1),
        )?;
        self.check_labels(OP, &status)
    }
}
