//! Host-side shape planning shared by every backend's kernels.

use crate::error::{Error, Result};
use crate::tensor::Shape;

/// Axes of `x_shape` after dropping size-1 axes and merging neighbours that are both reduced or
/// both kept: `(size, reduced)` pairs, outermost first.
pub fn reduction_groups(
    op: &'static str,
    x_shape: &Shape,
    y_shape: &Shape,
) -> Result<Vec<(usize, bool)>> {
    let bad = || {
        Error::shape(
            op,
            "output shape does not broadcast to the input shape",
            &[x_shape, y_shape],
        )
    };
    let extra = y_shape.dims().len().saturating_sub(x_shape.rank());
    if y_shape.dims()[..extra].iter().any(|&d| d != 1) {
        return Err(bad());
    }
    let mut groups: Vec<(usize, bool)> = Vec::new();
    for k in (0..x_shape.rank()).rev() {
        let (xd, yd) = (x_shape.dim_from_end(k), y_shape.dim_from_end(k));
        let reduced = match (xd, yd) {
            (a, b) if a == b => false,
            (_, 1) => true,
            _ => return Err(bad()),
        };
        if xd == 1 {
            continue;
        }
        match groups.last_mut() {
            Some((size, r)) if *r == reduced => *size *= xd,
            _ => groups.push((xd, reduced)),
        }
    }
    Ok(groups)
}

/// The two source positions of one output position along one axis and their weights.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BilinearTap {
    pub i0: usize,
    pub i1: usize,
    pub l0: f32,
    pub l1: f32,
}

/// Taps for resampling an axis of `input` positions to `output` positions with PyTorch's
/// `upsample_bilinear2d` rules (computed in f32, as PyTorch does).
pub fn bilinear_taps(input: usize, output: usize, align_corners: bool) -> Vec<BilinearTap> {
    if input == output {
        // PyTorch copies when the size does not change.
        return (0..output)
            .map(|o| BilinearTap {
                i0: o,
                i1: o,
                l0: 1.0,
                l1: 0.0,
            })
            .collect();
    }
    let scale = if align_corners {
        if output > 1 {
            (input - 1) as f32 / (output - 1) as f32
        } else {
            0.0
        }
    } else {
        input as f32 / output as f32
    };
    (0..output)
        .map(|o| {
            let src = if align_corners {
                scale * o as f32
            } else {
                (scale * (o as f32 + 0.5) - 0.5).max(0.0)
            };
            let i0 = (src.floor() as usize).min(input - 1);
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < input - 1 { i0 + 1 } else { i0 };
            BilinearTap {
                i0,
                i1,
                l0: 1.0 - l1,
                l1,
            }
        })
        .collect()
}
