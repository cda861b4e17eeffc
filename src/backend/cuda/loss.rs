//! Losses with their gradients, foreground masks, the Euclidean distance transform and confusion
//! counts (`kernels/loss.cu`, `kernels/distance.cu`).
//!
//! Each loss runs a few kernels: per-row work with per-block partial sums, a fixed-order sum of
//! the partials on the device, then the gradient, which reads the sums from device memory; no
//! value comes back to the host. Labels that are neither a class nor the ignore index cannot be
//! reported without waiting for the device, so by default such rows count as ignored and class
//! weights are not checked; with [`CudaBackend::set_validate_labels`] both are checked first, as
//! on the CPU, at the cost of one synchronisation per call.

use cudarc::driver::LaunchConfig;

use super::kernels::Module;
use super::{check_len, grid, launch, CudaBackend, CudaBuffer, BLOCK};
use crate::backend::*;
use crate::error::{Error, Result};

/// Blocks of the partial-sum kernels (each writes one partial per sum).
const PARTIAL_BLOCKS: usize = 1024;

/// Rows of one image summed by one block of the Dice partial kernel.
const DICE_ROWS_PER_CHUNK: usize = 4096;

/// Largest classes² confusion histogram kept in shared memory (32 KiB of u32 counters).
const SHARED_HIST_CELLS: usize = 8192;

/// The ignore index as the kernels take it (-1 for none).
fn ignore_code(ignore: Option<u32>) -> i64 {
    ignore.map_or(-1, i64::from)
}

/// What [`CudaBackend::first_invalid`] accepts.
#[derive(Debug, Clone, Copy)]
enum Valid {
    /// A class in `[0, classes)` or the ignore index.
    Class { classes: usize, ignore: Option<u32> },
    /// A non-negative integer.
    NonNegativeInteger,
    /// Finite and at least 0.
    NonNegative,
}

/// A launch of `blocks` blocks of [`BLOCK`] threads.
fn blocks(n: usize) -> (LaunchConfig, usize) {
    let b = n.div_ceil(BLOCK as usize).clamp(1, PARTIAL_BLOCKS);
    (
        LaunchConfig {
            grid_dim: (b as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        },
        b,
    )
}

fn single_block() -> LaunchConfig {
    LaunchConfig {
        grid_dim: (1, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn checked(op: &'static str, sizes: &[usize]) -> Result<usize> {
    sizes
        .iter()
        .try_fold(1usize, |acc, &s| acc.checked_mul(s))
        .ok_or_else(|| Error::invalid(op, format!("sizes {sizes:?} overflow")))
}

impl CudaBackend {
    /// The first element of `buf` that is not `valid`, with its value: runs a check kernel and
    /// waits for it.
    fn first_invalid(&self, buf: &CudaBuffer, valid: Valid) -> Result<Option<(usize, f32)>> {
        if buf.len == 0 {
            return Ok(None);
        }
        let (classes, ignore, mode) = match valid {
            Valid::Class { classes, ignore } => (classes as u64, ignore_code(ignore), 0i32),
            Valid::NonNegativeInteger => (0, -1, 1),
            Valid::NonNegative => (0, -1, 2),
        };
        let stream = &self.inner.stream;
        let first = stream
            .clone_htod(&[u64::MAX])
            .map_err(|e| super::driver_error("allocating a validation flag", e))?;
        let (vp, n, fp) = (self.ptr(buf), buf.len as u64, self.slice_ptr(&first));
        launch!(self, Module::Loss, "find_invalid", grid(buf.len); vp, n, classes, ignore, mode, fp)?;
        let mut index = [0u64];
        stream
            .memcpy_dtoh(&first, &mut index)
            .map_err(|e| super::driver_error("reading a validation flag", e))?;
        self.sync()?;
        if index[0] == u64::MAX {
            return Ok(None);
        }
        let i = index[0] as usize;
        let mut value = [0f32];
        stream
            .memcpy_dtoh(&buf.data.slice(i..i + 1), &mut value)
            .map_err(|e| super::driver_error("reading an invalid value", e))?;
        self.sync()?;
        Ok(Some((i, value[0])))
    }

    /// With validation on, errors (as the CPU does) on the first label of `labels` that is
    /// neither a class nor the ignore index.
    fn validate_classes(
        &self,
        op: &'static str,
        labels: &CudaBuffer,
        classes: usize,
        ignore: Option<u32>,
    ) -> Result<()> {
        if !self.validate_labels() {
            return Ok(());
        }
        if let Some((row, v)) = self.first_invalid(labels, Valid::Class { classes, ignore })? {
            let ignore = ignore.map_or_else(|| "none".to_string(), |i| i.to_string());
            return Err(Error::invalid(
                op,
                format!(
                    "label {v} of row {row} is not a class in [0, {classes}) nor the ignore index ({ignore})"
                ),
            ));
        }
        Ok(())
    }

    /// `sums[j] = Σ_p part[p · width + j]` for `j < width`, on the device.
    fn sum_partials(&self, part: u64, parts: usize, width: usize, sums: u64) -> Result<()> {
        let cfg = LaunchConfig {
            grid_dim: (width as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let (parts64, width64) = (parts as u64, width as u64);
        launch!(self, Module::Loss, "sum_partials", cfg; part, parts64, width64, sums)
    }
}

impl LossOps for CudaBackend {
    fn softmax_cross_entropy(
        &self,
        p: &CrossEntropyParams,
        logits: &CudaBuffer,
        labels: &CudaBuffer,
        class_weights: Option<&CudaBuffer>,
        pixel_weights: Option<&CudaBuffer>,
        loss: &mut CudaBuffer,
        grad: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "softmax_cross_entropy";
        p.validate(OP)?;
        let (rows, classes) = (p.rows, p.classes);
        check_len(OP, logits, rows * classes)?;
        check_len(OP, labels, rows)?;
        check_len(OP, loss, 1)?;
        check_len(OP, grad, rows * classes)?;
        if let Some(w) = class_weights {
            check_len(OP, w, classes)?;
        }
        if let Some(w) = pixel_weights {
            check_len(OP, w, rows)?;
        }
        if self.validate_labels() {
            if let Some(w) = class_weights {
                if let Some((_, bad)) = self.first_invalid(w, Valid::NonNegative)? {
                    return Err(Error::invalid(
                        OP,
                        format!("class weight {bad} must be finite and >= 0"),
                    ));
                }
            }
        }
        self.validate_classes(OP, labels, classes, p.ignore_index)?;
        if rows == 0 {
            return self.fill_n(loss, 1, 0.0);
        }
        let (cfg, nblocks) = blocks(rows);
        let part = self.scratch::<f64>(2 * nblocks)?;
        let sums = self.scratch::<f64>(2)?;
        let (zp, lp, cwp, pwp) = (
            self.ptr(logits),
            self.ptr(labels),
            self.opt_ptr(class_weights),
            self.opt_ptr(pixel_weights),
        );
        let (rows64, classes64, ignore, gamma) = (
            rows as u64,
            classes as u64,
            ignore_code(p.ignore_index),
            p.gamma as f64,
        );
        let (pp, sp, lossp, gradp) = (
            self.slice_ptr(&part),
            self.slice_ptr(&sums),
            self.ptr(loss),
            self.ptr(grad),
        );
        launch!(self, Module::Loss, "ce_partial", cfg;
            zp, lp, cwp, pwp, rows64, classes64, ignore, gamma, pp)?;
        self.sum_partials(pp, nblocks, 2, sp)?;
        launch!(self, Module::Loss, "ce_loss", single_block(); sp, lossp)?;
        launch!(self, Module::Loss, "ce_grad", grid(rows);
            zp, lp, cwp, pwp, rows64, classes64, ignore, gamma, sp, gradp)
    }

    fn sigmoid_binary_cross_entropy(
        &self,
        p: &BinaryCrossEntropyParams,
        logits: &CudaBuffer,
        targets: &CudaBuffer,
        pixel_weights: Option<&CudaBuffer>,
        loss: &mut CudaBuffer,
        grad: &mut CudaBuffer,
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
        if n == 0 {
            return self.fill_n(loss, 1, 0.0);
        }
        let (cfg, nblocks) = blocks(n);
        let part = self.scratch::<f64>(nblocks)?;
        let sums = self.scratch::<f64>(1)?;
        let inv_n = 1.0 / n as f64;
        let (xp, tp, pwp, n64, pos) = (
            self.ptr(logits),
            self.ptr(targets),
            self.opt_ptr(pixel_weights),
            n as u64,
            p.pos_weight as f64,
        );
        let (gp, pp, sp, lossp) = (
            self.ptr(grad),
            self.slice_ptr(&part),
            self.slice_ptr(&sums),
            self.ptr(loss),
        );
        launch!(self, Module::Loss, "bce_partial", cfg; xp, tp, pwp, n64, pos, inv_n, gp, pp)?;
        self.sum_partials(pp, nblocks, 1, sp)?;
        launch!(self, Module::Loss, "scale_loss", single_block(); sp, inv_n, lossp)
    }

    fn soft_dice(
        &self,
        p: &SoftDiceParams,
        logits: &CudaBuffer,
        labels: &CudaBuffer,
        loss: &mut CudaBuffer,
        grad: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "soft_dice";
        p.validate(OP)?;
        let (classes, ppi, images) = (p.classes, p.pixels_per_image, p.images);
        let rows = p.rows();
        check_len(OP, logits, rows * classes)?;
        check_len(OP, labels, rows)?;
        check_len(OP, loss, 1)?;
        check_len(OP, grad, rows * classes)?;
        self.validate_classes(OP, labels, classes, p.ignore_index)?;
        let first_class = p.first_class();
        let terms = (images * (classes - first_class)) as f64;
        if images == 0 {
            // No Dice term at all: 0 / 0, as the CPU computes it.
            return self.fill_n(loss, 1, f32::NAN);
        }
        if images > 65535 {
            return Err(Error::invalid(
                OP,
                format!("{images} images exceed one launch (at most 65535)"),
            ));
        }
        let cls = self.scratch::<i32>(rows)?;
        let stats = self.scratch::<f64>(2 * rows)?;
        let chunks = ppi.div_ceil(DICE_ROWS_PER_CHUNK).clamp(1, 65535);
        let rows_per_chunk = ppi.div_ceil(chunks).max(1);
        let part = self.scratch::<f64>(checked(OP, &[images, chunks, 3, classes])?)?;
        let coef = self.scratch::<f64>(2 * images * classes)?;
        let term = self.scratch::<f64>(images * classes)?;
        let (zp, lp, rows64, classes64, ignore) = (
            self.ptr(logits),
            self.ptr(labels),
            rows as u64,
            classes as u64,
            ignore_code(p.ignore_index),
        );
        let (cp, sp, pp, cfp, tp) = (
            self.slice_ptr(&cls),
            self.slice_ptr(&stats),
            self.slice_ptr(&part),
            self.slice_ptr(&coef),
            self.slice_ptr(&term),
        );
        if rows > 0 {
            launch!(self, Module::Loss, "dice_rows", grid(rows);
                zp, lp, rows64, classes64, ignore, cp, sp)?;
        }
        let (ppi64, rpc) = (ppi as u64, rows_per_chunk as u64);
        let cfg = LaunchConfig {
            grid_dim: (classes.div_ceil(32) as u32, chunks as u32, images as u32),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, Module::Loss, "dice_partial", cfg; zp, cp, sp, ppi64, classes64, rpc, pp)?;
        let (images64, chunks64, first64, eps) = (
            images as u64,
            chunks as u64,
            first_class as u64,
            p.eps as f64,
        );
        launch!(self, Module::Loss, "dice_coef", grid(images * classes);
            pp, images64, chunks64, classes64, first64, eps, terms, cfp, tp)?;
        let (cells, lossp, gp) = ((images * classes) as u64, self.ptr(loss), self.ptr(grad));
        launch!(self, Module::Loss, "dice_loss", single_block(); tp, cells, terms, lossp)?;
        if rows > 0 {
            launch!(self, Module::Loss, "dice_grad", grid(rows);
                zp, cp, sp, cfp, rows64, ppi64, classes64, gp)?;
        }
        Ok(())
    }

    fn foreground_mask(
        &self,
        p: &ForegroundParams,
        labels: &CudaBuffer,
        mask: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "foreground_mask";
        check_len(OP, labels, p.len)?;
        check_len(OP, mask, p.len)?;
        if p.len == 0 {
            return Ok(());
        }
        if self.validate_labels() {
            if let Some((i, v)) = self.first_invalid(labels, Valid::NonNegativeInteger)? {
                return Err(Error::invalid(
                    OP,
                    format!("label {v} of pixel {i} is not a non-negative integer"),
                ));
            }
        }
        let (lp, mp, n, background) = (
            self.ptr(labels),
            self.ptr(mask),
            p.len as u64,
            p.background as f32,
        );
        let has_ignore = i32::from(p.ignore_index.is_some());
        let ignore = p.ignore_index.map_or(0.0, |i| i as f32);
        launch!(self, Module::Loss, "foreground_mask", grid(p.len);
            lp, mp, n, background, has_ignore, ignore)
    }

    fn distance_transform(
        &self,
        p: &ImageGridParams,
        mask: &CudaBuffer,
        out: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "distance_transform";
        let len = p.len(OP)?;
        check_len(OP, mask, len)?;
        check_len(OP, out, len)?;
        if p.is_empty() {
            return Ok(());
        }
        if p.height.max(p.width) > i32::MAX as usize {
            return Err(Error::invalid(OP, "images over 2^31 pixels on a side"));
        }
        let columns = self.scratch::<f32>(len)?;
        let sites = self.scratch::<i32>(len)?;
        let bounds = self.scratch::<f64>(len)?;
        let (mp, op, n) = (self.ptr(mask), self.ptr(out), len as u64);
        let (colp, sitep, boundp) = (
            self.slice_ptr(&columns),
            self.slice_ptr(&sites),
            self.slice_ptr(&bounds),
        );
        let (batch, h, w, empty) = (
            p.batch as u64,
            p.height as u64,
            p.width as u64,
            p.empty_distance(),
        );
        // `out` first holds the initial f (0 on the foreground, +inf elsewhere).
        launch!(self, Module::Distance, "edt_init", grid(len); mp, op, n)?;
        launch!(self, Module::Distance, "edt_columns", grid(p.batch * p.width);
            op, colp, batch, h, w, sitep, boundp)?;
        launch!(self, Module::Distance, "edt_rows", grid(p.batch * p.height);
            colp, op, batch, h, w, empty, sitep, boundp)
    }

    fn confusion_matrix(
        &self,
        p: &ConfusionParams,
        logits: &CudaBuffer,
        labels: &CudaBuffer,
        counts: &mut CudaBuffer,
    ) -> Result<()> {
        const OP: &str = "confusion_matrix";
        p.validate(OP)?;
        let (classes, ppi, images) = (p.classes, p.pixels_per_image, p.images);
        let rows = p.rows();
        let cells = classes * classes;
        check_len(OP, logits, rows * classes)?;
        check_len(OP, labels, rows)?;
        check_len(OP, counts, images * cells)?;
        self.validate_classes(OP, labels, classes, p.ignore_index)?;
        if counts.len == 0 {
            return Ok(());
        }
        let raw = self
            .inner
            .stream
            .alloc_zeros::<u32>(images * cells)
            .map_err(|e| super::driver_error("allocating confusion counters", e))?;
        let rawp = self.slice_ptr(&raw);
        if rows > 0 {
            let (zp, lp, images64, ppi64, classes64, ignore) = (
                self.ptr(logits),
                self.ptr(labels),
                images as u64,
                ppi as u64,
                classes as u64,
                ignore_code(p.ignore_index),
            );
            let shared = cells <= SHARED_HIST_CELLS && images <= 65535;
            let cfg = if shared {
                let per_image = ppi.div_ceil(BLOCK as usize).clamp(1, 64);
                LaunchConfig {
                    grid_dim: (per_image as u32, images as u32, 1),
                    block_dim: (BLOCK, 1, 1),
                    shared_mem_bytes: (cells * 4) as u32,
                }
            } else {
                grid(rows)
            };
            let use_shared = i32::from(shared);
            launch!(self, Module::Loss, "confusion_count", cfg;
                zp, lp, images64, ppi64, classes64, ignore, rawp, use_shared)?;
        }
        let (cp, n) = (self.ptr(counts), counts.len as u64);
        // `raw` is freed in stream order, after the conversion.
        launch!(self, Module::Loss, "u32_to_f32", grid(counts.len); rawp, cp, n)
    }
}
