//! One tile of the hard-example gallery: the window's picture (the pick's thumbnail, or for a
//! what-if pick its window cut from the training image) framed by kind, the what-if marks, the
//! loss bar split into the classification and box terms, and the label it was trained toward.

use egui::{Color32, Sense, Stroke, TextureHandle, Vec2};

use super::images::{ImageTextures, Split};
use super::source_view::window_in_source_ui;
use super::theme;
use crate::data::Dataset;
use crate::geometry::Rect;
use crate::train::messages::{HardExample, HardExampleBatch, SeenExample};

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
        Self::from_parts(example.seen.label, example.seen.score, threshold)
    }

    /// The kind of an example trained as `label` that the model scores `score`.
    pub fn from_parts(label: usize, score: f32, threshold: f32) -> Self {
        if label > 0 {
            ExampleKind::Object
        } else if score >= threshold {
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

/// Room under a thumbnail for its loss bar and two lines of text.
pub const LABEL_H: f32 = 28.0;
/// The classification term in a tile's loss bar and numbers.
pub const CLASSIFICATION_TERM: Color32 = Color32::from_rgb(240, 195, 80);
/// The box term in a tile's loss bar and numbers.
pub const BOX_TERM: Color32 = Color32::from_rgb(110, 200, 225);
/// The ring around an example the what-if settings would pick and the batch did not.
pub const WHAT_IF_NEW: Color32 = Color32::from_rgb(255, 225, 60);

/// Whether a tile is one of the batch's picks, and what the what-if settings make of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PickStatus {
    /// Picked, and picked by the what-if settings too (or no what-if is shown).
    Picked,
    /// Picked, but not by the what-if settings.
    Dropped,
    /// Not picked, but picked by the what-if settings.
    New,
}

/// One tile of a shelf.
#[derive(Clone, Copy, Debug)]
pub struct Tile {
    /// Index among the batch's picks (which have thumbnails), `None` for a what-if pick.
    pub pick: Option<usize>,
    pub example: SeenExample,
    pub status: PickStatus,
    /// Rank by loss among the batch's picks, or among the what-if picks.
    pub rank: usize,
}

/// What every shelf and tile is drawn from.
pub struct ShelfContext<'a> {
    pub batch: &'a HardExampleBatch,
    pub thumbnails: &'a [TextureHandle],
    pub dataset: Option<&'a Dataset>,
    pub threshold: f32,
    /// The longest loss bar's loss.
    pub max_loss: f32,
}

/// A tile with its source image on hover; returns what to open when it is clicked.
pub fn tile_with_hover_ui(
    ui: &mut egui::Ui,
    tile: &Tile,
    context: &ShelfContext<'_>,
    textures: &mut ImageTextures,
    cell: f32,
) -> Option<(usize, Rect, String)> {
    let image = tile_image(ui.ctx(), tile, context, textures);
    let description = describe(tile, context);
    let response = tile_ui(ui, tile, &image, cell, context, &description);
    let response = response.on_hover_ui(|ui| {
        source_preview_ui(ui, &tile.example, &description, context.dataset, textures);
    });
    if response.clicked() {
        return tile
            .example
            .source_image
            .map(|i| (i, tile.example.window, description));
    }
    None
}

/// What a tile's picture is.
enum TileImage {
    /// A texture and the part of it to show, drawn into `inner` (a fraction of the tile's
    /// square: a window reaching past the image edge leaves grey around the image part).
    Texture {
        id: egui::TextureId,
        uv: egui::Rect,
        inner: egui::Rect,
    },
    /// No pixels to show: a `pos/` crop outside the picks.
    Placeholder,
}

/// A pick's own thumbnail; for a what-if pick, its window cut from the training image.
fn tile_image(
    ctx: &egui::Context,
    tile: &Tile,
    context: &ShelfContext<'_>,
    textures: &mut ImageTextures,
) -> TileImage {
    let whole = egui::Rect::from_min_max(egui::Pos2::ZERO, egui::pos2(1.0, 1.0));
    if let Some(texture) = tile.pick.and_then(|i| context.thumbnails.get(i)) {
        return TileImage::Texture {
            id: texture.id(),
            uv: whole,
            inner: whole,
        };
    }
    let Some((index, record)) = tile
        .example
        .source_image
        .and_then(|i| Some((i, context.dataset?.train.get(i)?)))
    else {
        return TileImage::Placeholder;
    };
    let window = tile.example.window;
    let (w, h) = (record.width.max(1) as f32, record.height.max(1) as f32);
    let visible = window.clipped(w, h);
    if visible.area() <= 0.0 || window.area() <= 0.0 {
        return TileImage::Placeholder;
    }
    let texture = textures.get(ctx, Split::Train, index, record);
    let fraction = |x: f32, y: f32| {
        egui::pos2(
            (x - window.x0) / window.width(),
            (y - window.y0) / window.height(),
        )
    };
    TileImage::Texture {
        id: texture.id(),
        uv: egui::Rect::from_min_max(
            egui::pos2(visible.x0 / w, visible.y0 / h),
            egui::pos2(visible.x1 / w, visible.y1 / h),
        ),
        inner: egui::Rect::from_min_max(
            fraction(visible.x0, visible.y0),
            fraction(visible.x1, visible.y1),
        ),
    }
}

/// The words a tile stands for: what tests, screen readers and the hover read.
fn describe(tile: &Tile, context: &ShelfContext<'_>) -> String {
    let e = &tile.example;
    let kind = ExampleKind::from_parts(e.label, e.score, context.threshold);
    let what = format!(
        "{}, loss {:.3} (classification {:.3} + box {:.3}), score {:.2}, trained as {}",
        kind.name(),
        e.loss,
        e.classification_loss,
        box_term(e),
        e.score,
        label_name(e.label, context.dataset)
    );
    match tile.status {
        PickStatus::Picked => format!("hard example {}: {what}", tile.rank),
        PickStatus::Dropped => format!("hard example {}, no longer picked: {what}", tile.rank),
        PickStatus::New => format!("would be picked ({}): {what}", tile.rank),
    }
}

fn box_term(e: &SeenExample) -> f32 {
    (e.loss - e.classification_loss).max(0.0)
}

/// "background", or the class name of `label`.
fn label_name(label: usize, dataset: Option<&Dataset>) -> String {
    match label {
        0 => "background".into(),
        c => dataset
            .and_then(|d| d.class_names.get(c - 1))
            .cloned()
            .unwrap_or_else(|| format!("class {}", c - 1)),
    }
}

/// One tile: the picture framed by kind, the what-if marks, the loss bar and two lines.
fn tile_ui(
    ui: &mut egui::Ui,
    tile: &Tile,
    image: &TileImage,
    cell: f32,
    context: &ShelfContext<'_>,
    description: &str,
) -> egui::Response {
    let (rect, response) = ui.allocate_exact_size(Vec2::new(cell, cell + LABEL_H), Sense::click());
    response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Image, true, description));
    if !ui.is_rect_visible(rect) {
        return response;
    }
    let painter = ui.painter_at(rect.expand(2.0));
    let image_rect = egui::Rect::from_min_size(rect.min, Vec2::splat(cell)).shrink(3.0);
    picture_ui(&painter, image, image_rect, tile.status);
    let e = &tile.example;
    let kind = ExampleKind::from_parts(e.label, e.score, context.threshold);
    let (color, width) = match kind {
        ExampleKind::FalsePositive => (theme::FALSE_POSITIVE, 3.0),
        ExampleKind::Object => (theme::OBJECT, 3.0),
        ExampleKind::Background => (theme::NEUTRAL, 1.0),
    };
    let color = if tile.status == PickStatus::Dropped {
        color.gamma_multiply(0.4)
    } else {
        color
    };
    let frame = image_rect.expand(1.5);
    painter.rect_stroke(
        frame,
        2.0,
        Stroke::new(width, color),
        egui::StrokeKind::Middle,
    );
    what_if_marks(&painter, tile.status, frame);
    loss_lines(ui, &painter, rect, cell, e, kind, context);
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

/// The tile's picture, greyed when the what-if settings drop it.
fn picture_ui(painter: &egui::Painter, image: &TileImage, rect: egui::Rect, status: PickStatus) {
    let tint = if status == PickStatus::Dropped {
        Color32::from_gray(105)
    } else {
        Color32::WHITE
    };
    match image {
        TileImage::Texture { id, uv, inner } => {
            if *inner != egui::Rect::from_min_max(egui::Pos2::ZERO, egui::pos2(1.0, 1.0)) {
                painter.rect_filled(rect, 0.0, Color32::from_gray(128).gamma_multiply(0.6));
            }
            let part = egui::Rect::from_min_max(
                rect.lerp_inside(inner.min.to_vec2()),
                rect.lerp_inside(inner.max.to_vec2()),
            );
            painter.image(*id, part, *uv, tint);
        }
        TileImage::Placeholder => {
            painter.rect_filled(rect, 2.0, Color32::from_gray(45));
            painter.text(
                rect.center(),
                egui::Align2::CENTER_CENTER,
                "pos/ crop",
                egui::FontId::proportional(10.0),
                Color32::from_gray(170),
            );
        }
    }
}

/// A ring and a word for what the what-if settings change.
fn what_if_marks(painter: &egui::Painter, status: PickStatus, frame: egui::Rect) {
    let badge = |text: &str, fill: Color32, ink: Color32| {
        let galley = painter.layout_no_wrap(text.into(), egui::FontId::proportional(9.5), ink);
        let at = frame.left_top() + Vec2::new(2.0, 2.0);
        let back = egui::Rect::from_min_size(at, galley.size()).expand(1.5);
        painter.rect_filled(back, 2.0, fill);
        painter.galley(at, galley, ink);
    };
    match status {
        PickStatus::Picked => {}
        PickStatus::New => {
            painter.rect_stroke(
                frame.expand(2.5),
                3.0,
                Stroke::new(2.0, WHAT_IF_NEW),
                egui::StrokeKind::Middle,
            );
            badge("new", WHAT_IF_NEW, Color32::BLACK);
        }
        PickStatus::Dropped => badge(
            "not picked",
            Color32::from_gray(40),
            Color32::from_gray(200),
        ),
    }
}

/// The loss bar (classification then box term, as long as the loss over the longest one), the
/// two terms, and the label the example was trained toward with its score.
fn loss_lines(
    ui: &egui::Ui,
    painter: &egui::Painter,
    rect: egui::Rect,
    cell: f32,
    e: &SeenExample,
    kind: ExampleKind,
    context: &ShelfContext<'_>,
) {
    let top = rect.top() + cell - 1.0;
    let full = cell - 6.0;
    let share = |v: f32| (v / context.max_loss.max(1e-6)).clamp(0.0, 1.0) * full;
    let x = rect.left() + 3.0;
    let cls_w = share(e.classification_loss.max(0.0));
    let box_w = share(box_term(e)).min(full - cls_w);
    let bar = |x0: f32, w: f32, c: Color32| {
        let r = egui::Rect::from_min_size(egui::pos2(x0, top), Vec2::new(w, 3.0));
        painter.rect_filled(r, 0.0, c);
    };
    bar(x, full, ui.visuals().faint_bg_color);
    bar(x, cls_w, CLASSIFICATION_TERM);
    bar(x + cls_w, box_w, BOX_TERM);
    let wide = cell >= 84.0;
    let term = |name: &str, v: f32| {
        if wide {
            format!("{name} {v:.2}")
        } else {
            format!("{v:.2}")
        }
    };
    let font = egui::FontId::proportional(9.0);
    // The score ("p 0.93", the object probability) takes about 30 px on the right.
    let label = fitted_label(painter, e.label, context.dataset, &font, full - 30.0);
    let score_color = if kind == ExampleKind::FalsePositive {
        theme::FALSE_POSITIVE
    } else {
        ui.visuals().text_color()
    };
    let (left, right) = (x, rect.right() - 3.0);
    let lines = [
        (
            top + 4.0,
            term("cls", e.classification_loss),
            CLASSIFICATION_TERM,
        ),
        (top + 4.0, term("box", box_term(e)), BOX_TERM),
        (top + 15.0, label, ui.visuals().weak_text_color()),
        (top + 15.0, format!("p {:.2}", e.score), score_color),
    ];
    for (n, (y, text, colour)) in lines.into_iter().enumerate() {
        // Even entries on the left, odd ones on the right.
        let (x, align) = if n % 2 == 0 {
            (left, egui::Align2::LEFT_TOP)
        } else {
            (right, egui::Align2::RIGHT_TOP)
        };
        painter.text(egui::pos2(x, y), align, text, font.clone(), colour);
    }
}

/// "as bg" or "as <class>", shortened until it fits in `width` pixels in `font`: without
/// "as ", then cut with an ellipsis.
fn fitted_label(
    painter: &egui::Painter,
    label: usize,
    dataset: Option<&Dataset>,
    font: &egui::FontId,
    width: f32,
) -> String {
    let name = match label {
        0 => "bg".to_string(),
        c => label_name(c, dataset),
    };
    let fits = |text: &str| {
        let galley = painter.layout_no_wrap(text.to_string(), font.clone(), Color32::WHITE);
        galley.size().x <= width
    };
    let full = format!("as {name}");
    if fits(&full) {
        return full;
    }
    if fits(&name) {
        return name;
    }
    let chars: Vec<char> = name.chars().collect();
    (1..chars.len())
        .rev()
        .map(|n| chars[..n].iter().collect::<String>() + "…")
        .find(|cut| fits(cut))
        .unwrap_or_else(|| name.clone())
}

/// The training image an example was cut from, with the window drawn on it.
fn source_preview_ui(
    ui: &mut egui::Ui,
    example: &SeenExample,
    description: &str,
    dataset: Option<&Dataset>,
    textures: &mut ImageTextures,
) {
    ui.label(description);
    let Some((index, record)) = example
        .source_image
        .and_then(|i| Some((i, dataset?.train.get(i)?)))
    else {
        ui.weak("(a positive crop: no source image)");
        return;
    };
    ui.weak(format!(
        "{} · click to open with a heat map",
        record.path.display()
    ));
    window_in_source_ui(
        ui,
        textures,
        index,
        record,
        example.window,
        None,
        Vec2::splat(320.0),
    );
}
