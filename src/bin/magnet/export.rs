//! `magnet export-data`: a data set packed into one HDF5 file (`images` N×H×W×C and `masks`
//! N×H×W, both uint8), which `--data file.h5` reads back batch by batch.

use std::path::PathBuf;

use clap::Args;
use magnet::Result;

use crate::datasets::DataArgs;

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The HDF5 file to write.
    #[arg(long)]
    pub output: PathBuf,
}

#[cfg(not(feature = "hdf5"))]
pub fn run(args: ExportArgs) -> Result<()> {
    Err(magnet::Error::data(
        &args.output,
        "this build has no HDF5 support; rebuild with the `hdf5` feature",
    ))
}

#[cfg(feature = "hdf5")]
pub fn run(args: ExportArgs) -> Result<()> {
    use magnet::io::{AttrValue, H5Writer, WriteOptions};

    let (data, classes, channels) = args.data.open_whole()?;
    let (n, s) = (data.len(), args.data.size);
    let writer = H5Writer::create(&args.output)?;
    let chunks = WriteOptions::gzip(1, 4);
    writer.create_empty::<u8>("images", &[n, s, s, channels], chunks)?;
    writer.create_empty::<u8>("masks", &[n, s, s], chunks)?;
    for i in 0..n {
        let sample = data.get(i)?;
        let image: Vec<u8> = sample
            .image
            .iter()
            .map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect();
        writer.write_rows("images", i, &image)?;
        writer.write_rows("masks", i, &sample.mask)?;
    }
    writer.set_attr("images", "layout", &"NHWC".into())?;
    writer.set_attr("/", "classes", &AttrValue::UInt(classes as u64))?;
    writer.finish()?;
    println!(
        "wrote {n} images of {s}×{s}×{channels} and their masks to {}",
        args.output.display()
    );
    Ok(())
}
