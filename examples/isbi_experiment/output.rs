//! What the ISBI experiment leaves behind: the initial weights (`init.h5`), the scores
//! (`results.json`) and the markdown table it prints.

use std::path::{Path, PathBuf};

use magnet::io::atomic::write_bytes;
use magnet::metrics::Scores;
use magnet::train::Trainer;
use magnet::{Backend, Error, Executor, Result};
use serde_json::{json, Value};

use super::Args;

/// Test scores of one optimiser after some epochs.
pub struct Row {
    pub optimizer: &'static str,
    pub lr: f64,
    pub epoch: usize,
    /// Mean training loss of the last epoch trained (`None` before the first).
    pub train_loss: Option<f32>,
    pub test_loss: f32,
    /// Every test pixel pooled.
    pub pooled: Scores,
    /// Each test slice scored on its own, then averaged.
    pub per_image: Scores,
    /// Since this optimiser's training started (evaluations included).
    pub seconds: f64,
}

/// The run's settings and its rows, written as `results.json`:
///
/// ```text
/// { "engine": "magnet", "backend", "device", "size", "base", "batch", "epochs", "tf32", "seed",
///   "params", "records": [ { "optimizer", "lr", "epoch", "membrane_iou", "membrane_dice",
///   "pixel_accuracy", "mean_iou", "mean_dice", "mean_iou_per_image", "train_loss", "test_loss",
///   "seconds" }, ... ] }
/// ```
///
/// Membrane IoU and Dice (class 1), pixel accuracy, mean IoU and mean Dice (over both classes)
/// pool the pixels of the test slices; `mean_iou_per_image` averages each slice's mean IoU.
/// `seconds` is the wall time since the optimiser's training started. A score without a value
/// (no pixel of the class in truth or prediction) is `null`.
pub struct Results {
    settings: Value,
    path: PathBuf,
    /// Trainable parameters of the U-Net.
    pub params: usize,
    pub rows: Vec<Row>,
}

impl Results {
    pub fn new(args: &Args, backend: &str, device: &str, out: &Path) -> Self {
        Results {
            settings: json!({
                "engine": "magnet",
                "backend": backend,
                "device": device,
                "size": args.size,
                "base": args.base,
                "batch": args.batch,
                "epochs": args.epochs,
                "tf32": args.tf32,
                "seed": args.seed,
            }),
            path: out.join("results.json"),
            params: 0,
            rows: Vec::new(),
        }
    }

    /// Where [`Results::write`] writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the settings and every row so far (atomically).
    pub fn write(&self) -> Result<()> {
        let mut doc = self.settings.clone();
        doc["params"] = json!(self.params);
        doc["records"] = self.rows.iter().map(record).collect();
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::invalid("results.json", e.to_string()))?;
        write_bytes(&self.path, format!("{text}\n").as_bytes())
    }
}

fn record(r: &Row) -> Value {
    json!({
        "optimizer": r.optimizer,
        "lr": r.lr,
        "epoch": r.epoch,
        "membrane_iou": r.pooled.class_iou.get(1).copied().flatten(),
        "membrane_dice": r.pooled.class_dice.get(1).copied().flatten(),
        "pixel_accuracy": r.pooled.pixel_accuracy,
        "mean_iou": r.pooled.mean_iou,
        "mean_dice": r.pooled.mean_dice,
        "mean_iou_per_image": r.per_image.mean_iou,
        "train_loss": r.train_loss,
        "test_loss": r.test_loss,
        "seconds": r.seconds,
    })
}

/// The results as a markdown table: membrane (class 1) IoU and Dice and the pixel accuracy with
/// the test pixels pooled, the mean over both classes, and the mean over slices of each slice's
/// mean IoU; the wall time is cumulative per optimiser.
pub fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| optimiser | epoch | membrane IoU | membrane Dice | pixel accuracy | mean IoU | mean Dice \
         | mean IoU per image | wall time |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.3}"));
    for r in rows {
        out += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} s |\n",
            r.optimizer,
            r.epoch,
            f(r.pooled.class_iou.get(1).copied().flatten()),
            f(r.pooled.class_dice.get(1).copied().flatten()),
            f(r.pooled.pixel_accuracy),
            f(r.pooled.mean_iou),
            f(r.pooled.mean_dice),
            f(r.per_image.mean_iou),
            r.seconds
        );
    }
    out
}

/// Every named tensor (parameters and batch-norm statistics) of an executor as it stands.
pub struct InitialWeights(Vec<(String, Vec<u32>)>);

impl InitialWeights {
    /// Downloads the named tensors of `exec`, as bit patterns so that equality is exact.
    pub fn of<B: Backend>(exec: &Executor<B>) -> Result<Self> {
        let graph = exec.graph();
        graph
            .tensors()
            .iter()
            .map(|spec| {
                let value = exec.tensor(graph.tensor_id(&spec.name)?)?;
                Ok((
                    spec.name.clone(),
                    value.data().iter().map(|x| x.to_bits()).collect(),
                ))
            })
            .collect::<Result<_>>()
            .map(InitialWeights)
    }

    /// Errors, naming the first tensor that differs, unless `other` holds the same tensors with
    /// the same values bit for bit.
    pub fn check_same(&self, other: &InitialWeights, run: &str) -> Result<()> {
        let names = |w: &InitialWeights| w.0.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        if names(self) != names(other) {
            return Err(Error::invalid(
                "isbi_experiment",
                format!("{run}: the model's tensors differ from the first run's"),
            ));
        }
        match self.0.iter().zip(&other.0).find(|(a, b)| a.1 != b.1) {
            Some(((name, _), _)) => Err(Error::invalid(
                "isbi_experiment",
                format!("{run}: initial value of {name} differs from the first run's"),
            )),
            None => Ok(()),
        }
    }
}

/// Writes the trainer's current weights as a magnet checkpoint (PyTorch's state_dict layout, no
/// optimiser state, epoch 0) with the model configuration and seed.
#[cfg(feature = "hdf5")]
pub fn save_init<B: Backend>(trainer: &Trainer<B>, path: &Path) -> Result<()> {
    use magnet::io::checkpoint::{model_config_attrs, save_checkpoint, CheckpointMeta};

    let config = trainer.config();
    let meta = CheckpointMeta {
        epoch: 0,
        step: 0,
        seed: config.seed,
        config: model_config_attrs(config.arch, &config.model),
        extra: Default::default(),
    };
    save_checkpoint(path, trainer.executor(), None, &meta)
}

#[cfg(not(feature = "hdf5"))]
pub fn save_init<B: Backend>(_trainer: &Trainer<B>, path: &Path) -> Result<()> {
    Err(Error::invalid(
        "isbi_experiment",
        format!(
            "writing {} needs HDF5: build with the default feature hdf5",
            path.display()
        ),
    ))
}
