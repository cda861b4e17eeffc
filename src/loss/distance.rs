//! Distance-aware cross-entropy: background pixels are weighted by how far they are from the
//! object, so a stray prediction next to the object costs little and one far away costs a lot.

use crate::backend::Backend;
use crate::error::Result;
use crate::graph::ops::DistanceWeights;
use crate::graph::{Graph, NodeId};
use crate::layers;
use crate::loss::{class_u32, cross_entropy, ignore_u32, CrossEntropyConfig};

/// The weight map of [`distance_weights`]:
///
/// - foreground pixels (label ≠ `background`, not ignored): `foreground`;
/// - other pixels: `w(d) = near + (far − near) · (1 − exp(−d / sigma))`,
///
/// where `d` is the Euclidean distance in pixels from the pixel to the nearest foreground pixel
/// of its image (exact, [`crate::backend::LossOps::distance_transform`]). `w` rises from `near`
/// next to the object to `far` a few `sigma` away (63 % of the way at `d = sigma`, 95 % at
/// `3·sigma`). An image without foreground has `d` = its diagonal everywhere, so its pixels weigh
/// about `far`. Defaults: `foreground` 1, `near` 0.25, `far` 1, `sigma` 5 pixels, `background` 0.
/// Since [`cross_entropy`] divides by the sum of the weights, only their ratios matter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DistanceWeightConfig {
    /// The background class; every other class is foreground.
    pub background: usize,
    pub foreground: f32,
    pub near: f32,
    pub far: f32,
    /// Length scale of the rise from `near` to `far`, in pixels (> 0).
    pub sigma: f32,
}

impl Default for DistanceWeightConfig {
    fn default() -> Self {
        DistanceWeightConfig {
            background: 0,
            foreground: 1.0,
            near: 0.25,
            far: 1.0,
            sigma: 5.0,
        }
    }
}

/// The per-pixel weights of [`DistanceWeightConfig`] computed from `labels` (`[N, H, W]` or
/// `[N, H, W, 1]`) on the device: labels → foreground mask → distance transform → weights.
/// Pixels labelled `ignore_index` are not foreground.
pub fn distance_weights<B: Backend>(
    g: &mut Graph<B>,
    labels: NodeId,
    config: &DistanceWeightConfig,
    ignore_index: Option<usize>,
) -> Result<NodeId> {
    let op = DistanceWeights {
        background: class_u32("distance_weights", "background", config.background)?,
        ignore_index: ignore_u32("distance_weights", ignore_index)?,
        foreground: config.foreground,
        near: config.near,
        far: config.far,
        sigma: config.sigma,
    };
    g.apply(op, &[labels])
}

/// [`cross_entropy`] of NHWC logits with each pixel weighted by [`distance_weights`] (times
/// `ce.pixel_weights` when given): `L = Σ_i a_i · w(d_i) · l_i / Σ_i a_i · w(d_i)`. Class weights,
/// `ignore_index` and the focal γ of `ce` apply as in [`cross_entropy`].
pub fn distance_weighted_cross_entropy<B: Backend>(
    g: &mut Graph<B>,
    logits: NodeId,
    labels: NodeId,
    distance: &DistanceWeightConfig,
    ce: &CrossEntropyConfig,
) -> Result<NodeId> {
    let mut weights = distance_weights(g, labels, distance, ce.ignore_index)?;
    if let Some(extra) = ce.pixel_weights {
        weights = layers::mul(g, weights, extra)?;
    }
    let config = CrossEntropyConfig {
        pixel_weights: Some(weights),
        ..ce.clone()
    };
    cross_entropy(g, logits, labels, &config)
}
