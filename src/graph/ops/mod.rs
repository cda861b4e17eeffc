//! The graph operations, one file each: shape rule, forward and backward together.

mod batch_norm;
mod binary;
mod binary_cross_entropy;
mod concat;
mod confusion;
mod conv2d;
mod conv_transpose2d;
mod cross_entropy;
mod distance_weights;
mod dropout;
mod matmul;
mod max_pool2d;
mod reduce;
mod reshape;
mod soft_dice;
mod softmax;
mod sync_batch_norm;
mod unary;
mod upsample;

pub use batch_norm::BatchNorm;
pub use binary::Binary;
pub use binary_cross_entropy::SigmoidBinaryCrossEntropy;
pub use concat::Concat;
pub use confusion::ConfusionCounts;
pub use conv2d::{Conv2d, ConvGeometry};
pub use conv_transpose2d::ConvTranspose2d;
pub use cross_entropy::SoftmaxCrossEntropy;
pub use distance_weights::DistanceWeights;
pub use dropout::Dropout;
pub use matmul::MatMulWt;
pub use max_pool2d::MaxPool2d;
pub use reduce::Reduce;
pub use reshape::Reshape;
pub use soft_dice::SoftDice;
pub use softmax::Softmax;
pub use unary::Unary;
pub use upsample::UpsampleBilinear2d;

use crate::error::{Error, Result};
use crate::tensor::Shape;

/// Errors unless an op got exactly `count` inputs.
fn expect_inputs(op: &'static str, inputs: &[&Shape], count: usize) -> Result<()> {
    if inputs.len() != count {
        return Err(Error::shape(
            op,
            format!("expected {count} input(s), got {}", inputs.len()),
            inputs,
        ));
    }
    Ok(())
}
