//! Networks built from layers.

pub mod resunet;
pub mod unet;

pub use resunet::build_resunet;
pub use unet::{UNet, UNetConfig, Upsampling};
