//! The graph operations, one file each.
