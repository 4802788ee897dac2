//! A training image seen from one window: its objects, the window, and on request a heat map of
//! the detector's object score over the whole image at that window's size. The map is computed
//! by the trainer (one read-only pass between two steps); this module asks for it and draws it.

use egui::{Color32, TextureHandle, TextureOptions, Vec2};

use super::images::{image_with_overlay_ui, BoxStyle, ImageTextures, Labels, Overlay, Split};
use crate::data::{Dataset, ImageRecord};
use crate::files::file_name;
use crate::geometry::Rect;
use crate::train::messages::{ScoreGrid, ScoreMapReport};

/// Colour of the window in the source image.
const WINDOW: Color32 = Color32::YELLOW;
/// Colour of the annotated objects in the source image.
const OBJECT_BOX: Color32 = Color32::from_rgb(60, 200, 90);
/// Opacity of the heat map at the top of its colour scale.
const HEAT_ALPHA: f32 = 190.0;
/// The colour scale spans the map's lowest to highest score, and at least this much: a young
/// model scores everything near 0.5, and the places it scores a little higher are the story.
const MIN_SCORE_SPAN: f32 = 0.2;

/// The heat map of a source view.
enum Heat {
    /// To be asked for on the next frame.
    Wanted,
    /// Asked for; the trainer answers between two steps.
    Asked,
    Ready {
        report: ScoreMapReport,
        /// Uploaded the first time it is drawn.
        texture: Option<TextureHandle>,
    },
}

/// An opened training image with one window on it.
pub struct SourceView {
    pub image: usize,
    pub window: Rect,
    /// What the window is, said above the image.
    pub caption: String,
    show_heat: bool,
    heat: Heat,
}

impl SourceView {
    pub fn new(image: usize, window: Rect, caption: String) -> Self {
        Self {
            image,
            window,
            caption,
            show_heat: true,
            heat: Heat::Wanted,
        }
    }

    /// Keeps `report` when it answers this view; `false` when it is about another one.
    pub fn take_score_map(&mut self, report: ScoreMapReport) -> bool {
        let ours = report.image == self.image && report.window == self.window;
        if ours {
            self.heat = Heat::Ready {
                report,
                texture: None,
            };
        }
        ours
    }

    /// The score map on screen, if any.
    pub fn score_map(&self) -> Option<&ScoreMapReport> {
        match &self.heat {
            Heat::Ready { report, .. } => Some(report),
            _ => None,
        }
    }
}

/// The "Source image" window. Returns whether it stays open, and the image and window of a
/// score map to ask the trainer for.
pub fn source_window_ui(
    ui: &mut egui::Ui,
    view: &mut SourceView,
    dataset: Option<&Dataset>,
    textures: &mut ImageTextures,
) -> (bool, Option<(usize, Rect)>) {
    let Some(record) = dataset.and_then(|d| d.train.get(view.image)) else {
        return (false, None);
    };
    let mut open = true;
    let mut request = None;
    let max = ui.ctx().content_rect().size() * 0.6;
    egui::Window::new("Source image")
        .open(&mut open)
        .resizable(false)
        .show(ui.ctx(), |ui| {
            ui.label(&view.caption);
            ui.weak(format!(
                "{} (train image {}): RoI in yellow, objects dashed green",
                file_name(&record.path),
                view.image
            ));
            heat_controls_ui(ui, view);
            if view.show_heat && matches!(view.heat, Heat::Wanted) {
                view.heat = Heat::Asked;
                request = Some((view.image, view.window));
            }
            let overlay = match (&mut view.heat, view.show_heat) {
                (Heat::Ready { report, texture }, true) => heat_texture(ui.ctx(), report, texture),
                _ => None,
            };
            let overlay = overlay.map(|(texture, area)| Overlay {
                texture,
                area: *area,
            });
            window_in_source_ui(ui, textures, view.image, record, view.window, overlay, max);
        });
    (open, request)
}

/// The heat map's switch, what it shows, and its colour scale.
fn heat_controls_ui(ui: &mut egui::Ui, view: &mut SourceView) {
    ui.horizontal_wrapped(|ui| {
        ui.checkbox(&mut view.show_heat, "object score heat map")
            .on_hover_text(
                "The OHEM model's object score for RoIs of this RoI's size all over the image, one feature cell apart",
            );
        if !view.show_heat {
            return;
        }
        match &view.heat {
            Heat::Wanted | Heat::Asked => {
                ui.weak("computing…");
            }
            Heat::Ready { report, .. } => {
                match &report.map {
                    Ok(grid) => {
                        let (low, high) = score_range(grid);
                        ui.weak(format!(
                            "step {}, RoIs of {:.0}×{:.0} px: {low:.2}",
                            report.step, report.roi_px.0, report.roi_px.1
                        ));
                        colour_scale_ui(ui);
                        ui.weak(format!("{high:.2}"));
                    }
                    Err(why) => {
                        ui.weak(why);
                    }
                }
                if ui
                    .small_button("recompute")
                    .on_hover_text("Score again with the current weights")
                    .clicked()
                {
                    view.heat = Heat::Wanted;
                }
            }
        }
    });
}

/// The heat map's colours from score 0 to 1.
fn colour_scale_ui(ui: &mut egui::Ui) {
    let (rect, _) = ui.allocate_exact_size(Vec2::new(80.0, 10.0), egui::Sense::hover());
    let painter = ui.painter_at(rect);
    let steps = 16;
    for i in 0..steps {
        let t = i as f32 / (steps - 1) as f32;
        let w = rect.width() / steps as f32;
        let cell = egui::Rect::from_min_size(
            rect.min + Vec2::new(i as f32 * w, 0.0),
            Vec2::new(w + 0.5, rect.height()),
        );
        painter.rect_filled(cell, 0.0, heat_colour(t, (0.0, 1.0)).to_opaque());
    }
}

/// The texture of a score grid, uploaded once, and the area it covers.
fn heat_texture<'a>(
    ctx: &egui::Context,
    report: &'a ScoreMapReport,
    texture: &'a mut Option<TextureHandle>,
) -> Option<(&'a TextureHandle, &'a Rect)> {
    let grid: &ScoreGrid = report.map.as_ref().ok()?;
    if grid.cols == 0 || grid.rows == 0 || grid.scores.len() != grid.cols * grid.rows {
        return None;
    }
    let texture = texture.get_or_insert_with(|| {
        let range = score_range(grid);
        let pixels: Vec<Color32> = grid.scores.iter().map(|&s| heat_colour(s, range)).collect();
        let image = egui::ColorImage::new([grid.cols, grid.rows], pixels);
        ctx.load_texture(
            format!("score-map-{}-{}", report.image, report.step),
            image,
            TextureOptions::LINEAR,
        )
    });
    Some((texture, &grid.area))
}

/// The scores the colour scale spans: the map's lowest to highest, at least [`MIN_SCORE_SPAN`]
/// apart, within 0–1.
fn score_range(grid: &ScoreGrid) -> (f32, f32) {
    let finite = grid.scores.iter().copied().filter(|s| s.is_finite());
    let low = finite.clone().fold(1.0f32, f32::min).clamp(0.0, 1.0);
    let high = finite.fold(0.0f32, f32::max).clamp(0.0, 1.0);
    let high = high.max(low + MIN_SCORE_SPAN).min(1.0);
    (low.min(high - MIN_SCORE_SPAN).max(0.0), high)
}

/// Transparent purple at the low end of `range` to nearly opaque yellow at its high end, the
/// opacity growing with the square: the image stays visible where the model sees least.
fn heat_colour(score: f32, (low, high): (f32, f32)) -> Color32 {
    let s = if score.is_finite() {
        ((score - low) / (high - low).max(1e-6)).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let lerp = |a: f32, b: f32| (a + (b - a) * s).round() as u8;
    Color32::from_rgba_unmultiplied(
        lerp(110.0, 255.0),
        lerp(20.0, 230.0),
        lerp(170.0, 30.0),
        (HEAT_ALPHA * s * s).round() as u8,
    )
}

/// A training image with its objects dashed green, one window in yellow, and an optional
/// overlay between the image and the boxes.
pub fn window_in_source_ui(
    ui: &mut egui::Ui,
    textures: &mut ImageTextures,
    index: usize,
    record: &ImageRecord,
    window: Rect,
    overlay: Option<Overlay<'_>>,
    max_size: Vec2,
) {
    let texture = textures.get(ui.ctx(), Split::Train, index, record);
    // Thin lines on a small preview, thicker on the opened image.
    let line_width = if max_size.x > 400.0 { 1.2 } else { 1.0 };
    let object = BoxStyle {
        color: OBJECT_BOX,
        width: line_width,
        dashed: true,
        label: None,
    };
    let mut boxes: Vec<(Rect, BoxStyle)> = record
        .boxes
        .iter()
        .map(|b| (b.rect, object.clone()))
        .collect();
    boxes.push((
        window,
        BoxStyle {
            color: WINDOW,
            width: line_width * 2.5,
            dashed: false,
            label: None,
        },
    ));
    image_with_overlay_ui(
        ui,
        &texture,
        record,
        overlay,
        &boxes,
        max_size,
        Labels::Always,
    );
}
