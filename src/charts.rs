//! Plots as PNG files, drawn by `plotters`: the loss, mAP and precision–recall curves a run
//! writes at its end, and the heat map of a sweep. Plain data in, a file out; the text is set
//! in the font the app uses, so no system font is needed.

use std::path::Path;
use std::sync::Once;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

/// Size of every chart, in pixels.
const SIZE: (u32, u32) = (960, 600);
const FONT: &str = "sans-serif";

/// One curve: its name in the legend, its colour and its points.
pub struct Series {
    pub label: String,
    pub rgb: [u8; 3],
    pub points: Vec<(f64, f64)>,
}

/// Axis names and ranges of a line chart; a range is taken from the data when `None`.
pub struct Axes<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
}

fn use_bundled_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType font shipped with egui; a failure only loses text.
        let _ = register_font(FONT, FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    });
}

/// TensorBoard's smoothing: an exponential moving average divided by `1 - weight^n`, so the
/// first points are not pulled towards zero.
pub fn debiased_ema(values: &[f64], weight: f32) -> Vec<f64> {
    let weight = f64::from(weight.clamp(0.0, 0.999));
    let mut last = 0.0;
    let mut debias = 1.0;
    values
        .iter()
        .map(|&v| {
            if !v.is_finite() {
                return v;
            }
            last = last * weight + (1.0 - weight) * v;
            debias *= weight;
            if debias < 1.0 {
                last / (1.0 - debias)
            } else {
                v
            }
        })
        .collect()
}

/// Draws `series` as lines into the PNG at `path`.
pub fn line_chart(path: &Path, axes: &Axes<'_>, series: &[Series]) -> anyhow::Result<()> {
    use_bundled_font();
    let finite = || {
        series
            .iter()
            .flat_map(|s| s.points.iter().copied())
            .filter(|(x, y)| x.is_finite() && y.is_finite())
    };
    let span = |values: Vec<f64>| -> (f64, f64) {
        let low = values.iter().copied().fold(f64::INFINITY, f64::min);
        let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if low.is_finite() && high > low {
            (low, high)
        } else if low.is_finite() {
            (low - 0.5, low + 0.5)
        } else {
            (0.0, 1.0)
        }
    };
    let x = axes
        .x_range
        .unwrap_or_else(|| span(finite().map(|p| p.0).collect()));
    let y = axes
        .y_range
        .unwrap_or_else(|| span(finite().map(|p| p.1).collect()));
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(axes.title, (FONT, 24))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x.0..x.1, y.0..y.1)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc(axes.x_label)
        .y_desc(axes.y_label)
        .label_style((FONT, 14))
        .draw()
        .map_err(draw_error)?;
    for s in series {
        let colour = RGBColor(s.rgb[0], s.rgb[1], s.rgb[2]);
        let points = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(draw_error)?
            .label(s.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(3))
            });
    }
    chart
        .configure_series_labels()
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(draw_error)?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The three plots of a run, into `dir`: `loss.png` (whole-batch loss, already smoothed),
/// `map.png` (validation mAP per evaluation) and `pr.png` (the last evaluation's
/// precision–recall curves). A plot without data is not written. Returns the files written.
pub fn write_run_plots(
    dir: &Path,
    loss: &[Series],
    map: &[Series],
    pr: &[Series],
) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let plots = [
        (
            "loss.png",
            "whole-batch loss (smoothed)",
            "step",
            "loss",
            loss,
            None,
            None,
        ),
        (
            "map.png",
            "validation mAP@0.5",
            "step",
            "mAP@0.5",
            map,
            None,
            Some((0.0, 1.0)),
        ),
        (
            "pr.png",
            "precision–recall, last evaluation",
            "recall",
            "precision",
            pr,
            Some((0.0, 1.0)),
            Some((0.0, 1.05)),
        ),
    ];
    let mut written = Vec::new();
    for (file, title, x_label, y_label, series, x_range, y_range) in plots {
        if series.iter().all(|s| s.points.is_empty()) {
            continue;
        }
        let path = dir.join(file);
        let axes = Axes {
            title,
            x_label,
            y_label,
            x_range,
            y_range,
        };
        line_chart(&path, &axes, series)?;
        written.push(path);
    }
    Ok(written)
}

/// A grid of values (rows × columns, `None` for a missing cell) as coloured cells with their
/// numbers written in, into the PNG at `path`.
pub fn heat_map(
    path: &Path,
    title: &str,
    (row_name, rows): (&str, &[String]),
    (column_name, columns): (&str, &[String]),
    values: &[Vec<Option<f64>>],
) -> anyhow::Result<()> {
    use_bundled_font();
    let found: Vec<f64> = values.iter().flatten().flatten().copied().collect();
    let low = found.iter().copied().fold(f64::INFINITY, f64::min);
    let high = found.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let (n_rows, n_cols) = (rows.len().max(1), columns.len().max(1));
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            // A segmented range also holds a segment for its end value: stop one short.
            (0..n_cols - 1).into_segmented(),
            (0..n_rows - 1).into_segmented(),
        )
        .map_err(draw_error)?;
    let name = |names: &[String], at: &SegmentValue<usize>| match at {
        SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(column_name)
        .y_desc(row_name)
        .x_labels(n_cols)
        .y_labels(n_rows)
        .x_label_formatter(&|at| name(columns, at))
        .y_label_formatter(&|at| name(rows, at))
        .label_style((FONT, 16))
        .draw()
        .map_err(draw_error)?;
    for (r, row) in values.iter().enumerate() {
        for (c, value) in row.iter().enumerate() {
            let shade = value.map_or(0.5, |v| {
                if high > low {
                    (v - low) / (high - low)
                } else {
                    0.5
                }
            });
            let fill = if value.is_some() {
                ViridisLike::at(shade)
            } else {
                RGBColor(220, 220, 220)
            };
            let cell = [
                (SegmentValue::Exact(c), SegmentValue::Exact(r)),
                (SegmentValue::Exact(c + 1), SegmentValue::Exact(r + 1)),
            ];
            chart
                .draw_series(std::iter::once(Rectangle::new(cell, fill.filled())))
                .map_err(draw_error)?;
            let text = value.map_or("–".to_string(), |v| format!("{v:.3}"));
            let ink = if shade > 0.6 { BLACK } else { WHITE };
            let centre =
                chart.backend_coord(&(SegmentValue::CenterOf(c), SegmentValue::CenterOf(r)));
            let style = TextStyle::from((FONT, 20).into_font()).color(&ink).pos(
                plotters::style::text_anchor::Pos::new(
                    plotters::style::text_anchor::HPos::Center,
                    plotters::style::text_anchor::VPos::Center,
                ),
            );
            root.draw_text(&text, &style, centre).map_err(draw_error)?;
        }
    }
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// A dark-blue-to-yellow ramp, readable in grey too.
struct ViridisLike;

impl ViridisLike {
    fn at(t: f64) -> RGBColor {
        let stops = [
            (68.0, 1.0, 84.0),
            (59.0, 82.0, 139.0),
            (33.0, 145.0, 140.0),
            (94.0, 201.0, 98.0),
            (253.0, 231.0, 37.0),
        ];
        let t = t.clamp(0.0, 1.0) * (stops.len() - 1) as f64;
        let i = (t.floor() as usize).min(stops.len() - 2);
        let f = t - i as f64;
        let mix = |a: f64, b: f64| (a + (b - a) * f).round() as u8;
        let (a, b) = (stops[i], stops[i + 1]);
        RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
    }
}

fn draw_error<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow::anyhow!("cannot draw the chart: {error:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_written_as_png_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let line = dir.path().join("loss.png");
        let series = vec![Series {
            label: "OHEM".into(),
            rgb: [240, 130, 40],
            points: (0..50)
                .map(|i| (i as f64, 1.0 / (1.0 + i as f64)))
                .collect(),
        }];
        let axes = Axes {
            title: "loss",
            x_label: "step",
            y_label: "loss",
            x_range: None,
            y_range: None,
        };
        line_chart(&line, &axes, &series).expect("line chart");
        let heat = dir.path().join("sweep.png");
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        heat_map(
            &heat,
            "mAP",
            ("M", &names(&["16", "32"])),
            ("NMS", &names(&["0.5", "none"])),
            &[vec![Some(0.5), Some(0.7)], vec![None, Some(0.9)]],
        )
        .expect("heat map");
        for path in [line, heat] {
            let image = image::open(&path).expect("a PNG");
            assert_eq!((image.width(), image.height()), SIZE);
        }
    }
}
