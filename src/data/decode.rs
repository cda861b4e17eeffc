//! Image and mask decoding and folder listing shared by the file-backed data sets.
//!
//! Every failure names the file: a folder that is missing, a file that cannot be opened, an image
//! that does not decode.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use image::{DynamicImage, ImageReader};

use crate::error::{Error, Result};

/// How many channels a decoded image gets. Alpha is always dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Channels {
    /// As stored: 1 for a grayscale file, 3 for a colour file.
    #[default]
    Auto,
    /// One luminance channel (colour files are converted).
    Gray,
    /// Three channels R, G, B (grayscale files are replicated).
    Rgb,
}

/// File extensions listed as images (case-insensitive). Files with other extensions are skipped;
/// of these, PNG, JPEG and GIF decode, the others fail at `get` naming the file.
const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "ppm", "pgm",
];

/// Whether `path` has an image extension.
pub(crate) fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The file stem of `path` as a string, if it is valid UTF-8.
pub(crate) fn stem(path: &Path) -> Option<String> {
    path.file_stem().and_then(|s| s.to_str()).map(str::to_owned)
}

/// An error unless `dir` is an existing folder.
pub(crate) fn require_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        Ok(())
    } else if dir.exists() {
        Err(Error::data(dir, "expected a folder, found a file"))
    } else {
        Err(Error::data(dir, "folder not found"))
    }
}

/// The visible entries of `dir` (names not starting with '.'), in natural order of their names.
/// `folders` selects sub-folders instead of files.
pub(crate) fn list_dir(dir: &Path, folders: bool) -> Result<Vec<PathBuf>> {
    require_dir(dir)?;
    let io = |source| Error::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        // `is_dir` / `is_file` follow symbolic links, so linked files and folders count.
        let wanted = if folders {
            path.is_dir()
        } else {
            path.is_file()
        };
        if !hidden && wanted {
            entries.push(path);
        }
    }
    entries.sort_by(|a, b| {
        natural_cmp(
            &a.file_name().unwrap_or_default().to_string_lossy(),
            &b.file_name().unwrap_or_default().to_string_lossy(),
        )
    });
    Ok(entries)
}

/// The image files of `dir`, in natural order.
pub(crate) fn list_images(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(list_dir(dir, false)?
        .into_iter()
        .filter(|p| is_image_file(p))
        .collect())
}

/// Compares names so that embedded numbers sort by value: "2.png" < "10.png".
pub(crate) fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a, b);
    loop {
        match (a.is_empty(), b.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        let (ca, ra) = split_chunk(a);
        let (cb, rb) = split_chunk(b);
        let digits = |s: &str| s.as_bytes()[0].is_ascii_digit();
        let ord = if digits(ca) && digits(cb) {
            let (ta, tb) = (ca.trim_start_matches('0'), cb.trim_start_matches('0'));
            ta.len()
                .cmp(&tb.len())
                .then_with(|| ta.cmp(tb))
                .then_with(|| ca.len().cmp(&cb.len()))
        } else {
            ca.cmp(cb)
        };
        if ord != Ordering::Equal {
            return ord;
        }
        (a, b) = (ra, rb);
    }
}

/// Splits a non-empty string into its first run of digits or of non-digits and the rest.
fn split_chunk(s: &str) -> (&str, &str) {
    let digit = s.as_bytes()[0].is_ascii_digit();
    let end = s
        .bytes()
        .position(|c| c.is_ascii_digit() != digit)
        .unwrap_or(s.len());
    s.split_at(end)
}

/// Opens and decodes the image at `path`, trusting its content over its extension.
pub(crate) fn decode(path: &Path) -> Result<DynamicImage> {
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
    reader
        .decode()
        .map_err(|e| Error::data(path, format!("cannot decode image: {e}")))
}

/// A decoded image: `height × width × channels` f32 values in [0, 1], channels last.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
    pub data: Vec<f32>,
}

/// Decodes the image at `path` to f32 values in [0, 1] with the requested channels.
pub fn load_image(path: &Path, channels: Channels) -> Result<Pixels> {
    Ok(to_pixels(decode(path)?, channels))
}

/// Converts a decoded image to f32 values in [0, 1] with the requested channels.
pub(crate) fn to_pixels(image: DynamicImage, channels: Channels) -> Pixels {
    let gray = match channels {
        Channels::Auto => !image.color().has_color(),
        Channels::Gray => true,
        Channels::Rgb => false,
    };
    let (width, height) = (image.width() as usize, image.height() as usize);
    let (channels, bytes) = if gray {
        (1, image.into_luma8().into_raw())
    } else {
        (3, image.into_rgb8().into_raw())
    };
    let data = bytes.iter().map(|&b| f32::from(b) / 255.0).collect();
    Pixels {
        height,
        width,
        channels,
        data,
    }
}

/// Decodes the mask at `path` to one 8-bit value per pixel (the luminance of a colour file):
/// `(height, width, values)`.
pub(crate) fn load_mask(path: &Path) -> Result<(usize, usize, Vec<u8>)> {
    let image = decode(path)?;
    let (width, height) = (image.width() as usize, image.height() as usize);
    Ok((height, width, image.into_luma8().into_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_sorts_numbers_by_value() {
        let mut names = vec!["10.png", "2.png", "1.png", "a10", "a9", "a09", "b"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(names, ["1.png", "2.png", "10.png", "a9", "a09", "a10", "b"]);
    }
}
