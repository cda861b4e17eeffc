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

    /// An invalid-argument error for `op`.
    pub fn invalid(op: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            op,
            reason: reason.into(),
        }
    }
}
