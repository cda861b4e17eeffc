//! The training log: CSV with a header and one line per epoch, and a PNG plot of the curves.

use magnet::train::{plot_history, EpochRecord, History};

fn history() -> History {
    let records = (1..=5)
        .map(|epoch| EpochRecord {
            epoch,
            learning_rate: 1e-3,
            train_loss: 1.0 / epoch as f32,
            val_loss: 1.2 / epoch as f32,
            val_miou: 0.15 * epoch as f32,
            val_dice: 0.17 * epoch as f32,
            val_pixel_accuracy: 0.5 + 0.08 * epoch as f32,
            val_miou_per_image: 0.14 * epoch as f32,
            seconds: 2.0,
            images_per_second: 32.0,
        })
        .collect();
    History { records }
}

#[test]
fn csv_has_a_header_and_a_line_per_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.csv");
    history().write_csv(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6);
    assert!(lines[0].starts_with("epoch,learning_rate,train_loss"));
    assert!(
        lines[3].starts_with("3,0.001,0.33333334,0.4,0.45"),
        "{}",
        lines[3]
    );
    assert_eq!(history().best().unwrap().epoch, 5);
}

#[test]
fn plot_is_a_png_with_the_curves_drawn() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curves.png");
    plot_history(&history(), &path).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (1200, 450));
    // Lines in the series colours were drawn (pure blue train loss, pure red accuracy).
    let blue = img.pixels().filter(|p| p.0 == [0, 0, 255]).count();
    let red = img.pixels().filter(|p| p.0 == [255, 0, 0]).count();
    assert!(blue > 200 && red > 200, "blue {blue}, red {red}");
    // Text was drawn: dark pixels beyond the axes' own lines.
    let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 80)).count();
    assert!(dark > 2000, "dark pixels {dark}");
    // A failed write (missing folder) is an error and leaves no temporary file behind.
    let missing = dir.path().join("no/such/dir/curves.png");
    assert!(plot_history(&history(), &missing).is_err());
}
