//! A PNG plot of the training curves: losses on the left, validation metrics on the right.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::{Error, Result};
use crate::io::atomic::write_atomically;
use crate::train::history::History;

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 450;

/// Draws `history` into a PNG at `path` (atomically).
pub fn plot_history(history: &History, path: &Path) -> Result<()> {
    register_font();
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw(history, &mut pixels).map_err(|reason| Error::invalid("plot", reason))?;
    write_atomically(path, |tmp| {
        image::save_buffer_with_format(
            tmp,
            &pixels,
            WIDTH,
            HEIGHT,
            image::ColorType::Rgb8,
            image::ImageFormat::Png,
        )
        .map_err(|e| Error::invalid("plot", format!("{}: {e}", tmp.display())))
    })
}

/// plotters draws text with fonts registered by name; DejaVu Sans is embedded in the binary.
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is a valid TrueType file; failing to parse it would only lose labels.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn draw(history: &History, pixels: &mut [u8]) -> std::result::Result<(), String> {
    let root = BitMapBackend::with_buffer(pixels, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(WIDTH / 2);
    let epochs = history.records.len().max(1) as f32;
    let losses: Vec<f32> = history
        .records
        .iter()
        .flat_map(|r| [r.train_loss, r.val_loss])
        .filter(|v| v.is_finite())
        .collect();
    let max_loss = losses.iter().copied().fold(0.0f32, f32::max).max(1e-3) * 1.05;

    let mut chart = ChartBuilder::on(&left)
        .caption("loss", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(1f32..epochs.max(2.0), 0f32..max_loss)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .draw()
        .map_err(|e| e.to_string())?;
    series(&mut chart, history, |r| r.train_loss, "train", BLUE)?;
    series(&mut chart, history, |r| r.val_loss, "validation", RED)?;
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(|e| e.to_string())?;

    let mut chart = ChartBuilder::on(&right)
        .caption("validation metrics", ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(1f32..epochs.max(2.0), 0f32..1f32)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .draw()
        .map_err(|e| e.to_string())?;
    series(&mut chart, history, |r| r.val_miou, "mean IoU", BLUE)?;
    series(&mut chart, history, |r| r.val_dice, "mean Dice", GREEN)?;
    series(
        &mut chart,
        history,
        |r| r.val_pixel_accuracy,
        "pixel accuracy",
        RED,
    )?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .border_style(BLACK)
        .background_style(WHITE)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    BitMapBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf32, plotters::coord::types::RangedCoordf32>,
>;

fn series(
    chart: &mut Chart<'_, '_>,
    history: &History,
    value: impl Fn(&crate::train::history::EpochRecord) -> f32,
    label: &str,
    colour: RGBColor,
) -> std::result::Result<(), String> {
    let points: Vec<(f32, f32)> = history
        .records
        .iter()
        .map(|r| (r.epoch as f32, value(r)))
        .filter(|(_, v)| v.is_finite())
        .collect();
    chart
        .draw_series(LineSeries::new(points, colour.stroke_width(2)))
        .map_err(|e| e.to_string())?
        .label(label)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
    Ok(())
}
