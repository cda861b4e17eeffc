//! Layers that combine nodes: concatenation (U-Net skips), sums (residual skips), products, and
//! reductions.

use crate::backend::{Backend, BinaryOp};
use crate::error::Result;
use crate::graph::ops::{Binary, Concat, Reduce};
use crate::graph::{Graph, NodeId};
use crate::tensor::Shape;

/// Concatenation along the channels (last axis), in the order given.
pub fn concat<B: Backend>(g: &mut Graph<B>, xs: &[NodeId]) -> Result<NodeId> {
    g.apply(Concat, xs)
}

/// `a + b` with broadcasting.
pub fn add<B: Backend>(g: &mut Graph<B>, a: NodeId, b: NodeId) -> Result<NodeId> {
    g.apply(Binary(BinaryOp::Add), &[a, b])
}

/// `a − b` with broadcasting.
pub fn sub<B: Backend>(g: &mut Graph<B>, a: NodeId, b: NodeId) -> Result<NodeId> {
    g.apply(Binary(BinaryOp::Sub), &[a, b])
}

/// `a · b` elementwise with broadcasting.
pub fn mul<B: Backend>(g: &mut Graph<B>, a: NodeId, b: NodeId) -> Result<NodeId> {
    g.apply(Binary(BinaryOp::Mul), &[a, b])
}

/// Sum of every element (a scalar).
pub fn sum<B: Backend>(g: &mut Graph<B>, x: NodeId) -> Result<NodeId> {
    g.apply(
        Reduce {
            mean: false,
            shape: Shape::new(vec![]),
        },
        &[x],
    )
}

/// Mean of every element (a scalar).
pub fn mean<B: Backend>(g: &mut Graph<B>, x: NodeId) -> Result<NodeId> {
    g.apply(
        Reduce {
            mean: true,
            shape: Shape::new(vec![]),
        },
        &[x],
    )
}
