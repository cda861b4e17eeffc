//! Activations and dropout.

use crate::backend::{Backend, UnaryOp};
use crate::error::Result;
use crate::graph::ops::{Dropout, Softmax, Unary};
use crate::graph::{Graph, NodeId};

/// `max(x, 0)`.
pub fn relu<B: Backend>(g: &mut Graph<B>, x: NodeId) -> Result<NodeId> {
    g.apply(Unary(UnaryOp::Relu), &[x])
}

/// `1 / (1 + e^−x)`.
pub fn sigmoid<B: Backend>(g: &mut Graph<B>, x: NodeId) -> Result<NodeId> {
    g.apply(Unary(UnaryOp::Sigmoid), &[x])
}

/// `tanh(x)`.
pub fn tanh<B: Backend>(g: &mut Graph<B>, x: NodeId) -> Result<NodeId> {
    g.apply(Unary(UnaryOp::Tanh), &[x])
}

/// Softmax over the last axis (classes).
pub fn softmax<B: Backend>(g: &mut Graph<B>, x: NodeId) -> Result<NodeId> {
    g.apply(Softmax { log: false }, &[x])
}

/// Log-softmax over the last axis (classes).
pub fn log_softmax<B: Backend>(g: &mut Graph<B>, x: NodeId) -> Result<NodeId> {
    g.apply(Softmax { log: true }, &[x])
}

/// Inverted dropout with probability `p` in training; identity in evaluation.
pub fn dropout<B: Backend>(g: &mut Graph<B>, x: NodeId, p: f32) -> Result<NodeId> {
    g.apply(Dropout { p }, &[x])
}
