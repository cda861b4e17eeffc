//! The [`Op`] trait: one operation's shape rule, forward and backward, written once against
//! [`Backend`] primitives.

use crate::backend::Backend;
use crate::dist::Collective;
use crate::error::Result;
use crate::graph::TensorId;
use crate::tensor::Shape;

/// Whether a forward pass trains (batch statistics, dropout on) or evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    Train,
    Eval,
}

/// An operation of the graph.
///
/// Inputs arrive in the order they were given to [`crate::graph::Graph::apply`]. An op may ask for
/// workspace buffers (saved statistics, backward temporaries), which the executor allocates once per
/// plan, and may own named state tensors (batch norm's running statistics), which live with the
/// parameters and are saved in checkpoints.
pub trait Op<B: Backend>: Send + Sync {
    /// The op's name, used in error messages.
    fn name(&self) -> &'static str;

    /// The output shape for these input shapes, or a shape error naming the op and the shapes.
    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape>;

    /// Shapes of the workspace buffers this op needs (kept from forward to backward).
    fn workspace(&self, _inputs: &[&Shape], _output: &Shape) -> Vec<Shape> {
        Vec::new()
    }

    /// Named non-trainable tensors the op reads and updates, in the order it expects them in
    /// [`ForwardCtx::state`].
    fn state(&self) -> Vec<TensorId> {
        Vec::new()
    }

    /// Whether input `index` carries a gradient (false for labels, masks and indices).
    fn differentiable(&self, _index: usize) -> bool {
        true
    }

    /// Whether backward reads the value of input `index` (it always may read its shape, the
    /// output gradient and the workspaces). An executor that keeps only some values
    /// ([`crate::graph::Executor::keep_only`]) frees the others after their last forward use
    /// and hands backward an empty buffer in their place. The default: every input.
    fn backward_reads_input(&self, _index: usize) -> bool {
        true
    }

    /// Whether backward reads the output's value (the default: yes); see
    /// [`Op::backward_reads_input`].
    fn backward_reads_output(&self) -> bool {
        true
    }

    /// Whether, after a training forward, [`Op::recompute`] can write the output again cheaply
    /// (one elementwise pass) from the inputs this op's backward reads and its workspaces. An
    /// executor that keeps only some values then frees the output after its last forward use
    /// even where a later backward reads it, and recomputes it for that backward.
    fn recomputable(&self) -> bool {
        false
    }

    /// Writes the output of the last training forward again, bit for bit, changing nothing else
    /// (see [`Op::recomputable`]). `cx.state` holds the state as that forward left it.
    fn recompute(&self, _cx: ForwardCtx<'_, B>) -> Result<()> {
        Err(crate::error::Error::Graph(format!(
            "{} cannot recompute its output",
            self.name()
        )))
    }

    /// Computes the output.
    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()>;

    /// Computes the gradients of the inputs that [`BackwardCtx::grad_inputs`] asks for,
    /// overwriting them.
    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()>;
}

/// What an op's forward sees.
pub struct ForwardCtx<'a, B: Backend> {
    pub backend: &'a B,
    pub mode: Mode,
    /// A seed unique to this node and this step (for dropout).
    pub seed: u64,
    pub inputs: &'a [&'a B::Buffer],
    pub input_shapes: &'a [&'a Shape],
    pub output: &'a mut B::Buffer,
    pub output_shape: &'a Shape,
    pub workspace: &'a mut [B::Buffer],
    pub state: &'a mut [B::Buffer],
    /// The ranks of a data-parallel run that synchronises batch statistics, when this is one
    /// (see [`crate::dist::ParallelConfig::sync_batch_norm`]).
    pub collective: Option<&'a mut (dyn Collective<B> + 'static)>,
}

/// What an op's backward sees: the forward's tensors, the output gradient, and one slot per
/// input that is `Some` when that input's gradient is wanted.
pub struct BackwardCtx<'a, B: Backend> {
    pub backend: &'a B,
    pub mode: Mode,
    /// The same seed the forward saw.
    pub seed: u64,
    pub inputs: &'a [&'a B::Buffer],
    pub input_shapes: &'a [&'a Shape],
    pub output: &'a B::Buffer,
    pub output_shape: &'a Shape,
    pub grad_output: &'a B::Buffer,
    pub grad_inputs: Vec<Option<&'a mut B::Buffer>>,
    pub workspace: &'a mut [B::Buffer],
    pub state: &'a [&'a B::Buffer],
    /// As [`ForwardCtx::collective`].
    pub collective: Option<&'a mut (dyn Collective<B> + 'static)>,
}
