//! A residual U-Net: the U-Net's double convolutions replaced by residual blocks whose `add`
//! skips (next to the `concat` skips) make the graph a general DAG.

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::layers::{self, BatchNormConfig, ConvConfig};
use crate::models::unet::{UNet, UNetConfig, Upsampling};

/// Adds a residual U-Net with the same inputs, outputs and configuration as [`UNet::build`].
///
/// Each block is `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, where the shortcut is
/// the identity when the channel count is unchanged and a 1×1 convolution with batch norm
/// otherwise. Parameters are named `{block}.conv1.weight`, `{block}.bn1.running_mean`,
/// `{block}.shortcut.0.weight`, ... with blocks `inc`, `down1..4`, `up1..4` (`up*.up` as in
/// the U-Net) and the output convolution `outc.conv`.
pub fn build_resunet<B: Backend>(
    g: &mut Graph<B>,
    cfg: UNetConfig,
    batch: usize,
    height: usize,
    width: usize,
) -> Result<UNet> {
    if height % 16 != 0 || width % 16 != 0 || height == 0 || width == 0 {
        return Err(Error::invalid(
            "resunet",
            format!("image size {height}×{width} must be a positive multiple of 16"),
        ));
    }
    let c = cfg.base_channels;
    let image = g.input("image", [batch, height, width, cfg.in_channels])?;
    let x1 = residual_block(g, "inc", image, c)?;
    let mut skips = vec![x1];
    let mut x = x1;
    for (level, channels) in [2 * c, 4 * c, 8 * c, 16 * c].into_iter().enumerate() {
        let pooled = layers::maxpool2d(g, x, 2, 2)?;
        x = residual_block(g, &format!("down{}", level + 1), pooled, channels)?;
        skips.push(x);
    }
    skips.pop();
    for (level, channels) in [8 * c, 4 * c, 2 * c, c].into_iter().enumerate() {
        let name = format!("up{}", level + 1);
        let upsampled = match cfg.upsampling {
            Upsampling::Transposed => {
                let up = ConvConfig::new(channels, 2).stride(2);
                layers::conv2d_transpose(g, &format!("{name}.up"), x, up)?
            }
            Upsampling::Bilinear => layers::upsample_bilinear2d(g, x, 2, true)?,
        };
        let skip = skips.pop().expect("one skip per level");
        let merged = layers::concat(g, &[skip, upsampled])?;
        x = residual_block(g, &name, merged, channels)?;
    }
    let logits = layers::conv2d(g, "outc.conv", x, ConvConfig::new(cfg.classes, 1))?;
    Ok(UNet { image, logits })
}

/// `relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))` with `out` channels.
fn residual_block<B: Backend>(
    g: &mut Graph<B>,
    name: &str,
    x: NodeId,
    out: usize,
) -> Result<NodeId> {
    let bn = BatchNormConfig::default();
    let conv = ConvConfig::new(out, 3).padding(1).bias(false);
    let y = layers::conv2d(g, &format!("{name}.conv1"), x, conv)?;
    let y = layers::batchnorm2d_relu(g, &format!("{name}.bn1"), y, bn)?;
    let y = layers::conv2d(g, &format!("{name}.conv2"), y, conv)?;
    let y = layers::batchnorm2d(g, &format!("{name}.bn2"), y, bn)?;
    let shortcut = if g.shape(x)?.last() == out {
        x
    } else {
        let projection = ConvConfig::new(out, 1).bias(false);
        let s = layers::conv2d(g, &format!("{name}.shortcut.0"), x, projection)?;
        layers::batchnorm2d(g, &format!("{name}.shortcut.1"), s, bn)?
    };
    let sum = layers::add(g, y, shortcut)?;
    layers::relu(g, sum)
}
