//! Layers as functions that add nodes to a graph.
