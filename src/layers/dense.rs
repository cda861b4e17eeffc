//! Fully connected layers.

use crate::backend::{Backend, BinaryOp};
use crate::error::{Error, Result};
use crate::graph::ops::{Binary, MatMulWt, Reshape};
use crate::graph::{Graph, Init, NodeId};

/// `y = x · Wᵀ + b` for `x` `[N, F]`. Parameters `{name}.weight` `[out, F]` (Kaiming-uniform,
/// a = √5) and `{name}.bias` `[out]` (±1/√F), as PyTorch's `Linear`.
pub fn dense<B: Backend>(
    g: &mut Graph<B>,
    name: &str,
    x: NodeId,
    out_features: usize,
) -> Result<NodeId> {
    let shape = g.shape(x)?;
    let &[_, in_features] = shape.dims() else {
        return Err(Error::shape(
            "dense",
            "expected an [N, F] input; flatten first",
            &[shape],
        ));
    };
    let weight = g.param(
        &format!("{name}.weight"),
        [out_features, in_features],
        Init::pytorch_weight(in_features),
    )?;
    let bias = g.param(
        &format!("{name}.bias"),
        [out_features],
        Init::pytorch_bias(in_features),
    )?;
    let y = g.apply(MatMulWt, &[x, weight])?;
    g.apply(Binary(BinaryOp::Add), &[y, bias])
}

/// `[N, ...]` to `[N, rest]`. On NHWC input the features are in H, W, C order (PyTorch's
/// `flatten` of NCHW gives C, H, W order: permute dense weights when moving them across).
pub fn flatten<B: Backend>(g: &mut Graph<B>, x: NodeId) -> Result<NodeId> {
    let shape = g.shape(x)?;
    let Some(&n) = shape.dims().first() else {
        return Err(Error::shape("flatten", "cannot flatten a scalar", &[shape]));
    };
    let rest = shape.numel() / n.max(1);
    g.apply(
        Reshape {
            shape: [n, rest].into(),
        },
        &[x],
    )
}
