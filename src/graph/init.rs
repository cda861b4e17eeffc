//! How named tensors are initialised.

use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Initialisation of a parameter or state tensor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Zeros,
    Ones,
    Constant(f32),
    /// Uniform in `[-bound, bound]`.
    Uniform {
        bound: f32,
    },
    /// PyTorch's `kaiming_uniform_(a)`: uniform in `±sqrt(6 / ((1 + a²) · fan_in))`. With
    /// `a = √5` (PyTorch's default for conv and linear weights) the bound is `1 / sqrt(fan_in)`.
    KaimingUniform {
        fan_in: usize,
        a: f32,
    },
}

impl Init {
    /// The default of PyTorch's `Conv2d`, `ConvTranspose2d` and `Linear` weights.
    pub fn pytorch_weight(fan_in: usize) -> Init {
        Init::KaimingUniform {
            fan_in,
            a: 5f32.sqrt(),
        }
    }

    /// The default of PyTorch's conv and linear biases: uniform in `±1 / sqrt(fan_in)`.
    pub fn pytorch_bias(fan_in: usize) -> Init {
        Init::Uniform {
            bound: 1.0 / (fan_in.max(1) as f32).sqrt(),
        }
    }

    /// `len` values drawn from a generator seeded by `seed` (reproducible on every platform).
    pub fn generate(&self, len: usize, seed: u64) -> Vec<f32> {
        match *self {
            Init::Zeros => vec![0.0; len],
            Init::Ones => vec![1.0; len],
            Init::Constant(c) => vec![c; len],
            Init::Uniform { bound } => uniform(len, bound, seed),
            Init::KaimingUniform { fan_in, a } => {
                let bound = (6.0 / ((1.0 + a * a) * fan_in.max(1) as f32)).sqrt();
                uniform(len, bound, seed)
            }
        }
    }
}

fn uniform(len: usize, bound: f32, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| rng.random_range(-bound..=bound)).collect()
}
