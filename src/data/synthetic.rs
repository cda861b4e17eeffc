//! A built-in data set so training runs with no files: ellipses and rectangles on textured, noisy
//! backgrounds, every sample a pure function of the seed and its index.
//!
//! Classes: 0 background, 1 ellipse (checker texture), 2 rectangle (striped texture). Foreground
//! and background share their colour statistics, so a model must use shape and texture, not
//! brightness.

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::{Dataset, Sample};
use crate::error::{Error, Result};

/// Size and content of the synthetic set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyntheticConfig {
    pub samples: usize,
    pub size: usize,
    /// Shapes per image (at least one).
    pub shapes: usize,
    /// Standard deviation of the pixel noise.
    pub noise: f32,
    pub seed: u64,
}

impl Default for SyntheticConfig {
    fn default() -> Self {
        SyntheticConfig {
            samples: 64,
            size: 64,
            shapes: 3,
            noise: 0.1,
            seed: 0,
        }
    }
}

/// The synthetic shapes data set.
#[derive(Debug, Clone)]
pub struct Synthetic {
    config: SyntheticConfig,
}

impl Synthetic {
    /// Errors on an empty set or an image smaller than 16 pixels.
    pub fn new(config: SyntheticConfig) -> Result<Self> {
        if config.samples == 0 || config.size < 16 || config.shapes == 0 {
            return Err(Error::invalid(
                "synthetic",
                format!("empty or tiny data set {config:?}"),
            ));
        }
        Ok(Synthetic { config })
    }
}

impl Dataset for Synthetic {
    fn len(&self) -> usize {
        self.config.samples
    }

    fn classes(&self) -> usize {
        3
    }

    fn get(&self, index: usize) -> Result<Sample> {
        if index >= self.config.samples {
            return Err(Error::invalid(
                "synthetic",
                format!("index {index} out of {}", self.config.samples),
            ));
        }
        let s = self.config.size;
        let mut rng = ChaCha8Rng::seed_from_u64(
            self.config.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        let mut image = vec![0.0f32; s * s * 3];
        let mut mask = vec![0u8; s * s];
        // Background: a random colour with diagonal stripes of random frequency and phase.
        let background = random_colour(&mut rng);
        let (fx, fy, phase) = (
            rng.random_range(0.1..0.5),
            rng.random_range(0.1..0.5),
            rng.random_range(0.0..6.3),
        );
        for y in 0..s {
            for x in 0..s {
                let stripe = 0.15 * ((fx * x as f32 + fy * y as f32 + phase).sin());
                for c in 0..3 {
                    image[(y * s + x) * 3 + c] = background[c] + stripe;
                }
            }
        }
        // Shapes: a flat colour with a fine checker texture, painted over the background.
        for _ in 0..self.config.shapes {
            let class = rng.random_range(1..=2u8);
            let colour = random_colour(&mut rng);
            let (cx, cy) = (
                rng.random_range(0.15..0.85) * s as f32,
                rng.random_range(0.15..0.85) * s as f32,
            );
            let (rx, ry) = (
                rng.random_range(0.08..0.22) * s as f32,
                rng.random_range(0.08..0.22) * s as f32,
            );
            for y in 0..s {
                for x in 0..s {
                    let (dx, dy) = ((x as f32 + 0.5 - cx) / rx, (y as f32 + 0.5 - cy) / ry);
                    let inside = match class {
                        1 => dx * dx + dy * dy <= 1.0,
                        _ => dx.abs() <= 1.0 && dy.abs() <= 1.0,
                    };
                    if inside {
                        // Each class has its own fine texture: a checker for ellipses, stripes
                        // for rectangles.
                        let texture = match class {
                            1 => (x / 2 + y / 2) % 2 == 0,
                            _ => (y / 2) % 2 == 0,
                        };
                        let texture = if texture { 0.1 } else { -0.1 };
                        for c in 0..3 {
                            image[(y * s + x) * 3 + c] = colour[c] + texture;
                        }
                        mask[y * s + x] = class;
                    }
                }
            }
        }
        // Pixel noise: the sum of three uniforms, scaled to the configured deviation.
        let scale = self.config.noise;
        for v in &mut image {
            let n: f32 = (0..3).map(|_| rng.random_range(-1.0f32..1.0)).sum();
            *v += scale * n;
        }
        Ok(Sample {
            height: s,
            width: s,
            channels: 3,
            image,
            mask,
        })
    }
}

fn random_colour(rng: &mut ChaCha8Rng) -> [f32; 3] {
    [
        rng.random_range(0.2..0.8),
        rng.random_range(0.2..0.8),
        rng.random_range(0.2..0.8),
    ]
}
