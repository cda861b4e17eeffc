//! How much memory an executor's plan holds for a U-Net on the CPU backend: an evaluation and a
//! training step (cross-entropy, backward), keeping every value readable and with
//! `Executor::keep_only`, after enough steps for the buffer layout to settle.
//!
//! ```text
//! cargo run --release --example unet_memory                       # base 64, 256×256, batch 1
//! cargo run --release --example unet_memory -- --size 128 --base 16 --batch 2
//! ```
//!
//! Values, gradients, op workspaces and free buffers count; parameters, their gradients and
//! optimiser state do not.

use clap::Parser;
use magnet::loss::{self, CrossEntropyConfig};
use magnet::models::{UNet, UNetConfig, Upsampling};
use magnet::{CpuBackend, Executor, Graph, HostTensor, Mode, NodeId, Result};

#[derive(Parser)]
struct Args {
    /// Image height and width.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Channels of the first level.
    #[arg(long, default_value_t = 64)]
    base: usize,
    #[arg(long, default_value_t = 1)]
    batch: usize,
}

/// A U-Net with its cross-entropy, on an executor; `(executor, image, labels, logits, loss)`.
type Built = (Executor<CpuBackend>, NodeId, NodeId, NodeId, NodeId);

fn build(args: &Args) -> Result<Built> {
    let mut g = Graph::new();
    let cfg = UNetConfig {
        in_channels: 3,
        classes: 2,
        base_channels: args.base,
        upsampling: Upsampling::Transposed,
    };
    let net = UNet::build(&mut g, cfg, args.batch, args.size, args.size)?;
    let labels = g.input("labels", [args.batch, args.size, args.size])?;
    let loss = loss::cross_entropy(&mut g, net.logits, labels, &CrossEntropyConfig::default())?;
    let exec = Executor::new(CpuBackend::new(), g, 0)?;
    Ok((exec, net.image, labels, net.logits, loss))
}

/// MiB per image the plan holds after three steps (two on free lists, one on the layout).
fn held(args: &Args, lean: bool, train: bool) -> Result<f64> {
    let (mut exec, image, labels, logits, loss) = build(args)?;
    if lean {
        exec.keep_only(&[logits, loss])?;
    }
    let (b, s) = (args.batch, args.size);
    let images = HostTensor::full([b, s, s, 3], 0.5);
    let classes = HostTensor::new([b, s, s], (0..b * s * s).map(|i| (i % 2) as f32).collect())?;
    for _ in 0..3 {
        if train {
            exec.forward(&[(image, &images), (labels, &classes)], Mode::Train)?;
            exec.backward(loss)?;
        } else {
            exec.forward(&[(image, &images)], Mode::Eval)?;
        }
    }
    Ok(exec.plan_bytes() as f64 / (1u64 << 20) as f64 / b as f64)
}

fn main() -> Result<()> {
    let args = Args::parse();
    println!(
        "U-Net base {} at {}², batch {}: MiB per image held by the plan",
        args.base, args.size, args.batch
    );
    println!("{:<16} {:>14} {:>10}", "", "every value", "keep_only");
    for (name, train) in [("evaluation", false), ("training step", true)] {
        let (all, lean) = (held(&args, false, train)?, held(&args, true, train)?);
        println!("{name:<16} {all:>14.1} {lean:>10.1}");
    }
    Ok(())
}
