//! The graph operations, one file each: shape rule, forward and backward together.

mod batch_norm;
mod binary;
mod concat;
mod conv2d;
mod conv_transpose2d;
mod dropout;
mod matmul;
mod max_pool2d;
mod reduce;
mod reshape;
mod softmax;
mod unary;
mod upsample;

pub use batch_norm::BatchNorm;
pub use binary::Binary;
pub use concat::Concat;
pub use conv2d::{Conv2d, ConvGeometry};
pub use conv_transpose2d::ConvTranspose2d;
pub use dropout::Dropout;
pub use matmul::MatMulWt;
pub use max_pool2d::MaxPool2d;
pub use reduce::Reduce;
pub use reshape::Reshape;
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
