//! NumPy broadcasting by strides, with the size-1 axes dropped and contiguous axes merged so
//! that the common cases (equal shapes, a scalar, a bias over leading axes) take fast paths.

use super::{for_each_chunk_mut, rows_per_block, PAR_CHUNK};
use crate::tensor::Shape;

/// The output's collapsed axes with the element strides of `a` and `b` along them
/// (0 where an operand is broadcast).
pub(super) struct Layout {
    dims: Vec<usize>,
    sa: Vec<usize>,
    sb: Vec<usize>,
}

impl Layout {
    /// The layout of `a ∘ b` into `out`, which must be their broadcast shape.
    pub(super) fn new(a: &Shape, b: &Shape, out: &Shape) -> Self {
        let rank = out.rank();
        let stride_of = |s: &Shape, k: usize| -> usize {
            // Axis `k` from the end; size-1 and missing axes are broadcast (stride 0).
            if k >= s.rank() || s.dim_from_end(k) == 1 {
                0
            } else {
                s.strides()[s.rank() - 1 - k]
            }
        };
        let mut layout = Layout {
            dims: Vec::new(),
            sa: Vec::new(),
            sb: Vec::new(),
        };
        // Walk outermost to innermost, merging an axis into the previous (outer) one when
        // both operands step through them contiguously.
        for k in (0..rank).rev() {
            let d = out.dim_from_end(k);
            if d == 1 {
                continue;
            }
            let (sa, sb) = (stride_of(a, k), stride_of(b, k));
            if let Some(last) = layout.dims.len().checked_sub(1) {
                if layout.sa[last] == sa * d && layout.sb[last] == sb * d {
                    layout.dims[last] *= d;
                    layout.sa[last] = sa;
                    layout.sb[last] = sb;
                    continue;
                }
            }
            layout.dims.push(d);
            layout.sa.push(sa);
            layout.sb.push(sb);
        }
        layout
    }
}

/// One contiguous run of the output: `y[j] = f(a[j·sa], b[j·sb])` with strides 0 or 1.
#[inline(always)]
fn run<F: Fn(f32, f32) -> f32>(a: &[f32], sa: usize, b: &[f32], sb: usize, y: &mut [f32], f: &F) {
    match (sa, sb) {
        (1, 1) => {
            for ((o, &u), &v) in y.iter_mut().zip(a).zip(b) {
                *o = f(u, v);
            }
        }
        (1, _) => {
            let v = b[0];
            for (o, &u) in y.iter_mut().zip(a) {
                *o = f(u, v);
            }
        }
        (_, 1) => {
            let u = a[0];
            for (o, &v) in y.iter_mut().zip(b) {
                *o = f(u, v);
            }
        }
        _ => y.fill(f(a[0], b[0])),
    }
}

/// `y = a ∘ b` over `layout`; lengths are checked by the caller.
pub(super) fn apply<F>(layout: &Layout, a: &[f32], b: &[f32], y: &mut [f32], f: F)
where
    F: Fn(f32, f32) -> f32 + Sync + Send,
{
    let rank = layout.dims.len();
    if rank == 0 {
        // Every axis has size 1: a single element.
        if let Some(o) = y.first_mut() {
            *o = f(a[0], b[0]);
        }
        return;
    }
    let inner = layout.dims[rank - 1];
    let (sa_in, sb_in) = (layout.sa[rank - 1], layout.sb[rank - 1]);
    if rank == 1 {
        // Equal shapes, or one operand a scalar.
        for_each_chunk_mut(y, PAR_CHUNK, |i, yc| {
            let start = i * PAR_CHUNK;
            run(
                &a[start * sa_in..],
                sa_in,
                &b[start * sb_in..],
                sb_in,
                yc,
                &f,
            );
        });
        return;
    }
    let block = rows_per_block(inner);
    if rank == 2 && sa_in == 1 && sb_in == 1 && (layout.sa[0] == 0 || layout.sb[0] == 0) {
        // One operand repeats for every row: a bias over the leading axes (the hot case).
        let (sa_out, sb_out) = (layout.sa[0], layout.sb[0]);
        for_each_chunk_mut(y, block * inner, |i, yc| {
            for (r, yr) in yc.chunks_mut(inner).enumerate() {
                let row = i * block + r;
                let ar = &a[row * sa_out..row * sa_out + inner];
                let br = &b[row * sb_out..row * sb_out + inner];
                run(ar, 1, br, 1, yr, &f);
            }
        });
        return;
    }
    // General case: unravel each output row's index into the outer axes.
    for_each_chunk_mut(y, block * inner, |i, yc| {
        for (r, yr) in yc.chunks_mut(inner).enumerate() {
            let (mut rest, mut oa, mut ob) = (i * block + r, 0, 0);
            for axis in (0..rank - 1).rev() {
                let d = layout.dims[axis];
                let idx = rest % d;
                rest /= d;
                oa += idx * layout.sa[axis];
                ob += idx * layout.sb[axis];
            }
            run(&a[oa..], sa_in, &b[ob..], sb_in, yr, &f);
        }
    });
}
