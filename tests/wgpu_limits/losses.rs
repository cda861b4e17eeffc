//! Losses, label maps and the distance transform, split by rows (pixels) and images.

use magnet::backend::*;

use crate::common::*;
use crate::{big, compare, get, on_small, out, up, Outputs};

const IGNORE: u32 = 255;

/// Labels `0..classes` as f32, every seventh the ignore index.
fn labels(len: usize, classes: usize, seed: u64) -> Vec<f32> {
    random_range(len, seed, 0.0, classes as f32 - 0.01)
        .into_iter()
        .enumerate()
        .map(|(i, v)| if i % 7 == 3 { IGNORE as f32 } else { v.floor() })
        .collect()
}

fn cross_entropy<M: Backend>(m: &M, p: &CrossEntropyParams) -> Outputs {
    let logits = up(m, &random_range(p.rows * p.classes, 100, -3.0, 3.0));
    let labels = up(m, &labels(p.rows, p.classes, 101));
    let class_w = up(m, &random_range(p.classes, 102, 0.5, 2.0));
    let pixel_w = up(m, &random_range(p.rows, 103, 0.0, 3.0));
    let mut outs = Vec::new();
    for weights in [None, Some((&class_w, &pixel_w))] {
        let (cw, pw) = (weights.map(|w| w.0), weights.map(|w| w.1));
        let (mut loss, mut grad) = (out(m, 1), out(m, p.rows * p.classes));
        let res = m.softmax_cross_entropy(p, &logits, &labels, cw, pw, &mut loss, &mut grad);
        ok(res, "softmax_cross_entropy");
        outs.extend(get(m, &[&loss, &grad]));
    }
    outs
}

fn label_maps<M: Backend>(m: &M, _: &()) -> Outputs {
    let len = 3000;
    // Binary cross-entropy with pixel weights.
    let logits = up(m, &random_range(len, 110, -6.0, 6.0));
    let targets = up(m, &random_range(len, 111, 0.0, 1.0));
    let weights = up(m, &random_range(len, 112, 0.0, 2.0));
    let p = BinaryCrossEntropyParams {
        len,
        pos_weight: 2.5,
    };
    let (mut bce, mut bce_grad) = (out(m, 1), out(m, len));
    let res = m.sigmoid_binary_cross_entropy(
        &p,
        &logits,
        &targets,
        Some(&weights),
        &mut bce,
        &mut bce_grad,
    );
    ok(res, "sigmoid_binary_cross_entropy");
    // Dice and confusion counts over 2 images of 700 pixels, 3 classes: an image spans
    // several bindings.
    let (images, pixels, classes) = (2, 700, 3);
    let rows = images * pixels;
    let logits = up(m, &random_range(rows * classes, 120, -3.0, 3.0));
    let labels = up(m, &labels(rows, classes, 121));
    let dice = SoftDiceParams {
        images,
        pixels_per_image: pixels,
        classes,
        ignore_index: Some(IGNORE),
        eps: 1.0,
        include_background: false,
    };
    let (mut dice_loss, mut dice_grad) = (out(m, 1), out(m, rows * classes));
    let res = m.soft_dice(&dice, &logits, &labels, &mut dice_loss, &mut dice_grad);
    ok(res, "soft_dice");
    let confusion = ConfusionParams {
        images,
        pixels_per_image: pixels,
        classes,
        ignore_index: Some(IGNORE),
    };
    let mut counts = out(m, images * classes * classes);
    ok(
        m.confusion_matrix(&confusion, &logits, &labels, &mut counts),
        "confusion_matrix",
    );
    // Foreground masks of the labels (ignored pixels stay out), and their distance transform
    // over 2 images of 20×30.
    let fg = ForegroundParams {
        len: rows,
        background: 0,
        ignore_index: Some(IGNORE),
    };
    let mut mask = out(m, rows);
    ok(
        m.foreground_mask(&fg, &labels, &mut mask),
        "foreground_mask",
    );
    let grid = ImageGridParams {
        batch: 2,
        height: 20,
        width: 30,
    };
    let sparse: Vec<f32> = random_range(1200, 131, 0.0, 1.0)
        .into_iter()
        .map(|v| f32::from(u8::from(v > 0.8)))
        .collect();
    let sparse = up(m, &sparse);
    let mut distance = out(m, 1200);
    ok(
        m.distance_transform(&grid, &sparse, &mut distance),
        "distance_transform",
    );
    get(
        m,
        &[
            &bce, &bce_grad, &dice_loss, &dice_grad, &counts, &mask, &distance,
        ],
    )
}

#[test]
fn losses_split_by_rows() {
    on_small(|b| {
        // Losses are sums over the rows of exp / log terms, in f32, added over dispatches.
        const LOSS: Tol = Tol::rel_abs(2e-5, 1e-7);
        for (classes, gamma) in [(3, 0.0), (5, 2.0)] {
            let p = CrossEntropyParams {
                rows: 2 * 30 * 25,
                classes,
                ignore_index: Some(IGNORE),
                gamma,
            };
            big(p.rows * classes);
            same_as_cpu!(b, cross_entropy, &p, LOSS, format!("{p:?}"));
        }
        // Counts, masks and integer squared distances are exact, up to the square root.
        same_as_cpu!(
            b,
            label_maps,
            &(),
            LOSS,
            "bce, dice, confusion, masks, distances"
        );
    });
}
