//! Confusion counts and the metrics derived from them (IoU, Dice, pixel accuracy) on hand-made
//! masks whose scores are worked out by hand, dataset-level (pooled) and averaged per image.

#[macro_use]
mod common;

use magnet::backend::ConfusionParams;
use magnet::metrics::{self, ConfusionMatrix};
use magnet::{Backend, Executor, Graph, HostTensor, Mode};

use common::*;

/// Logits that predict `pred` (one row of 3 classes per pixel).
fn one_hot_logits(pred: &[usize], classes: usize) -> Vec<f32> {
    let mut z = vec![0.0; pred.len() * classes];
    for (i, &p) in pred.iter().enumerate() {
        z[i * classes + p] = 1.0;
    }
    z
}

/// Two 2×2 images, 3 classes, 255 ignored:
/// - image 0: truth [0, 0, 1, 1], prediction [0, 1, 1, 1];
/// - image 1: truth [2, 2, 0, 255], prediction [2, 0, 0, 1] (the class-1 prediction is on the
///   ignored pixel, so class 1 is absent from image 1).
fn example() -> (Vec<f32>, Vec<f32>) {
    let truth = vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 0.0, 255.0];
    (one_hot_logits(&[0, 1, 1, 1, 2, 0, 0, 1], 3), truth)
}

/// Scores agree with the hand computation to f64 rounding.
#[track_caller]
fn close(got: Option<f64>, want: f64, what: &str) {
    let got = got.unwrap_or_else(|| panic!("{what}: no score, want {want}"));
    assert!((got - want).abs() < 1e-12, "{what}: got {got}, want {want}");
}

fn hand_made_case<B: Backend>(b: &B) {
    let (z, y) = example();
    let mut g = Graph::<B>::new();
    let logits = g.input("logits", [2, 2, 2, 3]).unwrap();
    let labels = g.input("labels", [2, 2, 2]).unwrap();
    let counts = metrics::confusion_counts(&mut g, logits, labels, Some(255)).unwrap();
    assert_eq!(g.shape(counts).unwrap().dims(), &[2, 3, 3]);
    let mut exec = Executor::new(b.clone(), g, 0).unwrap();
    let zh = HostTensor::new([2, 2, 2, 3], z.clone()).unwrap();
    let yh = HostTensor::new([2, 2, 2], y.clone()).unwrap();
    exec.forward(&[(logits, &zh), (labels, &yh)], Mode::Eval)
        .unwrap();
    let mut cm = ConfusionMatrix::new(3);
    cm.add_node(&exec, counts).unwrap();

    assert_eq!(cm.counts(), &[2, 1, 0, 0, 2, 0, 1, 0, 1], "pooled counts");
    assert_eq!(cm.count(2, 0), 1);
    assert_eq!(cm.images(), 2);

    // Pooled: class 0 TP 2 FP 1 FN 1; class 1 TP 2 FP 1 FN 0; class 2 TP 1 FP 0 FN 1.
    let pooled = cm.pooled();
    let iou = [1.0 / 2.0, 2.0 / 3.0, 1.0 / 2.0];
    let dice = [2.0 / 3.0, 4.0 / 5.0, 2.0 / 3.0];
    for c in 0..3 {
        close(
            pooled.class_iou[c],
            iou[c],
            &format!("pooled IoU of class {c}"),
        );
        close(
            pooled.class_dice[c],
            dice[c],
            &format!("pooled Dice of class {c}"),
        );
    }
    close(pooled.mean_iou, 5.0 / 9.0, "pooled mean IoU");
    close(pooled.mean_dice, 32.0 / 45.0, "pooled mean Dice");
    close(pooled.pixel_accuracy, 5.0 / 7.0, "pooled pixel accuracy");

    // Per image: image 0 has IoU (1/2, 2/3, −), Dice (2/3, 4/5, −), accuracy 3/4; image 1 has
    // IoU (1/2, −, 1/2), Dice (2/3, −, 2/3), accuracy 2/3.
    let per_image = cm.mean_per_image();
    close(
        per_image.mean_iou,
        (7.0 / 12.0 + 1.0 / 2.0) / 2.0,
        "mean IoU per image",
    );
    close(
        per_image.mean_dice,
        (11.0 / 15.0 + 2.0 / 3.0) / 2.0,
        "mean Dice per image",
    );
    close(
        per_image.pixel_accuracy,
        (3.0 / 4.0 + 2.0 / 3.0) / 2.0,
        "accuracy per image",
    );
    let iou = [1.0 / 2.0, 2.0 / 3.0, 1.0 / 2.0];
    let dice = [2.0 / 3.0, 4.0 / 5.0, 2.0 / 3.0];
    for c in 0..3 {
        close(
            per_image.class_iou[c],
            iou[c],
            &format!("per-image IoU of class {c}"),
        );
        close(
            per_image.class_dice[c],
            dice[c],
            &format!("per-image Dice of class {c}"),
        );
    }

    // The same counts straight from device buffers.
    let p = ConfusionParams {
        images: 2,
        pixels_per_image: 4,
        classes: 3,
        ignore_index: Some(255),
    };
    let direct = metrics::confusion_counts_of(b, &p, &upload_vec(b, &z), &upload_vec(b, &y))
        .expect("confusion counts");
    let mut again = ConfusionMatrix::new(3);
    again.add_counts(&direct).unwrap();
    assert_eq!(again, cm, "counts from buffers and from the graph");
}

#[test]
fn metrics_of_hand_made_masks() {
    for_each_backend!(|b| hand_made_case(b));
}

#[test]
fn absent_classes_and_empty_images_are_left_out() {
    let mut cm = ConfusionMatrix::new(3);
    // A perfect image with classes 0 and 1 only; class 2 is never seen.
    cm.add_image(&[3, 0, 0, 0, 1, 0, 0, 0, 0]).unwrap();
    // An image whose pixels were all ignored: no contribution to the per-image means.
    cm.add_image(&[0; 9]).unwrap();
    assert_eq!(cm.images(), 1);
    for scores in [cm.pooled(), cm.mean_per_image()] {
        assert_eq!(scores.class_iou, vec![Some(1.0), Some(1.0), None]);
        assert_eq!(scores.mean_iou, Some(1.0));
        assert_eq!(scores.mean_dice, Some(1.0));
        assert_eq!(scores.pixel_accuracy, Some(1.0));
    }
    // An image predicting class 2 everywhere for truth 0: class 2 now has IoU 0 (pooled) and
    // the per-image mean of class 0 averages 1 and 0.
    cm.add_image(&[0, 0, 2, 0, 0, 0, 0, 0, 0]).unwrap();
    let pooled = cm.pooled();
    assert_eq!(
        pooled.class_iou,
        vec![Some(3.0 / 5.0), Some(1.0), Some(0.0)]
    );
    assert_eq!(pooled.pixel_accuracy, Some(4.0 / 6.0));
    let per_image = cm.mean_per_image();
    assert_eq!(per_image.class_iou, vec![Some(0.5), Some(1.0), Some(0.0)]);
    // Image means: 1 (first) and 0 (third; classes 0 and 2 both scored 0).
    assert_eq!(per_image.mean_iou, Some(0.5));
    assert_eq!(per_image.pixel_accuracy, Some(0.5));

    let empty = ConfusionMatrix::new(2);
    assert_eq!(empty.pooled().mean_iou, None);
    assert_eq!(empty.mean_per_image().pixel_accuracy, None);

    let mut merged = ConfusionMatrix::new(3);
    merged.merge(&cm).unwrap();
    merged.merge(&cm).unwrap();
    assert_eq!(merged.images(), 4);
    assert_eq!(merged.mean_per_image(), cm.mean_per_image());
    merged.reset();
    assert_eq!(merged, ConfusionMatrix::new(3));
}

#[test]
fn metrics_reject_bad_counts() {
    let mut cm = ConfusionMatrix::new(2);
    assert!(cm.add_image(&[1, 2, 3]).is_err(), "3 counts for 2 classes");
    let wrong_shape = HostTensor::new([1, 3, 3], vec![0.0; 9]).unwrap();
    assert!(
        cm.add_counts(&wrong_shape).is_err(),
        "[1, 3, 3] counts for 2 classes"
    );
    let negative = HostTensor::new([1, 2, 2], vec![1.0, -1.0, 0.0, 0.0]).unwrap();
    assert!(cm.add_counts(&negative).is_err(), "a negative count");
    let fraction = HostTensor::new([1, 2, 2], vec![1.0, 0.5, 0.0, 0.0]).unwrap();
    assert!(cm.add_counts(&fraction).is_err(), "a fractional count");
    assert!(
        cm.merge(&ConfusionMatrix::new(3)).is_err(),
        "merging 3 classes into 2"
    );
    assert_eq!(
        cm,
        ConfusionMatrix::new(2),
        "rejected counts leave the matrix alone"
    );

    let mut g = Graph::<magnet::CpuBackend>::new();
    let logits = g.input("logits", [2, 3, 3]).unwrap();
    let labels = g.input("labels", [2, 4]).unwrap();
    assert!(metrics::confusion_counts(&mut g, logits, labels, None).is_err());
}
