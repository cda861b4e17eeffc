//! Convolution layers: `conv2d` and `conv2d_transpose`, with PyTorch's default initialisation.

use crate::backend::{Backend, BinaryOp};
use crate::error::Result;
use crate::graph::ops::{Binary, Conv2d, ConvGeometry, ConvTranspose2d};
use crate::graph::{Graph, Init, NodeId, TensorLayout};

/// Configuration of a convolution layer; build with [`ConvConfig::new`] and the setters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvConfig {
    pub out_channels: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    /// Extra output rows / columns, transposed convolution only (PyTorch's `output_padding`).
    pub output_padding: [usize; 2],
    pub bias: bool,
}

impl ConvConfig {
    /// `out_channels` filters of `kernel × kernel`, stride 1, no padding, with bias.
    pub fn new(out_channels: usize, kernel: usize) -> Self {
        ConvConfig {
            out_channels,
            kernel: [kernel, kernel],
            stride: [1, 1],
            padding: [0, 0],
            dilation: [1, 1],
            output_padding: [0, 0],
            bias: true,
        }
    }

    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = [stride, stride];
        self
    }

    pub fn padding(mut self, padding: usize) -> Self {
        self.padding = [padding, padding];
        self
    }

    pub fn dilation(mut self, dilation: usize) -> Self {
        self.dilation = [dilation, dilation];
        self
    }

    pub fn output_padding(mut self, output_padding: usize) -> Self {
        self.output_padding = [output_padding, output_padding];
        self
    }

    pub fn bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    fn geometry(&self) -> ConvGeometry {
        ConvGeometry {
            stride: self.stride,
            padding: self.padding,
            dilation: self.dilation,
        }
    }
}

/// A 2-D convolution of the NHWC node `x`. Parameters: `{name}.weight` `[out, kh, kw, in]`
/// (Kaiming-uniform with a = √5, as PyTorch's `Conv2d`) and `{name}.bias` `[out]` (uniform
/// ±1/√fan_in), where fan_in = in·kh·kw.
pub fn conv2d<B: Backend>(
    g: &mut Graph<B>,
    name: &str,
    x: NodeId,
    cfg: ConvConfig,
) -> Result<NodeId> {
    let [_, _, _, in_channels] = g.shape(x)?.nhwc("conv2d")?;
    let fan_in = in_channels * cfg.kernel[0] * cfg.kernel[1];
    let weight = g.param_with_layout(
        &format!("{name}.weight"),
        [cfg.out_channels, cfg.kernel[0], cfg.kernel[1], in_channels],
        Init::pytorch_weight(fan_in),
        TensorLayout::ConvWeight,
    )?;
    let y = g.apply(Conv2d(cfg.geometry()), &[x, weight])?;
    add_bias(g, name, y, cfg, fan_in)
}

/// A transposed 2-D convolution (computed as convolution backward-data). Parameters:
/// `{name}.weight` `[in, kh, kw, out]` and `{name}.bias` `[out]`, initialised as PyTorch's
/// `ConvTranspose2d`, whose fan_in is out·kh·kw.
pub fn conv2d_transpose<B: Backend>(
    g: &mut Graph<B>,
    name: &str,
    x: NodeId,
    cfg: ConvConfig,
) -> Result<NodeId> {
    let [_, _, _, in_channels] = g.shape(x)?.nhwc("conv2d_transpose")?;
    let fan_in = cfg.out_channels * cfg.kernel[0] * cfg.kernel[1];
    let weight = g.param_with_layout(
        &format!("{name}.weight"),
        [in_channels, cfg.kernel[0], cfg.kernel[1], cfg.out_channels],
        Init::pytorch_weight(fan_in),
        TensorLayout::ConvTransposeWeight,
    )?;
    let op = ConvTranspose2d {
        geometry: cfg.geometry(),
        output_padding: cfg.output_padding,
    };
    let y = g.apply(op, &[x, weight])?;
    add_bias(g, name, y, cfg, fan_in)
}

/// Adds `{name}.bias` over the channels when the config asks for one.
fn add_bias<B: Backend>(
    g: &mut Graph<B>,
    name: &str,
    y: NodeId,
    cfg: ConvConfig,
    fan_in: usize,
) -> Result<NodeId> {
    if !cfg.bias {
        return Ok(y);
    }
    let bias = g.param(
        &format!("{name}.bias"),
        [cfg.out_channels],
        Init::pytorch_bias(fan_in),
    )?;
    g.apply(Binary(BinaryOp::Add), &[y, bias])
}
