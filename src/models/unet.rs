//! The U-Net of the paper in the common PyTorch layout: a double conv, four encoders (max pool +
//! double conv), four decoders (upsample, concat skip then upsampled map, double conv) and a 1×1
//! out conv, with batch norm after every conv but the last. Parameter names are that layout's
//! state_dict keys (`inc.double_conv.0.weight`, `down1.maxpool_conv.1.double_conv.4.running_var`,
//! `up1.up.weight`, `up1.conv.double_conv.0.weight`, `outc.conv.bias`, ...).

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId};
use crate::layers::{self, BatchNormConfig, ConvConfig};

/// How decoders double the spatial size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upsampling {
    /// A 2×2 stride-2 transposed convolution halving the channels (`up*.up.weight`).
    Transposed,
    /// Bilinear upsampling with aligned corners; the bottom layer is halved instead, as the
    /// common PyTorch layout does.
    Bilinear,
}

/// U-Net hyper-parameters. `base_channels` 64 with transposed upsampling is the paper's
/// 31.0 M-parameter network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub classes: usize,
    pub base_channels: usize,
    pub upsampling: Upsampling,
}

/// A U-Net's input and output nodes.
#[derive(Debug, Clone, Copy)]
pub struct UNet {
    /// The NHWC image input, named `image`.
    pub image: NodeId,
    /// Per-pixel class logits, NHWC with `classes` channels.
    pub logits: NodeId,
}

impl UNet {
    /// Adds a U-Net for images of `batch × height × width` to `g`. Height and width must be
    /// multiples of 16 (four 2× poolings).
    pub fn build<B: Backend>(
        g: &mut Graph<B>,
        cfg: UNetConfig,
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<UNet> {
        if height % 16 != 0 || width % 16 != 0 || height == 0 || width == 0 {
            return Err(Error::invalid(
                "unet",
                format!("image size {height}×{width} must be a positive multiple of 16"),
            ));
        }
        if cfg.base_channels == 0 || cfg.classes == 0 || cfg.in_channels == 0 {
            return Err(Error::invalid("unet", format!("empty network {cfg:?}")));
        }
        let c = cfg.base_channels;
        let factor = match cfg.upsampling {
            Upsampling::Transposed => 1,
            Upsampling::Bilinear => 2,
        };
        let image = g.input("image", [batch, height, width, cfg.in_channels])?;
        let x1 = double_conv(g, "inc", image, c, c)?;
        let x2 = down(g, "down1", x1, 2 * c)?;
        let x3 = down(g, "down2", x2, 4 * c)?;
        let x4 = down(g, "down3", x3, 8 * c)?;
        let x5 = down(g, "down4", x4, 16 * c / factor)?;
        let x = up(g, "up1", x5, x4, 8 * c / factor, cfg.upsampling)?;
        let x = up(g, "up2", x, x3, 4 * c / factor, cfg.upsampling)?;
        let x = up(g, "up3", x, x2, 2 * c / factor, cfg.upsampling)?;
        let x = up(g, "up4", x, x1, c, cfg.upsampling)?;
        let logits = layers::conv2d(g, "outc.conv", x, ConvConfig::new(cfg.classes, 1))?;
        Ok(UNet { image, logits })
    }
}

/// (conv 3×3 without bias → batch norm → ReLU) × 2, as `{name}.double_conv.{0,1,3,4}`.
fn double_conv<B: Backend>(
    g: &mut Graph<B>,
    name: &str,
    x: NodeId,
    mid: usize,
    out: usize,
) -> Result<NodeId> {
    let mut y = x;
    for (index, channels) in [(0, mid), (3, out)] {
        let conv = ConvConfig::new(channels, 3).padding(1).bias(false);
        y = layers::conv2d(g, &format!("{name}.double_conv.{index}"), y, conv)?;
        let bn = format!("{name}.double_conv.{}", index + 1);
        y = layers::batchnorm2d_relu(g, &bn, y, BatchNormConfig::default())?;
    }
    Ok(y)
}

/// Max pool 2× then a double conv, as `{name}.maxpool_conv.1`.
fn down<B: Backend>(g: &mut Graph<B>, name: &str, x: NodeId, out: usize) -> Result<NodeId> {
    let pooled = layers::maxpool2d(g, x, 2, 2)?;
    double_conv(g, &format!("{name}.maxpool_conv.1"), pooled, out, out)
}

/// Upsample `x`, concatenate `[skip, upsampled]`, double conv, as `{name}.up` / `{name}.conv`.
fn up<B: Backend>(
    g: &mut Graph<B>,
    name: &str,
    x: NodeId,
    skip: NodeId,
    out: usize,
    upsampling: Upsampling,
) -> Result<NodeId> {
    let in_channels = g.shape(x)?.last() + g.shape(skip)?.last();
    let (upsampled, mid) = match upsampling {
        Upsampling::Transposed => {
            let channels = g.shape(x)?.last() / 2;
            let cfg = ConvConfig::new(channels, 2).stride(2);
            (
                layers::conv2d_transpose(g, &format!("{name}.up"), x, cfg)?,
                out,
            )
        }
        Upsampling::Bilinear => (layers::upsample_bilinear2d(g, x, 2, true)?, in_channels / 2),
    };
    let merged = layers::concat(g, &[skip, upsampled])?;
    double_conv(g, &format!("{name}.conv"), merged, mid, out)
}
