//! Files in and out: HDF5 tensors and attributes ([`hdf5`]), checkpoints in PyTorch's layout with
//! PyTorch's state_dict names ([`checkpoint`]). Both need the `hdf5` feature (on by default), which
//! links the system libhdf5.
//!
//! PyTorch's NCHW / OIHW layouts appear only here: tensors are converted on the way in and out, by
//! each named tensor's [`crate::TensorLayout`].

pub mod atomic;
#[cfg(feature = "hdf5")]
pub mod checkpoint;
#[cfg(feature = "hdf5")]
pub mod hdf5;
#[cfg(feature = "hdf5")]
pub mod predictions;

#[cfg(feature = "hdf5")]
pub use self::checkpoint::{
    load_checkpoint, model_config_attrs, model_config_from_attrs, read_checkpoint_meta,
    save_checkpoint, Checkpoint, CheckpointMeta,
};
#[cfg(feature = "hdf5")]
pub use self::hdf5::{
    AttrValue, Attributes, Element, ElementType, H5Reader, H5Writer, WriteOptions,
};
#[cfg(feature = "hdf5")]
pub use self::predictions::PredictionWriter;

use crate::graph::TensorLayout;
use crate::tensor::{HostTensor, Shape};
use crate::Result;

/// A tensor in PyTorch's layout from magnet's: convolution weights `[out, kh, kw, in]` become
/// `[out, in, kh, kw]`, transposed-convolution weights `[in, kh, kw, out]` become
/// `[in, out, kh, kw]`; other layouts are unchanged.
pub fn to_pytorch_layout(layout: TensorLayout, t: &HostTensor) -> Result<HostTensor> {
    match layout {
        TensorLayout::Same => Ok(t.clone()),
        // Both are the same move: the last axis goes to position 1.
        TensorLayout::ConvWeight | TensorLayout::ConvTransposeWeight => {
            permute4(t, [0, 3, 1, 2], "to_pytorch_layout")
        }
    }
}

/// The inverse of [`to_pytorch_layout`]: a tensor in PyTorch's layout back to magnet's.
pub fn from_pytorch_layout(layout: TensorLayout, t: &HostTensor) -> Result<HostTensor> {
    match layout {
        TensorLayout::Same => Ok(t.clone()),
        TensorLayout::ConvWeight | TensorLayout::ConvTransposeWeight => {
            permute4(t, [0, 2, 3, 1], "from_pytorch_layout")
        }
    }
}

/// The shape [`to_pytorch_layout`] gives a tensor of `shape`.
pub fn pytorch_shape(layout: TensorLayout, shape: &Shape) -> Shape {
    match (layout, shape.dims()) {
        (TensorLayout::ConvWeight | TensorLayout::ConvTransposeWeight, &[a, b, c, d]) => {
            Shape::new([a, d, b, c])
        }
        _ => shape.clone(),
    }
}

/// Output axis `k` is input axis `perm[k]`.
fn permute4(t: &HostTensor, perm: [usize; 4], op: &'static str) -> Result<HostTensor> {
    let dims: [usize; 4] = match t.shape().dims() {
        &[a, b, c, d] => [a, b, c, d],
        _ => {
            return Err(crate::Error::shape(
                op,
                "a convolution weight must be 4-D",
                &[t.shape()],
            ))
        }
    };
    let out_dims = perm.map(|p| dims[p]);
    let in_strides = t.shape().strides();
    let strides = perm.map(|p| in_strides[p]);
    let src = t.data();
    let mut out = Vec::with_capacity(src.len());
    for i0 in 0..out_dims[0] {
        for i1 in 0..out_dims[1] {
            for i2 in 0..out_dims[2] {
                let base = i0 * strides[0] + i1 * strides[1] + i2 * strides[2];
                out.extend((0..out_dims[3]).map(|i3| src[base + i3 * strides[3]]));
            }
        }
    }
    HostTensor::new(out_dims, out)
}
