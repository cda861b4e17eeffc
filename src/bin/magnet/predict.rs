//! `magnet predict`: masks for new images, by overlapping tiles when an image is larger than
//! `--tile`. A folder output gets `<name>_mask.png` (classes as evenly spaced grey levels:
//! 0 and 255 for two classes) and `<name>_overlay.png`; an `.h5` output gets `logits`
//! (N×C×H×W) and `masks` (N×H×W).

#[cfg(feature = "hdf5")]
use std::path::Path;
use std::path::PathBuf;

use clap::Args;
use magnet::Result;

use crate::backend::BackendChoice;

#[derive(Debug, Clone, Args)]
pub struct PredictArgs {
    /// The trained checkpoint.
    #[arg(long)]
    pub weights: PathBuf,
    /// An image, a folder of images, or an HDF5 file with an `images` dataset.
    #[arg(long)]
    pub input: PathBuf,
    /// A folder for PNGs, or an `.h5` file.
    #[arg(long)]
    pub output: PathBuf,
    /// Largest window run at once (a multiple of 16); larger images are tiled.
    #[arg(long, default_value_t = 256)]
    pub tile: usize,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendChoice,
}

#[cfg(not(feature = "hdf5"))]
pub fn run(args: PredictArgs) -> Result<()> {
    Err(magnet::Error::data(
        &args.weights,
        "this build has no HDF5 support; rebuild with the `hdf5` feature",
    ))
}

#[cfg(feature = "hdf5")]
pub fn run(args: PredictArgs) -> Result<()> {
    use crate::backend::with_backend;
    use magnet::io::checkpoint::{model_config_from_attrs, read_checkpoint_meta};

    let meta = read_checkpoint_meta(&args.weights)?;
    let (arch, model) = model_config_from_attrs(&args.weights, &meta.config)?;
    let inputs = read_inputs(&args.input, model.in_channels)?;
    with_backend!(args.backend, |backend| {
        let mut g = magnet::Graph::new();
        let net = arch.build(&mut g, model, 1, args.tile, args.tile)?;
        let mut exec = magnet::Executor::new(backend, g, 0)?;
        magnet::io::checkpoint::load_checkpoint(&args.weights, &mut exec)?;
        let mut predictor =
            magnet::predict::Predictor::new(&mut exec, net.image, net.logits, args.tile)?;
        write_outputs(&mut predictor, &inputs, &args.output, model.classes)
    })
}

/// Named images to predict.
#[cfg(feature = "hdf5")]
fn read_inputs(input: &Path, channels: usize) -> Result<Vec<(String, magnet::data::Pixels)>> {
    use magnet::data::{load_image, Channels};
    use magnet::Error;

    let wanted = if channels == 1 {
        Channels::Gray
    } else {
        Channels::Rgb
    };
    if input.extension().and_then(|e| e.to_str()) == Some("h5") {
        return read_hdf5_images(input);
    }
    let files: Vec<PathBuf> = if input.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(input)
            .map_err(|source| Error::Io {
                path: input.to_path_buf(),
                source,
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    ["png", "jpg", "jpeg", "gif"].contains(&e.to_ascii_lowercase().as_str())
                })
            })
            .collect();
        files.sort();
        files
    } else {
        vec![input.to_path_buf()]
    };
    if files.is_empty() {
        return Err(Error::data(input, "no images (png, jpg, gif) to predict"));
    }
    files
        .into_iter()
        .map(|path| {
            let name = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((name, load_image(&path, wanted)?))
        })
        .collect()
}

/// The `images` dataset (uint8 or float32; NHWC, or NCHW when its `layout` attribute says so).
#[cfg(feature = "hdf5")]
fn read_hdf5_images(path: &Path) -> Result<Vec<(String, magnet::data::Pixels)>> {
    use magnet::io::{ElementType, H5Reader};
    use magnet::Error;

    let reader = H5Reader::open(path)?;
    let shape = reader.shape("images")?;
    let &[n, a, b, c] = shape.dims() else {
        return Err(Error::data(
            path,
            format!("'images' must be 4-D, not {shape}"),
        ));
    };
    let nchw = reader
        .attr("images", "layout")?
        .and_then(|v| v.as_str().map(|s| s == "NCHW"))
        .unwrap_or(false);
    let values: Vec<f32> = match reader.element_type("images")? {
        ElementType::U8 => reader
            .read::<u8>("images")?
            .1
            .into_iter()
            .map(|v| v as f32 / 255.0)
            .collect(),
        ElementType::F32 => reader.read::<f32>("images")?.1,
        other => {
            return Err(Error::data(
                path,
                format!("'images' has element type {}, not u8 or f32", other.name()),
            ))
        }
    };
    let (h, w, ch) = if nchw { (b, c, a) } else { (a, b, c) };
    Ok((0..n)
        .map(|i| {
            let image = &values[i * h * w * ch..][..h * w * ch];
            let data = if nchw {
                (0..h * w)
                    .flat_map(|p| (0..ch).map(move |k| image[k * h * w + p]))
                    .collect()
            } else {
                image.to_vec()
            };
            (
                format!("{i}"),
                magnet::data::Pixels {
                    height: h,
                    width: w,
                    channels: ch,
                    data,
                },
            )
        })
        .collect())
}

#[cfg(feature = "hdf5")]
fn write_outputs<B: magnet::Backend>(
    predictor: &mut magnet::predict::Predictor<'_, B>,
    inputs: &[(String, magnet::data::Pixels)],
    output: &Path,
    classes: usize,
) -> Result<()> {
    use magnet::io::atomic::write_atomically;
    use magnet::predict::{argmax, overlay};
    use magnet::Error;

    if output.extension().and_then(|e| e.to_str()) == Some("h5") {
        let (h, w) = (inputs[0].1.height, inputs[0].1.width);
        if inputs.iter().any(|(_, p)| (p.height, p.width) != (h, w)) {
            return Err(Error::data(
                output,
                "an HDF5 output needs images of one size",
            ));
        }
        let mut writer = magnet::io::PredictionWriter::create(output, inputs.len(), h, w, classes)?;
        for (_, pixels) in inputs {
            let logits = predictor.logits(pixels)?;
            writer.write_batch(&logits.reshape([1, h, w, classes])?)?;
        }
        writer.finish()?;
        println!(
            "wrote logits and masks of {} images to {}",
            inputs.len(),
            output.display()
        );
        return Ok(());
    }
    std::fs::create_dir_all(output).map_err(|source| Error::Io {
        path: output.to_path_buf(),
        source,
    })?;
    let grey_step = 255 / (classes.max(2) - 1) as u8;
    for (name, pixels) in inputs {
        let classes = argmax(&predictor.logits(pixels)?);
        let (w, h) = (pixels.width as u32, pixels.height as u32);
        let mask: Vec<u8> = classes
            .iter()
            .map(|&c| c.saturating_mul(grey_step))
            .collect();
        let save = |path: PathBuf, bytes: &[u8], colour: image::ColorType| {
            write_atomically(&path, |tmp| {
                image::save_buffer_with_format(tmp, bytes, w, h, colour, image::ImageFormat::Png)
                    .map_err(|e| Error::data(&path, format!("cannot write PNG: {e}")))
            })
        };
        save(
            output.join(format!("{name}_mask.png")),
            &mask,
            image::ColorType::L8,
        )?;
        save(
            output.join(format!("{name}_overlay.png")),
            &overlay(pixels, &classes),
            image::ColorType::Rgb8,
        )?;
    }
    println!(
        "wrote masks and overlays of {} images to {}",
        inputs.len(),
        output.display()
    );
    Ok(())
}
