//! Reductions to a broadcastable shape, broadcasting back, and softmax / log-softmax with their
//! gradients (`shaders/reduce.wgsl`, `shaders/elementwise.wgsl`).
//!
//! A reduction runs over slabs of its input: runs of steps of the outermost axis group, or, when
//! one step exceeds a binding, runs of the next group inside each step. A slab along a kept
//! group computes whole outputs; one along a reduced group adds a part of every output it
//! covers, combined with what the slabs before it left.

use std::ops::Range;

use super::elementwise::Strided;
use super::window::{longest, Arg, View, Work};
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

/// One of a reduction's merged axis groups of x, outermost first.
#[derive(Debug, Clone, Copy)]
struct Group {
    size: usize,
    reduced: bool,
    /// Element stride in x.
    stride: usize,
    /// The product of the kept groups inside this one: the outputs one step of a kept group
    /// spans, or those every step of a reduced group adds to.
    kept_inner: usize,
    /// The product of the reduced groups inside this one, likewise for the reduced elements.
    red_inner: usize,
}

/// Where the groups inside fixed coordinates of the groups outside them start: the element of
/// x, the output and the reduced element.
#[derive(Debug, Clone, Copy, Default)]
struct Base {
    x: usize,
    out: usize,
    red: usize,
}

/// What a slab covers: elements of x, outputs, and reduced elements of each output.
struct Slab {
    x: Range<usize>,
    out: Range<usize>,
    red: Range<usize>,
}

impl Group {
    fn slab(&self, base: Base, c: Range<usize>) -> Slab {
        let x = base.x + c.start * self.stride..base.x + c.end * self.stride;
        if self.reduced {
            Slab {
                x,
                out: base.out..base.out + self.kept_inner,
                red: base.red + c.start * self.red_inner..base.red + c.end * self.red_inner,
            }
        } else {
            Slab {
                x,
                out: base.out + c.start * self.kept_inner..base.out + c.end * self.kept_inner,
                red: base.red..base.red + self.red_inner,
            }
        }
    }

    /// The base of the groups inside coordinate `c` of this one.
    fn enter(&self, base: Base, c: usize) -> Base {
        Base {
            x: base.x + c * self.stride,
            out: base.out + if self.reduced { 0 } else { c * self.kept_inner },
            red: base.red + if self.reduced { c * self.red_inner } else { 0 },
        }
    }
}

/// One reduction's dispatches: the kernel, its buffers and its parameter words (with the
/// reduced range at words 1 and 2).
struct Reduction<'a> {
    op: &'static str,
    kernel: Kernel<'a>,
    x: &'a ::wgpu::Buffer,
    y: &'a ::wgpu::Buffer,
    words: Vec<u32>,
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

    /// Dispatches `r` over slabs of x along `groups[0]` inside `base`: the longest runs of steps
    /// whose windows fit, and, for a step too large on its own, the slabs of the next group
    /// inside it. Slabs go in the order of x, so each output meets its reduced elements in
    /// order.
    fn reduce_slabs(&self, r: &Reduction<'_>, groups: &[Group], base: Base) -> Result<()> {
        let (g, inner) = (&groups[0], &groups[1..]);
        let limit = self.max_binding();
        let fits = |c: Range<usize>| -> Result<()> {
            let slab = g.slab(base, c);
            let x = self.binding_size(&View::elems(r.x, slab.x));
            let y = self.binding_size(&View::elems(r.y, slab.out.clone()));
            if x.max(y) > limit || slab.out.len() > self.max_dispatch() {
                return Err(Error::invalid(
                    r.op,
                    format!(
                        "a slab of {x} bytes of the input ({} outputs) exceeds the device's \
                         storage binding limit of {limit} bytes or its dispatch limit",
                        slab.out.len()
                    ),
                ));
            }
            Ok(())
        };
        let mut start = 0;
        while start < g.size {
            match longest(start, g.size, fits) {
                Ok(end) => {
                    let slab = g.slab(base, start..end);
                    let mut words = r.words.clone();
                    words[1] = word(r.op, slab.red.start)?;
                    words[2] = word(r.op, slab.red.end)?;
                    self.dispatch(
                        r.op,
                        r.kernel,
                        &[View::elems(r.x, slab.x)],
                        &[View::elems(r.y, slab.out.clone())],
                        &words,
                        slab.out.clone(),
                        slab.out.len(),
                    )?;
                    start = end;
                }
                Err(e) if inner.is_empty() => return Err(e),
                Err(_) => {
                    self.reduce_slabs(r, inner, g.enter(base, start))?;
                    start += 1;
                }
            }
        }
        Ok(())
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
        let mut groups = reduction_groups(OP, x_shape, y_shape)?;
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
        if groups.is_empty() {
            // One element to one output: a kept group of size 1.
            groups.push((1, false));
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
        // Uniform block `Groups`; words 1 and 2, the reduced range, are set per slab.
        let mut words = vec![
            word(OP, n_red)?,
            0,
            0,
            kept.len() as u32,
            red.len() as u32,
            (1.0 / n_red as f32).to_bits(),
            0,
            0,
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
        // The outputs and reduced elements inside each group.
        let mut slab_groups = Vec::with_capacity(groups.len());
        let (mut kept_inner, mut red_inner) = (1usize, 1usize);
        for (&(size, reduced), &stride) in groups.iter().zip(&strides).rev() {
            slab_groups.push(Group {
                size,
                reduced,
                stride,
                kept_inner,
                red_inner,
            });
            if reduced {
                red_inner *= size;
            } else {
                kept_inner *= size;
            }
        }
        slab_groups.reverse();
        let constants = [("OP", reduce_code(op) as f64)];
        let reduction = Reduction {
            op: OP,
            kernel: Kernel::with(SHADER, "reduce", &constants),
            x: &x.buf,
            y: &y.buf,
            words,
        };
        self.reduce_slabs(&reduction, &slab_groups, Base::default())
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
        Strided::new(OP, x_shape, y_shape, y_shape)?.launch(
            self,
            OP,
            Kernel::new(ELEMENTWISE, "broadcast"),
            &x.buf,
            None,
            y,
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
        self.launch(
            OP,
            Kernel::with(SHADER, "softmax", &constants),
            &[Arg::per(&x.buf, cols)],
            &[Arg::per(&y.buf, cols)],
            &[word(OP, cols)?],
            &Work::threads("row", if cols == 0 { 0 } else { rows }, 1),
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
        self.launch(
            OP,
            Kernel::with(SHADER, "softmax_backward", &constants),
            &[Arg::per(&y.buf, cols), Arg::per(&dy.buf, cols)],
            &[Arg::per(&dx.buf, cols)],
            &[word(OP, cols)?],
            &Work::threads("row", if cols == 0 { 0 } else { rows }, 1),
        )
    }
}
