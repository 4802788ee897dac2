//! The app's plots as PNG files, and a sweep's heat map opened for viewing. The drawing is
//! `crate::charts`, the same as the files `train` and `sweep` write.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::curves::PlotsState;
use crate::charts::{write_run_plots, Series};
use crate::train::config::Strategy;
use crate::train::messages::EvalReport;

/// Writes `loss.png`, `map.png` and `pr.png` of what the plots show into `dir`.
pub fn save_plots(
    dir: &Path,
    plots: &PlotsState,
    latest: &BTreeMap<Strategy, Arc<EvalReport>>,
) -> anyhow::Result<Vec<PathBuf>> {
    let series = |strategy: &Strategy, points: Vec<(f64, f64)>| Series {
        label: strategy.label().to_string(),
        rgb: strategy.colour(),
        points,
    };
    let loss: Vec<Series> = plots
        .curves
        .iter()
        .map(|(s, c)| series(s, c.batch.smoothed_by_step(plots.smoothing)))
        .collect();
    let map: Vec<Series> = plots
        .map_history
        .iter()
        .map(|(s, rows)| series(s, rows.iter().map(|r| (r[0], r[2])).collect()))
        .collect();
    let pr: Vec<Series> = latest
        .iter()
        .map(|(s, r)| {
            let curve = r.evaluation.pr_curve().iter();
            series(
                s,
                curve
                    .map(|p| (f64::from(p.recall), f64::from(p.precision)))
                    .collect(),
            )
        })
        .collect();
    write_run_plots(dir, &loss, &map, &pr)
}

/// A sweep folder opened in the app: its heat map and its table.
pub struct SweepView {
    pub folder: PathBuf,
    pub texture: egui::TextureHandle,
    /// `sweep.csv` as lines of text.
    pub rows: Vec<String>,
}

impl SweepView {
    /// Reads `sweep.png` and `sweep.csv` from `folder`.
    pub fn open(ctx: &egui::Context, folder: &Path) -> anyhow::Result<Self> {
        let png = folder.join("sweep.png");
        let image = image::open(&png)
            .with_context(|| {
                format!(
                    "{} holds no sweep.png (run `ohem-studio sweep`)",
                    folder.display()
                )
            })?
            .to_rgba8();
        let size = [image.width() as usize, image.height() as usize];
        let pixels = egui::ColorImage::from_rgba_unmultiplied(size, image.as_raw());
        let texture = ctx.load_texture("sweep", pixels, egui::TextureOptions::LINEAR);
        let rows = std::fs::read_to_string(folder.join("sweep.csv"))
            .map(|text| text.lines().map(String::from).collect())
            .unwrap_or_default();
        Ok(Self {
            folder: folder.to_path_buf(),
            texture,
            rows,
        })
    }

    /// The window showing the sweep; `open` becomes false when the person closes it.
    pub fn ui(&self, ctx: &egui::Context, open: &mut bool) {
        egui::Window::new(format!("Sweep · {}", self.folder.display()))
            .open(open)
            .resizable(true)
            .show(ctx, |ui| {
                let width = ui.available_width().min(720.0);
                let size = self.texture.size_vec2() * (width / self.texture.size_vec2().x);
                ui.image((self.texture.id(), size));
                egui::CollapsingHeader::new(format!(
                    "sweep.csv ({} rows)",
                    self.rows.len().saturating_sub(1)
                ))
                .show(ui, |ui| {
                    for row in &self.rows {
                        ui.monospace(row);
                    }
                });
            });
    }
}
