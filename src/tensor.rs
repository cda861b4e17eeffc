//! Shapes, element types and host tensors.
//!
//! Activations are channels-last (NHWC); convolution weights are `[out, kh, kw, in]`.

use std::fmt;

use crate::error::{Error, Result};

/// Element type of a buffer. Only `F32` is implemented; the descriptor carries the type so that
/// reduced-precision storage can be added without changing any signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DType {
    #[default]
    F32,
}

impl DType {
    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
        }
    }
}

/// The dimensions of a tensor, outermost first.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<usize>);

impl Shape {
    /// A shape from its dimensions.
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Number of elements (1 for a scalar).
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    /// Dimension `i`, counting from the end when negative is wanted use [`Shape::last`].
    pub fn dim(&self, i: usize) -> usize {
        self.0[i]
    }

    /// The last dimension (channels for NHWC, features for N×F), or 1 for a scalar.
    pub fn last(&self) -> usize {
        self.0.last().copied().unwrap_or(1)
    }

    /// The four dimensions of an NHWC tensor, or a shape error naming `op`.
    pub fn nhwc(&self, op: &'static str) -> Result<[usize; 4]> {
        match self.0.as_slice() {
            &[n, h, w, c] => Ok([n, h, w, c]),
            _ => Err(Error::shape(op, "expected a 4-D NHWC tensor", &[self])),
        }
    }

    /// The shape that NumPy broadcasting gives `self` and `other`, if they are compatible.
    pub fn broadcast(&self, other: &Shape) -> Option<Shape> {
        let rank = self.rank().max(other.rank());
        let mut dims = vec![0; rank];
        for (i, d) in dims.iter_mut().enumerate() {
            let a = self.dim_from_end(rank - 1 - i);
            let b = other.dim_from_end(rank - 1 - i);
            *d = match (a, b) {
                (a, b) if a == b => a,
                (1, b) => b,
                (a, 1) => a,
                _ => return None,
            };
        }
        Some(Shape(dims))
    }

    /// Dimension `k` counted from the end (0 = last), with missing leading dimensions as 1.
    pub fn dim_from_end(&self, k: usize) -> usize {
        if k < self.rank() {
            self.0[self.rank() - 1 - k]
        } else {
            1
        }
    }

    /// Row-major strides of this shape, in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut strides = vec![1; self.rank()];
        for i in (0..self.rank().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * self.0[i + 1];
        }
        strides
    }
}

impl From<Vec<usize>> for Shape {
    fn from(v: Vec<usize>) -> Self {
        Shape(v)
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(v: [usize; N]) -> Self {
        Shape(v.to_vec())
    }
}

impl From<&[usize]> for Shape {
    fn from(v: &[usize]) -> Self {
        Shape(v.to_vec())
    }
}

impl fmt::Debug for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{d}")?;
        }
        write!(f, "]")
    }
}

/// What a device buffer holds: its shape and element type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TensorDesc {
    pub shape: Shape,
    pub dtype: DType,
}

impl TensorDesc {
    /// An f32 descriptor of `shape`.
    pub fn f32(shape: impl Into<Shape>) -> Self {
        TensorDesc {
            shape: shape.into(),
            dtype: DType::F32,
        }
    }

    /// Size of the buffer in bytes.
    pub fn size_bytes(&self) -> usize {
        self.shape.numel() * self.dtype.size_bytes()
    }
}

/// A tensor in host memory: row-major f32 data and its shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    shape: Shape,
    data: Vec<f32>,
}

impl HostTensor {
    /// A tensor from its shape and row-major data; errors when the lengths disagree.
    pub fn new(shape: impl Into<Shape>, data: Vec<f32>) -> Result<Self> {
        let shape = shape.into();
        if shape.numel() != data.len() {
            return Err(Error::Length {
                op: "HostTensor::new",
                expected: shape.numel(),
                got: data.len(),
            });
        }
        Ok(HostTensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: impl Into<Shape>) -> Self {
        let shape = shape.into();
        let data = vec![0.0; shape.numel()];
        HostTensor { shape, data }
    }

    /// A tensor filled with `value`.
    pub fn full(shape: impl Into<Shape>, value: f32) -> Self {
        let shape = shape.into();
        let data = vec![value; shape.numel()];
        HostTensor { shape, data }
    }

    /// A scalar (rank-0) tensor.
    pub fn scalar(value: f32) -> Self {
        HostTensor {
            shape: Shape::new(vec![]),
            data: vec![value],
        }
    }

    /// The shape.
    pub fn shape(&self) -> &Shape {
        &self.shape
    }

    /// The row-major data.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The row-major data, mutably.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor and returns its data.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// The same data under another shape with as many elements.
    pub fn reshape(self, shape: impl Into<Shape>) -> Result<Self> {
        HostTensor::new(shape, self.data)
    }

    /// The descriptor of this tensor.
    pub fn desc(&self) -> TensorDesc {
        TensorDesc::f32(self.shape.clone())
    }
}
