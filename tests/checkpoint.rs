//! HDF5 tensors and checkpoints: PyTorch's U-Net logits reproduced from its state_dict, exact
//! round trips, bit-identical resumption with Adam, typed errors for bad files, atomic saves.
#![cfg(feature = "hdf5")]

use std::path::{Path, PathBuf};

use magnet::io::checkpoint::{model_config_attrs, model_config_from_attrs};
use magnet::io::{
    load_checkpoint, read_checkpoint_meta, save_checkpoint, AttrValue, CheckpointMeta, H5Reader,
    H5Writer, WriteOptions,
};
use magnet::layers;
use magnet::models::{Architecture, UNet, UNetConfig, Upsampling};
use magnet::optim::{Adam, AdamConfig, Optimizer, OptimizerState};
use magnet::{CpuBackend, Error, Executor, Graph, HostTensor, Mode, NodeId};

/// The repository root, read at run time so copied test executables find the fixtures.
fn root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A fresh, empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("magnet-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn unet_config(base: usize, upsampling: Upsampling) -> UNetConfig {
    UNetConfig {
        in_channels: 3,
        classes: 2,
        base_channels: base,
        upsampling,
    }
}

fn nchw_to_nhwc(t: &HostTensor) -> HostTensor {
    let [n, c, h, w] = <[usize; 4]>::try_from(t.shape().dims()).unwrap();
    let mut out = vec![0.0; t.data().len()];
    for (i, &v) in t.data().iter().enumerate() {
        let (b, ch, y, x) = (i / (c * h * w), i / (h * w) % c, i / w % h, i % w);
        out[((b * h + y) * w + x) * c + ch] = v;
    }
    HostTensor::new([n, h, w, c], out).unwrap()
}

/// PyTorch's eval-mode logits of its U-Net (scripts/make_unet_fixture.py) from magnet's U-Net
/// loaded from the same checkpoint.
fn check_pytorch_fixture(upsampling: Upsampling, file: &str) {
    let path = root().join("tests/fixtures").join(file);
    let meta = read_checkpoint_meta(&path).unwrap();
    let (_, cfg) = model_config_from_attrs(&path, &meta.config).unwrap();
    assert_eq!(cfg, unet_config(4, upsampling));

    let reader = H5Reader::open(&path).unwrap();
    let input = nchw_to_nhwc(&reader.read_tensor("fixture/input").unwrap());
    let want = nchw_to_nhwc(&reader.read_tensor("fixture/logits").unwrap());
    let [n, h, w, _] = <[usize; 4]>::try_from(input.shape().dims()).unwrap();

    let mut g = Graph::<CpuBackend>::new();
    let net = UNet::build(&mut g, cfg, n, h, w).unwrap();
    let mut exec = Executor::new(CpuBackend::new(), g, 123).unwrap();
    load_checkpoint(&path, &mut exec).unwrap();
    // PyTorch counted two training forwards in every batch norm.
    assert_eq!(exec.step(), 2);
    exec.forward(&[(net.image, &input)], Mode::Eval).unwrap();
    let got = exec.value(net.logits).unwrap();
    assert_eq!(got.shape(), want.shape());

    // 1e-4 of the largest logit: both sides accumulate in f32 but in different orders (im2col +
    // GEMM here, oneDNN in PyTorch) through 19 convolutions and 18 batch norms, which moves the
    // last few bits; a wrong layout or a mis-mapped tensor gives errors of order 1.
    let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = got
        .data()
        .iter()
        .zip(want.data())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{file}: max |magnet − PyTorch| = {worst:e}, logits up to {scale}"
    );
}

#[test]
fn pytorch_unet_transposed_logits() {
    check_pytorch_fixture(Upsampling::Transposed, "unet_base4_transposed.h5");
}

#[test]
fn pytorch_unet_bilinear_logits() {
    check_pytorch_fixture(Upsampling::Bilinear, "unet_base4_bilinear.h5");
}

/// A small U-Net with a cross-entropy loss written in graph ops.
struct Training {
    exec: Executor<CpuBackend>,
    net: UNet,
    weights: NodeId,
    loss: NodeId,
    cfg: UNetConfig,
}

const BATCH: usize = 2;
const SIZE: usize = 16;

fn training(seed: u64) -> Training {
    let cfg = unet_config(4, Upsampling::Transposed);
    let mut g = Graph::<CpuBackend>::new();
    let net = UNet::build(&mut g, cfg, BATCH, SIZE, SIZE).unwrap();
    let log_probs = layers::log_softmax(&mut g, net.logits).unwrap();
    let weights = g.input("loss_weights", [BATCH, SIZE, SIZE, 2]).unwrap();
    let weighted = layers::mul(&mut g, log_probs, weights).unwrap();
    let loss = layers::sum(&mut g, weighted).unwrap();
    Training {
        exec: Executor::new(CpuBackend::new(), g, seed).unwrap(),
        net,
        weights,
        loss,
        cfg,
    }
}

/// The batch of step `step`: a deterministic image and a mask of pixels above their mean.
fn batch(step: usize) -> (HostTensor, HostTensor) {
    let pixels = BATCH * SIZE * SIZE;
    let image: Vec<f32> = (0..pixels * 3)
        .map(|i| ((i * 7919 + step * 104_729) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let mut w = vec![0.0; pixels * 2];
    for p in 0..pixels {
        let class = usize::from(image[p * 3] > 0.0);
        w[p * 2 + class] = -1.0 / pixels as f32;
    }
    (
        HostTensor::new([BATCH, SIZE, SIZE, 3], image).unwrap(),
        HostTensor::new([BATCH, SIZE, SIZE, 2], w).unwrap(),
    )
}

fn train_step(t: &mut Training, adam: &mut Adam<CpuBackend>, step: usize) {
    let (image, w) = batch(step);
    t.exec
        .forward(&[(t.net.image, &image), (t.weights, &w)], Mode::Train)
        .unwrap();
    t.exec.backward(t.loss).unwrap();
    adam.step(&mut t.exec).unwrap();
}

fn all_tensors(exec: &Executor<CpuBackend>) -> Vec<(String, HostTensor)> {
    let g = exec.graph();
    g.tensors()
        .iter()
        .map(|s| {
            let id = g.tensor_id(&s.name).unwrap();
            (s.name.clone(), exec.tensor(id).unwrap())
        })
        .collect()
}

fn meta(cfg: &UNetConfig) -> CheckpointMeta {
    CheckpointMeta {
        epoch: 3,
        step: 2,
        seed: u64::MAX - 5,
        config: model_config_attrs(Architecture::UNet, cfg),
        extra: [
            ("lr".to_string(), AttrValue::Float(1e-3)),
            ("note".to_string(), AttrValue::from("résumé ✓")),
        ]
        .into_iter()
        .collect(),
    }
}

#[test]
fn save_then_load_gives_identical_tensors_and_metadata() {
    let dir = scratch("roundtrip");
    let path = dir.join("model.h5");
    let mut a = training(1);
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    train_step(&mut a, &mut adam, 0);
    let state = adam.export_state(&a.exec).unwrap();
    save_checkpoint(&path, &a.exec, Some(&state), &meta(&a.cfg)).unwrap();

    let mut b = training(2);
    assert_ne!(all_tensors(&a.exec), all_tensors(&b.exec));
    let ckpt = load_checkpoint(&path, &mut b.exec).unwrap();
    assert_eq!(all_tensors(&a.exec), all_tensors(&b.exec));
    assert_eq!(b.exec.step(), a.exec.step());
    assert_eq!(ckpt.meta, meta(&a.cfg));
    assert_eq!(ckpt.optimizer.as_ref(), Some(&state));
    assert_eq!(
        model_config_from_attrs(&path, &ckpt.meta.config).unwrap().1,
        a.cfg
    );

    // The file is in PyTorch's layout: conv weights [out, in, kh, kw], num_batches_tracked int64.
    let r = H5Reader::open(&path).unwrap();
    assert_eq!(
        r.shape("state_dict/inc.double_conv.0.weight")
            .unwrap()
            .dims(),
        &[4, 3, 3, 3]
    );
    assert_eq!(
        r.shape("state_dict/up1.up.weight").unwrap().dims(),
        &[64, 32, 2, 2]
    );
    let (_, tracked) = r
        .read::<i64>("state_dict/inc.double_conv.1.num_batches_tracked")
        .unwrap();
    assert_eq!(tracked, vec![1]);
    assert_eq!(
        r.shape("optimizer/state/inc.double_conv.0.weight/exp_avg")
            .unwrap()
            .dims(),
        &[4, 3, 3, 3]
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn resumed_training_matches_uninterrupted_training_bit_for_bit() {
    let dir = scratch("resume");
    let path = dir.join("mid.h5");
    let config = AdamConfig::new(1e-2);

    let mut straight = training(7);
    let mut adam = Adam::new(config).unwrap();
    for step in 0..2 {
        train_step(&mut straight, &mut adam, step);
    }
    let state = adam.export_state(&straight.exec).unwrap();
    save_checkpoint(&path, &straight.exec, Some(&state), &meta(&straight.cfg)).unwrap();
    train_step(&mut straight, &mut adam, 2);

    let mut resumed = training(99);
    let ckpt = load_checkpoint(&path, &mut resumed.exec).unwrap();
    let mut adam2 = Adam::new(config).unwrap();
    adam2
        .import_state(&resumed.exec, ckpt.optimizer.as_ref().unwrap())
        .unwrap();
    train_step(&mut resumed, &mut adam2, ckpt.meta.step as usize);

    for ((name, a), (_, b)) in all_tensors(&straight.exec)
        .iter()
        .zip(all_tensors(&resumed.exec).iter())
    {
        let same = a
            .data()
            .iter()
            .zip(b.data())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name} differs after the resumed step");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn hdf5_reason(err: &Error, path: &Path) -> String {
    match err {
        Error::Hdf5 { path: p, reason } => {
            assert_eq!(p, path);
            assert!(err.to_string().contains(&path.display().to_string()));
            reason.clone()
        }
        other => panic!("expected an HDF5 error, got {other:?}"),
    }
}

/// A copy of the checkpoint at `from` without dataset `skip` of its state_dict.
fn copy_without(from: &Path, to: &Path, skip: &str) {
    let r = H5Reader::open(from).unwrap();
    let w = H5Writer::create(to).unwrap();
    for name in r.datasets("state_dict").unwrap() {
        if name == skip {
            continue;
        }
        let key = format!("state_dict/{name}");
        if name.ends_with("num_batches_tracked") {
            let (shape, v) = r.read::<i64>(&key).unwrap();
            w.write(&key, shape.dims(), &v, WriteOptions::default())
                .unwrap();
        } else {
            w.write_tensor(&key, &r.read_tensor(&key).unwrap(), WriteOptions::default())
                .unwrap();
        }
    }
    w.finish().unwrap();
}

#[test]
fn bad_files_are_typed_errors_naming_the_file() {
    let dir = scratch("badfiles");
    let good = dir.join("good.h5");
    let mut t = training(3);
    save_checkpoint(&good, &t.exec, None, &CheckpointMeta::default()).unwrap();
    let bytes = std::fs::read(&good).unwrap();

    let truncated = dir.join("truncated.h5");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let err = load_checkpoint(&truncated, &mut t.exec).unwrap_err();
    let reason = hdf5_reason(&err, &truncated);
    assert!(reason.contains("truncated"), "{reason}");

    let text = dir.join("notes.h5");
    std::fs::write(&text, "these are not tensors\n").unwrap();
    let err = load_checkpoint(&text, &mut t.exec).unwrap_err();
    assert!(hdf5_reason(&err, &text).contains("not an HDF5 file"));

    let empty = dir.join("empty.h5");
    std::fs::write(&empty, "").unwrap();
    let err = load_checkpoint(&empty, &mut t.exec).unwrap_err();
    assert!(hdf5_reason(&err, &empty).contains("not an HDF5 file"));

    let absent = dir.join("absent.h5");
    match load_checkpoint(&absent, &mut t.exec).unwrap_err() {
        Error::Io { path, .. } => assert_eq!(path, absent),
        other => panic!("{other:?}"),
    }

    let missing = dir.join("missing.h5");
    copy_without(&good, &missing, "outc.conv.bias");
    match load_checkpoint(&missing, &mut t.exec).unwrap_err() {
        Error::CheckpointKeys {
            path,
            missing,
            unexpected,
        } => {
            assert_eq!(path, dir.join("missing.h5"));
            assert_eq!(missing, vec!["outc.conv.bias".to_string()]);
            assert!(unexpected.is_empty());
        }
        other => panic!("{other:?}"),
    }

    // A checkpoint of a U-Net with bilinear upsampling has other keys and shapes.
    let bilinear = root().join("tests/fixtures/unet_base4_bilinear.h5");
    match load_checkpoint(&bilinear, &mut t.exec).unwrap_err() {
        Error::CheckpointKeys {
            missing,
            unexpected,
            ..
        } => {
            assert!(
                missing.contains(&"up1.up.weight".to_string()),
                "{missing:?}"
            );
            assert!(unexpected.is_empty(), "{unexpected:?}");
        }
        other => panic!("{other:?}"),
    }

    // Three classes instead of two: the out conv's shapes differ.
    let mut g = Graph::<CpuBackend>::new();
    let cfg = UNetConfig {
        classes: 3,
        ..t.cfg
    };
    UNet::build(&mut g, cfg, 1, SIZE, SIZE).unwrap();
    let mut other = Executor::new(CpuBackend::new(), g, 0).unwrap();
    let before = all_tensors(&other);
    let err = load_checkpoint(&good, &mut other).unwrap_err();
    let reason = hdf5_reason(&err, &good);
    assert!(
        reason.contains("outc.conv.weight") && reason.contains("[3, 4, 1, 1]"),
        "{reason}"
    );
    assert_eq!(before, all_tensors(&other), "a failed load changed tensors");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_failed_save_leaves_the_existing_checkpoint_intact() {
    let dir = scratch("failedsave");
    let path = dir.join("ckpt.h5");
    let mut t = training(4);
    let mut adam = Adam::new(AdamConfig::new(1e-2)).unwrap();
    train_step(&mut t, &mut adam, 0);
    save_checkpoint(&path, &t.exec, None, &CheckpointMeta::default()).unwrap();
    let before = std::fs::read(&path).unwrap();

    // Fails after the state_dict is written: an optimiser buffer of the wrong shape.
    let mut state: OptimizerState = adam.export_state(&t.exec).unwrap();
    state.entries[0].buffers[0].1 = HostTensor::zeros([1]);
    train_step(&mut t, &mut adam, 1);
    let err = save_checkpoint(&path, &t.exec, Some(&state), &CheckpointMeta::default());
    assert!(matches!(err, Err(Error::Hdf5 { .. })), "{err:?}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(files.len(), 1, "temporary files left behind: {files:?}");

    // A directory that does not exist: an I/O error naming the target.
    let nowhere = dir.join("no/such/dir/ckpt.h5");
    match save_checkpoint(&nowhere, &t.exec, None, &CheckpointMeta::default()).unwrap_err() {
        Error::Io { path, .. } => assert_eq!(path, nowhere),
        other => panic!("{other:?}"),
    }

    // An abandoned writer leaves the target alone too.
    let w = H5Writer::create(&path).unwrap();
    w.write_scalar("x", 1i64).unwrap();
    drop(w);
    assert_eq!(std::fs::read(&path).unwrap(), before);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn hdf5_tensors_groups_attributes_and_partial_reads() {
    let dir = scratch("h5api");
    let path = dir.join("arrays.h5");
    let w = H5Writer::create(&path).unwrap();
    let f32s: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    let f64s: Vec<f64> = (0..6).map(|i| i as f64 / 3.0).collect();
    let u8s: Vec<u8> = (0..=255).collect();
    let i64s: Vec<i64> = vec![-5, i64::MAX, 0];
    w.write("a/b/f32", &[2, 3, 4], &f32s, WriteOptions::default())
        .unwrap();
    w.write("a/f64", &[6], &f64s, WriteOptions::default())
        .unwrap();
    w.write("u8", &[16, 4, 4], &u8s, WriteOptions::gzip(5, 6))
        .unwrap();
    w.write("i64", &[3], &i64s, WriteOptions::default())
        .unwrap();
    w.create_empty::<f32>("stream", &[10, 2], WriteOptions::gzip(4, 4))
        .unwrap();
    for start in (0..10).step_by(3) {
        let n = 3.min(10 - start);
        let rows: Vec<f32> = (start * 2..(start + n) * 2).map(|v| v as f32).collect();
        w.write_rows("stream", start, &rows).unwrap();
    }
    w.set_attr("/", "title", &"arrays".into()).unwrap();
    w.set_attr("a", "count", &AttrValue::Int(-2)).unwrap();
    w.set_attr("a/b/f32", "scale", &AttrValue::Float(0.25))
        .unwrap();
    w.set_attr("a/b/f32", "dims", &AttrValue::Ints(vec![2, 3, 4]))
        .unwrap();
    w.set_attr(
        "a/b",
        "names",
        &AttrValue::Strs(vec!["x".into(), "y".into()]),
    )
    .unwrap();
    w.set_attr("/", "seed", &AttrValue::UInt(u64::MAX)).unwrap();
    w.set_attr("/", "title", &"replaced".into()).unwrap();
    assert!(matches!(
        w.write("bad", &[2, 2], &[1.0f32], WriteOptions::default()),
        Err(Error::Hdf5 { .. })
    ));
    w.finish().unwrap();

    let r = H5Reader::open(&path).unwrap();
    assert_eq!(r.read::<f32>("a/b/f32").unwrap().1, f32s);
    assert_eq!(r.read::<f64>("a/f64").unwrap().1, f64s);
    assert_eq!(r.read::<u8>("u8").unwrap().1, u8s);
    assert_eq!(r.read::<i64>("i64").unwrap().1, i64s);
    let (shape, rows) = r.read_rows::<u8>("u8", 3..7).unwrap();
    assert_eq!(shape.dims(), &[4, 4, 4]);
    assert_eq!(rows, u8s[48..112].to_vec());
    let (_, rows) = r.read_rows::<f32>("a/b/f32", 1..2).unwrap();
    assert_eq!(rows, f32s[12..].to_vec());
    let (_, stream) = r.read::<f32>("stream").unwrap();
    assert_eq!(stream, (0..20).map(|v| v as f32).collect::<Vec<_>>());
    assert_eq!(r.members("/").unwrap(), ["a", "i64", "stream", "u8"]);
    assert_eq!(r.datasets("a").unwrap(), ["f64"]);

    assert_eq!(r.attr("/", "title").unwrap(), Some("replaced".into()));
    assert_eq!(
        r.attr("/", "seed").unwrap(),
        Some(AttrValue::UInt(u64::MAX))
    );
    assert_eq!(r.attr("a", "count").unwrap(), Some(AttrValue::Int(-2)));
    assert_eq!(r.attr("a", "absent").unwrap(), None);
    let attrs = r.attrs("a/b/f32").unwrap();
    assert_eq!(attrs["scale"], AttrValue::Float(0.25));
    assert_eq!(attrs["dims"], AttrValue::Ints(vec![2, 3, 4]));
    assert_eq!(
        r.attr("a/b", "names").unwrap(),
        Some(AttrValue::Strs(vec!["x".into(), "y".into()]))
    );

    for (err, what) in [
        (r.read::<f64>("a/b/f32").unwrap_err(), "holds float32"),
        (r.read::<f32>("a/nothing").unwrap_err(), "missing dataset"),
        (r.read_rows::<u8>("u8", 10..17).unwrap_err(), "out of"),
        (r.read_tensor("a").unwrap_err(), "not a dataset"),
    ] {
        assert!(hdf5_reason(&err, &path).contains(what), "{err}");
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn hdf5_segmentation_dataset_and_predictions() {
    use magnet::data::{Dataset, Hdf5Segmentation, Hdf5SegmentationConfig};
    use magnet::io::PredictionWriter;

    let dir = scratch("h5data");
    let path = dir.join("set.h5");
    let (n, c, h, w) = (5, 3, 4, 6);
    let images: Vec<u8> = (0..n * c * h * w).map(|i| (i % 251) as u8).collect();
    let masks: Vec<u8> = (0..n * h * w)
        .map(|i| if i % 7 == 0 { 255 } else { (i % 3) as u8 })
        .collect();
    let wr = H5Writer::create(&path).unwrap();
    wr.write("images", &[n, c, h, w], &images, WriteOptions::gzip(2, 4))
        .unwrap();
    wr.write("masks", &[n, h, w], &masks, WriteOptions::default())
        .unwrap();
    wr.set_attr("images", "layout", &"NCHW".into()).unwrap();
    wr.finish().unwrap();

    let set = Hdf5Segmentation::open(&path, Hdf5SegmentationConfig::default()).unwrap();
    assert_eq!((set.len(), set.classes()), (n, 3));
    let s = set.get(3).unwrap();
    assert_eq!((s.height, s.width, s.channels), (h, w, c));
    assert_eq!(s.mask, masks[3 * h * w..4 * h * w].to_vec());
    for (y, x, ch) in [(0, 0, 0), (1, 5, 2), (3, 2, 1)] {
        let want = images[((3 * c + ch) * h + y) * w + x] as f32 / 255.0;
        assert_eq!(s.image[(y * w + x) * c + ch], want);
    }
    assert!(set.get(n).is_err());

    // Predictions: NHWC logits in, NCHW logits and arg-max masks out.
    let out = dir.join("pred.h5");
    let mut pw = PredictionWriter::create(&out, 3, h, w, 2).unwrap();
    let logits = |b: usize, offset: f32| {
        let data = (0..b * h * w * 2)
            .map(|i| ((i * 37) % 11) as f32 + offset)
            .collect();
        HostTensor::new([b, h, w, 2], data).unwrap()
    };
    let first = logits(2, 0.0);
    pw.write_batch(&first).unwrap();
    pw.write_batch(&logits(1, 0.5)).unwrap();
    assert!(pw.write_batch(&logits(1, 0.0)).is_err());
    pw.finish().unwrap();
    let r = H5Reader::open(&out).unwrap();
    let (shape, nchw) = r.read::<f32>("logits").unwrap();
    assert_eq!(shape.dims(), &[3, 2, h, w]);
    let (_, mask) = r.read_rows::<u8>("masks", 0..2).unwrap();
    for (p, (&m, scores)) in mask.iter().zip(first.data().chunks(2)).enumerate() {
        let (image, pixel) = (p / (h * w), p % (h * w));
        assert_eq!(nchw[(image * 2 + 1) * h * w + pixel], scores[1]);
        assert_eq!(m, u8::from(scores[1] > scores[0]));
    }
    std::fs::remove_dir_all(dir).unwrap();
}
