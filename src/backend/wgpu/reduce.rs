//! Reductions to a broadcastable shape, broadcasting back, and softmax / log-softmax with their
//! gradients (`shaders/reduce.wgsl`, `shaders/elementwise.wgsl`).

use super::elementwise::strided_words;
use super::{check_len, product, shader, word, Kernel, Shader, WgpuBackend, WgpuBuffer};
use crate::backend::plan::reduction_groups;
use crate::backend::*;
use crate::error::{Error, Result};
use crate::tensor::Shape;

const SHADER: Shader = shader!("reduce.wgsl");
const ELEMENTWISE: Shader = shader!("elementwise.wgsl");

fn reduce_code(op: ReduceOp) -> u32 {
    match op {
        ReduceOp::Sum => 0,
        ReduceOp::Mean => 1,
        ReduceOp::Max => 2,
    }
}

impl WgpuBackend {
    fn softmax_dims(
        &self,
        op: &'static str,
        rows: usize,
        cols: usize,
        bufs: &[&WgpuBuffer],
    ) -> Result<usize> {
        let n = product(op, &[rows, cols])?;
        for b in bufs {
            check_len(op, b, n)?;
        }
        Ok(n)
    }
}

impl ReduceOps for WgpuBackend {
    fn reduce(
        &self,
        op: ReduceOp,
        x: &WgpuBuffer,
        x_shape: &Shape,
        y_shape: &Shape,
        y: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "reduce";
        let groups = reduction_groups(OP, x_shape, y_shape)?;
        check_len(OP, x, x_shape.numel())?;
        check_len(OP, y, y_shape.numel())?;
        if y.len == 0 {
            return Ok(());
        }
        if x.len == 0 {
            // Reducing over an empty axis: 0 for a sum, NaN for a mean, an error for a max.
            return match op {
                ReduceOp::Sum => self.fill(y, 0.0),
                ReduceOp::Mean => self.fill(y, f32::NAN),
                ReduceOp::Max => Err(Error::shape(
                    OP,
                    "max over an empty axis",
                    &[x_shape, y_shape],
                )),
            };
        }
        // Element strides of the groups, innermost last.
        let mut strides = vec![0usize; groups.len()];
        let mut s = 1usize;
        for (i, &(size, _)) in groups.iter().enumerate().rev() {
            strides[i] = s;
            s *= size;
        }
        // (size, stride) of the kept and of the reduced groups.
        let mut kept: Vec<(usize, usize)> = Vec::new();
        let mut red: Vec<(usize, usize)> = Vec::new();
        for (&(size, reduced), &stride) in groups.iter().zip(&strides) {
            if reduced {
                red.push((size, stride));
            } else {
                kept.push((size, stride));
            }
        }
        if kept.len() > 4 || red.len() > 4 {
            return Err(Error::shape(
                OP,
                "more than 4 separate kept or reduced axis groups",
                &[x_shape, y_shape],
            ));
        }
        let n_red: usize = red.iter().map(|g| g.0).product();
        let mut words = vec![
            word(OP, y.len)?,
            word(OP, n_red)?,
            kept.len() as u32,
            red.len() as u32,
        ];
        for list in [&kept, &red] {
            let mut dims = [1u32; 4];
            let mut st = [0u32; 4];
            for (i, &(size, stride)) in list.iter().enumerate() {
                dims[i] = word(OP, size)?;
                st[i] = word(OP, stride)?;
            }
            words.extend_from_slice(&dims);
            words.extend_from_slice(&st);
        }
        words.push((1.0 / n_red as f32).to_bits());
        let constants = [("OP", reduce_code(op) as f64)];
        self.dispatch(
            OP,
            Kernel::with(SHADER, "reduce", &constants),
            &[&x.buf],
            &[&y.buf],
            &words,
            self.grid(OP, y.len)?,
        )
    }

    fn broadcast_to(
        &self,
        x: &WgpuBuffer,
        x_shape: &Shape,
        y_shape: &Shape,
        y: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "broadcast_to";
        // x must reduce from y: the same rule as `reduce`, read the other way.
        reduction_groups(OP, y_shape, x_shape)?;
        check_len(OP, x, x_shape.numel())?;
        check_len(OP, y, y_shape.numel())?;
        let words = strided_words(OP, x_shape, y_shape, y_shape)?;
        self.dispatch(
            OP,
            Kernel::new(ELEMENTWISE, "broadcast"),
            &[&x.buf],
            &[&y.buf],
            &words,
            self.grid_for(OP, y.len)?,
        )
    }

    fn softmax(
        &self,
        rows: usize,
        cols: usize,
        log: bool,
        x: &WgpuBuffer,
        y: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "softmax";
        self.softmax_dims(OP, rows, cols, &[x, y])?;
        let constants = [("LOG", f64::from(u8::from(log)))];
        self.dispatch(
            OP,
            Kernel::with(SHADER, "softmax", &constants),
            &[&x.buf],
            &[&y.buf],
            &[word(OP, rows)?, word(OP, cols)?],
            self.grid_for(OP, if cols == 0 { 0 } else { rows })?,
        )
    }

    fn softmax_backward(
        &self,
        rows: usize,
        cols: usize,
        log: bool,
        y: &WgpuBuffer,
        dy: &WgpuBuffer,
        dx: &mut WgpuBuffer,
    ) -> Result<()> {
        const OP: &str = "softmax_backward";
        self.softmax_dims(OP, rows, cols, &[y, dy, dx])?;
        let constants = [("LOG", f64::from(u8::from(log)))];
        self.dispatch(
            OP,
            Kernel::with(SHADER, "softmax_backward", &constants),
            &[&y.buf, &dy.buf],
            &[&dx.buf],
            &[word(OP, rows)?, word(OP, cols)?],
            self.grid_for(OP, if cols == 0 { 0 } else { rows })?,
        )
    }
}
