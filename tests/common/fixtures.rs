//! Reader of the PyTorch fixtures in `tests/fixtures/*.txt` (written by
//! `scripts/make_fixtures.py`, whose header documents the format):
//!
//! ```text
//! # comment
//! param <name> <number> [<number> ...]
//! tensor <name> <dim> [<dim> ...]
//! <values, whitespace-separated, over as many lines as needed>
//! ```
//!
//! Tensors are stored in magnet's layouts (NHWC activations, `[out, kh, kw, in]` weights).

use std::collections::HashMap;
use std::path::PathBuf;

/// One fixture file: named parameters and named tensors.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub path: PathBuf,
    params: HashMap<String, Vec<f64>>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl Fixture {
    /// Loads `tests/fixtures/<name>.txt`; panics naming the file when it is missing or malformed
    /// (fixtures are committed, so either is a bug).
    #[track_caller]
    pub fn load(name: &str) -> Fixture {
        let path = crate::common::project_root()
            .join("tests")
            .join("fixtures")
            .join(format!("{name}.txt"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "fixture {} cannot be read ({e}); fixtures are committed, regenerate them with \
                 `python3 scripts/make_fixtures.py`",
                path.display()
            )
        });
        Self::parse(path, &text)
    }

    /// Parses fixture text; `path` names it in error messages.
    #[track_caller]
    pub fn parse(path: PathBuf, text: &str) -> Fixture {
        let fail = |line: usize, msg: String| -> ! {
            panic!("fixture {}:{}: {msg}", path.display(), line + 1)
        };
        let mut params = HashMap::new();
        let mut tensors: HashMap<String, (Vec<usize>, Vec<f32>)> = HashMap::new();
        // The tensor being filled: (name, header line, expected count).
        let mut open: Option<(String, usize, usize)> = None;
        for (ln, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut words = line.split_whitespace();
            let first = words.next().unwrap_or_default();
            if first == "param" || first == "tensor" {
                if let Some((name, at, want)) = open.take() {
                    let got = tensors[&name].1.len();
                    if got != want {
                        fail(
                            at,
                            format!("tensor {name} has {got} values, its shape needs {want}"),
                        );
                    }
                }
                let name = words
                    .next()
                    .unwrap_or_else(|| fail(ln, format!("`{first}` without a name")))
                    .to_string();
                let nums: Vec<f64> = words
                    .map(|w| {
                        w.parse()
                            .unwrap_or_else(|_| fail(ln, format!("bad number {w:?}")))
                    })
                    .collect();
                if first == "param" {
                    params.insert(name, nums);
                } else {
                    let dims: Vec<usize> = nums.iter().map(|&d| d as usize).collect();
                    let numel = dims.iter().product();
                    tensors.insert(name.clone(), (dims, Vec::with_capacity(numel)));
                    open = Some((name, ln, numel));
                }
            } else {
                let Some((name, _, _)) = &open else {
                    fail(ln, format!("values outside a tensor: {line:?}"));
                };
                let values = &mut tensors.get_mut(name).expect("open tensor exists").1;
                for w in line.split_whitespace() {
                    values.push(
                        w.parse()
                            .unwrap_or_else(|_| fail(ln, format!("bad value {w:?}"))),
                    );
                }
            }
        }
        if let Some((name, at, want)) = open {
            let got = tensors[&name].1.len();
            if got != want {
                fail(
                    at,
                    format!("tensor {name} has {got} values, its shape needs {want}"),
                );
            }
        }
        Fixture {
            path,
            params,
            tensors,
        }
    }

    /// The values of tensor `name`.
    #[track_caller]
    pub fn tensor(&self, name: &str) -> &[f32] {
        &self.entry(name).1
    }

    /// The dimensions of tensor `name`.
    #[track_caller]
    pub fn dims(&self, name: &str) -> &[usize] {
        &self.entry(name).0
    }

    #[track_caller]
    fn entry(&self, name: &str) -> &(Vec<usize>, Vec<f32>) {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("fixture {} has no tensor {name:?}", self.path.display()))
    }

    /// The numbers of parameter `name`.
    #[track_caller]
    pub fn param(&self, name: &str) -> &[f64] {
        self.params
            .get(name)
            .unwrap_or_else(|| panic!("fixture {} has no param {name:?}", self.path.display()))
    }

    /// A one-number parameter as a size.
    #[track_caller]
    pub fn usize(&self, name: &str) -> usize {
        self.param(name)[0] as usize
    }

    /// A two-number parameter (`[h, w]`) as sizes.
    #[track_caller]
    pub fn pair(&self, name: &str) -> [usize; 2] {
        let p = self.param(name);
        assert_eq!(
            p.len(),
            2,
            "fixture {}: param {name} is not a pair",
            self.path.display()
        );
        [p[0] as usize, p[1] as usize]
    }

    /// A one-number parameter as f32.
    #[track_caller]
    pub fn f32(&self, name: &str) -> f32 {
        self.param(name)[0] as f32
    }

    /// A 0/1 parameter as a bool.
    #[track_caller]
    pub fn flag(&self, name: &str) -> bool {
        self.param(name)[0] != 0.0
    }
}
