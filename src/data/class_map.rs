//! The mapping from the pixel values stored in mask files to class indices.

use std::fmt;
use std::path::Path;

use crate::data::IGNORE_INDEX;
use crate::error::{Error, Result};

/// Maps each 8-bit mask value to a class index, to [`IGNORE_INDEX`], or to nothing: a mask pixel
/// whose value is unmapped is an error naming the file and the value, so that a mask saved with an
/// unexpected encoding (0/1 instead of 0/255, a palette, JPEG artefacts) is caught, not learnt.
#[derive(Clone, PartialEq, Eq)]
pub struct ClassMap {
    table: [Option<u8>; 256],
}

impl ClassMap {
    /// A mapping from `(mask value, class)` pairs; a class of [`IGNORE_INDEX`] marks pixels to
    /// ignore. Errors when a value is listed twice with different classes or no class is given.
    pub fn new(pairs: &[(u8, u8)]) -> Result<Self> {
        let mut table = [None; 256];
        for &(value, class) in pairs {
            match table[value as usize] {
                Some(c) if c != class => {
                    return Err(Error::invalid(
                        "ClassMap",
                        format!("mask value {value} mapped to both {c} and {class}"),
                    ))
                }
                _ => table[value as usize] = Some(class),
            }
        }
        let map = ClassMap { table };
        if map.classes() == 0 {
            return Err(Error::invalid(
                "ClassMap",
                "the mapping names no class (only ignored values or nothing)",
            ));
        }
        Ok(map)
    }

    /// Values `0..classes` are their own class (masks that store class indices directly);
    /// `classes` must be in 1..=255.
    pub fn identity(classes: usize) -> Result<Self> {
        if !(1..=255).contains(&classes) {
            return Err(Error::invalid(
                "ClassMap::identity",
                format!("{classes} classes; expected 1 to 255"),
            ));
        }
        let pairs: Vec<(u8, u8)> = (0..classes as u8).map(|v| (v, v)).collect();
        ClassMap::new(&pairs)
    }

    /// Black and white masks: 0 → class 0, 255 → class 1; every other value is an error.
    pub fn binary() -> Self {
        let mut table = [None; 256];
        table[0] = Some(0);
        table[255] = Some(1);
        ClassMap { table }
    }

    /// 0 → class 0, every other value → class 1.
    pub fn nonzero() -> Self {
        let mut table = [Some(1); 256];
        table[0] = Some(0);
        ClassMap { table }
    }

    /// The same mapping with `value` mapped to `class` (replacing what it had), e.g.
    /// `ClassMap::identity(3)?.with(255, IGNORE_INDEX)`.
    pub fn with(mut self, value: u8, class: u8) -> Self {
        self.table[value as usize] = Some(class);
        self
    }

    /// The class of mask value `value`, if mapped.
    pub fn get(&self, value: u8) -> Option<u8> {
        self.table[value as usize]
    }

    /// Number of classes: one more than the largest class that is not [`IGNORE_INDEX`].
    pub fn classes(&self) -> usize {
        self.table
            .iter()
            .flatten()
            .filter(|&&c| c != IGNORE_INDEX)
            .map(|&c| c as usize + 1)
            .max()
            .unwrap_or(0)
    }

    /// Replaces every value of `mask` by its class; errors naming `path` and the first unmapped
    /// value.
    pub fn apply(&self, path: &Path, mask: &mut [u8]) -> Result<()> {
        for (pixel, v) in mask.iter_mut().enumerate() {
            match self.table[*v as usize] {
                Some(c) => *v = c,
                None => {
                    return Err(Error::data(
                        path,
                        format!(
                            "mask value {v} (pixel {pixel}) is not in the class mapping {self:?}"
                        ),
                    ))
                }
            }
        }
        Ok(())
    }
}

impl fmt::Debug for ClassMap {
    /// `{0→0, 255→1}`; runs of values with one class print as ranges, `{0→0, 1..=255→1}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        let mut v = 0usize;
        while v < 256 {
            let Some(class) = self.table[v] else {
                v += 1;
                continue;
            };
            let mut end = v;
            while end + 1 < 256 && self.table[end + 1] == Some(class) {
                end += 1;
            }
            let class = if class == IGNORE_INDEX {
                "ignore".to_string()
            } else {
                class.to_string()
            };
            parts.push(if end > v {
                format!("{v}..={end}→{class}")
            } else {
                format!("{v}→{class}")
            });
            v = end + 1;
        }
        write!(f, "{{{}}}", parts.join(", "))
    }
}
