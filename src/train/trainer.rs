//! The training loop: epochs of shuffled batches, validation metrics after each, progress,
//! checkpoints, the CSV log and the plot.

use std::path::Path;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::backend::Backend;
use crate::data::{BatchLoader, Dataset, LoaderConfig, Shard};
use crate::dist::{Collective, DataParallel, ParallelConfig};
use crate::error::{Error, Result};
use crate::graph::{Executor, Graph, Mode, NodeId};
#[cfg(feature = "hdf5")]
use crate::io::atomic::write_atomically;
use crate::metrics::{self, ConfusionMatrix};
use crate::models::UNet;
use crate::optim::Optimizer;
use crate::train::config::TrainConfig;
use crate::train::history::{EpochRecord, History};
use crate::train::plot::plot_history;

/// Loss and confusion matrix of a pass over a data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// Mean of the batch losses, weighted by batch size.
    pub loss: f32,
    pub matrix: ConfusionMatrix,
}

impl Evaluation {
    /// The record of a validation this rank left to rank 0: no loss, no pixels.
    fn not_run(classes: usize) -> Self {
        Evaluation {
            loss: f32::NAN,
            matrix: ConfusionMatrix::new(classes),
        }
    }
}

/// A segmentation model with its loss, metrics and optimiser, ready to train on backend `B`.
pub struct Trainer<B: Backend> {
    exec: Executor<B>,
    net: UNet,
    labels: NodeId,
    loss: NodeId,
    counts: NodeId,
    optimizer: Box<dyn Optimizer<B>>,
    config: TrainConfig,
    history: History,
    /// Optimiser steps taken (for checkpoints).
    steps: u64,
    /// This trainer's rank of a data-parallel run, if it is one.
    parallel: Option<DataParallel<B>>,
}

impl<B: Backend> Trainer<B> {
    /// Builds the model for `height × width` images at the configured batch size, initialised
    /// from the configured seed.
    pub fn new(backend: B, config: TrainConfig, height: usize, width: usize) -> Result<Self> {
        config.validate()?;
        let mut g = Graph::new();
        let net = config
            .arch
            .build(&mut g, config.model, config.batch_size, height, width)?;
        let labels = g.input("labels", [config.batch_size, height, width])?;
        let loss = config
            .loss
            .build(&mut g, net.logits, labels, config.ignore_index)?;
        let counts = metrics::confusion_counts(&mut g, net.logits, labels, config.ignore_index)?;
        let mut exec = Executor::new(backend, g, config.seed)?;
        // The trainer reads only the loss and the confusion counts.
        exec.keep_only(&[loss, counts])?;
        let optimizer = config.optimizer.build(config.lr, config.weight_decay)?;
        Ok(Trainer {
            exec,
            net,
            labels,
            loss,
            counts,
            optimizer,
            config,
            history: History::default(),
            steps: 0,
            parallel: None,
        })
    }

    /// Makes this trainer one rank of a data-parallel run over `collective`: it takes rank 0's
    /// weights now, trains on its shard of each epoch (the batch size is per rank), and averages
    /// the gradients over the ranks in every step, so the weights stay identical everywhere.
    /// Batch norm normalises with each rank's batch unless `config.sync_batch_norm`; the
    /// running statistics validated and saved are rank 0's. Only rank 0 validates and writes the
    /// log, plot and checkpoints; the others record no validation. Call it after loading weights
    /// or resuming on rank 0 (every rank may load them too).
    pub fn distribute(
        &mut self,
        collective: Box<dyn Collective<B>>,
        config: ParallelConfig,
    ) -> Result<()> {
        self.parallel = Some(DataParallel::new(collective, &mut self.exec, config)?);
        Ok(())
    }

    /// `(rank, world size)`: `(0, 1)` unless [`Trainer::distribute`] made this one rank of many.
    pub fn rank(&self) -> (usize, usize) {
        self.parallel
            .as_ref()
            .map_or((0, 1), |p| (p.rank(), p.world_size()))
    }

    /// The executor (weights, backend).
    pub fn executor(&self) -> &Executor<B> {
        &self.exec
    }

    /// The model's input and output nodes.
    pub fn net(&self) -> UNet {
        self.net
    }

    /// The run's settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Epochs completed so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// Trains for the configured number of epochs (continuing after those already done),
    /// validating after each; `on_epoch` sees every epoch's record as it completes.
    pub fn fit<T, V>(
        &mut self,
        train: T,
        validation: V,
        on_epoch: impl FnMut(&EpochRecord),
    ) -> Result<&History>
    where
        T: Dataset + 'static,
        V: Dataset + 'static,
    {
        self.fit_until(self.config.epochs, train, validation, on_epoch)
    }

    /// As [`Trainer::fit`], but stops once `epochs` (at most the configured number) are done, so
    /// a run can be paused to be evaluated or saved. A later `fit` or `fit_until` continues it:
    /// each epoch's shuffle, augmentation and learning rate depend only on its number, so the
    /// pieces make the same run as one `fit`.
    pub fn fit_until<T, V>(
        &mut self,
        epochs: usize,
        train: T,
        validation: V,
        mut on_epoch: impl FnMut(&EpochRecord),
    ) -> Result<&History>
    where
        T: Dataset + 'static,
        V: Dataset + 'static,
    {
        if epochs > self.config.epochs {
            return Err(Error::invalid(
                "train",
                format!(
                    "cannot train until epoch {epochs} of a {}-epoch run",
                    self.config.epochs
                ),
            ));
        }
        if train.len() < self.config.batch_size {
            return Err(Error::invalid(
                "train",
                format!(
                    "{} training samples cannot fill a batch of {}",
                    train.len(),
                    self.config.batch_size
                ),
            ));
        }
        let (rank, ranks) = self.rank();
        let loader = BatchLoader::new(
            train,
            LoaderConfig {
                shard: Shard {
                    index: rank,
                    count: ranks,
                },
                ..LoaderConfig::train(self.config.batch_size, self.config.seed)
            },
        )?;
        let validation = BatchLoader::new(validation, LoaderConfig::eval(self.config.batch_size))?;
        let first = self.history.records.len();
        for epoch in first..epochs {
            let lr = self.config.schedule.lr(self.config.lr, epoch);
            self.optimizer.set_learning_rate(lr);
            let start = Instant::now();
            let (train_loss, images) = self.train_epoch(&loader, epoch)?;
            let train_seconds = start.elapsed().as_secs_f32();
            let eval = if rank == 0 {
                self.evaluate_loader(&validation)?
            } else {
                Evaluation::not_run(self.config.model.classes)
            };
            let pooled = eval.matrix.pooled();
            let per_image = eval.matrix.mean_per_image();
            let record = EpochRecord {
                epoch: epoch + 1,
                learning_rate: lr,
                train_loss,
                val_loss: eval.loss,
                val_miou: pooled.mean_iou.unwrap_or(0.0) as f32,
                val_dice: pooled.mean_dice.unwrap_or(0.0) as f32,
                val_pixel_accuracy: pooled.pixel_accuracy.unwrap_or(0.0) as f32,
                val_miou_per_image: per_image.mean_iou.unwrap_or(0.0) as f32,
                seconds: start.elapsed().as_secs_f32(),
                images_per_second: (images * ranks) as f32 / train_seconds.max(1e-9),
            };
            let improved = self
                .history
                .best()
                .is_none_or(|best| record.val_miou > best.val_miou);
            self.history.records.push(record);
            if rank == 0 {
                self.write_outputs(improved)?;
            }
            on_epoch(&record);
        }
        Ok(&self.history)
    }

    /// One pass over the training set; the mean loss and the number of images seen.
    fn train_epoch<D: Dataset + 'static>(
        &mut self,
        loader: &BatchLoader<D>,
        epoch: usize,
    ) -> Result<(f32, usize)> {
        let bar = self.progress_bar(loader.len() as u64, epoch);
        let (mut total, mut images, mut batches) = (0.0f64, 0, 0);
        for batch in loader.epoch(epoch) {
            let batch = batch?;
            let feeds = [
                (self.net.image, &batch.images),
                (self.labels, &batch.labels),
            ];
            match &mut self.parallel {
                Some(parallel) => {
                    parallel.forward(&mut self.exec, &feeds, Mode::Train)?;
                    parallel.backward(&mut self.exec, self.loss)?;
                }
                None => {
                    self.exec.forward(&feeds, Mode::Train)?;
                    self.exec.backward(self.loss)?;
                }
            }
            self.optimizer.step(&mut self.exec)?;
            self.steps += 1;
            let loss = self.exec.value(self.loss)?.data()[0];
            if !loss.is_finite() {
                return Err(Error::invalid(
                    "train",
                    format!("the loss diverged ({loss}) at epoch {}", epoch + 1),
                ));
            }
            total += loss as f64;
            batches += 1;
            images += batch.indices.len();
            let rate = images as f64 / bar.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "loss {:.4}  {rate:.1} img/s",
                total / batches as f64
            ));
            bar.inc(1);
        }
        bar.finish_and_clear();
        Ok(((total / batches.max(1) as f64) as f32, images))
    }

    /// Loss and confusion matrix of the model (evaluation mode) over `data`.
    pub fn evaluate<D: Dataset + 'static>(&mut self, data: D) -> Result<Evaluation> {
        let loader = BatchLoader::new(data, LoaderConfig::eval(self.config.batch_size))?;
        self.evaluate_loader(&loader)
    }

    fn evaluate_loader<D: Dataset + 'static>(
        &mut self,
        loader: &BatchLoader<D>,
    ) -> Result<Evaluation> {
        let mut matrix = ConfusionMatrix::new(self.config.model.classes);
        let (mut total, mut images) = (0.0f64, 0usize);
        for batch in loader.epoch(0) {
            let batch = batch?;
            self.exec.forward(
                &[
                    (self.net.image, &batch.images),
                    (self.labels, &batch.labels),
                ],
                Mode::Eval,
            )?;
            let n = batch.indices.len();
            total += self.exec.value(self.loss)?.data()[0] as f64 * n as f64;
            images += n;
            matrix.add_node(&self.exec, self.counts)?;
        }
        if images == 0 {
            return Err(Error::invalid("evaluate", "the data set is empty"));
        }
        Ok(Evaluation {
            loss: (total / images as f64) as f32,
            matrix,
        })
    }

    fn progress_bar(&self, batches: u64, epoch: usize) -> ProgressBar {
        if !self.config.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(batches);
        let style = ProgressStyle::with_template(
            "epoch {prefix} [{bar:30}] {pos}/{len} batches  {msg}  ETA {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_prefix(format!("{}/{}", epoch + 1, self.config.epochs));
        bar
    }

    /// The CSV log, the plot and the checkpoints, when the run has an output folder.
    fn write_outputs(&self, improved: bool) -> Result<()> {
        let Some(dir) = &self.config.out_dir else {
            return Ok(());
        };
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        self.history.write_csv(&dir.join("log.csv"))?;
        plot_history(&self.history, &dir.join("curves.png"))?;
        self.save_checkpoints(dir, improved)
    }

    #[cfg(feature = "hdf5")]
    fn save_checkpoints(&self, dir: &Path, improved: bool) -> Result<()> {
        let last = dir.join("last.h5");
        self.save(&last)?;
        if improved {
            write_atomically(&dir.join("best.h5"), |tmp| {
                std::fs::copy(&last, tmp)
                    .map(|_| ())
                    .map_err(|source| Error::Io {
                        path: tmp.to_path_buf(),
                        source,
                    })
            })?;
        }
        Ok(())
    }

    #[cfg(not(feature = "hdf5"))]
    fn save_checkpoints(&self, _dir: &Path, _improved: bool) -> Result<()> {
        Ok(())
    }
}

#[cfg(feature = "hdf5")]
mod checkpoints {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::Trainer;
    use crate::backend::Backend;
    use crate::error::{Error, Result};
    use crate::io::checkpoint::{
        load_checkpoint, model_config_attrs, save_checkpoint, CheckpointMeta,
    };
    use crate::io::AttrValue;

    impl<B: Backend> Trainer<B> {
        /// Saves weights, optimiser state, configuration and position to `path` (atomically).
        pub fn save(&self, path: &Path) -> Result<()> {
            let extra = BTreeMap::from([
                (
                    "optimizer".to_string(),
                    AttrValue::from(self.config.optimizer.name()),
                ),
                (
                    "lr".to_string(),
                    AttrValue::Float(self.optimizer.learning_rate() as f64),
                ),
                ("loss".to_string(), AttrValue::from(self.config.loss.name())),
            ]);
            let meta = CheckpointMeta {
                epoch: self.history.records.len() as u64,
                step: self.steps,
                seed: self.config.seed,
                config: model_config_attrs(self.config.arch, &self.config.model),
                extra,
            };
            let state = self.optimizer.export_state(&self.exec)?;
            save_checkpoint(path, &self.exec, Some(&state), &meta)
        }

        /// Loads weights and batch-norm statistics from a checkpoint (magnet's or one converted
        /// from PyTorch), leaving the optimiser fresh: fine-tuning or evaluating.
        pub fn load_weights(&mut self, path: &Path) -> Result<()> {
            load_checkpoint(path, &mut self.exec).map(|_| ())
        }

        /// Loads weights, optimiser state and the training position, so the next epoch continues
        /// the saved run. The optimiser kind must match.
        pub fn resume(&mut self, path: &Path) -> Result<()> {
            let checkpoint = load_checkpoint(path, &mut self.exec)?;
            let Some(state) = checkpoint.optimizer else {
                return Err(Error::invalid(
                    "resume",
                    format!("{} has no optimiser state", path.display()),
                ));
            };
            self.optimizer.import_state(&self.exec, &state)?;
            self.steps = checkpoint.meta.step;
            // The history before the checkpoint is not stored in it; epochs continue from there.
            let done = checkpoint.meta.epoch as usize;
            self.history.records.truncate(done);
            while self.history.records.len() < done {
                self.history.records.push(crate::train::EpochRecord {
                    epoch: self.history.records.len() + 1,
                    learning_rate: f32::NAN,
                    train_loss: f32::NAN,
                    val_loss: f32::NAN,
                    val_miou: f32::NAN,
                    val_dice: f32::NAN,
                    val_pixel_accuracy: f32::NAN,
                    val_miou_per_image: f32::NAN,
                    seconds: 0.0,
                    images_per_second: 0.0,
                });
            }
            Ok(())
        }
    }
}
