//! Losses for classification and pixel-wise segmentation. Each function adds the loss to a graph
//! and returns its scalar node, ready for [`crate::Executor::backward`].
//!
//! Logits are `[N, C]` (one class axis last) or NHWC `[N, H, W, C]`; labels are an input node of
//! class indices stored as f32 with the logits' shape without the class axis (`[N]` or
//! `[N, H, W]`; a trailing axis of 1, `[N, H, W, 1]`, is accepted too). Labels, masks and weight
//! maps take no gradient.
//!
//! ```
//! use magnet::{loss, CpuBackend, Graph};
//!
//! let mut g = Graph::<CpuBackend>::new();
//! let logits = g.input_with_grad("logits", [2, 8, 8, 3]).unwrap();
//! let labels = g.input("labels", [2, 8, 8]).unwrap();
//! let config = loss::CrossEntropyConfig::default();
//! let ce = loss::cross_entropy(&mut g, logits, labels, &config).unwrap();
//! assert_eq!(g.shape(ce).unwrap().numel(), 1);
//! ```

mod distance;

pub use distance::{distance_weighted_cross_entropy, distance_weights, DistanceWeightConfig};

use crate::backend::{Backend, UnaryOp};
use crate::error::{Error, Result};
use crate::graph::ops::{SigmoidBinaryCrossEntropy, SoftDice, SoftmaxCrossEntropy, Unary};
use crate::graph::{Graph, NodeId};
use crate::layers;

/// Options of [`cross_entropy`] and [`focal_loss`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CrossEntropyConfig {
    /// One weight per class (PyTorch's `weight`; the focal loss's α). `None`: all 1.
    pub class_weights: Option<Vec<f32>>,
    /// Pixels (rows) with this label contribute nothing (PyTorch's `ignore_index`).
    pub ignore_index: Option<usize>,
    /// Focal exponent γ ≥ 0; 0 (the default) is plain cross-entropy.
    pub focal_gamma: f32,
    /// A node of per-pixel weights, shaped like the labels; `None`: all 1.
    pub pixel_weights: Option<NodeId>,
}

/// A class index as the backend's u32; `what` names it in the error.
fn class_u32(op: &'static str, what: &str, class: usize) -> Result<u32> {
    u32::try_from(class)
        .map_err(|_| Error::invalid(op, format!("{what} {class} does not fit in u32")))
}

/// `ignore_index` as the backend's u32.
fn ignore_u32(op: &'static str, ignore_index: Option<usize>) -> Result<Option<u32>> {
    ignore_index
        .map(|i| class_u32(op, "ignore_index", i))
        .transpose()
}

/// Weighted mean softmax cross-entropy, optionally focal:
///
/// `L = Σ_i a_i · (1 − p_i)^γ · (−log p_i) / Σ_i a_i`,  `a_i = class_weight[y_i] · pixel_weight_i`
///
/// over the pixels (rows) whose label is not `ignore_index`, where `p_i` is the softmax
/// probability of the true class. With γ = 0 and no pixel weights this equals PyTorch's
/// `F.cross_entropy(logits, labels, weight=class_weights, ignore_index=i)` (mean reduction;
/// PyTorch wants NCHW logits, magnet NHWC). Pixel weights enter numerator and denominator alike,
/// so they move attention between pixels without rescaling the loss. When every pixel is
/// ignored the loss is 0 (PyTorch: NaN). A label that is neither a class nor `ignore_index` is an
/// error from the forward (a GPU backend may report it at the next read of a value instead).
pub fn cross_entropy<B: Backend>(
    g: &mut Graph<B>,
    logits: NodeId,
    labels: NodeId,
    config: &CrossEntropyConfig,
) -> Result<NodeId> {
    let op = SoftmaxCrossEntropy {
        class_weights: config.class_weights.clone(),
        ignore_index: ignore_u32("cross_entropy", config.ignore_index)?,
        gamma: config.focal_gamma,
    };
    match config.pixel_weights {
        Some(w) => g.apply(op, &[logits, labels, w]),
        None => g.apply(op, &[logits, labels]),
    }
}

/// The focal loss of Lin et al. (2017), `−α_y · (1 − p_y)^γ · log p_y` with α =
/// `config.class_weights`, normalised as [`cross_entropy`]; `gamma` replaces
/// `config.focal_gamma`. γ = 0 is exactly [`cross_entropy`]; γ = 2 is the paper's choice.
pub fn focal_loss<B: Backend>(
    g: &mut Graph<B>,
    logits: NodeId,
    labels: NodeId,
    gamma: f32,
    config: &CrossEntropyConfig,
) -> Result<NodeId> {
    let config = CrossEntropyConfig {
        focal_gamma: gamma,
        ..config.clone()
    };
    cross_entropy(g, logits, labels, &config)
}

/// Options of [`binary_cross_entropy_with_logits`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BceConfig {
    /// Weight of the positive term (PyTorch's `pos_weight`, one value); default 1.
    pub pos_weight: f32,
    /// A node of per-element weights, shaped like the logits; `None`: all 1.
    pub pixel_weights: Option<NodeId>,
}

impl Default for BceConfig {
    fn default() -> Self {
        BceConfig {
            pos_weight: 1.0,
            pixel_weights: None,
        }
    }
}

/// PyTorch's `binary_cross_entropy_with_logits(logits, targets, weight, pos_weight)` with mean
/// reduction: `(1/n) Σ w_i · (pos_weight · t_i · softplus(−x_i) + (1 − t_i) · softplus(x_i))`
/// over every element, in a form that neither overflows nor loses precision for large logits.
/// `targets` (in `[0, 1]`, soft targets allowed) has the logits' shape, e.g. `[N, H, W, 1]` for
/// binary segmentation. As in PyTorch, weights rescale terms and the mean still divides by `n`.
pub fn binary_cross_entropy_with_logits<B: Backend>(
    g: &mut Graph<B>,
    logits: NodeId,
    targets: NodeId,
    config: &BceConfig,
) -> Result<NodeId> {
    let op = SigmoidBinaryCrossEntropy {
        pos_weight: config.pos_weight,
    };
    match config.pixel_weights {
        Some(w) => g.apply(op, &[logits, targets, w]),
        None => g.apply(op, &[logits, targets]),
    }
}

/// Mean squared error `mean((prediction − target)²)` over every element (PyTorch's `mse_loss`);
/// the shapes must broadcast.
pub fn mse<B: Backend>(g: &mut Graph<B>, prediction: NodeId, target: NodeId) -> Result<NodeId> {
    let diff = layers::sub(g, prediction, target)?;
    let squared = g.apply(Unary(UnaryOp::Square), &[diff])?;
    layers::mean(g, squared)
}

/// Options of [`soft_dice`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DiceConfig {
    /// Smoothing ε in numerator and denominator; default 1 (a class absent from both the labels
    /// and the prediction scores Dice 1, and the loss stays smooth).
    pub eps: f32,
    /// Sums per image and averages the Dice terms over images (default); `false` pools the
    /// pixels of the whole batch into one sum per class (a "batch Dice").
    pub per_image: bool,
    /// Whether class 0 takes part in the mean over classes (default true).
    pub include_background: bool,
    /// Pixels with this label are left out of every sum.
    pub ignore_index: Option<usize>,
}

impl Default for DiceConfig {
    fn default() -> Self {
        DiceConfig {
            eps: 1.0,
            per_image: true,
            include_background: true,
            ignore_index: None,
        }
    }
}

/// Soft Dice loss on the softmax of the logits:
///
/// `L = mean_{b, c} [1 − (2 Σ_i p_ic · t_ic + ε) / (Σ_i p_ic + Σ_i t_ic + ε)]`
///
/// with `p = softmax(logits)`, `t` the one-hot labels, `i` over the pixels of image `b` (all
/// pixels of the batch when `per_image` is false) that are not ignored, and `c` over the classes
/// (without class 0 when `include_background` is false). Terms whose denominator is 0 (ε = 0,
/// nothing predicted nor labelled) count as 0.
pub fn soft_dice<B: Backend>(
    g: &mut Graph<B>,
    logits: NodeId,
    labels: NodeId,
    config: &DiceConfig,
) -> Result<NodeId> {
    let op = SoftDice {
        per_image: config.per_image,
        eps: config.eps,
        include_background: config.include_background,
        ignore_index: ignore_u32("soft_dice", config.ignore_index)?,
    };
    g.apply(op, &[logits, labels])
}

/// `cross_entropy + dice_weight · soft_dice`, the usual combination for segmentation: the
/// cross-entropy gives well-behaved per-pixel gradients, the Dice term counters class imbalance.
pub fn cross_entropy_plus_dice<B: Backend>(
    g: &mut Graph<B>,
    logits: NodeId,
    labels: NodeId,
    ce: &CrossEntropyConfig,
    dice: &DiceConfig,
    dice_weight: f32,
) -> Result<NodeId> {
    let ce = cross_entropy(g, logits, labels, ce)?;
    let dice = soft_dice(g, logits, labels, dice)?;
    let scaled = g.apply(
        Unary(UnaryOp::Affine {
            scale: dice_weight,
            shift: 0.0,
        }),
        &[dice],
    )?;
    layers::add(g, ce, scaled)
}
