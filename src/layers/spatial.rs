//! Layers that change the spatial size: max pooling and bilinear upsampling.

use crate::backend::Backend;
use crate::error::Result;
use crate::graph::ops::{MaxPool2d, UpsampleBilinear2d};
use crate::graph::{Graph, NodeId};

/// Max pooling with a square `kernel` and `stride`, no padding (PyTorch's `MaxPool2d(k, s)`).
pub fn maxpool2d<B: Backend>(
    g: &mut Graph<B>,
    x: NodeId,
    kernel: usize,
    stride: usize,
) -> Result<NodeId> {
    let op = MaxPool2d {
        kernel: [kernel, kernel],
        stride: [stride, stride],
        padding: [0, 0],
    };
    g.apply(op, &[x])
}

/// Bilinear upsampling by an integer `scale` (PyTorch's `Upsample(scale_factor, mode="bilinear",
/// align_corners)`).
pub fn upsample_bilinear2d<B: Backend>(
    g: &mut Graph<B>,
    x: NodeId,
    scale: usize,
    align_corners: bool,
) -> Result<NodeId> {
    g.apply(
        UpsampleBilinear2d {
            scale,
            align_corners,
        },
        &[x],
    )
}
