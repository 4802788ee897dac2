//! The hard examples OHEM selected in a batch: a grid of window thumbnails, highest loss
//! first, with a bounded history to step back through and a count of the most-picked images.

use std::collections::{HashMap, VecDeque};

use egui::{Color32, Sense, Stroke, TextureHandle, TextureOptions, Vec2};

use super::images::{image_with_boxes_ui, BoxStyle, ImageTextures, Labels, Split};
use super::theme;
use crate::data::{Dataset, ImageRecord};
use crate::files::file_name;
use crate::geometry::Rect;
use crate::train::messages::{HardExample, HardExampleBatch};

/// Batches kept for stepping back.
pub const HISTORY_LEN: usize = 50;

/// Room under a thumbnail for its loss and score.
const LABEL_H: f32 = 26.0;
/// Space between thumbnails.
const GAP: f32 = 4.0;

/// What a hard example is, at the current score threshold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExampleKind {
    /// A window of an object.
    Object,
    /// Background the model scores at or above the threshold: it would be a false positive.
    FalsePositive,
    /// Background the model already rejects, picked for its loss alone.
    Background,
}

impl ExampleKind {
    pub fn of(example: &HardExample, threshold: f32) -> Self {
        if example.label > 0 {
            ExampleKind::Object
        } else if example.score >= threshold {
            ExampleKind::FalsePositive
        } else {
            ExampleKind::Background
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExampleKind::Object => "object",
            ExampleKind::FalsePositive => "false positive",
            ExampleKind::Background => "background",
        }
    }
}

struct BatchView {
    batch: HardExampleBatch,
    /// Uploaded the first time the batch is shown, then reused.
    textures: Option<Vec<TextureHandle>>,
}

/// The hard-example history and what the viewer shows.
#[derive(Default)]
pub struct HardExamplesState {
    history: VecDeque<BatchView>,
    /// `None` follows the newest batch; otherwise an index into the history.
    viewing: Option<usize>,
    /// How often each training image supplied a hard example in this run.
    pick_counts: HashMap<usize, usize>,
    /// The source image opened by a click: image index and window.
    opened: Option<(usize, Rect)>,
}

impl HardExamplesState {
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    pub fn record(&mut self, batch: HardExampleBatch) {
        for example in &batch.examples {
            if let Some(image) = example.source_image {
                *self.pick_counts.entry(image).or_default() += 1;
            }
        }
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
            if let Some(i) = &mut self.viewing {
                *i = i.saturating_sub(1);
            }
        }
        self.history.push_back(BatchView {
            batch,
            textures: None,
        });
    }

    /// The batch on screen.
    pub fn shown_batch(&self) -> Option<&HardExampleBatch> {
        let index = self.viewing.unwrap_or(self.history.len().checked_sub(1)?);
        self.history.get(index).map(|v| &v.batch)
    }

    /// The images picked most often so far, most first.
    pub fn hardest_images(&self, n: usize) -> Vec<(usize, usize)> {
        let mut counts: Vec<(usize, usize)> =
            self.pick_counts.iter().map(|(i, c)| (*i, *c)).collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts.truncate(n);
        counts
    }
}

/// The grid of the shown batch's hard examples, its history buttons and the hardest images.
pub fn hard_examples_ui(
    ui: &mut egui::Ui,
    state: &mut HardExamplesState,
    dataset: Option<&Dataset>,
    textures: &mut ImageTextures,
    threshold: f32,
) {
    history_bar_ui(ui, state);
    hardest_images_ui(ui, state, dataset);
    let Some(index) = state.viewing.or_else(|| state.history.len().checked_sub(1)) else {
        ui.weak("No batch yet: open a dataset and press Start.");
        return;
    };
    let ctx = ui.ctx().clone();
    let view = &mut state.history[index];
    let thumbnails = view.textures.get_or_insert_with(|| {
        view.batch
            .examples
            .iter()
            .enumerate()
            .map(|(i, e)| upload_thumbnail(&ctx, view.batch.step, i, e))
            .collect()
    });
    let examples = &view.batch.examples;
    let mut clicked = None;
    egui::ScrollArea::vertical()
        .id_salt("hard_examples_grid")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let available = ui.available_size();
            let cell = cell_size(available, examples.len());
            ui.horizontal_wrapped(|ui| {
                ui.spacing_mut().item_spacing = Vec2::splat(GAP);
                for (rank, (example, texture)) in examples.iter().zip(thumbnails.iter()).enumerate()
                {
                    let response = thumbnail_ui(ui, rank, example, texture, cell, threshold);
                    let response = response.on_hover_ui(|ui| {
                        source_preview_ui(ui, example, dataset, textures, Vec2::splat(320.0));
                    });
                    if response.clicked() {
                        clicked = example.source_image.map(|i| (i, example.window));
                    }
                }
            });
        });
    if clicked.is_some() {
        state.opened = clicked;
    }
    opened_source_ui(ui, state, dataset, textures);
}

fn history_bar_ui(ui: &mut egui::Ui, state: &mut HardExamplesState) {
    ui.horizontal(|ui| {
        let len = state.history.len();
        let current = state.viewing.unwrap_or(len.saturating_sub(1));
        if ui
            .add_enabled(len > 0 && current > 0, egui::Button::new("< earlier"))
            .on_hover_text("Earlier batch")
            .clicked()
        {
            state.viewing = Some(current - 1);
        }
        if ui
            .add_enabled(state.viewing.is_some(), egui::Button::new("later >"))
            .on_hover_text("Later batch")
            .clicked()
        {
            state.viewing = (current + 1 < len.saturating_sub(1)).then_some(current + 1);
        }
        if ui
            .add_enabled(state.viewing.is_some(), egui::Button::new("live"))
            .on_hover_text("Follow the newest batch")
            .clicked()
        {
            state.viewing = None;
        }
        if let Some(batch) = state.shown_batch() {
            let live = if state.viewing.is_none() {
                " (live)"
            } else {
                ""
            };
            ui.label(format!(
                "step {}: {} of K = {}{live}",
                batch.step,
                batch.examples.len(),
                batch.batch_size
            ));
        }
    });
}

fn hardest_images_ui(ui: &mut egui::Ui, state: &HardExamplesState, dataset: Option<&Dataset>) {
    let hardest = state.hardest_images(5);
    if hardest.is_empty() {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        ui.label("Hardest images:");
        for (image, count) in hardest {
            let name = dataset
                .and_then(|d| d.train.get(image))
                .map(|r| file_name(&r.path))
                .unwrap_or_else(|| format!("#{image}"));
            ui.weak(format!("{name} ×{count}"));
        }
    });
}

/// The largest square cell (within sane limits) with which all `n` thumbnails and their two
/// lines of text fit in `available`; the smallest one when they cannot (the grid scrolls).
fn cell_size(available: Vec2, n: usize) -> f32 {
    let fits = |cell: f32| {
        let columns = ((available.x + GAP) / (cell + GAP)).floor().max(1.0);
        let rows = ((available.y + GAP) / (cell + LABEL_H + GAP)).floor();
        columns * rows >= n as f32
    };
    let mut cell = 128.0;
    while cell > 52.0 && !fits(cell) {
        cell -= 4.0;
    }
    cell.min(available.x.max(52.0))
}

fn upload_thumbnail(
    ctx: &egui::Context,
    step: u64,
    rank: usize,
    example: &HardExample,
) -> TextureHandle {
    let t = &example.thumbnail;
    let image = if t.rgba.len() == t.width * t.height * 4 && t.width > 0 {
        egui::ColorImage::from_rgba_unmultiplied([t.width, t.height], &t.rgba)
    } else {
        egui::ColorImage::filled([1, 1], Color32::BLACK)
    };
    ctx.load_texture(
        format!("hard-{step}-{rank}"),
        image,
        TextureOptions::NEAREST,
    )
}

fn thumbnail_ui(
    ui: &mut egui::Ui,
    rank: usize,
    example: &HardExample,
    texture: &TextureHandle,
    cell: f32,
    threshold: f32,
) -> egui::Response {
    let text_h = LABEL_H;
    let (rect, response) = ui.allocate_exact_size(Vec2::new(cell, cell + text_h), Sense::click());
    let kind = ExampleKind::of(example, threshold);
    let description = format!(
        "hard example {}: {}, loss {:.3}, score {:.2}",
        rank + 1,
        kind.name(),
        example.loss,
        example.score
    );
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, &description));
    if !ui.is_rect_visible(rect) {
        return response;
    }
    let painter = ui.painter_at(rect);
    let image_rect = egui::Rect::from_min_size(rect.min, Vec2::splat(cell)).shrink(3.0);
    painter.image(
        texture.id(),
        image_rect,
        egui::Rect::from_min_max(egui::Pos2::ZERO, egui::pos2(1.0, 1.0)),
        Color32::WHITE,
    );
    let (color, width) = match kind {
        ExampleKind::FalsePositive => (theme::FALSE_POSITIVE, 3.0),
        ExampleKind::Object => (theme::OBJECT, 3.0),
        ExampleKind::Background => (theme::NEUTRAL, 1.0),
    };
    painter.rect_stroke(
        image_rect.expand(1.5),
        2.0,
        Stroke::new(width, color),
        egui::StrokeKind::Middle,
    );
    if kind == ExampleKind::Object {
        painter.text(
            image_rect.left_top() + Vec2::new(2.0, 2.0),
            egui::Align2::LEFT_TOP,
            "object",
            egui::FontId::proportional(9.0),
            Color32::WHITE,
        );
    }
    let small = egui::FontId::proportional(9.5);
    let text_color = ui.visuals().text_color();
    painter.text(
        egui::pos2(rect.left() + 2.0, rect.top() + cell),
        egui::Align2::LEFT_TOP,
        format!("loss {:.2}", example.loss),
        small.clone(),
        text_color,
    );
    painter.text(
        egui::pos2(rect.left() + 2.0, rect.top() + cell + 12.0),
        egui::Align2::LEFT_TOP,
        format!("score {:.2}", example.score),
        small,
        if kind == ExampleKind::FalsePositive {
            theme::FALSE_POSITIVE
        } else {
            text_color
        },
    );
    if response.hovered() {
        painter.rect_stroke(
            rect,
            2.0,
            ui.visuals().widgets.hovered.fg_stroke,
            egui::StrokeKind::Inside,
        );
    }
    response
}

/// The training image an example was cut from, with the window drawn on it.
fn source_preview_ui(
    ui: &mut egui::Ui,
    example: &HardExample,
    dataset: Option<&Dataset>,
    textures: &mut ImageTextures,
    max_size: Vec2,
) {
    ui.label(format!(
        "{}: loss {:.3}, score {:.2}",
        if example.label > 0 {
            "object"
        } else {
            "background"
        },
        example.loss,
        example.score
    ));
    let Some((index, record)) = example
        .source_image
        .and_then(|i| Some((i, dataset?.train.get(i)?)))
    else {
        ui.weak("(a positive crop: no source image)");
        return;
    };
    ui.weak(record.path.display().to_string());
    window_in_source_ui(ui, textures, index, record, example.window, 1.0, max_size);
}

/// A training image with its objects dashed green and one window in yellow.
fn window_in_source_ui(
    ui: &mut egui::Ui,
    textures: &mut ImageTextures,
    index: usize,
    record: &ImageRecord,
    window: Rect,
    line_width: f32,
    max_size: Vec2,
) {
    let texture = textures.get(ui.ctx(), Split::Train, index, record);
    let object = BoxStyle {
        color: Color32::from_rgb(60, 200, 90),
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
            color: Color32::YELLOW,
            width: line_width * 2.5,
            dashed: false,
            label: None,
        },
    ));
    image_with_boxes_ui(ui, &texture, record, &boxes, max_size, Labels::Always);
}

fn opened_source_ui(
    ui: &mut egui::Ui,
    state: &mut HardExamplesState,
    dataset: Option<&Dataset>,
    textures: &mut ImageTextures,
) {
    let Some((index, window)) = state.opened else {
        return;
    };
    let Some(record) = dataset.and_then(|d| d.train.get(index)) else {
        state.opened = None;
        return;
    };
    let mut open = true;
    let max = ui.ctx().content_rect().size() * 0.6;
    egui::Window::new("Source image")
        .open(&mut open)
        .resizable(false)
        .show(ui.ctx(), |ui| {
            ui.label(format!(
                "train image {index}, window in yellow, objects dashed green"
            ));
            window_in_source_ui(ui, textures, index, record, window, 1.2, max);
        });
    if !open {
        state.opened = None;
    }
}
