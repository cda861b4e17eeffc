//! Classification data: MNIST IDX (plain and gzip), CIFAR-10/100 binary records and class
//! folders, on files written by hand, and the real Fashion-MNIST when it is installed.

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use image::{GrayImage, Luma, Rgb, RgbImage};
use magnet::data::{
    read_idx, Channels, Cifar, CifarLabels, ClassFolder, ClassFolderConfig, ClassificationDataset,
    Mnist, Split,
};
use tempfile::TempDir;

#[track_caller]
fn assert_err_names<T: std::fmt::Debug>(result: magnet::Result<T>, file: &str) {
    match result {
        Ok(v) => panic!("expected an error naming {file}, got Ok({v:?})"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.contains(file), "error {msg:?} does not name {file}");
        }
    }
}

/// An IDX file of unsigned bytes with the given dimensions and data.
fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Three 2×3 images whose pixels are `image * 10 + pixel`, labels 4, 0, 9.
fn mnist_files(dir: &Path, prefix: &str, gz: bool) {
    let pixels: Vec<u8> = (0..3)
        .flat_map(|i| (0..6).map(move |p| i * 10 + p))
        .collect();
    let images = idx(&[3, 2, 3], &pixels);
    let labels = idx(&[3], &[4, 0, 9]);
    let (images, labels, ext) = if gz {
        (gzip(&images), gzip(&labels), ".gz")
    } else {
        (images, labels, "")
    };
    std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte{ext}")), images).unwrap();
    std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")), labels).unwrap();
}

#[test]
fn mnist_reads_plain_and_gzip_idx() {
    let dir = TempDir::new().unwrap();
    mnist_files(dir.path(), "train", false);
    mnist_files(dir.path(), "t10k", true);
    for split in [Split::Train, Split::Test] {
        let set = Mnist::new(dir.path(), split).unwrap();
        assert_eq!(
            (set.len(), set.classes(), set.image_size()),
            (3, 10, (2, 3))
        );
        assert_eq!(set.labels(), &[4, 0, 9]);
        let item = set.get(1).unwrap();
        assert_eq!(item.label, 0);
        assert_eq!(item.image.shape().dims(), &[2, 3, 1]);
        assert_eq!(item.image.data()[5], 15.0 / 255.0);
        assert!(set.get(3).is_err());
        let (images, labels) = set.batch(&[2, 0]).unwrap();
        assert_eq!(images.shape().dims(), &[2, 2, 3, 1]);
        assert_eq!(labels.data(), &[9.0, 4.0]);
    }
    let raw = read_idx(dir.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!((raw.dims, raw.data), (vec![3], vec![4, 0, 9]));
}

#[test]
fn idx_header_disagreeing_with_the_length_is_an_error() {
    let dir = TempDir::new().unwrap();
    let short = dir.path().join("short-idx3-ubyte");
    std::fs::write(&short, idx(&[3, 2, 3], &[0; 17])).unwrap();
    assert_err_names(read_idx(&short), "short-idx3-ubyte");
    let gz = dir.path().join("long-idx3-ubyte.gz");
    std::fs::write(&gz, gzip(&idx(&[1, 2, 2], &[0; 5]))).unwrap();
    assert_err_names(read_idx(&gz), "long-idx3-ubyte.gz");
    // Sizes whose product overflows.
    let huge = dir.path().join("huge-idx3-ubyte");
    std::fs::write(&huge, idx(&[u32::MAX, u32::MAX, u32::MAX], &[0; 4])).unwrap();
    assert_err_names(read_idx(&huge), "huge-idx3-ubyte");
    let magic = dir.path().join("magic-idx1-ubyte");
    std::fs::write(&magic, b"\x01\x02\x08\x01\0\0\0\x01x").unwrap();
    assert_err_names(read_idx(&magic), "magic-idx1-ubyte");
    let corrupt = dir.path().join("corrupt.gz");
    std::fs::write(&corrupt, b"\x1f\x8b\x08garbage").unwrap();
    assert_err_names(read_idx(&corrupt), "corrupt.gz");
}

#[test]
fn mnist_label_count_or_rank_mismatch_is_an_error() {
    let dir = TempDir::new().unwrap();
    let images = dir.path().join("images-idx3-ubyte");
    let labels = dir.path().join("labels-idx1-ubyte");
    std::fs::write(&images, idx(&[2, 1, 1], &[0, 1])).unwrap();
    std::fs::write(&labels, idx(&[3], &[0, 1, 2])).unwrap();
    assert_err_names(Mnist::from_files(&images, &labels), "labels-idx1-ubyte");
    std::fs::write(&labels, idx(&[2], &[0, 1])).unwrap();
    assert_err_names(Mnist::from_files(&labels, &labels), "labels-idx1-ubyte");
    assert!(Mnist::from_files(&images, &labels).is_ok());
    assert_err_names(
        Mnist::new(dir.path(), Split::Train),
        "train-images-idx3-ubyte",
    );
}

#[test]
fn fashion_mnist_when_installed() {
    let dir = Path::new("/usr/share/datasets/fashion-mnist");
    if !dir.join("t10k-images-idx3-ubyte.gz").is_file() {
        eprintln!(
            "SKIPPED fashion_mnist_when_installed: {} is absent \
             (apt-get install dataset-fashion-mnist)",
            dir.display()
        );
        return;
    }
    let test = Mnist::new(dir, Split::Test).unwrap();
    assert_eq!(
        (test.len(), test.classes(), test.image_size()),
        (10_000, 10, (28, 28))
    );
    let mut counts = [0usize; 10];
    for &l in test.labels() {
        counts[l as usize] += 1;
    }
    assert_eq!(counts, [1000; 10], "Fashion-MNIST's test set is balanced");
    let item = test.get(0).unwrap();
    assert_eq!(item.image.shape().dims(), &[28, 28, 1]);
    assert!(item.image.data().iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(item.image.data().iter().any(|&v| v > 0.5));
    let train = Mnist::new(dir, Split::Train).unwrap();
    assert_eq!(train.len(), 60_000);
}

/// A CIFAR record: label bytes, then planes R = 10 + p % 7, G = 100, B = 200 - p % 5.
fn cifar_record(labels: &[u8]) -> Vec<u8> {
    let mut rec = labels.to_vec();
    rec.extend((0..1024).map(|p| 10 + (p % 7) as u8));
    rec.extend(std::iter::repeat_n(100, 1024));
    rec.extend((0..1024).map(|p| 200 - (p % 5) as u8));
    rec
}

#[test]
fn cifar10_records_become_channels_last_images() {
    let dir = TempDir::new().unwrap();
    let mut bytes = cifar_record(&[3]);
    bytes.extend(cifar_record(&[9]));
    std::fs::write(dir.path().join("test_batch.bin"), &bytes).unwrap();
    let set = Cifar::cifar10(dir.path(), Split::Test).unwrap();
    assert_eq!(
        (set.len(), set.classes(), set.labels()),
        (2, 10, &[3u8, 9][..])
    );
    let item = set.get(1).unwrap();
    assert_eq!(item.label, 9);
    assert_eq!(item.image.shape().dims(), &[32, 32, 3]);
    // Pixel (row 1, col 2) = p 34: R 10 + 34 % 7 = 16, G 100, B 200 - 34 % 5 = 196.
    let px = &item.image.data()[(32 + 2) * 3..][..3];
    assert_eq!(px, &[16.0 / 255.0, 100.0 / 255.0, 196.0 / 255.0]);
    assert_err_names(Cifar::cifar10(dir.path(), Split::Train), "data_batch_1.bin");
}

#[test]
fn cifar100_coarse_or_fine_labels() {
    let dir = TempDir::new().unwrap();
    let mut bytes = cifar_record(&[19, 99]);
    bytes.extend(cifar_record(&[0, 42]));
    std::fs::write(dir.path().join("train.bin"), &bytes).unwrap();
    let coarse = Cifar::cifar100(dir.path(), Split::Train, CifarLabels::Cifar100Coarse).unwrap();
    let fine = Cifar::cifar100(dir.path(), Split::Train, CifarLabels::Cifar100Fine).unwrap();
    assert_eq!((coarse.classes(), coarse.labels()), (20, &[19u8, 0][..]));
    assert_eq!((fine.classes(), fine.labels()), (100, &[99u8, 42][..]));
    assert_eq!(fine.get(0).unwrap().image, coarse.get(0).unwrap().image);
}

#[test]
fn cifar_bad_length_or_label_is_an_error() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("data_batch_1.bin");
    let mut bytes = cifar_record(&[1]);
    bytes.push(0);
    std::fs::write(&path, &bytes).unwrap();
    assert_err_names(
        Cifar::from_files(&[&path], CifarLabels::Cifar10),
        "data_batch_1.bin",
    );
    // A CIFAR-100 file read as CIFAR-10 is off by one byte per record.
    std::fs::write(&path, cifar_record(&[1, 2])).unwrap();
    assert_err_names(
        Cifar::from_files(&[&path], CifarLabels::Cifar10),
        "data_batch_1.bin",
    );
    std::fs::write(&path, cifar_record(&[10])).unwrap();
    assert_err_names(
        Cifar::from_files(&[&path], CifarLabels::Cifar10),
        "data_batch_1.bin",
    );
    std::fs::write(&path, b"").unwrap();
    assert_err_names(
        Cifar::from_files(&[&path], CifarLabels::Cifar10),
        "data_batch_1.bin",
    );
}

#[test]
fn class_folder_numbers_classes_by_sorted_name() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    for class in ["dog", "ant", "cat", "empty"] {
        std::fs::create_dir_all(root.join(class)).unwrap();
    }
    RgbImage::from_fn(4, 3, |x, _| Rgb([x as u8 * 60, 0, 0]))
        .save(root.join("dog/d1.png"))
        .unwrap();
    GrayImage::from_fn(5, 5, |_, _| Luma([51]))
        .save(root.join("ant/a1.png"))
        .unwrap();
    RgbImage::from_fn(6, 2, |_, _| Rgb([9, 9, 9]))
        .save(root.join("cat/c1.jpg"))
        .unwrap();
    std::fs::write(root.join("cat/readme.txt"), "not an image").unwrap();
    std::fs::write(root.join("stray.png"), "files at the root are no class").unwrap();

    let set = ClassFolder::new(root, ClassFolderConfig::default()).unwrap();
    assert_eq!(set.class_names(), &["ant", "cat", "dog", "empty"]);
    assert_eq!((set.len(), set.classes()), (3, 4));
    let labels: Vec<usize> = (0..3).map(|i| set.get(i).unwrap().label).collect();
    assert_eq!(labels, [0, 1, 2]);
    let ant = set.get(0).unwrap();
    assert_eq!(
        ant.image.shape().dims(),
        &[5, 5, 3],
        "gray converted to RGB"
    );
    assert_eq!(ant.image.data()[0], 0.2);
    assert!(set.batch(&[0, 2]).is_err(), "sizes differ");

    let sized = ClassFolder::new(
        root,
        ClassFolderConfig {
            channels: Channels::Gray,
            size: Some((8, 8)),
        },
    )
    .unwrap();
    let (images, labels) = sized.batch(&[0, 1, 2]).unwrap();
    assert_eq!(images.shape().dims(), &[3, 8, 8, 1]);
    assert_eq!(labels.data(), &[0.0, 1.0, 2.0]);

    std::fs::write(root.join("dog/d1.png"), "corrupt").unwrap();
    assert_err_names(set.get(2), "d1.png");
}

#[test]
fn class_folder_without_images_is_an_error() {
    let dir = TempDir::new().unwrap();
    assert_err_names(
        ClassFolder::new(dir.path().join("absent"), Default::default()),
        "absent",
    );
    std::fs::create_dir_all(dir.path().join("only/empty")).unwrap();
    assert_err_names(
        ClassFolder::new(dir.path().join("only"), Default::default()),
        "only",
    );
}
