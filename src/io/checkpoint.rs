//! Checkpoints: a model's named tensors, its optimiser state, its configuration and the training
//! position in one HDF5 file that maps 1:1 to a PyTorch `state_dict`.
//!
//! # File format (version 1)
//!
//! ```text
//! /                                   attributes: format = "magnet-checkpoint", format_version = 1,
//!                                     epoch, step, seed, executor_step (uint64), plus any extras
//! /config                             group; the model configuration as attributes
//!                                     (model = "unet", in_channels, classes, base_channels,
//!                                     upsampling = "transposed" | "bilinear")
//! /state_dict/<key>                   float32, PyTorch's layout (conv weights [out, in, kh, kw],
//!                                     transposed-conv weights [in, out, kh, kw]); one dataset per
//!                                     parameter or batch-norm running statistic, named by its
//!                                     state_dict key with the dots kept (`inc.double_conv.0.weight`)
//! /state_dict/<bn>.num_batches_tracked  int64 scalar, for every batch norm
//! /optimizer                          group (optional); attributes kind = "adam" | "sgd",
//!                                     param_names = the trainable names in PyTorch's
//!                                     `model.parameters()` order (the optimiser's indices)
//! /optimizer/state/<key>/step         int64 scalar: updates applied to that parameter
//! /optimizer/state/<key>/<buffer>     float32, PyTorch's layout: exp_avg, exp_avg_sq (Adam) or
//!                                     momentum_buffer (SGD)
//! ```
//!
//! In Python, `{k: torch.from_numpy(v[()]) for k, v in h5py.File(p)["state_dict"].items()}` is a
//! state_dict PyTorch's `load_state_dict(strict=True)` accepts (`scripts/h5_to_torch.py` does this
//! and rebuilds the optimiser's state_dict too; `scripts/torch_to_h5.py` goes the other way).
//!
//! `num_batches_tracked` is the executor's count of training forwards ([`Executor::step`]): every
//! training forward runs every batch norm once, which is what PyTorch counts. magnet's batch norm
//! uses a fixed momentum, so the count does not change any result; it is written so PyTorch
//! accepts the file, and on loading it restores the executor's step (which seeds dropout) when
//! the file has no `executor_step`. Loading accepts files without `num_batches_tracked`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::graph::Executor;
use crate::io::hdf5::{h5_error, AttrValue, Attributes, H5Reader, H5Writer, WriteOptions};
use crate::io::{from_pytorch_layout, pytorch_shape, to_pytorch_layout};
use crate::models::{Architecture, UNetConfig, Upsampling};
use crate::optim::{OptimizerEntry, OptimizerState};
use crate::tensor::{HostTensor, Shape};

/// The value of the root attribute `format`.
pub const FORMAT: &str = "magnet-checkpoint";
/// The value of the root attribute `format_version`.
pub const FORMAT_VERSION: i64 = 1;

const STATE_DICT: &str = "state_dict";
const OPTIMIZER: &str = "optimizer";
const CONFIG: &str = "config";
const BATCHES: &str = ".num_batches_tracked";
const RESERVED: [&str; 6] = [
    "format",
    "format_version",
    "epoch",
    "step",
    "seed",
    "executor_step",
];

/// The training position and configuration stored with a checkpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CheckpointMeta {
    /// Completed epochs.
    pub epoch: u64,
    /// Optimiser steps taken.
    pub step: u64,
    /// The seed of the run (initialisation, shuffling).
    pub seed: u64,
    /// The model configuration, attributes of `/config` (see [`model_config_attrs`]).
    pub config: Attributes,
    /// Anything else worth keeping (learning rate, loss, ...), as root attributes; the names
    /// `format`, `format_version`, `epoch`, `step`, `seed` and `executor_step` are reserved.
    pub extra: Attributes,
}

/// What [`load_checkpoint`] returns besides the tensors it loads into the executor.
#[derive(Debug, Clone, PartialEq)]
pub struct Checkpoint {
    pub meta: CheckpointMeta,
    /// The optimiser state, when the file has one; pass it to `Optimizer::import_state`.
    pub optimizer: Option<OptimizerState>,
}

/// Writes `exec`'s named tensors (in PyTorch's layout), `optimizer` state when given and `meta`
/// to `path`, through a temporary file renamed over `path` at the end: a failed save leaves an
/// existing checkpoint intact.
pub fn save_checkpoint<B: Backend>(
    path: impl AsRef<Path>,
    exec: &Executor<B>,
    optimizer: Option<&OptimizerState>,
    meta: &CheckpointMeta,
) -> Result<()> {
    let path = path.as_ref();
    if let Some(name) = meta.extra.keys().find(|k| RESERVED.contains(&k.as_str())) {
        return Err(h5_error(
            path,
            format!("extra attribute '{name}' is a reserved name"),
        ));
    }
    let w = H5Writer::create(path)?;
    w.set_attr("/", "format", &FORMAT.into())?;
    w.set_attr("/", "format_version", &FORMAT_VERSION.into())?;
    w.set_attr("/", "epoch", &meta.epoch.into())?;
    w.set_attr("/", "step", &meta.step.into())?;
    w.set_attr("/", "seed", &meta.seed.into())?;
    w.set_attr("/", "executor_step", &exec.step().into())?;
    w.set_attrs("/", &meta.extra)?;
    w.create_group(CONFIG)?;
    w.set_attrs(CONFIG, &meta.config)?;

    w.create_group(STATE_DICT)?;
    let batches = i64::try_from(exec.step()).unwrap_or(i64::MAX);
    for spec in exec.graph().tensors() {
        let id = exec.graph().tensor_id(&spec.name)?;
        let value = to_pytorch_layout(spec.layout, &exec.tensor(id)?)?;
        w.write_tensor(&key(&spec.name), &value, WriteOptions::default())?;
        if let Some(bn) = spec.name.strip_suffix(".running_mean") {
            w.write_scalar(&key(&format!("{bn}{BATCHES}")), batches)?;
        }
    }

    if let Some(state) = optimizer {
        write_optimizer(&w, exec, state)?;
    }
    w.finish()
}

fn key(name: &str) -> String {
    format!("{STATE_DICT}/{name}")
}

fn write_optimizer<B: Backend>(
    w: &H5Writer,
    exec: &Executor<B>,
    state: &OptimizerState,
) -> Result<()> {
    let graph = exec.graph();
    w.create_group(&format!("{OPTIMIZER}/state"))?;
    w.set_attr(OPTIMIZER, "kind", &state.kind.as_str().into())?;
    let names: Vec<String> = graph
        .trainable_ids()
        .iter()
        .map(|id| graph.tensors()[id.index()].name.clone())
        .collect();
    w.set_attr(OPTIMIZER, "param_names", &AttrValue::Strs(names))?;
    for entry in &state.entries {
        let spec = &graph.tensors()[graph.tensor_id(&entry.param)?.index()];
        let group = format!("{OPTIMIZER}/state/{}", entry.param);
        w.create_group(&group)?;
        let step = i64::try_from(entry.step).unwrap_or(i64::MAX);
        w.write_scalar(&format!("{group}/step"), step)?;
        for (role, buffer) in &entry.buffers {
            if role == "step" || buffer.shape() != &spec.shape {
                return Err(h5_error(
                    w.path(),
                    format!(
                        "optimizer buffer '{role}' of '{}' has shape {}, the parameter {}",
                        entry.param,
                        buffer.shape(),
                        spec.shape
                    ),
                ));
            }
            let value = to_pytorch_layout(spec.layout, buffer)?;
            w.write_tensor(&format!("{group}/{role}"), &value, WriteOptions::default())?;
        }
    }
    Ok(())
}

/// Reads only the position and configuration of the checkpoint at `path` (to build the model
/// before loading it).
pub fn read_checkpoint_meta(path: impl AsRef<Path>) -> Result<CheckpointMeta> {
    read_meta(&H5Reader::open(path)?)
}

fn read_meta(r: &H5Reader) -> Result<CheckpointMeta> {
    let mut root = r.attrs("/")?;
    let mut position = |name: &str| -> Result<u64> {
        match root.remove(name) {
            None => Ok(0),
            Some(v) => v.as_u64().ok_or_else(|| {
                h5_error(
                    r.path(),
                    format!("attribute '{name}' is {v:?}, not a count"),
                )
            }),
        }
    };
    let epoch = position("epoch")?;
    let step = position("step")?;
    let seed = position("seed")?;
    for name in RESERVED {
        root.remove(name);
    }
    let config = if r.is_group(CONFIG) {
        r.attrs(CONFIG)?
    } else {
        Attributes::new()
    };
    Ok(CheckpointMeta {
        epoch,
        step,
        seed,
        config,
        extra: root,
    })
}

/// Loads the checkpoint at `path` into `exec`: every named tensor, converted from PyTorch's
/// layout, after checking names (missing or unexpected keys are an [`Error::CheckpointKeys`])
/// and shapes; nothing is changed unless everything checks out. Restores the executor's step and
/// returns the position, configuration and optimiser state.
pub fn load_checkpoint<B: Backend>(
    path: impl AsRef<Path>,
    exec: &mut Executor<B>,
) -> Result<Checkpoint> {
    let r = H5Reader::open(path)?;
    if !r.is_group(STATE_DICT) {
        return Err(h5_error(r.path(), format!("missing group '{STATE_DICT}'")));
    }
    let graph = exec.graph();
    let in_file: BTreeSet<String> = r.datasets(STATE_DICT)?.into_iter().collect();
    let expected: BTreeSet<&str> = graph.tensors().iter().map(|t| t.name.as_str()).collect();
    let batch_norms: BTreeSet<String> = graph
        .tensors()
        .iter()
        .filter_map(|t| t.name.strip_suffix(".running_mean"))
        .map(|bn| format!("{bn}{BATCHES}"))
        .collect();
    let missing: Vec<String> = expected
        .iter()
        .filter(|n| !in_file.contains(**n))
        .map(|n| n.to_string())
        .collect();
    let unexpected: Vec<String> = in_file
        .iter()
        .filter(|n| !expected.contains(n.as_str()) && !batch_norms.contains(*n))
        .cloned()
        .collect();
    if !missing.is_empty() || !unexpected.is_empty() {
        return Err(Error::CheckpointKeys {
            path: r.path().to_path_buf(),
            missing,
            unexpected,
        });
    }

    let mut values = Vec::with_capacity(graph.tensors().len());
    for spec in graph.tensors() {
        let stored = pytorch_shape(spec.layout, &spec.shape);
        let value = r.read_tensor_shaped(&key(&spec.name), &stored)?;
        values.push((
            graph.tensor_id(&spec.name)?,
            from_pytorch_layout(spec.layout, &value)?,
        ));
    }
    let mut tracked = None;
    for name in batch_norms.iter().filter(|n| in_file.contains(*n)) {
        let (shape, v) = r.read::<i64>(&key(name))?;
        if shape.numel() != 1 {
            return Err(h5_error(
                r.path(),
                format!(
                    "dataset '{}' has shape {shape}, expected a scalar",
                    key(name)
                ),
            ));
        }
        tracked = tracked.max(u64::try_from(v[0]).ok());
    }
    let executor_step = match r.attr("/", "executor_step")? {
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| h5_error(r.path(), format!("attribute 'executor_step' is {v:?}")))?,
        ),
        None => tracked,
    };
    let optimizer = if r.is_group(OPTIMIZER) {
        Some(read_optimizer(&r, exec)?)
    } else {
        None
    };
    let meta = read_meta(&r)?;

    for (id, value) in &values {
        exec.set_tensor(*id, value)?;
    }
    if let Some(step) = executor_step {
        exec.set_step(step);
    }
    Ok(Checkpoint { meta, optimizer })
}

fn read_optimizer<B: Backend>(r: &H5Reader, exec: &Executor<B>) -> Result<OptimizerState> {
    let graph = exec.graph();
    let kind = match r.attr(OPTIMIZER, "kind")? {
        Some(AttrValue::Str(kind)) => kind,
        other => {
            return Err(h5_error(
                r.path(),
                format!("group '{OPTIMIZER}' needs a string attribute 'kind', found {other:?}"),
            ))
        }
    };
    let state_group = format!("{OPTIMIZER}/state");
    let params = if r.is_group(&state_group) {
        r.members(&state_group)?
    } else {
        Vec::new()
    };
    let mut entries = Vec::with_capacity(params.len());
    for param in params {
        let spec = graph
            .tensor_id(&param)
            .ok()
            .map(|id| &graph.tensors()[id.index()])
            .filter(|s| s.trainable)
            .ok_or_else(|| {
                h5_error(
                    r.path(),
                    format!("optimizer state for '{param}', which is not a trainable tensor"),
                )
            })?;
        let group = format!("{state_group}/{param}");
        let (shape, step) = r.read::<i64>(&format!("{group}/step"))?;
        let step = match (shape.numel(), step.first()) {
            (1, Some(&s)) if s >= 0 => s as u64,
            _ => {
                return Err(h5_error(
                    r.path(),
                    format!("dataset '{group}/step' must be one non-negative count"),
                ))
            }
        };
        let stored: Shape = pytorch_shape(spec.layout, &spec.shape);
        let mut buffers: Vec<(String, HostTensor)> = Vec::new();
        for role in r.datasets(&group)? {
            if role == "step" {
                continue;
            }
            let value = r.read_tensor_shaped(&format!("{group}/{role}"), &stored)?;
            buffers.push((role, from_pytorch_layout(spec.layout, &value)?));
        }
        entries.push(OptimizerEntry {
            param,
            step,
            buffers,
        });
    }
    entries.sort_by(|a, b| a.param.cmp(&b.param));
    Ok(OptimizerState { kind, entries })
}

/// A model's architecture and configuration as `/config` attributes.
pub fn model_config_attrs(arch: Architecture, cfg: &UNetConfig) -> Attributes {
    let upsampling = match cfg.upsampling {
        Upsampling::Transposed => "transposed",
        Upsampling::Bilinear => "bilinear",
    };
    BTreeMap::from([
        ("model".to_string(), AttrValue::from(arch.name())),
        ("in_channels".into(), (cfg.in_channels as u64).into()),
        ("classes".into(), (cfg.classes as u64).into()),
        ("base_channels".into(), (cfg.base_channels as u64).into()),
        ("upsampling".into(), upsampling.into()),
    ])
}

/// The architecture and configuration written by [`model_config_attrs`]; `path` names the file
/// in errors.
pub fn model_config_from_attrs(
    path: &Path,
    attrs: &Attributes,
) -> Result<(Architecture, UNetConfig)> {
    let count = |name: &str| -> Result<usize> {
        attrs
            .get(name)
            .and_then(AttrValue::as_u64)
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| h5_error(path, format!("config attribute '{name}' is missing")))
    };
    let model = attrs.get("model").and_then(AttrValue::as_str);
    let Some(arch) = model.and_then(Architecture::from_name) else {
        return Err(h5_error(
            path,
            format!("config attribute 'model' is {model:?}, not a known model"),
        ));
    };
    let upsampling = match attrs.get("upsampling").and_then(AttrValue::as_str) {
        Some("transposed") => Upsampling::Transposed,
        Some("bilinear") => Upsampling::Bilinear,
        other => {
            return Err(h5_error(
                path,
                format!("config attribute 'upsampling' is {other:?}"),
            ))
        }
    };
    let cfg = UNetConfig {
        in_channels: count("in_channels")?,
        classes: count("classes")?,
        base_channels: count("base_channels")?,
        upsampling,
    };
    Ok((arch, cfg))
}
