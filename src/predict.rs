//! Prediction with a trained segmentation model: whole images of any size by overlapping tiles
//! blended together, class masks, and colour overlays.

use crate::backend::Backend;
use crate::data::Pixels;
use crate::error::{Error, Result};
use crate::graph::{Executor, Mode, NodeId};
use crate::tensor::HostTensor;

/// Runs a model's image → logits graph over images of any size.
///
/// An image that fits in one tile is padded (by edge replication) to a multiple of 16 and
/// predicted whole. A larger one is covered by `tile × tile` windows overlapping by a quarter of
/// a tile, whose logits are blended with a weight that falls linearly towards each window's
/// border, so seams between windows do not show.
pub struct Predictor<'a, B: Backend> {
    exec: &'a mut Executor<B>,
    image: NodeId,
    logits: NodeId,
    tile: usize,
}

impl<'a, B: Backend> Predictor<'a, B> {
    /// A predictor over `exec`'s `image` input and `logits` output; `tile` must be a positive
    /// multiple of 16. The executor keeps only the logits from then on
    /// ([`Executor::keep_only`]), so a window needs only the values alive at one time.
    pub fn new(
        exec: &'a mut Executor<B>,
        image: NodeId,
        logits: NodeId,
        tile: usize,
    ) -> Result<Self> {
        if tile == 0 || tile % 16 != 0 {
            return Err(Error::invalid(
                "predict",
                format!("tile size {tile} must be a positive multiple of 16"),
            ));
        }
        exec.keep_only(&[logits])?;
        Ok(Predictor {
            exec,
            image,
            logits,
            tile,
        })
    }

    /// Logits `[height, width, classes]` for one image.
    pub fn logits(&mut self, pixels: &Pixels) -> Result<HostTensor> {
        let (h, w) = (pixels.height, pixels.width);
        if h == 0 || w == 0 {
            return Err(Error::invalid("predict", "empty image"));
        }
        if h <= self.tile && w <= self.tile {
            let (ph, pw) = (h.div_ceil(16) * 16, w.div_ceil(16) * 16);
            let window = self.run(&crop_padded(pixels, 0, 0, ph, pw))?;
            return crop_logits(&window, ph, pw, h, w);
        }
        let t = self.tile;
        let (th, tw) = (t.min(h.div_ceil(16) * 16), t.min(w.div_ceil(16) * 16));
        let stride = (3 * t / 4).max(16);
        let mut sum: Vec<f32> = Vec::new();
        let mut weight = vec![0.0f32; h * w];
        let mut classes = 0;
        for y0 in starts(h, th, stride) {
            for x0 in starts(w, tw, stride) {
                let window = self.run(&crop_padded(pixels, y0, x0, th, tw))?;
                classes = window.shape().last();
                if sum.is_empty() {
                    sum = vec![0.0; h * w * classes];
                }
                for y in 0..th.min(h - y0) {
                    for x in 0..tw.min(w - x0) {
                        let wgt = ramp(y, th) * ramp(x, tw);
                        let dst = (y0 + y) * w + x0 + x;
                        weight[dst] += wgt;
                        let src = &window.data()[(y * tw + x) * classes..][..classes];
                        for (s, &v) in sum[dst * classes..][..classes].iter_mut().zip(src) {
                            *s += wgt * v;
                        }
                    }
                }
            }
        }
        for (p, &wgt) in weight.iter().enumerate() {
            sum[p * classes..][..classes]
                .iter_mut()
                .for_each(|s| *s /= wgt);
        }
        HostTensor::new([h, w, classes], sum)
    }

    /// The class of every pixel (arg-max of the logits), row-major.
    pub fn classes(&mut self, pixels: &Pixels) -> Result<Vec<u8>> {
        Ok(argmax(&self.logits(pixels)?))
    }

    fn run(&mut self, window: &HostTensor) -> Result<HostTensor> {
        self.exec.forward(&[(self.image, window)], Mode::Eval)?;
        let out = self.exec.value(self.logits)?;
        let dims = out.shape().dims()[1..].to_vec();
        out.reshape(dims)
    }
}

/// Window origins covering `0..len` with windows of `size` every `stride`, the last one flush
/// with the end.
fn starts(len: usize, size: usize, stride: usize) -> Vec<usize> {
    if len <= size {
        return vec![0];
    }
    let mut v: Vec<usize> = (0..len - size).step_by(stride).collect();
    v.push(len - size);
    v
}

/// Blending weight of position `i` in a window of `size`: rises linearly from the borders,
/// never zero.
fn ramp(i: usize, size: usize) -> f32 {
    (i.min(size - 1 - i) + 1) as f32
}

/// The `[1, th, tw, c]` window of `pixels` at `(y0, x0)`, edge pixels repeated past the image.
fn crop_padded(pixels: &Pixels, y0: usize, x0: usize, th: usize, tw: usize) -> HostTensor {
    let c = pixels.channels;
    let mut data = Vec::with_capacity(th * tw * c);
    for y in 0..th {
        let sy = (y0 + y).min(pixels.height - 1);
        for x in 0..tw {
            let sx = (x0 + x).min(pixels.width - 1);
            data.extend_from_slice(&pixels.data[(sy * pixels.width + sx) * c..][..c]);
        }
    }
    HostTensor::new([1, th, tw, c], data).expect("sizes match by construction")
}

/// The top-left `h × w` of `[ph, pw, c]` logits.
fn crop_logits(
    window: &HostTensor,
    _ph: usize,
    pw: usize,
    h: usize,
    w: usize,
) -> Result<HostTensor> {
    let c = window.shape().last();
    let mut data = Vec::with_capacity(h * w * c);
    for y in 0..h {
        data.extend_from_slice(&window.data()[y * pw * c..][..w * c]);
    }
    HostTensor::new([h, w, c], data)
}

/// Arg-max over the last axis, as class indices.
pub fn argmax(logits: &HostTensor) -> Vec<u8> {
    let c = logits.shape().last().max(1);
    logits
        .data()
        .chunks(c)
        .map(|s| (0..c).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap_or(0) as u8)
        .collect()
}

/// A distinct colour per class (class 0, the background, is left uncoloured in overlays).
pub fn class_colour(class: u8) -> [u8; 3] {
    const PALETTE: [[u8; 3]; 8] = [
        [0, 0, 0],
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
    ];
    PALETTE[class as usize % PALETTE.len()]
}

/// The image with every non-background pixel tinted by its class colour (half opacity), as
/// RGB bytes.
pub fn overlay(pixels: &Pixels, classes: &[u8]) -> Vec<u8> {
    let c = pixels.channels;
    let mut out = Vec::with_capacity(pixels.height * pixels.width * 3);
    for (p, &class) in classes.iter().enumerate() {
        let px = &pixels.data[p * c..][..c];
        let rgb = if c >= 3 {
            [px[0], px[1], px[2]]
        } else {
            [px[0]; 3]
        };
        let colour = class_colour(class);
        for k in 0..3 {
            let base = (rgb[k].clamp(0.0, 1.0) * 255.0).round();
            let v = if class == 0 {
                base
            } else {
                0.5 * base + 0.5 * colour[k] as f32
            };
            out.push(v.round() as u8);
        }
    }
    out
}
