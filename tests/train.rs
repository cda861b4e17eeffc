//! Training end to end on the CPU: a small U-Net (and a residual U-Net) learns the synthetic
//! shapes, the run leaves its log, plot and checkpoints, and tiled prediction covers images of any
//! size exactly.

use magnet::data::{Dataset, Pixels, Synthetic, SyntheticConfig};
use magnet::layers::{self, ConvConfig};
use magnet::models::{Architecture, UNetConfig, Upsampling};
use magnet::optim::LrSchedule;
use magnet::predict::Predictor;
use magnet::train::{LossKind, OptimizerKind, TrainConfig, Trainer};
use magnet::{CpuBackend, Executor, Graph, HostTensor, Mode};

fn config(arch: Architecture, epochs: usize, out_dir: Option<std::path::PathBuf>) -> TrainConfig {
    TrainConfig {
        arch,
        model: UNetConfig {
            in_channels: 3,
            classes: 3,
            base_channels: 8,
            upsampling: Upsampling::Transposed,
        },
        epochs,
        batch_size: 4,
        optimizer: OptimizerKind::Adam,
        lr: 5e-3,
        weight_decay: 0.0,
        schedule: LrSchedule::Constant,
        loss: LossKind::CrossEntropy,
        ignore_index: Some(255),
        seed: 3,
        out_dir,
        progress: false,
    }
}

fn shapes(samples: usize, seed: u64) -> Synthetic {
    Synthetic::new(SyntheticConfig {
        samples,
        size: 32,
        seed,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn a_small_unet_overfits_a_handful_of_images() {
    let mut trainer = Trainer::new(
        CpuBackend::new(),
        config(Architecture::UNet, 80, None),
        32,
        32,
    )
    .unwrap();
    let history = trainer.fit(shapes(8, 1), shapes(8, 1), |_| {}).unwrap();
    let first = history.records[0].train_loss;
    let last = history.records.last().unwrap();
    assert!(
        last.train_loss < 0.2 * first,
        "loss {first} → {}",
        last.train_loss
    );
    // The validation set is the training set: pooled mean IoU over the three classes.
    assert!(last.val_miou > 0.95, "train IoU {}", last.val_miou);
}

#[test]
fn a_residual_unet_learns_and_the_run_leaves_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let cfg = config(Architecture::ResUNet, 4, Some(out.clone()));
    let mut trainer = Trainer::new(CpuBackend::new(), cfg, 32, 32).unwrap();
    let names: Vec<&str> = trainer
        .executor()
        .graph()
        .tensors()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert!(names.contains(&"down1.shortcut.0.weight") && names.contains(&"up4.bn2.running_var"));
    let history = trainer
        .fit(shapes(16, 2), shapes(8, 5), |_| {})
        .unwrap()
        .clone();
    assert!(history.records[3].train_loss < history.records[0].train_loss);
    let log = std::fs::read_to_string(out.join("log.csv")).unwrap();
    assert_eq!(log.lines().count(), 5);
    assert!(image::open(out.join("curves.png")).is_ok());
    // No temporary files are left behind.
    let stray: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(stray.is_empty(), "{stray:?}");
    #[cfg(feature = "hdf5")]
    {
        assert!(out.join("last.h5").is_file() && out.join("best.h5").is_file());
        // Resuming from the last checkpoint continues at epoch 5 with the saved weights.
        let mut resumed = Trainer::new(
            CpuBackend::new(),
            config(Architecture::ResUNet, 5, None),
            32,
            32,
        )
        .unwrap();
        resumed.resume(&out.join("last.h5")).unwrap();
        let id = resumed
            .executor()
            .graph()
            .tensor_id("inc.conv1.weight")
            .unwrap();
        assert_eq!(
            resumed.executor().tensor(id).unwrap(),
            trainer.executor().tensor(id).unwrap()
        );
        let more = resumed.fit(shapes(16, 2), shapes(8, 5), |_| {}).unwrap();
        assert_eq!(more.records.len(), 5);
        assert_eq!(more.records[4].epoch, 5);
    }
}

#[test]
fn training_rejects_a_data_set_smaller_than_a_batch() {
    let mut trainer = Trainer::new(
        CpuBackend::new(),
        config(Architecture::UNet, 1, None),
        32,
        32,
    )
    .unwrap();
    let err = trainer.fit(shapes(2, 0), shapes(2, 0), |_| {}).unwrap_err();
    assert!(err.to_string().contains("batch"), "{err}");
}

/// A per-pixel model (one 1×1 convolution) makes tiling exact: every pixel's logits must equal
/// those of the convolution applied directly, whatever the tiles and the blending weights.
#[test]
fn tiled_prediction_covers_any_image_size_exactly() {
    let mut g = Graph::<CpuBackend>::new();
    let image = g.input("image", [1, 16, 16, 3]).unwrap();
    let logits = layers::conv2d(&mut g, "head", image, ConvConfig::new(4, 1)).unwrap();
    let mut exec = Executor::new(CpuBackend::new(), g, 9).unwrap();
    let weight = exec
        .tensor(exec.graph().tensor_id("head.weight").unwrap())
        .unwrap();
    let bias = exec
        .tensor(exec.graph().tensor_id("head.bias").unwrap())
        .unwrap();
    let sample = shapes(1, 4).get(0).unwrap();
    for (h, w) in [(32, 32), (27, 40), (10, 7), (16, 50)] {
        let data: Vec<f32> = (0..h * w)
            .flat_map(|p| {
                let (y, x) = (p / w, p % w);
                sample.image[(y * 32 + x) * 3..][..3].to_vec()
            })
            .collect();
        let pixels = Pixels {
            height: h,
            width: w,
            channels: 3,
            data,
        };
        let got = Predictor::new(&mut exec, image, logits, 16)
            .unwrap()
            .logits(&pixels)
            .unwrap();
        assert_eq!(got.shape().dims(), &[h, w, 4]);
        for p in 0..h * w {
            for k in 0..4 {
                let want: f32 = bias.data()[k]
                    + (0..3)
                        .map(|c| weight.data()[k * 3 + c] * pixels.data[p * 3 + c])
                        .sum::<f32>();
                let v = got.data()[p * 4 + k];
                // Blending divides a weighted sum of identical values by the sum of the weights:
                // a few ulps of rounding.
                assert!(
                    (v - want).abs() <= 1e-5 * want.abs().max(1.0),
                    "{h}×{w} pixel {p} class {k}: {v} vs {want}"
                );
            }
        }
    }
    // The forward through the executor agrees with the hand-computed values too (batch of one).
    let direct = HostTensor::new([1, 16, 16, 3], sample.image[..16 * 16 * 3].to_vec()).unwrap();
    exec.forward(&[(image, &direct)], Mode::Eval).unwrap();
    assert!(
        Predictor::new(&mut exec, image, logits, 24).is_err(),
        "tile must be a multiple of 16"
    );
}
