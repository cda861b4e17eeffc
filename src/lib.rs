//! magnet: a deep-learning engine for image segmentation.
//!
//! A define-then-run compute graph ([`graph`]) whose operations are written once against the
//! [`backend::Backend`] trait, layers on top ([`layers`]), and backends for the CPU (always),
//! CUDA (feature `cuda`) and WGSL compute shaders through wgpu (feature `wgpu`).
//!
//! Activations are channels-last (NHWC); convolution weights are `[out, kh, kw, in]`.

pub mod backend;
pub mod bench;
pub mod data;
pub mod dist;
pub mod error;
pub mod graph;
pub mod io;
pub mod layers;
pub mod loss;
pub mod metrics;
pub mod models;
pub mod optim;
pub mod predict;
pub mod tensor;
pub mod train;
pub mod verify;

pub use backend::{Backend, CpuBackend};
pub use error::{Error, Result};
pub use graph::{Executor, Graph, Init, Mode, NodeId, TensorId, TensorLayout};
pub use tensor::{DType, HostTensor, Shape, TensorDesc};
