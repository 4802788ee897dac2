//! Dataset images as textures (uploaded once, then cached) and drawing an image with boxes on it.

use std::collections::HashMap;

use egui::{Color32, Pos2, Sense, Stroke, TextureHandle, TextureOptions, Vec2};

use crate::data::ImageRecord;
use crate::geometry::Rect;

pub use crate::data::Split;

/// Textures of dataset images, uploaded the first time each is shown.
#[derive(Default)]
pub struct ImageTextures {
    cache: HashMap<(Split, usize), TextureHandle>,
}

impl ImageTextures {
    /// Drops every texture (another dataset was opened).
    pub fn clear(&mut self) {
        self.cache.clear();
    }

    pub fn get(
        &mut self,
        ctx: &egui::Context,
        split: Split,
        index: usize,
        record: &ImageRecord,
    ) -> TextureHandle {
        self.cache
            .entry((split, index))
            .or_insert_with(|| {
                let pixels = &record.pixels;
                let image = egui::ColorImage::from_rgb(
                    [pixels.width() as usize, pixels.height() as usize],
                    pixels.as_raw(),
                );
                ctx.load_texture(format!("{split:?}-{index}"), image, TextureOptions::LINEAR)
            })
            .clone()
    }
}

/// How one box is drawn.
#[derive(Clone, Debug)]
pub struct BoxStyle {
    pub color: Color32,
    pub width: f32,
    pub dashed: bool,
    /// Written above the box's top-left corner, in its colour.
    pub label: Option<String>,
}

/// When box labels are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Labels {
    Always,
    /// Only the label of the smallest box under the pointer: many labels would hide the image.
    OnHover,
}

/// Draws `texture` (the downscaled pixels of `record`) fitted into `max_size`, with `boxes`
/// given in the original image's pixels on top. Returns the image's response.
pub fn image_with_boxes_ui(
    ui: &mut egui::Ui,
    texture: &TextureHandle,
    record: &ImageRecord,
    boxes: &[(Rect, BoxStyle)],
    max_size: Vec2,
    labels: Labels,
) -> egui::Response {
    image_with_overlay_ui(ui, texture, record, None, boxes, max_size, labels)
}

/// An image drawn over another one, stretched over `area` (the image's original pixels).
pub struct Overlay<'a> {
    pub texture: &'a TextureHandle,
    pub area: Rect,
}

/// [`image_with_boxes_ui`] with `overlay` painted between the image and the boxes.
pub fn image_with_overlay_ui(
    ui: &mut egui::Ui,
    texture: &TextureHandle,
    record: &ImageRecord,
    overlay: Option<Overlay<'_>>,
    boxes: &[(Rect, BoxStyle)],
    max_size: Vec2,
    labels: Labels,
) -> egui::Response {
    let original = Vec2::new(record.width.max(1) as f32, record.height.max(1) as f32);
    let fit = (max_size.x / original.x)
        .min(max_size.y / original.y)
        .max(0.01);
    let (rect, response) = ui.allocate_exact_size(original * fit, Sense::click());
    let painter = ui.painter_at(rect);
    let whole = egui::Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0));
    painter.image(texture.id(), rect, whole, Color32::WHITE);
    let to_screen = |b: &Rect| {
        egui::Rect::from_min_max(
            rect.min + Vec2::new(b.x0, b.y0) * fit,
            rect.min + Vec2::new(b.x1, b.y1) * fit,
        )
    };
    if let Some(overlay) = overlay {
        painter.image(
            overlay.texture.id(),
            to_screen(&overlay.area),
            whole,
            Color32::WHITE,
        );
    }
    let hovered = match labels {
        Labels::Always => None,
        Labels::OnHover => response.hover_pos().and_then(|pointer| {
            boxes
                .iter()
                .enumerate()
                .filter(|(_, (b, style))| style.label.is_some() && to_screen(b).contains(pointer))
                .min_by(|(_, (a, _)), (_, (b, _))| a.area().total_cmp(&b.area()))
                .map(|(i, _)| i)
        }),
    };
    for (i, (b, style)) in boxes.iter().enumerate() {
        let show_label = labels == Labels::Always || hovered == Some(i);
        draw_box(&painter, to_screen(b), style, show_label);
    }
    response
}

/// One box in screen coordinates, with its label above it when `show_label`.
fn draw_box(painter: &egui::Painter, screen: egui::Rect, style: &BoxStyle, show_label: bool) {
    let stroke = Stroke::new(style.width, style.color);
    if style.dashed {
        let c = [
            screen.left_top(),
            screen.right_top(),
            screen.right_bottom(),
            screen.left_bottom(),
            screen.left_top(),
        ];
        painter.extend(egui::Shape::dashed_line(&c, stroke, 6.0, 4.0));
    } else {
        painter.rect_stroke(screen, 0.0, stroke, egui::StrokeKind::Middle);
    }
    if let Some(label) = style.label.as_ref().filter(|_| show_label) {
        let at = screen.left_top();
        let galley = painter.layout_no_wrap(
            label.clone(),
            egui::FontId::proportional(11.0),
            Color32::WHITE,
        );
        let text_rect = egui::Align2::LEFT_BOTTOM.anchor_size(at, galley.size());
        painter.rect_filled(text_rect.expand(1.0), 2.0, style.color);
        painter.galley(text_rect.min, galley, Color32::WHITE);
    }
}
