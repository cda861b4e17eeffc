//! Networks built from layers.

pub mod unet;

pub use unet::{UNet, UNetConfig, Upsampling};
