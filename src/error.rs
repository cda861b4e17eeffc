//! The crate's one error type.

use std::path::PathBuf;

use crate::tensor::Shape;

/// Everything that can go wrong in magnet, with enough context to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operation received tensors whose shapes do not fit together.
    #[error("{op}: {reason} (shapes: {})", fmt_shapes(shapes))]
    Shape {
        op: &'static str,
        reason: String,
        shapes: Vec<Shape>,
    },
    /// A buffer or host tensor holds a different number of elements than its shape implies.
    #[error("{op}: expected {expected} elements, got {got}")]
    Length {
        op: &'static str,
        expected: usize,
        got: usize,
    },
    /// An argument is out of range (a zero stride, a dropout probability of 1.5, ...).
    #[error("{op}: invalid argument: {reason}")]
    InvalidArgument { op: &'static str, reason: String },
    /// The graph is malformed: a cycle, a dangling node, an unknown name, an input never fed.
    #[error("graph: {0}")]
    Graph(String),
    /// A backend could not be created or failed while running.
    #[error("backend {backend}: {reason}")]
    Backend {
        backend: &'static str,
        reason: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An HDF5 file could not be used: not HDF5, truncated, a missing dataset, a wrong element
    /// type, rank or shape. `reason` names the dataset or attribute concerned.
    #[error("{}: {reason}", path.display())]
    Hdf5 { path: PathBuf, reason: String },
    /// A checkpoint's tensor names differ from the model's (PyTorch's strict `load_state_dict`).
    #[error(
        "{}: checkpoint does not match the model: missing {missing:?}, unexpected {unexpected:?}",
        path.display()
    )]
    CheckpointKeys {
        path: PathBuf,
        missing: Vec<String>,
        unexpected: Vec<String>,
    },
    /// A data file or folder is missing, corrupt or inconsistent: a folder not found, an image
    /// without its mask, a mask of another size, a mask value outside the class mapping, an empty
    /// data set, an IDX header that disagrees with the file length, ... `path` names the file.
    #[error("{}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },
    /// A data-parallel run failed: the rendezvous, a collective, another rank.
    #[error("distributed rank {rank}: {reason}")]
    Distributed { rank: usize, reason: String },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn fmt_shapes(shapes: &[Shape]) -> String {
    shapes
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl Error {
    /// A shape error for `op` with the offending shapes.
    pub fn shape(op: &'static str, reason: impl Into<String>, shapes: &[&Shape]) -> Self {
        Error::Shape {
            op,
            reason: reason.into(),
            shapes: shapes.iter().map(|s| (*s).clone()).collect(),
        }
    }

    /// A data error for the file or folder `path`.
    pub fn data(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// An invalid-argument error for `op`.
    pub fn invalid(op: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            reason: reason.into(),
        }
    }
}
