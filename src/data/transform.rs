//! Transforms of samples: resize, crop, flips, normalisation, and a seeded pipeline of them.
//!
//! Images are resized with a linear (triangle) filter, widened when shrinking so that downscaled
//! images are antialiased as PIL's bilinear resize does; masks are resized by nearest neighbour so
//! that they keep only their original class values. Random steps draw from a generator seeded by
//! `(seed, epoch, index)`, so an epoch's augmentations are reproducible whatever the order or the
//! thread that decodes a sample.

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{Dataset, Sample};
use crate::error::{Error, Result};

/// Per-channel mean of ImageNet images in [0, 1] (R, G, B), for models pre-trained on it.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// Per-channel standard deviation of ImageNet images in [0, 1] (R, G, B).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// `sample` resized to `height × width`: the image with a linear filter, the mask by nearest
/// neighbour.
pub fn resize(sample: &Sample, height: usize, width: usize) -> Result<Sample> {
    check(sample, "resize")?;
    if height == 0 || width == 0 || sample.height == 0 || sample.width == 0 {
        return Err(Error::invalid(
            "resize",
            format!(
                "{}×{} sample to {height}×{width}: sizes must be positive",
                sample.height, sample.width
            ),
        ));
    }
    let (h, w, c) = (sample.height, sample.width, sample.channels);
    Ok(Sample {
        height,
        width,
        channels: c,
        image: resize_image(&sample.image, [h, w, c], height, width),
        mask: resize_nearest(&sample.mask, [h, w], height, width),
    })
}

/// An `[h, w, c]` image resized to `[height, width, c]` with a linear filter (antialiased when
/// shrinking). Values are not clamped, so a normalised image may be resized too.
pub(crate) fn resize_image(
    image: &[f32],
    [h, w, c]: [usize; 3],
    height: usize,
    width: usize,
) -> Vec<f32> {
    if (h, w) == (height, width) {
        return image.to_vec();
    }
    // Rows first: [h, w, c] -> [h, width, c].
    let cols = linear_weights(w, width);
    let mut rows = vec![0.0f32; h * width * c];
    for y in 0..h {
        for (x, (first, weights)) in cols.iter().enumerate() {
            let out = &mut rows[(y * width + x) * c..][..c];
            for (k, &wt) in weights.iter().enumerate() {
                let src = &image[(y * w + first + k) * c..][..c];
                for (o, &s) in out.iter_mut().zip(src) {
                    *o += wt * s;
                }
            }
        }
    }
    // Then columns: [h, width, c] -> [height, width, c].
    let line = width * c;
    let mut out = vec![0.0f32; height * line];
    for (y, (first, weights)) in linear_weights(h, height).iter().enumerate() {
        let dst = &mut out[y * line..][..line];
        for (k, &wt) in weights.iter().enumerate() {
            let src = &rows[(first + k) * line..][..line];
            for (o, &s) in dst.iter_mut().zip(src) {
                *o += wt * s;
            }
        }
    }
    out
}

/// For each output position, the first input position it reads and the normalised weights of
/// the inputs from there: a triangle of half-width `max(1, input / output)` centred on the output
/// pixel's centre (half-pixel centres, as PyTorch's `align_corners = False`).
fn linear_weights(input: usize, output: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = input as f64 / output as f64;
    let support = scale.max(1.0);
    (0..output)
        .map(|o| {
            let centre = (o as f64 + 0.5) * scale;
            let first = (centre - support).floor().max(0.0) as usize;
            let end = ((centre + support).ceil() as usize).min(input);
            let weights: Vec<f64> = (first..end)
                .map(|i| (1.0 - ((i as f64 + 0.5 - centre) / support).abs()).max(0.0))
                .collect();
            // The input pixel under the centre always has a weight of at least 1/2.
            let sum: f64 = weights.iter().sum();
            (first, weights.iter().map(|&x| (x / sum) as f32).collect())
        })
        .collect()
}

/// An `[h, w]` mask resized to `[height, width]` by nearest neighbour: every output value is one
/// of the input's values.
pub(crate) fn resize_nearest(
    mask: &[u8],
    [h, w]: [usize; 2],
    height: usize,
    width: usize,
) -> Vec<u8> {
    if (h, w) == (height, width) {
        return mask.to_vec();
    }
    let nearest = |o: usize, input: usize, output: usize| {
        (((o as f64 + 0.5) * input as f64 / output as f64) as usize).min(input - 1)
    };
    let xs: Vec<usize> = (0..width).map(|x| nearest(x, w, width)).collect();
    let mut out = Vec::with_capacity(height * width);
    for y in 0..height {
        let row = &mask[nearest(y, h, height) * w..][..w];
        out.extend(xs.iter().map(|&x| row[x]));
    }
    out
}

/// The `height × width` window of `sample` whose top-left pixel is `(top, left)`.
pub fn crop(
    sample: &Sample,
    top: usize,
    left: usize,
    height: usize,
    width: usize,
) -> Result<Sample> {
    check(sample, "crop")?;
    let fits =
        |start: usize, len: usize, size: usize| start.checked_add(len).is_some_and(|e| e <= size);
    if height == 0
        || width == 0
        || !fits(top, height, sample.height)
        || !fits(left, width, sample.width)
    {
        return Err(Error::invalid(
            "crop",
            format!(
                "window {height}×{width} at ({top}, {left}) does not fit a {}×{} sample; resize it first",
                sample.height, sample.width
            ),
        ));
    }
    let c = sample.channels;
    let mut image = Vec::with_capacity(height * width * c);
    let mut mask = Vec::with_capacity(height * width);
    for y in top..top + height {
        let row = y * sample.width + left;
        image.extend_from_slice(&sample.image[row * c..(row + width) * c]);
        mask.extend_from_slice(&sample.mask[row..row + width]);
    }
    Ok(Sample {
        height,
        width,
        channels: c,
        image,
        mask,
    })
}

/// Mirrors `sample` left to right, in place.
pub fn flip_horizontal(sample: &mut Sample) -> Result<()> {
    check(sample, "flip_horizontal")?;
    let (w, c) = (sample.width, sample.channels);
    if w == 0 || c == 0 {
        return Ok(());
    }
    for row in sample.image.chunks_exact_mut(w * c) {
        for x in 0..w / 2 {
            for k in 0..c {
                row.swap(x * c + k, (w - 1 - x) * c + k);
            }
        }
    }
    for row in sample.mask.chunks_exact_mut(w) {
        row.reverse();
    }
    Ok(())
}

/// Mirrors `sample` top to bottom, in place.
pub fn flip_vertical(sample: &mut Sample) -> Result<()> {
    check(sample, "flip_vertical")?;
    let h = sample.height;
    let image_row = sample.width * sample.channels;
    for y in 0..h / 2 {
        let (top, bottom) = (y, h - 1 - y);
        swap_rows(&mut sample.image, image_row, top, bottom);
        swap_rows(&mut sample.mask, sample.width, top, bottom);
    }
    Ok(())
}

fn swap_rows<T>(data: &mut [T], row: usize, a: usize, b: usize) {
    let (head, tail) = data.split_at_mut(b * row);
    head[a * row..(a + 1) * row].swap_with_slice(&mut tail[..row]);
}

/// `(x − mean[c]) / std[c]` for every pixel of channel `c`, in place. `mean` and `std` have one
/// value per channel; every `std` must be positive.
pub fn normalize(sample: &mut Sample, mean: &[f32], std: &[f32]) -> Result<()> {
    check(sample, "normalize")?;
    let c = sample.channels;
    if mean.len() != c || std.len() != c || std.iter().any(|&s| s.is_nan() || s <= 0.0) {
        return Err(Error::invalid(
            "normalize",
            format!("mean {mean:?} and std {std:?} for {c} channels (std must be positive)"),
        ));
    }
    for pixel in sample.image.chunks_exact_mut(c) {
        for ((v, m), s) in pixel.iter_mut().zip(mean).zip(std) {
            *v = (*v - m) / s;
        }
    }
    Ok(())
}

fn check(sample: &Sample, op: &'static str) -> Result<()> {
    let pixels = sample.height * sample.width;
    if sample.image.len() != pixels * sample.channels || sample.mask.len() != pixels {
        return Err(Error::invalid(
            op,
            format!(
                "sample of {}×{}×{} holds {} image values and {} mask values",
                sample.height,
                sample.width,
                sample.channels,
                sample.image.len(),
                sample.mask.len()
            ),
        ));
    }
    Ok(())
}

/// One step of a [`Pipeline`].
#[derive(Debug, Clone, PartialEq)]
pub enum Transform {
    /// Resize to `height × width` (linear image, nearest mask).
    Resize { height: usize, width: usize },
    /// The centred `height × width` window.
    CenterCrop { height: usize, width: usize },
    /// A `height × width` window at a random position.
    RandomCrop { height: usize, width: usize },
    /// Mirror left to right with this probability.
    HorizontalFlip { probability: f32 },
    /// Mirror top to bottom with this probability.
    VerticalFlip { probability: f32 },
    /// `(x − mean) / std` per channel.
    Normalize { mean: Vec<f32>, std: Vec<f32> },
}

/// Transforms applied in order, the random ones seeded by `(seed, epoch, index)`.
///
/// ```
/// use magnet::data::transform::{Pipeline, IMAGENET_MEAN, IMAGENET_STD};
/// let train = Pipeline::new(7)
///     .resize(288, 288)
///     .random_crop(256, 256)
///     .horizontal_flip(0.5)
///     .normalize(&IMAGENET_MEAN, &IMAGENET_STD);
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pipeline {
    seed: u64,
    steps: Vec<Transform>,
}

impl Pipeline {
    /// An empty pipeline whose random steps derive from `seed`.
    pub fn new(seed: u64) -> Self {
        Pipeline {
            seed,
            steps: Vec::new(),
        }
    }

    /// Appends `step`.
    pub fn then(mut self, step: Transform) -> Self {
        self.steps.push(step);
        self
    }

    /// Appends [`Transform::Resize`].
    pub fn resize(self, height: usize, width: usize) -> Self {
        self.then(Transform::Resize { height, width })
    }

    /// Appends [`Transform::CenterCrop`].
    pub fn center_crop(self, height: usize, width: usize) -> Self {
        self.then(Transform::CenterCrop { height, width })
    }

    /// Appends [`Transform::RandomCrop`].
    pub fn random_crop(self, height: usize, width: usize) -> Self {
        self.then(Transform::RandomCrop { height, width })
    }

    /// Appends [`Transform::HorizontalFlip`].
    pub fn horizontal_flip(self, probability: f32) -> Self {
        self.then(Transform::HorizontalFlip { probability })
    }

    /// Appends [`Transform::VerticalFlip`].
    pub fn vertical_flip(self, probability: f32) -> Self {
        self.then(Transform::VerticalFlip { probability })
    }

    /// Appends [`Transform::Normalize`].
    pub fn normalize(self, mean: &[f32], std: &[f32]) -> Self {
        self.then(Transform::Normalize {
            mean: mean.to_vec(),
            std: std.to_vec(),
        })
    }

    /// The steps, in order.
    pub fn steps(&self) -> &[Transform] {
        &self.steps
    }

    /// Applies every step to `sample`, the sample at `index` in `epoch`.
    pub fn apply(&self, mut sample: Sample, epoch: usize, index: usize) -> Result<Sample> {
        let mut rng =
            ChaCha8Rng::seed_from_u64(mix(mix(mix(self.seed) ^ epoch as u64) ^ index as u64));
        for step in &self.steps {
            sample = match step {
                Transform::Resize { height, width } => resize(&sample, *height, *width)?,
                Transform::CenterCrop { height, width } => {
                    let top = sample.height.saturating_sub(*height) / 2;
                    let left = sample.width.saturating_sub(*width) / 2;
                    crop(&sample, top, left, *height, *width)?
                }
                Transform::RandomCrop { height, width } => {
                    if *height > sample.height || *width > sample.width {
                        return Err(Error::invalid(
                            "random crop",
                            format!(
                                "window {height}×{width} is larger than the {}×{} sample; resize it first",
                                sample.height, sample.width
                            ),
                        ));
                    }
                    let top = rng.random_range(0..=sample.height - height);
                    let left = rng.random_range(0..=sample.width - width);
                    crop(&sample, top, left, *height, *width)?
                }
                Transform::HorizontalFlip { probability } => {
                    if rng.random::<f32>() < *probability {
                        flip_horizontal(&mut sample)?;
                    }
                    sample
                }
                Transform::VerticalFlip { probability } => {
                    if rng.random::<f32>() < *probability {
                        flip_vertical(&mut sample)?;
                    }
                    sample
                }
                Transform::Normalize { mean, std } => {
                    normalize(&mut sample, mean, std)?;
                    sample
                }
            };
        }
        Ok(sample)
    }
}

/// SplitMix64's finaliser: spreads nearby seeds, epochs and indices over unrelated streams.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A data set whose samples go through a [`Pipeline`]; [`Dataset::get_epoch`] gives each epoch
/// its own augmentations, [`Dataset::get`] those of epoch 0.
#[derive(Debug, Clone)]
pub struct Transformed<D> {
    inner: D,
    pipeline: Pipeline,
}

impl<D: Dataset> Transformed<D> {
    /// `inner` with `pipeline` applied to every sample.
    pub fn new(inner: D, pipeline: Pipeline) -> Self {
        Transformed { inner, pipeline }
    }

    /// The untransformed data set.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }
}

impl<D: Dataset> Dataset for Transformed<D> {
    fn len(&self) -> usize {
        self.inner.len()
    }

    fn classes(&self) -> usize {
        self.inner.classes()
    }

    fn get(&self, index: usize) -> Result<Sample> {
        self.get_epoch(index, 0)
    }

    fn get_epoch(&self, index: usize, epoch: usize) -> Result<Sample> {
        let sample = self.inner.get_epoch(index, epoch)?;
        self.pipeline.apply(sample, epoch, index)
    }
}
