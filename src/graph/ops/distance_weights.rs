//! Per-pixel loss weights from the distance to the nearest ground-truth foreground pixel.

use crate::backend::{Backend, ForegroundParams, ImageGridParams, UnaryOp};
use crate::error::{Error, Result};
use crate::graph::{BackwardCtx, ForwardCtx, Op};
use crate::tensor::Shape;

/// `w = foreground` on foreground pixels (label ≠ `background`, not ignored), and
/// `w(d) = near + (far − near) · (1 − exp(−d / sigma))` on the others, where `d` is the
/// Euclidean distance in pixels to the nearest foreground pixel of the same image
/// ([`crate::backend::LossOps::distance_transform`]; an image without foreground has `d` = its
/// diagonal). Input: `[labels]` of shape `[N, H, W]` or `[N, H, W, 1]`; output: the same shape.
/// Not differentiable.
#[derive(Debug, Clone)]
pub struct DistanceWeights {
    pub background: u32,
    pub ignore_index: Option<u32>,
    pub foreground: f32,
    pub near: f32,
    pub far: f32,
    /// Length scale in pixels (> 0).
    pub sigma: f32,
}

fn grid(labels: &Shape) -> Result<ImageGridParams> {
    let d = labels.dims();
    let ok = d.len() == 3 || (d.len() == 4 && d[3] == 1);
    if !ok {
        return Err(Error::shape(
            "distance_weights",
            "labels must be [N, H, W] or [N, H, W, 1]",
            &[labels],
        ));
    }
    Ok(ImageGridParams {
        batch: d[0],
        height: d[1],
        width: d[2],
    })
}

impl<B: Backend> Op<B> for DistanceWeights {
    fn name(&self) -> &'static str {
        "distance_weights"
    }

    fn output_shape(&self, inputs: &[&Shape]) -> Result<Shape> {
        super::expect_inputs("distance_weights", inputs, 1)?;
        grid(inputs[0])?;
        let finite = [self.foreground, self.near, self.far]
            .iter()
            .all(|v| v.is_finite());
        if !(finite && self.sigma > 0.0 && self.sigma.is_finite()) {
            return Err(Error::invalid(
                "distance_weights",
                format!("weights must be finite and sigma > 0 ({self:?})"),
            ));
        }
        Ok(inputs[0].clone())
    }

    fn differentiable(&self, _index: usize) -> bool {
        false
    }

    /// The foreground mask and the distances.
    fn workspace(&self, inputs: &[&Shape], _output: &Shape) -> Vec<Shape> {
        vec![inputs[0].clone(), inputs[0].clone()]
    }

    /// mask → d → exp(−d/σ) → far + (near − far)·exp(−d/σ), then + (foreground − near)·mask
    /// (where the mask is 1, d = 0 and the first part is `near`).
    fn forward(&self, cx: ForwardCtx<'_, B>) -> Result<()> {
        let be = cx.backend;
        let g = grid(cx.input_shapes[0])?;
        let (mask, dist) = cx.workspace.split_at_mut(1);
        let (mask, dist) = (&mut mask[0], &mut dist[0]);
        let fg = ForegroundParams {
            len: g.len("distance_weights")?,
            background: self.background,
            ignore_index: self.ignore_index,
        };
        be.foreground_mask(&fg, cx.inputs[0], mask)?;
        be.distance_transform(&g, mask, dist)?;
        let out = cx.output;
        let scaled = UnaryOp::Affine {
            scale: -1.0 / self.sigma,
            shift: 0.0,
        };
        be.unary(scaled, dist, out)?;
        be.unary(UnaryOp::Exp, out, dist)?;
        let blend = UnaryOp::Affine {
            scale: self.near - self.far,
            shift: self.far,
        };
        be.unary(blend, dist, out)?;
        be.axpy(self.foreground - self.near, mask, out)
    }

    /// Labels take no gradient.
    fn backward(&self, _cx: BackwardCtx<'_, B>) -> Result<()> {
        Ok(())
    }
}
