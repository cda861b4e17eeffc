//! Reductions to a broadcastable shape, a direct broadcast kernel, and softmax / log-softmax
//! (`kernels/reduce.cu`, `kernels/elementwise.cu`).
//!
//! The input's axes are grouped into runs of reduced and kept axes (as on the CPU). Reducing
//! the leading axes of a `rows × cols` view (a bias gradient) runs a coalesced column kernel;
//! every other pattern runs one block per output, split into chunks when there are few outputs
//! and many inputs each. Partial results are combined in a fixed order, so results do not vary
//! from run to run.

use cudarc::driver::LaunchConfig;

use super::elementwise::{Layout, MAX_AXES};
use super::kernels::Module;
use super::{check_len, grid, launch, CudaBackend, CudaBuffer, BLOCK};
use crate::backend::plan::reduction_groups;
use crate::backend::*;
use crate::error::{Error, Result};
use crate::tensor::Shape;

/// Aim for this many blocks in flight when splitting a reduction.
const TARGET_BLOCKS: usize = 2048;

/// Smallest number of elements per chunk when splitting.
const MIN_CHUNK: usize = 4096;

fn op_code(op: ReduceOp) -> i32 {
    match op {
        ReduceOp::Sum => 0,
        ReduceOp::Mean => 1,
        ReduceOp::Max => 2,
    }
}

/// Sizes and strides of a subset of axes, innermost last, packed for a kernel.
fn pack(axes: &[(usize, usize)]) -> Result<(i32, [u64; MAX_AXES], [u64; MAX_AXES])> {
    if axes.len() > MAX_AXES {
        return Err(Error::invalid(
            "reduce",
            format!(
                "{} alternating axis groups (at most {MAX_AXES})",
                axes.len()
            ),
        ));
    }
    let (mut dims, mut strides) = ([0u64; MAX_AXES], [0u64; MAX_AXES]);
    for (i, &(d, s)) in axes.iter().enumerate() {
        dims[i] = d as u64;
        strides[i] = s as u64;
    }
    Ok((axes.len() as i32, dims, strides))
}

/// Threads per block for reducing `count` elements: a multiple of 32, at most 256.
fn block_for(count: usize) -> u32 {
    (count.next_power_of_two().clamp(32, BLOCK as usize)) as u32
}

impl CudaBackend {
    /// `rows × cols` → `cols`, reducing over the rows.
    fn reduce_columns(
        &self,
        op: ReduceOp,
        x: &CudaBuffer,
        rows: usize,
        cols: usize,
        y: &mut CudaBuffer,
    ) -> Result<()> {
        let col_blocks = cols.div_ceil(32);
        let chunks = (TARGET_BLOCKS / col_blocks)
            .clamp(1, rows.div_ceil(64).max(1))
            .min(65535);
        let rows_per_chunk = rows.div_ceil(chunks);
        let chunks = rows.div_ceil(rows_per_chunk);
        let part = self.scratch::<f64>(chunks * cols)?;
        let (xp, pp, rows64, cols64, rpc, code) = (
            self.ptr(x),
            self.slice_ptr(&part),
            rows as u64,
            cols as u64,
            rows_per_chunk as u64,
            op_code(op),
        );
        let cfg = LaunchConfig {
            grid_dim: (col_blocks as u32, chunks as u32, 1),
            block_dim: (32, 8, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, Module::Reduce, "reduce_cols_partial", cfg; xp, pp, rows64, cols64, rpc, code)?;
        let (yp, outputs, chunks64, stride_j, stride_p) =
            (self.ptr(y), cols as u64, chunks as u64, 1u64, cols as u64);
        launch!(self, Module::Reduce, "reduce_partials", grid(cols);
            pp, yp, outputs, chunks64, stride_j, stride_p, rows64, code)
    }

    /// Any grouping: one block per output (times chunks of the reduced range).
    fn reduce_generic(
        &self,
        op: ReduceOp,
        x: &CudaBuffer,
        groups: &[(usize, bool)],
        y: &mut CudaBuffer,
    ) -> Result<()> {
        let mut strides = vec![1usize; groups.len()];
        for g in (0..groups.len().saturating_sub(1)).rev() {
            strides[g] = strides[g + 1] * groups[g + 1].0;
        }
        let select = |reduced: bool| -> Vec<(usize, usize)> {
            groups
                .iter()
                .zip(&strides)
                .filter(|((_, r), _)| *r == reduced)
                .map(|((d, _), &s)| (*d, s))
                .collect()
        };
        let (kept, red) = (select(false), select(true));
        let outputs: usize = kept.iter().map(|(d, _)| d).product();
        let count: usize = red.iter().map(|(d, _)| d).product();
        let (kr, kd, ks) = pack(&kept)?;
        let (rr, rd, rs) = pack(&red)?;
        if outputs > u32::MAX as usize / 2 {
            return Err(Error::invalid("reduce", "too many outputs for one launch"));
        }
        let splits = (TARGET_BLOCKS / outputs.max(1))
            .min(count.div_ceil(MIN_CHUNK))
            .clamp(1, 65535);
        let chunk = count.div_ceil(splits);
        let splits = count.div_ceil(chunk).max(1);
        let part = if splits > 1 {
            Some(self.scratch::<f64>(outputs * splits)?)
        } else {
            None
        };
        let (xp, yp, pp, count64, chunk64, code) = (
            self.ptr(x),
            self.ptr(y),
            part.as_ref().map_or(0, |p| self.slice_ptr(p)),
            count as u64,
            chunk as u64,
            op_code(op),
        );
        let cfg = LaunchConfig {
            grid_dim: (outputs as u32, splits as u32, 1),
            block_dim: (block_for(chunk), 1, 1),
            shared_mem_bytes: 0,
        };
        launch!(self, Module::Reduce, "reduce_generic", cfg;
            xp, yp, pp, count64, chunk64, code, kr, kd, ks, rr, rd, rs)?;
        if splits > 1 {
            let (outputs64, splits64, stride_j, stride_p) =
                (outputs as u64, splits as u64, splits as u64, 1u64);
            launch!(self, Module::Reduce, "reduce_partials", grid(outputs);
                pp, yp, outputs64, splits64, stride_j, stride_p, count64, code)?;
        }
        Ok(())
    }

    /// Checks a `rows × cols` matrix length.
    fn matrix_len(op: &'static str, rows: usize, cols: usize) -> Result<usize> {
        rows.checked_mul(cols)
            .ok_or_else(|| Error::invalid(op, format!("{rows} × {cols} elements overflow")))
    }

    /// One warp per row, eight rows per block.
    fn row_grid(rows: usize) -> LaunchConfig {
        grid(rows.saturating_mul(32))
    }
}

impl ReduceOps for CudaBackend {
    fn reduce(
        &self,
        op: ReduceOp,
        x: &CudaBuffer,
        x_shape: &Shape,
        y_shape: &Shape,
        y: &mut CudaBuffer,
    ) -> Result<()> {
        let groups = reduction_groups("reduce", x_shape, y_shape)?;
        check_len("reduce", x, x_shape.numel())?;
        check_len("reduce", y, y_shape.numel())?;
        if y.len == 0 {
            return Ok(());
        }
        if x.len == 0 {
            // As PyTorch: 0 for a sum, NaN for a mean, an error for a max.
            return match op {
                ReduceOp::Sum => self.fill_n(y, y.len, 0.0),
                ReduceOp::Mean => self.fill_n(y, y.len, f32::NAN),
                ReduceOp::Max => Err(Error::shape(
                    "reduce",
                    "max over an empty axis",
                    &[x_shape, y_shape],
                )),
            };
        }
        match groups.as_slice() {
            [] | [(_, false)] => self.copy(x, y),
            [(rows, true), (cols, false)] => self.reduce_columns(op, x, *rows, *cols, y),
            _ => self.reduce_generic(op, x, &groups, y),
        }
    }

    fn broadcast_to(
        &self,
        x: &CudaBuffer,
        x_shape: &Shape,
        y_shape: &Shape,
        y: &mut CudaBuffer,
    ) -> Result<()>
    where
        Self: ElementwiseOps,
    {
        const OP: &str = "broadcast_to";
        let out = x_shape
            .broadcast(y_shape)
            .filter(|o| o.numel() == y_shape.numel())
            .ok_or_else(|| {
                Error::shape(
                    OP,
                    "input does not broadcast to the output shape",
                    &[x_shape, y_shape],
                )
            })?;
        check_len(OP, x, x_shape.numel())?;
        check_len(OP, y, y_shape.numel())?;
        if y.len == 0 {
            return Ok(());
        }
        let layout = Layout::new(OP, &[x_shape], &out)?;
        let (xp, yp, n, rank, dims, sx) = (
            self.ptr(x),
            self.ptr(y),
            y.len as u64,
            layout.rank,
            layout.dims,
            layout.strides[0],
        );
        launch!(self, Module::Elementwise, "broadcast_copy", grid(y.len); xp, yp, n, rank, dims, sx)
    }

    fn softmax(
        &self,
        rows: usize,
        cols: usize,
        log: bool,
        x: &CudaBuffer,
        y: &mut CudaBuffer,
    ) -> Result<()> {
        let n = Self::matrix_len("softmax", rows, cols)?;
        check_len("softmax", x, n)?;
        check_len("softmax", y, n)?;
        if n == 0 {
            return Ok(());
        }
        let (xp, yp, rows64, cols64, log_) = (
            self.ptr(x),
            self.ptr(y),
            rows as u64,
            cols as u64,
            i32::from(log),
        );
        launch!(self, Module::Reduce, "softmax_fwd", Self::row_grid(rows); xp, yp, rows64, cols64, log_)
    }

    fn softmax_backward(
        &self,
        rows: usize,
        cols: usize,
        log: bool,
        y: &CudaBuffer,
        dy: &CudaBuffer,
        dx: &mut CudaBuffer,
    ) -> Result<()> {
        let n = Self::matrix_len("softmax_backward", rows, cols)?;
        check_len("softmax_backward", y, n)?;
        check_len("softmax_backward", dy, n)?;
        check_len("softmax_backward", dx, n)?;
        if n == 0 {
            return Ok(());
        }
        let (yp, gp, dp, rows64, cols64, log_) = (
            self.ptr(y),
            self.ptr(dy),
            self.ptr(dx),
            rows as u64,
            cols as u64,
            i32::from(log),
        );
        launch!(self, Module::Reduce, "softmax_bwd", Self::row_grid(rows);
            yp, gp, dp, rows64, cols64, log_)
    }
}
