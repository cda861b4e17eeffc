//! Batch normalisation over the last axis (channels of NHWC, features of N×C), PyTorch semantics.

use crate::backend::{Backend, BatchNormParams, BinaryOp, ReduceOp, UnaryOp};
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Mode, Op, TensorId};
use crate::tensor::{Shape, TensorDesc};

/// Inputs `[x, gamma, beta]`; state `[running_mean, running_var]`. Training mode normalises with
/// the batch statistics and updates the running ones; evaluation mode uses the running ones.
/// With `relu` a ReLU follows in the same pass (and its gradient in batch norm's backward).
///
/// Backward reads `x` (and the saved statistics), never the output, and a training output can
/// be recomputed from them in one pass: an executor keeping only some values stores `x` alone
/// where a separate ReLU would have it store its output as well.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub eps: f32,
    pub momentum: f32,
    pub relu: bool,
    pub running_mean: TensorId,
    pub running_var: TensorId,
}

impl BatchNorm {
    fn params(&self, x: &Shape) -> BatchNormParams {
        let channels = x.last();
        BatchNormParams {
            rows: x.numel() / channels.max(1),
            channels,
            eps: self.eps,
            momentum: self.momentum,
            relu: self.relu,
        }
    }
}

impl<B: Backend> Op<B> for BatchNorm {
    fn name(&self) -> &'static str {
        "batch_norm"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs("batch_norm", inputs, 3)?;
        let (x, gamma, beta) = (inputs[0], inputs[1], inputs[2]);
        let c = x.last();
        if x.rank() < 2 || gamma.dims() != [c] || beta.dims() != [c] {
            return Err(Error::shape(
                "batch_norm",
                "expected x [..., C] with gamma and beta [C]",
                &[x, gamma, beta],
            ));
        }
        self.params(x).validate("batch_norm")?;
        Ok(x.clone())
    }

    /// Saved batch mean and 1/sqrt(var + eps), per channel.
    fn workspace(&self, inputs: &[&Shape], _output: &Shape) -> Vec<Shape> {
        let c = inputs[0].last();
        vec![Shape::new([c]), Shape::new([c])]
    }

    fn state(&self) -> Vec<TensorId> {
        vec![self.running_mean, self.running_var]
    }

    /// `x` and `gamma` (the batch statistics are in the workspace), and `beta` for the ReLU's
    /// mask; not the output.
    fn backward_reads_input(&self, index: usize) -> bool {
        index < 2 || self.relu
    }

    fn backward_reads_output(&self) -> bool {
        false
    }

    fn recomputable(&self) -> bool {
        true
    }

    /// The training output from `x` and the statistics saved in the workspace.
    fn recompute(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let p = self.params(cx.input_shapes[0]);
        let [save_mean, save_invstd] = cx.workspace else {
            return Err(Error::Graph("batch_norm: expected two workspaces".into()));
        };
        let [x, gamma, beta] = [cx.inputs[0], cx.inputs[1], cx.inputs[2]];
        cx.backend
            .batch_norm_apply(&p, x, gamma, beta, save_mean, save_invstd, cx.output)
    }

    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let p = self.params(cx.input_shapes[0]);
        let [x, gamma, beta] = [cx.inputs[0], cx.inputs[1], cx.inputs[2]];
        let [running_mean, running_var] = cx.state else {
            return Err(Error::Graph(
                "batch_norm: expected two state tensors".into(),
            ));
        };
        match cx.mode {
            Mode::Train => {
                let [save_mean, save_invstd] = cx.workspace else {
                    return Err(Error::Graph("batch_norm: expected two workspaces".into()));
                };
                if let Some(collective) = cx.collective {
                    return super::sync_batch_norm::forward(
                        cx.backend,
                        &p,
                        collective,
                        x,
                        gamma,
                        beta,
                        cx.output,
                        save_mean,
                        save_invstd,
                        running_mean,
                        running_var,
                    );
                }
                cx.backend.batch_norm_train(
                    &p,
                    x,
                    gamma,
                    beta,
                    cx.output,
                    save_mean,
                    save_invstd,
                    running_mean,
                    running_var,
                )
            }
            Mode::Eval => cx.backend.batch_norm_inference(
                &p,
                x,
                gamma,
                beta,
                running_mean,
                running_var,
                cx.output,
            ),
        }
    }

    fn backward(&self, cx: BackwardCtx<'_, B>) -> Result<()> {
        let p = self.params(cx.input_shapes[0]);
        let b = cx.backend;
        let (x, gamma, beta) = (cx.inputs[0], cx.inputs[1], cx.inputs[2]);
        let x_shape = cx.input_shapes[0];
        let [save_mean, save_invstd] = cx.workspace else {
            return Err(Error::Graph("batch_norm: expected two workspaces".into()));
        };
        let mut grads = cx.grad_inputs.into_iter();
        let (dx, dgamma, dbeta) = (
            grads.next().flatten(),
            grads.next().flatten(),
            grads.next().flatten(),
        );
        if cx.mode == Mode::Eval {
            return eval_backward(
                b,
                &p,
                x,
                x_shape,
                [gamma, beta],
                cx.state,
                cx.grad_output,
                [dx, dgamma, dbeta],
            );
        }
        // The fused kernel writes all three gradients; lend it temporaries for those not wanted.
        let channel = TensorDesc::f32([p.channels]);
        let mut spare_dx = None;
        let mut spare_dgamma = None;
        let mut spare_dbeta = None;
        let dx = match dx {
            Some(g) => g,
            None => spare_dx.insert(b.alloc(&TensorDesc::f32(x_shape.clone()))?),
        };
        let dgamma = match dgamma {
            Some(g) => g,
            None => spare_dgamma.insert(b.alloc(&channel)?),
        };
        let dbeta = match dbeta {
            Some(g) => g,
            None => spare_dbeta.insert(b.alloc(&channel)?),
        };
        match cx.collective {
            Some(collective) => super::sync_batch_norm::backward(
                b,
                &p,
                collective,
                x,
                x_shape,
                cx.grad_output,
                [gamma, beta],
                save_mean,
                save_invstd,
                dx,
                dgamma,
                dbeta,
            ),
            None => b.batch_norm_backward(
                &p,
                x,
                cx.grad_output,
                gamma,
                beta,
                save_mean,
                save_invstd,
                dx,
                dgamma,
                dbeta,
            ),
        }
    }
}

/// Evaluation mode is an affine map per channel, `y = (x − μ)·s·γ + β` with `s = 1/sqrt(σ² + eps)`:
/// dx = dy·γ·s, dγ = Σ dy·(x − μ)·s, dβ = Σ dy (with a ReLU after it, dy masked where `y ≤ 0`).
#[allow(clippy::too_many_arguments)]
fn eval_backward<B: Backend>(
    b: &B,
    p: &BatchNormParams,
    x: &B::Buffer,
    x_shape: &Shape,
    [gamma, beta]: [&B::Buffer; 2],
    state: &[&B::Buffer],
    dy: &B::Buffer,
    [dx, dgamma, dbeta]: [Option<&mut B::Buffer>; 3],
) -> Result<()> {
    let [running_mean, running_var] = state else {
        return Err(Error::Graph(
            "batch_norm: expected two state tensors".into(),
        ));
    };
    let c = Shape::new([p.channels]);
    let channel = TensorDesc::f32(c.clone());
    let full = TensorDesc::f32(x_shape.clone());
    let mut masked = None;
    if p.relu {
        // The ReLU's gradient: dy where the normalised value (before the ReLU) is positive.
        let affine = BatchNormParams { relu: false, ..*p };
        let mut y = b.alloc(&full)?;
        b.batch_norm_inference(&affine, x, gamma, beta, running_mean, running_var, &mut y)?;
        let mut g = b.alloc(&full)?;
        b.unary_backward(UnaryOp::Relu, &y, dy, &mut g)?;
        masked = Some(g);
    }
    let dy = masked.as_ref().unwrap_or(dy);
    // s = 1 / sqrt(var + eps)
    let mut t = b.alloc(&channel)?;
    let mut s = b.alloc(&channel)?;
    b.unary(
        UnaryOp::Affine {
            scale: 1.0,
            shift: p.eps,
        },
        running_var,
        &mut t,
    )?;
    b.unary(UnaryOp::Sqrt, &t, &mut s)?;
    b.fill(&mut t, 1.0)?;
    let mut inv = b.alloc(&channel)?;
    b.binary(BinaryOp::Div, &t, &c, &s, &c, &mut inv)?;
    if let Some(dx) = dx {
        b.binary(BinaryOp::Mul, gamma, &c, &inv, &c, &mut s)?;
        b.binary(BinaryOp::Mul, dy, x_shape, &s, &c, dx)?;
    }
    if let Some(dbeta) = dbeta {
        b.reduce(ReduceOp::Sum, dy, x_shape, &c, dbeta)?;
    }
    if let Some(dgamma) = dgamma {
        let mut centred = b.alloc(&full)?;
        let mut scaled = b.alloc(&full)?;
        b.binary(BinaryOp::Sub, x, x_shape, running_mean, &c, &mut centred)?;
        b.binary(BinaryOp::Mul, &centred, x_shape, &inv, &c, &mut scaled)?;
        b.binary(BinaryOp::Mul, &scaled, x_shape, dy, x_shape, &mut centred)?;
        b.reduce(ReduceOp::Sum, &centred, x_shape, &c, dgamma)?;
    }
    Ok(())
}
