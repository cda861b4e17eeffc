//! Networks built from layers.

pub mod resunet;
pub mod unet;

pub use resunet::build_resunet;
pub use unet::{UNet, UNetConfig, Upsampling};

use crate::backend::Backend;
use crate::error::Result;
use crate::graph::Graph;

/// The segmentation networks magnet builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Architecture {
    /// [`UNet::build`].
    UNet,
    /// [`build_resunet`].
    ResUNet,
}

impl Architecture {
    /// The lower-case name used on the command line and in checkpoints.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::UNet => "unet",
            Architecture::ResUNet => "resunet",
        }
    }

    /// The architecture called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "unet" => Some(Architecture::UNet),
            "resunet" => Some(Architecture::ResUNet),
            _ => None,
        }
    }

    /// Adds this network for `batch × height × width` images to `g`.
    pub fn build<B: Backend>(
        self,
        g: &mut Graph<B>,
        cfg: UNetConfig,
        batch: usize,
        height: usize,
        width: usize,
    ) -> Result<UNet> {
        match self {
            Architecture::UNet => UNet::build(g, cfg, batch, height, width),
            Architecture::ResUNet => build_resunet(g, cfg, batch, height, width),
        }
    }
}
