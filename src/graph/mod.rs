//! A define-then-run compute graph, generic over the backend.
//!
//! Build a [`Graph`] once from inputs, parameters and ops (the [`crate::layers`] functions do this),
//! then run it many times with an [`Executor`]. Nodes can only consume nodes that already exist, so a
//! graph is acyclic by construction and node order is a topological order.

mod executor;
mod init;
mod op;
pub mod ops;
mod pool;
mod profile;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

pub use executor::{Executor, GradientReady};
pub use init::Init;
pub use op::{BackwardCtx, ForwardCtx, Mode, Op};
pub use profile::{OpTime, Pass, Profile};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::tensor::Shape;

/// A node of a graph. Only valid with the graph that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId {
    graph: u32,
    index: usize,
}

impl NodeId {
    /// Position of the node in its graph (a topological order).
    pub fn index(self) -> usize {
        self.index
    }
}

/// A named tensor owned by the graph: a trainable parameter or a state buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(usize);

impl TensorId {
    /// Position in [`Graph::tensors`].
    pub fn index(self) -> usize {
        self.0
    }
}

/// Declaration of a named tensor: name, shape, initialisation and whether the optimiser trains it.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Shape,
    pub init: Init,
    pub trainable: bool,
    /// How the tensor's axes map to PyTorch's, for moving weights across.
    pub layout: TensorLayout,
}

/// The axis order of a named tensor relative to PyTorch's, so checkpoints can be written in
/// PyTorch's layout and read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TensorLayout {
    /// The same in both (biases, batch-norm tensors, dense weights `[out, in]`).
    #[default]
    Same,
    /// Convolution weights: magnet `[out, kh, kw, in]`, PyTorch `[out, in, kh, kw]`.
    ConvWeight,
    /// Transposed-convolution weights: magnet `[in, kh, kw, out]`, PyTorch `[in, out, kh, kw]`.
    ConvTransposeWeight,
}

/// What a node is.
pub(crate) enum NodeKind<B: Backend> {
    /// Fed by the user before each run.
    Input { name: String, requires_grad: bool },
    /// A trainable parameter.
    Param(TensorId),
    /// An operation on earlier nodes.
    Op {
        op: Box<dyn Op<B>>,
        inputs: Vec<NodeId>,
    },
}

pub(crate) struct Node<B: Backend> {
    pub(crate) kind: NodeKind<B>,
    pub(crate) shape: Shape,
}

/// A compute graph of inputs, parameters and operations.
pub struct Graph<B: Backend> {
    id: u32,
    pub(crate) nodes: Vec<Node<B>>,
    pub(crate) tensors: Vec<TensorSpec>,
    names: HashMap<String, TensorId>,
    inputs: HashMap<String, NodeId>,
}

impl<B: Backend> Default for Graph<B> {
    fn default() -> Self {
        Self::new()
    }
}

impl<B: Backend> Graph<B> {
    /// An empty graph.
    pub fn new() -> Self {
        static NEXT_ID: AtomicU32 = AtomicU32::new(0);
        Graph {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            nodes: Vec::new(),
            tensors: Vec::new(),
            names: HashMap::new(),
            inputs: HashMap::new(),
        }
    }

    /// A named input of `shape`, fed before each run; no gradient is computed for it.
    pub fn input(&mut self, name: &str, shape: impl Into<Shape>) -> Result<NodeId> {
        self.add_input(name, shape.into(), false)
    }

    /// A named input whose gradient the executor computes (for gradient checks, adversarial
    /// inputs, or feeding another model).
    pub fn input_with_grad(&mut self, name: &str, shape: impl Into<Shape>) -> Result<NodeId> {
        self.add_input(name, shape.into(), true)
    }

    fn add_input(&mut self, name: &str, shape: Shape, requires_grad: bool) -> Result<NodeId> {
        if self.inputs.contains_key(name) {
            return Err(Error::Graph(format!("input '{name}' is declared twice")));
        }
        let id = self.push(
            NodeKind::Input {
                name: name.to_string(),
                requires_grad,
            },
            shape,
        );
        self.inputs.insert(name.to_string(), id);
        Ok(id)
    }

    /// A trainable parameter named `name` (e.g. `inc.double_conv.0.weight`).
    pub fn param(&mut self, name: &str, shape: impl Into<Shape>, init: Init) -> Result<NodeId> {
        self.param_with_layout(name, shape, init, TensorLayout::Same)
    }

    /// A trainable parameter whose axes differ from PyTorch's as `layout` says.
    pub fn param_with_layout(
        &mut self,
        name: &str,
        shape: impl Into<Shape>,
        init: Init,
        layout: TensorLayout,
    ) -> Result<NodeId> {
        let shape = shape.into();
        let tensor = self.declare(name, shape.clone(), init, true, layout)?;
        Ok(self.push(NodeKind::Param(tensor), shape))
    }

    /// A named non-trainable tensor (e.g. a running mean) for an op's [`Op::state`].
    pub fn state(&mut self, name: &str, shape: impl Into<Shape>, init: Init) -> Result<TensorId> {
        self.declare(name, shape.into(), init, false, TensorLayout::Same)
    }

    fn declare(
        &mut self,
        name: &str,
        shape: Shape,
        init: Init,
        trainable: bool,
        layout: TensorLayout,
    ) -> Result<TensorId> {
        if self.names.contains_key(name) {
            return Err(Error::Graph(format!("tensor '{name}' is declared twice")));
        }
        let id = TensorId(self.tensors.len());
        self.tensors.push(TensorSpec {
            name: name.to_string(),
            shape,
            init,
            trainable,
            layout,
        });
        self.names.insert(name.to_string(), id);
        Ok(id)
    }

    /// Adds `op` applied to `inputs`; checks that the inputs belong to this graph and that the
    /// op accepts their shapes.
    pub fn apply(&mut self, op: impl Op<B> + 'static, inputs: &[NodeId]) -> Result<NodeId> {
        for &input in inputs {
            self.check_node(input)?;
        }
        for &tensor in &op.state() {
            if tensor.0 >= self.tensors.len() || self.tensors[tensor.0].trainable {
                return Err(Error::Graph(format!(
                    "{}: state tensor {} is not a non-trainable tensor of this graph",
                    op.name(),
                    tensor.0
                )));
            }
        }
        let shapes: Vec<&Shape> = inputs.iter().map(|n| &self.nodes[n.index].shape).collect();
        let shape = op.output_shape(&shapes)?;
        Ok(self.push(
            NodeKind::Op {
                op: Box::new(op),
                inputs: inputs.to_vec(),
            },
            shape,
        ))
    }

    fn push(&mut self, kind: NodeKind<B>, shape: Shape) -> NodeId {
        self.nodes.push(Node { kind, shape });
        NodeId {
            graph: self.id,
            index: self.nodes.len() - 1,
        }
    }

    /// Errors unless `node` was made by this graph.
    pub fn check_node(&self, node: NodeId) -> Result<()> {
        if node.graph != self.id || node.index >= self.nodes.len() {
            return Err(Error::Graph(format!(
                "node {} does not belong to this graph",
                node.index
            )));
        }
        Ok(())
    }

    /// The shape of `node` as declared when the graph was built.
    pub fn shape(&self, node: NodeId) -> Result<&Shape> {
        self.check_node(node)?;
        Ok(&self.nodes[node.index].shape)
    }

    /// The named tensors (parameters and state), in declaration order.
    pub fn tensors(&self) -> &[TensorSpec] {
        &self.tensors
    }

    /// The id of the named tensor `name`.
    pub fn tensor_id(&self, name: &str) -> Result<TensorId> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| Error::Graph(format!("no tensor named '{name}'")))
    }

    /// The input node called `name`.
    pub fn input_node(&self, name: &str) -> Result<NodeId> {
        self.inputs
            .get(name)
            .copied()
            .ok_or_else(|| Error::Graph(format!("no input named '{name}'")))
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The ids of the trainable tensors, in declaration order.
    pub fn trainable_ids(&self) -> Vec<TensorId> {
        (0..self.tensors.len())
            .filter(|&i| self.tensors[i].trainable)
            .map(TensorId)
            .collect()
    }

    /// Total number of trainable scalars.
    pub fn num_trainable(&self) -> usize {
        self.tensors
            .iter()
            .filter(|t| t.trainable)
            .map(|t| t.shape.numel())
            .sum()
    }
}
