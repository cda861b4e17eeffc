//! Layers as functions: each adds its parameters (named like PyTorch's state_dict keys, initialised
//! like PyTorch's defaults) and its ops to a graph and returns the output node.
//!
//! ```
//! use magnet::{layers, CpuBackend, Graph};
//! use magnet::layers::ConvConfig;
//!
//! let mut g = Graph::<CpuBackend>::new();
//! let x = g.input("image", [1, 32, 32, 3]).unwrap();
//! let y = layers::conv2d(&mut g, "inc.double_conv.0", x, ConvConfig::new(16, 3).padding(1)).unwrap();
//! let y = layers::relu(&mut g, y).unwrap();
//! assert_eq!(g.shape(y).unwrap().dims(), &[1, 32, 32, 16]);
//! ```

mod activation;
mod combine;
mod conv;
mod dense;
mod norm;
mod spatial;

pub use activation::{dropout, log_softmax, relu, sigmoid, softmax, tanh};
pub use combine::{add, concat, mean, mul, sub, sum};
pub use conv::{conv2d, conv2d_transpose, ConvConfig};
pub use dense::{dense, flatten};
pub use norm::{batchnorm2d, batchnorm2d_relu, BatchNormConfig};
pub use spatial::{maxpool2d, upsample_bilinear2d};
