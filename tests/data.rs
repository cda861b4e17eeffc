//! Segmentation data sets, transforms and the batch loader, on tiny layouts written to a
//! temporary folder, and on the real ISBI 2012 slices when they are present.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use image::{GrayImage, Luma, Rgb, RgbImage};
use magnet::data::transform::{self, Pipeline};
use magnet::data::{
    split, BatchLoader, Carvana, Channels, ClassMap, Dataset, ImageMaskFolder,
    ImageMaskFolderConfig, Isbi2012, Isbi2012Config, IsbiForeground, LoaderConfig, OxfordPet,
    OxfordPetConfig, PetSplit, Sample, Shard, Synthetic, SyntheticConfig, Transformed,
    TrimapBorder, IGNORE_INDEX,
};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------------
// Helpers that write tiny layouts.

fn mkdir(path: &Path) {
    std::fs::create_dir_all(path).unwrap();
}

/// A `w × h` gray PNG (or GIF/JPEG by extension) whose pixel (x, y) is `f(x, y)`.
fn write_gray(path: &Path, w: u32, h: u32, f: impl Fn(u32, u32) -> u8) {
    mkdir(path.parent().unwrap());
    let img = GrayImage::from_fn(w, h, |x, y| Luma([f(x, y)]));
    if path.extension().is_some_and(|e| e == "gif") {
        // GIF encodes colour images only.
        image::DynamicImage::ImageLuma8(img)
            .to_rgb8()
            .save(path)
            .unwrap();
    } else {
        img.save(path).unwrap();
    }
}

/// A `w × h` colour image (format by extension) with a smooth gradient.
fn write_rgb(path: &Path, w: u32, h: u32) {
    mkdir(path.parent().unwrap());
    RgbImage::from_fn(w, h, |x, y| Rgb([(x * 40) as u8, (y * 40) as u8, 128]))
        .save(path)
        .unwrap();
}

/// A binary mask: 255 on the left half, 0 elsewhere.
fn half_mask(x: u32, w: u32) -> u8 {
    if x < w / 2 {
        255
    } else {
        0
    }
}

/// Asserts that `result` is an error whose message names `file`.
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

/// `images/` with a.png (gray 6×4), b.jpg (colour 6×4), c.png; masks a.png, b.png, c.gif.
fn folder_layout() -> TempDir {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write_gray(&root.join("images/a.png"), 6, 4, |x, y| (x * 10 + y) as u8);
    write_rgb(&root.join("images/b.jpg"), 6, 4);
    write_gray(&root.join("images/c.png"), 6, 4, |_, _| 7);
    for name in ["masks/a.png", "masks/b.png", "masks/c.gif"] {
        write_gray(&root.join(name), 6, 4, |x, _| half_mask(x, 6));
    }
    dir
}

fn config(channels: Channels) -> ImageMaskFolderConfig {
    ImageMaskFolderConfig {
        channels,
        ..Default::default()
    }
}

// ---------------------------------------------------------------------------------------------
// ImageMaskFolder.

#[test]
fn image_mask_folder_pairs_by_stem_and_maps_classes() {
    let dir = folder_layout();
    let set = ImageMaskFolder::new(dir.path(), config(Channels::Auto)).unwrap();
    assert_eq!(set.len(), 3);
    assert_eq!(set.classes(), 2);
    let names: Vec<_> = (0..3)
        .map(|i| set.paths(i).unwrap().1.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["a.png", "b.png", "c.gif"]);

    let a = set.get(0).unwrap();
    assert_eq!((a.height, a.width, a.channels), (4, 6, 1));
    assert_eq!(a.image[6 + 2], 21.0 / 255.0, "pixel (x 2, y 1) of a.png");
    assert_eq!(&a.mask[..6], &[1, 1, 1, 0, 0, 0]);
    let b = set.get(1).unwrap();
    assert_eq!(b.channels, 3, "a colour JPEG keeps three channels");
    let c = set.get(2).unwrap();
    assert_eq!(&c.mask[..6], &[1, 1, 1, 0, 0, 0], "GIF mask");
}

#[test]
fn image_mask_folder_converts_channels() {
    let dir = folder_layout();
    let gray = ImageMaskFolder::new(dir.path(), config(Channels::Gray)).unwrap();
    let rgb = ImageMaskFolder::new(dir.path(), config(Channels::Rgb)).unwrap();
    for i in 0..3 {
        assert_eq!(gray.get(i).unwrap().channels, 1);
        let s = rgb.get(i).unwrap();
        assert_eq!(s.channels, 3);
        assert_eq!(s.image.len(), 4 * 6 * 3);
    }
    let a = rgb.get(0).unwrap();
    let v = 21.0 / 255.0;
    assert_eq!(&a.image[(6 + 2) * 3..][..3], &[v, v, v], "gray replicated");
}

#[test]
fn image_mask_folder_missing_folder_is_an_error() {
    let dir = TempDir::new().unwrap();
    write_gray(&dir.path().join("masks/a.png"), 2, 2, |_, _| 0);
    assert_err_names(
        ImageMaskFolder::new(dir.path(), Default::default()),
        "images",
    );
}

#[test]
fn image_without_mask_is_an_error_at_construction() {
    let dir = folder_layout();
    write_gray(&dir.path().join("images/lonely.png"), 6, 4, |_, _| 0);
    assert_err_names(
        ImageMaskFolder::new(dir.path(), Default::default()),
        "lonely.png",
    );
}

#[test]
fn two_masks_for_one_image_is_an_error() {
    let dir = folder_layout();
    write_gray(&dir.path().join("masks/a.gif"), 6, 4, |_, _| 0);
    assert_err_names(ImageMaskFolder::new(dir.path(), Default::default()), "a.");
}

#[test]
fn empty_image_folder_is_an_error() {
    let dir = TempDir::new().unwrap();
    mkdir(&dir.path().join("images"));
    mkdir(&dir.path().join("masks"));
    // A file that is not an image does not count.
    std::fs::write(dir.path().join("images/notes.txt"), "x").unwrap();
    let err = ImageMaskFolder::new(dir.path(), Default::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("images") && msg.contains("empty"), "{msg}");
}

#[test]
fn mask_of_another_size_is_an_error_at_get() {
    let dir = folder_layout();
    write_gray(&dir.path().join("masks/a.png"), 5, 4, |_, _| 0);
    let set = ImageMaskFolder::new(dir.path(), Default::default()).unwrap();
    assert_err_names(set.get(0), "a.png");
    assert!(set.get(1).is_ok(), "other samples still load");
}

#[test]
fn corrupt_image_is_an_error_at_get() {
    let dir = folder_layout();
    std::fs::write(dir.path().join("images/c.png"), b"not a png at all").unwrap();
    let set = ImageMaskFolder::new(dir.path(), Default::default()).unwrap();
    assert_err_names(set.get(2), "c.png");
    // A truncated PNG, too.
    let good = std::fs::read(dir.path().join("images/a.png")).unwrap();
    std::fs::write(dir.path().join("images/a.png"), &good[..good.len() / 2]).unwrap();
    assert_err_names(set.get(0), "a.png");
}

#[test]
fn mask_value_outside_the_mapping_is_an_error_naming_file_and_value() {
    let dir = folder_layout();
    write_gray(&dir.path().join("masks/b.png"), 6, 4, |x, _| {
        if x == 3 {
            7
        } else {
            0
        }
    });
    let set = ImageMaskFolder::new(dir.path(), Default::default()).unwrap();
    let msg = set.get(1).unwrap_err().to_string();
    assert!(msg.contains("b.png") && msg.contains("value 7"), "{msg}");
}

#[test]
fn class_map_options() {
    let map = ClassMap::new(&[(0, 0), (128, 1), (255, IGNORE_INDEX)]).unwrap();
    assert_eq!(map.classes(), 2);
    assert_eq!(map.get(255), Some(IGNORE_INDEX));
    assert_eq!(map.get(1), None);
    assert_eq!(ClassMap::identity(3).unwrap().classes(), 3);
    assert_eq!(ClassMap::nonzero().get(17), Some(1));
    assert!(ClassMap::new(&[(0, 0), (0, 1)]).is_err());
    assert!(ClassMap::new(&[(0, IGNORE_INDEX)]).is_err());
    assert!(ClassMap::identity(0).is_err());
    assert_eq!(format!("{:?}", ClassMap::nonzero()), "{0→0, 1..=255→1}");
}

// ---------------------------------------------------------------------------------------------
// Oxford-IIIT Pet.

/// Two pets, 5×3 and 4×6; trimap column 0 is pet (1), column 1 border (3), the rest background (2).
fn pet_layout() -> TempDir {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    for (name, w, h) in [("Abyssinian_1", 5, 3), ("beagle_2", 4, 6)] {
        write_rgb(&root.join(format!("images/{name}.jpg")), w, h);
        write_gray(
            &root.join(format!("annotations/trimaps/{name}.png")),
            w,
            h,
            |x, _| match x {
                0 => 1,
                1 => 3,
                _ => 2,
            },
        );
    }
    // The archive carries resource-fork files and a few non-images: skipped.
    std::fs::write(root.join("annotations/trimaps/._beagle_2.png"), b"junk").unwrap();
    std::fs::write(root.join("images/beagle_9.mat"), b"junk").unwrap();
    std::fs::write(root.join("annotations/trainval.txt"), "beagle_2 13 2 1\n\n").unwrap();
    std::fs::write(root.join("annotations/test.txt"), "Abyssinian_1 1 1 1\n").unwrap();
    dir
}

#[test]
fn oxford_pet_maps_the_trimap_with_border_ignored_or_pet() {
    let dir = pet_layout();
    let set = OxfordPet::new(dir.path(), OxfordPetConfig::default()).unwrap();
    assert_eq!((set.len(), set.classes()), (2, 2));
    let s = set.get(0).unwrap();
    assert_eq!((s.height, s.width, s.channels), (3, 5, 3));
    assert_eq!(&s.mask[..5], &[1, IGNORE_INDEX, 0, 0, 0]);

    let pet = OxfordPet::new(
        dir.path(),
        OxfordPetConfig {
            border: TrimapBorder::Pet,
            ..Default::default()
        },
    )
    .unwrap();
    let s = pet.get(1).unwrap();
    assert_eq!((s.height, s.width), (6, 4));
    assert_eq!(&s.mask[..4], &[1, 1, 0, 0]);
}

#[test]
fn oxford_pet_splits_follow_the_list_files() {
    let dir = pet_layout();
    let split_of = |split| {
        let set = OxfordPet::new(
            dir.path(),
            OxfordPetConfig {
                split,
                ..Default::default()
            },
        )
        .unwrap();
        let (image, _) = set.files().paths(0).unwrap();
        (set.len(), image.file_name().unwrap().to_owned())
    };
    assert_eq!(split_of(PetSplit::TrainVal), (1, "beagle_2.jpg".into()));
    assert_eq!(split_of(PetSplit::Test), (1, "Abyssinian_1.jpg".into()));

    std::fs::write(dir.path().join("annotations/test.txt"), "sphynx_7 1 1 1\n").unwrap();
    let err = OxfordPet::new(
        dir.path(),
        OxfordPetConfig {
            split: PetSplit::Test,
            ..Default::default()
        },
    );
    assert_err_names(err, "test.txt");
}

#[test]
fn oxford_pet_image_without_trimap_is_an_error() {
    let dir = pet_layout();
    write_rgb(&dir.path().join("images/pug_3.jpg"), 4, 4);
    assert_err_names(OxfordPet::new(dir.path(), Default::default()), "pug_3.jpg");
}

#[test]
fn oxford_pet_trimap_value_outside_1_to_3_is_an_error() {
    let dir = pet_layout();
    write_gray(
        &dir.path().join("annotations/trimaps/beagle_2.png"),
        4,
        6,
        |_, _| 0,
    );
    let set = OxfordPet::new(dir.path(), Default::default()).unwrap();
    assert_err_names(set.get(1), "beagle_2.png");
}

// ---------------------------------------------------------------------------------------------
// Carvana.

#[test]
fn carvana_reads_gif_and_png_masks_as_nonzero_foreground() {
    let dir = TempDir::new().unwrap();
    let root = dir.path();
    write_rgb(&root.join("imgs/0cdf5b5d0ce1_01.jpg"), 6, 4);
    write_rgb(&root.join("imgs/0cdf5b5d0ce1_02.jpg"), 6, 4);
    write_gray(
        &root.join("masks/0cdf5b5d0ce1_01_mask.gif"),
        6,
        4,
        |x, _| half_mask(x, 6),
    );
    write_gray(
        &root.join("masks/0cdf5b5d0ce1_02_mask.png"),
        6,
        4,
        |x, _| {
            if x == 5 {
                1
            } else {
                0
            }
        },
    );
    let set = Carvana::new(root, Channels::Rgb).unwrap();
    assert_eq!((set.len(), set.classes()), (2, 2));
    let a = set.get(0).unwrap();
    assert_eq!(a.channels, 3);
    assert_eq!(&a.mask[..6], &[1, 1, 1, 0, 0, 0]);
    assert_eq!(&set.get(1).unwrap().mask[..6], &[0, 0, 0, 0, 0, 1]);

    write_rgb(&root.join("imgs/ffff_03.jpg"), 6, 4);
    assert_err_names(Carvana::new(root, Channels::Rgb), "ffff_03.jpg");
}

// ---------------------------------------------------------------------------------------------
// ISBI 2012.

/// Slices 0, 1, 2 and 10: 4×4, mask 255 (cell) except a membrane column x = 0.
fn isbi_layout() -> TempDir {
    let dir = TempDir::new().unwrap();
    for n in [0, 1, 2, 10] {
        write_gray(&dir.path().join(format!("images/{n}.png")), 4, 4, |x, y| {
            (n * 10 + x + y) as u8
        });
        write_gray(&dir.path().join(format!("masks/{n}.png")), 4, 4, |x, _| {
            if x == 0 {
                0
            } else {
                255
            }
        });
    }
    dir
}

#[test]
fn isbi_orders_slices_numerically_and_picks_the_foreground() {
    let dir = isbi_layout();
    let set = Isbi2012::new(dir.path(), Isbi2012Config::default()).unwrap();
    assert_eq!(set.slices(), &[0, 1, 2, 10]);
    let s = set.get(3).unwrap();
    assert_eq!(s.image[0], 100.0 / 255.0, "slice 10");
    assert_eq!(
        &s.mask[..4],
        &[1, 0, 0, 0],
        "membrane is class 1 by default"
    );

    let cells = Isbi2012::new(
        dir.path(),
        Isbi2012Config {
            foreground: IsbiForeground::Cells,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(&cells.get(0).unwrap().mask[..4], &[0, 1, 1, 1]);

    let picked = Isbi2012::with_slices(dir.path(), Isbi2012Config::default(), [10, 1]).unwrap();
    assert_eq!(picked.slices(), &[10, 1]);
    assert_eq!(picked.get(0).unwrap().image[0], 100.0 / 255.0);
    assert_err_names(
        Isbi2012::with_slices(dir.path(), Isbi2012Config::default(), [1, 5]),
        "5.png",
    );
    // The paper split needs slices 0..30.
    assert_err_names(
        Isbi2012::train_test(dir.path(), Isbi2012Config::default()),
        "3.png",
    );
}

/// `$MAGNET_DATA_DIR`, else `../shared/data` beside the crate.
fn shared_data() -> PathBuf {
    match std::env::var("MAGNET_DATA_DIR") {
        Ok(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => {
            let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| ".".into());
            Path::new(&manifest).join("..").join("shared").join("data")
        }
    }
}

#[test]
fn isbi_real_slices_when_present() {
    let root = shared_data().join("isbi2012-em");
    if !root.join("images").is_dir() {
        eprintln!(
            "SKIPPED isbi_real_slices_when_present: no ISBI 2012 data at {} \
             (set MAGNET_DATA_DIR to the folder holding isbi2012-em/)",
            root.display()
        );
        return;
    }
    let all = Isbi2012::new(&root, Isbi2012Config::default()).unwrap();
    assert_eq!(all.len(), 30);
    let (train, test) = Isbi2012::train_test(&root, Isbi2012Config::default()).unwrap();
    assert_eq!((train.len(), test.len()), (24, 6));
    assert_eq!(test.slices(), &[24, 25, 26, 27, 28, 29]);
    let s = test.get(0).unwrap();
    assert_eq!((s.height, s.width, s.channels), (512, 512, 1));
    assert!(s.mask.iter().all(|&m| m <= 1));
    let membrane = s.mask.iter().filter(|&&m| m == 1).count() as f64 / s.mask.len() as f64;
    assert!(
        (0.05..0.5).contains(&membrane),
        "membrane fraction {membrane}: the mask mapping is inverted?"
    );
    assert!(s.image.iter().all(|v| (0.0..=1.0).contains(v)));
}

// ---------------------------------------------------------------------------------------------
// Transforms.

/// A sample whose pixels all differ, with mask classes {0, 1, 2, IGNORE_INDEX}.
fn pattern(h: usize, w: usize, c: usize) -> Sample {
    Sample {
        height: h,
        width: w,
        channels: c,
        image: (0..h * w * c).map(|i| i as f32 / 100.0).collect(),
        mask: (0..h * w)
            .map(|i| [0, 1, 2, IGNORE_INDEX][(i * 7 / 3) % 4])
            .collect(),
    }
}

#[test]
fn nearest_resize_keeps_only_original_mask_values() {
    let s = pattern(7, 5, 3);
    let original: HashSet<u8> = s.mask.iter().copied().collect();
    for (h, w) in [(3, 2), (14, 11), (7, 5), (1, 1), (20, 3)] {
        let r = transform::resize(&s, h, w).unwrap();
        assert_eq!((r.height, r.width, r.channels), (h, w, 3));
        assert_eq!((r.image.len(), r.mask.len()), (h * w * 3, h * w));
        assert!(r.mask.iter().all(|m| original.contains(m)), "{h}×{w}");
    }
    assert_eq!(
        transform::resize(&s, 7, 5).unwrap(),
        s,
        "same size is identity"
    );
    // Doubling repeats each mask pixel in 2×2 blocks.
    let d = transform::resize(&s, 14, 10).unwrap();
    assert_eq!(d.mask[0..2], [s.mask[0]; 2]);
    assert_eq!(d.mask[10 + 2], s.mask[1]);
}

#[test]
fn linear_resize_preserves_constants_and_averages_when_shrinking() {
    let mut s = pattern(4, 4, 1);
    s.image = vec![0.25; 16];
    let r = transform::resize(&s, 3, 7).unwrap();
    assert!(r.image.iter().all(|v| (v - 0.25).abs() < 1e-6));
    // A 4×4 checkerboard of 0 and 1 halves to about 0.5 (antialiased), not to 0s and 1s.
    s.image = (0..16).map(|i| ((i / 4 + i % 4) % 2) as f32).collect();
    let r = transform::resize(&s, 2, 2).unwrap();
    assert!(
        r.image.iter().all(|v| (v - 0.5).abs() < 0.05),
        "{:?}",
        r.image
    );
    // Doubling a 2×1 ramp interpolates between the pixel centres: [0, 1] -> [0, 0.25, 0.75, 1].
    let ramp = Sample {
        height: 1,
        width: 2,
        channels: 1,
        image: vec![0.0, 1.0],
        mask: vec![0, 1],
    };
    let r = transform::resize(&ramp, 1, 4).unwrap();
    assert_eq!(r.image, [0.0, 0.25, 0.75, 1.0]);
    assert!(transform::resize(&s, 0, 2).is_err());
}

#[test]
fn flips_are_involutions() {
    for (h, w, c) in [(5, 7, 3), (4, 4, 1), (1, 6, 2), (6, 1, 3)] {
        let s = pattern(h, w, c);
        let mut f = s.clone();
        transform::flip_horizontal(&mut f).unwrap();
        if w > 1 {
            assert_ne!(f, s);
            assert_eq!(&f.image[..c], &s.image[(w - 1) * c..w * c]);
            assert_eq!(f.mask[0], s.mask[w - 1]);
        }
        transform::flip_horizontal(&mut f).unwrap();
        assert_eq!(f, s);

        let mut f = s.clone();
        transform::flip_vertical(&mut f).unwrap();
        if h > 1 {
            assert_ne!(f, s);
            assert_eq!(f.mask[..w], s.mask[(h - 1) * w..]);
        }
        transform::flip_vertical(&mut f).unwrap();
        assert_eq!(f, s);
    }
}

#[test]
fn crop_and_normalize() {
    let s = pattern(5, 6, 2);
    let c = transform::crop(&s, 1, 2, 3, 4).unwrap();
    assert_eq!((c.height, c.width), (3, 4));
    assert_eq!(c.mask[0], s.mask[6 + 2]);
    assert_eq!(&c.image[..2], &s.image[(6 + 2) * 2..][..2]);
    assert!(
        transform::crop(&s, 3, 0, 3, 6).is_err(),
        "window past the bottom"
    );

    let mut n = s.clone();
    transform::normalize(&mut n, &[0.5, 1.0], &[2.0, 0.5]).unwrap();
    assert_eq!(n.image[0], (s.image[0] - 0.5) / 2.0);
    assert_eq!(n.image[1], (s.image[1] - 1.0) / 0.5);
    assert_eq!(n.mask, s.mask);
    assert!(transform::normalize(&mut n, &[0.5], &[1.0]).is_err());
    assert!(transform::normalize(&mut n, &[0.5, 0.5], &[1.0, 0.0]).is_err());
}

fn augmented(seed: u64) -> Transformed<Synthetic> {
    let set = Synthetic::new(SyntheticConfig {
        samples: 6,
        size: 16,
        ..Default::default()
    })
    .unwrap();
    Transformed::new(
        set,
        Pipeline::new(seed)
            .random_crop(9, 11)
            .horizontal_flip(0.5)
            .vertical_flip(0.5),
    )
}

#[test]
fn the_same_seed_gives_the_same_augmentation() {
    let (a, b, other) = (augmented(3), augmented(3), augmented(4));
    let mut differs_by_epoch = false;
    let mut differs_by_seed = false;
    for i in 0..6 {
        let first = a.get_epoch(i, 0).unwrap();
        assert_eq!((first.height, first.width), (9, 11));
        for epoch in 0..4 {
            let x = a.get_epoch(i, epoch).unwrap();
            assert_eq!(
                x,
                b.get_epoch(i, epoch).unwrap(),
                "sample {i} epoch {epoch}"
            );
            assert_eq!(x, a.get_epoch(i, epoch).unwrap(), "repeatable");
            differs_by_epoch |= x != first;
            differs_by_seed |= x != other.get_epoch(i, epoch).unwrap();
        }
    }
    assert!(differs_by_epoch && differs_by_seed);
    assert_eq!(a.get(2).unwrap(), a.get_epoch(2, 0).unwrap());
}

#[test]
fn random_crop_larger_than_the_sample_is_an_error() {
    let set = Transformed::new(
        augmented(0).inner().clone(),
        Pipeline::new(0).random_crop(17, 4),
    );
    assert!(set.get(0).unwrap_err().to_string().contains("resize"));
}

// ---------------------------------------------------------------------------------------------
// Batch loader and split.

fn synthetic(samples: usize) -> Synthetic {
    Synthetic::new(SyntheticConfig {
        samples,
        size: 16,
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn loader_yields_every_index_once_per_epoch() {
    let loader = BatchLoader::new(
        synthetic(10),
        LoaderConfig {
            prefetch: 1,
            ..LoaderConfig::train(3, 9)
        },
    )
    .unwrap();
    assert_eq!(
        loader.len(),
        3,
        "drop_last: 10 samples make 3 full batches of 3"
    );
    let keep_all = BatchLoader::new(
        synthetic(10),
        LoaderConfig {
            shuffle: true,
            drop_last: false,
            ..LoaderConfig::train(3, 9)
        },
    )
    .unwrap();
    let mut orders = Vec::new();
    for epoch in 0..3 {
        let batches: Vec<_> = keep_all.epoch(epoch).map(Result::unwrap).collect();
        assert_eq!(
            batches.iter().map(|b| b.indices.len()).collect::<Vec<_>>(),
            [3, 3, 3, 1]
        );
        let seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>(), "epoch {epoch}");
        assert_eq!(seen, keep_all.order(epoch));
        orders.push(seen);

        let b = &batches[0];
        assert_eq!(b.images.shape().dims(), &[3, 16, 16, 3]);
        assert_eq!(b.labels.shape().dims(), &[3, 16, 16]);
        let s = keep_all.dataset().get(b.indices[1]).unwrap();
        assert_eq!(&b.images.data()[16 * 16 * 3..][..16 * 16 * 3], &s.image[..]);
        let labels: Vec<f32> = s.mask.iter().map(|&m| f32::from(m)).collect();
        assert_eq!(&b.labels.data()[16 * 16..][..16 * 16], &labels[..]);

        let dropped: Vec<usize> = loader
            .epoch(epoch)
            .flat_map(|b| b.unwrap().indices)
            .collect();
        assert_eq!(dropped.len(), 9);
        assert_eq!(dropped.iter().collect::<HashSet<_>>().len(), 9);
    }
    assert_ne!(orders[0], orders[1], "a new order each epoch");

    let eval = BatchLoader::new(synthetic(5), LoaderConfig::eval(2)).unwrap();
    let seen: Vec<usize> = eval.epoch(0).flat_map(|b| b.unwrap().indices).collect();
    assert_eq!(seen, [0, 1, 2, 3, 4]);
}

#[test]
fn loader_applies_per_epoch_augmentation() {
    let loader = BatchLoader::new(augmented(5), LoaderConfig::eval(6)).unwrap();
    let batch = loader.epoch(2).next().unwrap().unwrap();
    let want = loader.dataset().get_epoch(4, 2).unwrap();
    let n = 9 * 11 * 3;
    assert_eq!(&batch.images.data()[4 * n..5 * n], &want.image[..]);
}

#[test]
fn loader_surfaces_a_decode_error() {
    let dir = folder_layout();
    std::fs::write(dir.path().join("images/b.jpg"), b"\xff\xd8 broken jpeg").unwrap();
    let set = ImageMaskFolder::new(dir.path(), config(Channels::Gray)).unwrap();
    let loader = BatchLoader::new(set, LoaderConfig::eval(1)).unwrap();
    let mut results: Vec<_> = loader.epoch(0).collect();
    assert_eq!(results.len(), 2, "the error ends the epoch");
    assert!(results[0].is_ok());
    assert_err_names(results.pop().unwrap().map(|b| b.indices), "b.jpg");
}

#[test]
fn loader_rejects_samples_of_different_sizes() {
    let dir = pet_layout();
    let set = OxfordPet::new(dir.path(), Default::default()).unwrap();
    let loader = BatchLoader::new(set, LoaderConfig::eval(2)).unwrap();
    let err = loader.epoch(0).next().unwrap().unwrap_err().to_string();
    assert!(err.contains("resize"), "{err}");

    // Resized, they batch; border pixels arrive as 255.0.
    let set = OxfordPet::new(dir.path(), Default::default()).unwrap();
    let loader = BatchLoader::new(
        Transformed::new(set, Pipeline::new(0).resize(8, 8)),
        LoaderConfig::eval(2),
    )
    .unwrap();
    let batch = loader.epoch(0).next().unwrap().unwrap();
    assert_eq!(batch.images.shape().dims(), &[2, 8, 8, 3]);
    let labels: HashSet<u32> = batch.labels.data().iter().map(|&v| v as u32).collect();
    assert_eq!(labels, HashSet::from([0, 1, 255]));
}

#[test]
fn dropping_an_epoch_early_stops_the_loader() {
    let loader = BatchLoader::new(
        synthetic(40),
        LoaderConfig {
            prefetch: 1,
            ..LoaderConfig::eval(2)
        },
    )
    .unwrap();
    let mut epoch = loader.epoch(0);
    assert!(epoch.next().unwrap().is_ok());
    drop(epoch); // joins the worker; must not hang
    assert!(BatchLoader::new(synthetic(3), LoaderConfig::train(4, 0)).is_err());
    assert!(BatchLoader::new(synthetic(3), LoaderConfig::eval(0)).is_err());
}

#[test]
fn split_is_a_seeded_partition() {
    let (train, val) = split(synthetic(20), 0.25, 1).unwrap();
    assert_eq!((train.len(), val.len()), (15, 5));
    let mut all: Vec<usize> = train
        .indices()
        .iter()
        .chain(val.indices())
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..20).collect::<Vec<_>>());
    let (_, again) = split(synthetic(20), 0.25, 1).unwrap();
    assert_eq!(again.indices(), val.indices());
    let (_, other) = split(synthetic(20), 0.25, 2).unwrap();
    assert_ne!(other.indices(), val.indices());
    assert_eq!(
        val.get(0).unwrap(),
        synthetic(20).get(val.indices()[0]).unwrap()
    );
    assert!(split(synthetic(20), 0.0, 1).is_err());
    assert!(split(synthetic(20), 1.0, 1).is_err());
    assert!(split(synthetic(20), f64::NAN, 1).is_err());
    // A subset batches like any data set.
    let loader = BatchLoader::new(val, LoaderConfig::eval(5)).unwrap();
    assert_eq!(loader.epoch(0).count(), 1);
}

#[test]
fn shards_deal_out_an_epoch_in_equal_disjoint_parts() {
    let shard = |index| {
        BatchLoader::new(
            synthetic(11),
            LoaderConfig {
                shard: Shard { index, count: 3 },
                ..LoaderConfig::train(2, 5)
            },
        )
        .unwrap()
    };
    let whole = BatchLoader::new(synthetic(11), LoaderConfig::train(2, 5)).unwrap();
    for epoch in 0..2 {
        let parts: Vec<Vec<usize>> = (0..3).map(|i| shard(i).order(epoch)).collect();
        // 11 samples over 3 ranks: 3 each, the 2 left over dropped.
        assert!(parts.iter().all(|p| p.len() == 3), "{parts:?}");
        let seen: HashSet<usize> = parts.iter().flatten().copied().collect();
        assert_eq!(seen.len(), 9, "disjoint: {parts:?}");
        // Round-robin over the same shuffled order every rank computes.
        let order = whole.order(epoch);
        assert_eq!(parts[1], [order[1], order[4], order[7]]);
        assert_eq!(shard(2).len(), 1, "one full batch of 2 from 3 samples");
    }
    let bad = BatchLoader::new(
        synthetic(11),
        LoaderConfig {
            shard: Shard { index: 3, count: 3 },
            ..LoaderConfig::train(2, 5)
        },
    );
    assert!(bad.is_err(), "shard 3 of 3 does not exist");
}
