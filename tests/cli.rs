//! The `magnet` command end to end on a small image folder: export to HDF5, train from the HDF5
//! file, evaluate (JSON), predict PNGs with tiling and predictions into HDF5, and clear errors on
//! bad input.

#![cfg(feature = "hdf5")]

use std::path::Path;
use std::process::{Command, Output};

fn magnet(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_magnet"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("magnet runs")
}

fn ok(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "magnet failed:\n{text}");
    text
}

/// `images/i.png` (RGB, a bright square on a dark noisy background) and `masks/i.png` (255 inside).
fn write_folder(root: &Path, count: usize, size: u32) {
    std::fs::create_dir_all(root.join("images")).unwrap();
    std::fs::create_dir_all(root.join("masks")).unwrap();
    for i in 0..count as u32 {
        let (x0, y0) = (3 + (i * 5) % 12, 4 + (i * 7) % 10);
        let inside = |x: u32, y: u32| (x0..x0 + 14).contains(&x) && (y0..y0 + 12).contains(&y);
        let image = image::RgbImage::from_fn(size, size, |x, y| {
            let noise = ((x * 31 + y * 17 + i * 13) % 40) as u8;
            if inside(x, y) {
                image::Rgb([200 + noise / 2, 180, 160])
            } else {
                image::Rgb([30 + noise, 40, 50])
            }
        });
        let mask = image::GrayImage::from_fn(size, size, |x, y| {
            image::Luma([if inside(x, y) { 255 } else { 0 }])
        });
        image.save(root.join(format!("images/{i}.png"))).unwrap();
        mask.save(root.join(format!("masks/{i}.png"))).unwrap();
    }
}

#[test]
fn export_train_eval_predict_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_folder(&root.join("data"), 10, 40);

    let out = ok(&magnet(
        &[
            "export-data",
            "--data",
            "data",
            "--size",
            "32",
            "--output",
            "data.h5",
        ],
        root,
    ));
    assert!(out.contains("wrote 10 images"), "{out}");

    let train = [
        "train",
        "--data",
        "data.h5",
        "--size",
        "32",
        "--batch",
        "4",
        "--epochs",
        "3",
        "--base-channels",
        "4",
        "--out",
        "run",
        "--val-fraction",
        "0.2",
    ];
    let out = ok(&magnet(&train, root));
    assert!(out.contains("best validation mIoU"), "{out}");
    for file in ["best.h5", "last.h5", "log.csv", "curves.png"] {
        assert!(root.join("run").join(file).is_file(), "{file} missing");
    }

    let eval = [
        "eval",
        "--weights",
        "run/best.h5",
        "--data",
        "data",
        "--size",
        "32",
        "--all",
        "--json",
    ];
    let out = ok(&magnet(&eval, root));
    let json: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(json["images"], 10);
    let accuracy = json["dataset_level"]["pixel_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&accuracy));
    assert!(json["mean_per_image"]["mean_iou"].is_number());

    // A 40×40 image with 16-pixel tiles goes through the tiled path.
    let predict = [
        "predict",
        "--weights",
        "run/best.h5",
        "--input",
        "data/images",
        "--output",
        "pred",
        "--tile",
        "16",
    ];
    ok(&magnet(&predict, root));
    let mask = image::open(root.join("pred/3_mask.png"))
        .unwrap()
        .to_luma8();
    assert_eq!(mask.dimensions(), (40, 40));
    assert!(mask.pixels().all(|p| p.0[0] == 0 || p.0[0] == 255));
    assert_eq!(
        image::open(root.join("pred/3_overlay.png"))
            .unwrap()
            .to_rgb8()
            .dimensions(),
        (40, 40)
    );

    let predict = [
        "predict",
        "--weights",
        "run/best.h5",
        "--input",
        "data.h5",
        "--output",
        "pred.h5",
    ];
    ok(&magnet(&predict, root));
    let reader = magnet::io::H5Reader::open(root.join("pred.h5")).unwrap();
    assert_eq!(reader.shape("logits").unwrap().dims(), &[10, 2, 32, 32]);
    assert_eq!(reader.shape("masks").unwrap().dims(), &[10, 32, 32]);
}

#[test]
fn bad_input_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write_folder(&root.join("data"), 4, 32);
    std::fs::write(root.join("data/images/4.png"), b"not a png").unwrap();
    std::fs::write(root.join("data/masks/4.png"), b"not a png").unwrap();
    std::fs::write(root.join("notes.h5"), b"not hdf5").unwrap();
    for (args, needle) in [
        (vec!["train", "--data", "missing"], "missing"),
        (
            vec![
                "train", "--data", "data", "--size", "32", "--batch", "2", "--epochs", "1",
            ],
            "4.png",
        ),
        (vec!["train", "--size", "40"], "multiple of 16"),
        // Each worker the launcher starts refuses the CPU (or a build without CUDA); the
        // launcher stops the others and names the failed rank.
        (
            vec!["train", "--gpus", "2", "--epochs", "1"],
            "distributed rank",
        ),
        (vec!["eval", "--weights", "notes.h5"], "notes.h5"),
        (
            vec!["bench", "--backend", "cpu", "--fp32-conv-scratch", "1"],
            "does not apply to the cpu backend",
        ),
        (
            vec!["bench", "--backend", "cuda", "--fp32-conv-scratch=-1"],
            "neither a multiple",
        ),
        (
            vec![
                "bench",
                "--backend",
                "cpu",
                "--fp32-conv-scratch-fit",
                "0.1",
            ],
            "--fp32-conv-scratch-fit does not apply to the cpu backend",
        ),
        (
            vec!["bench", "--fp32-conv-scratch-fit", "0.1", "--warmup", "1"],
            "at least 2 warm-up steps",
        ),
        (
            vec![
                "bench",
                "--fp32-conv-scratch-fit",
                "0.1",
                "--fp32-conv-scratch",
                "1",
            ],
            "cannot be used with",
        ),
        (vec!["bench", "--conv-report", "ways.csv"], "--profile"),
        (
            vec![
                "bench",
                "--backend",
                "cpu",
                "--profile",
                "--conv-report",
                "ways.csv",
                "--size",
                "32",
                "--base",
                "4",
                "--batches",
                "1",
                "--modes",
                "fp32",
                "--warmup",
                "1",
                "--repeats",
                "1",
            ],
            "reports no convolution tunings",
        ),
        (
            vec![
                "predict",
                "--weights",
                "nothing.h5",
                "--input",
                "data/images",
                "--output",
                "p",
            ],
            "nothing.h5",
        ),
    ] {
        let out = magnet(&args, root);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
