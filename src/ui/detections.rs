//! The validation-image viewer: one image with the latest evaluation's detections at the score
//! threshold (true positives green, false positives red) and the objects missed (a third colour).

use std::collections::BTreeMap;
use std::sync::Arc;

use egui::RichText;

use super::images::{image_with_boxes_ui, BoxStyle, ImageTextures, Split};
use super::theme;
use crate::data::Dataset;
use crate::eval::Outcome;
use crate::files::file_name;
use crate::geometry::Rect;
use crate::train::config::Strategy;
use crate::train::messages::EvalReport;

/// Above this many false positives on an image, their types are left to the breakdown plot.
const MAX_LABELLED_FALSE_POSITIVES: usize = 10;

/// What the viewer shows.
#[derive(Default)]
pub struct DetectionsState {
    /// Position in the (possibly sorted) image order.
    pub position: usize,
    pub sort_by_false_positives: bool,
    /// Show the full-batch model's detections instead of OHEM's.
    pub show_full_batch: bool,
}

pub fn detections_ui(
    ui: &mut egui::Ui,
    state: &mut DetectionsState,
    dataset: Option<&Dataset>,
    latest: &BTreeMap<Strategy, Arc<EvalReport>>,
    textures: &mut ImageTextures,
    threshold: f32,
) {
    let Some(dataset) = dataset.filter(|d| !d.val.is_empty()) else {
        ui.weak("No validation images.");
        return;
    };
    let wanted = if state.show_full_batch {
        Strategy::FullBatch
    } else {
        Strategy::Ohem
    };
    let report = latest
        .get(&wanted)
        .or_else(|| latest.values().next())
        .cloned();
    let order = image_order(
        dataset,
        report.as_deref(),
        threshold,
        state.sort_by_false_positives,
    );
    state.position = state.position.min(order.len() - 1);

    ui.horizontal_wrapped(|ui| {
        if ui.button("< prev").clicked() {
            state.position = state.position.checked_sub(1).unwrap_or(order.len() - 1);
        }
        if ui.button("next >").clicked() {
            state.position = (state.position + 1) % order.len();
        }
        ui.label(format!("{}/{}", state.position + 1, order.len()));
        ui.checkbox(
            &mut state.sort_by_false_positives,
            "sort by false positives",
        );
        ui.checkbox(&mut state.show_full_batch, "full-batch model");
    });
    let image = order[state.position];
    let record = &dataset.val[image];
    let Some(report) = report else {
        ui.weak("No evaluation yet: boxes appear after the first one (or press Evaluate now).");
        let texture = textures.get(ui.ctx(), Split::Val, image, record);
        let boxes = ground_truth_boxes(dataset, image, None, threshold);
        image_with_boxes_ui(ui, &texture, record, &boxes, ui.available_size());
        return;
    };
    let counts = report.evaluation.image_counts(image, threshold);
    ui.horizontal_wrapped(|ui| {
        ui.label(format!(
            "{} · {} (step {})",
            file_name(&record.path),
            report.strategy.label(),
            report.step
        ));
        ui.label(RichText::new(format!("TP {}", counts.tp)).color(theme::TRUE_POSITIVE));
        ui.label(RichText::new(format!("FP {}", counts.fp)).color(theme::FALSE_POSITIVE));
        ui.label(RichText::new(format!("FN {}", counts.fn_)).color(theme::MISSED));
    });
    legend_ui(ui);

    let mut boxes = ground_truth_boxes(dataset, image, Some(&report), threshold);
    // Types written on every box of a crowded image would hide the image.
    let label_types = counts.fp <= MAX_LABELLED_FALSE_POSITIVES;
    for (index, detection) in report.detections.iter().enumerate() {
        // A NaN score is never kept, as in the evaluation.
        let kept = detection.score >= threshold;
        if detection.image != image || !kept {
            continue;
        }
        let color = match report.evaluation.outcome(index) {
            Outcome::TruePositive { .. } => theme::TRUE_POSITIVE,
            Outcome::FalsePositive => theme::FALSE_POSITIVE,
            Outcome::Ignored => theme::IGNORED,
        };
        boxes.push((
            detection.rect,
            BoxStyle {
                color,
                width: 2.0,
                dashed: false,
                label: report
                    .evaluation
                    .error_kind(index)
                    .filter(|_| label_types)
                    .map(|k| k.label()),
            },
        ));
    }
    let texture = textures.get(ui.ctx(), Split::Val, image, record);
    let response = image_with_boxes_ui(ui, &texture, record, &boxes, ui.available_size());
    response.on_hover_text(record.path.display().to_string());
}

fn legend_ui(ui: &mut egui::Ui) {
    ui.horizontal_wrapped(|ui| {
        for (text, color, dashed) in [
            ("true positive", theme::TRUE_POSITIVE, false),
            ("false positive", theme::FALSE_POSITIVE, false),
            ("missed (FN)", theme::MISSED, true),
            ("ground truth", theme::GROUND_TRUTH, true),
        ] {
            let (rect, _) = ui.allocate_exact_size(egui::vec2(18.0, 10.0), egui::Sense::hover());
            let stroke = egui::Stroke::new(if dashed { 2.5 } else { 2.0 }, color);
            if dashed {
                ui.painter().extend(egui::Shape::dashed_line(
                    &[rect.left_center(), rect.right_center()],
                    stroke,
                    4.0,
                    3.0,
                ));
            } else {
                ui.painter()
                    .rect_stroke(rect.shrink(1.0), 0.0, stroke, egui::StrokeKind::Middle);
            }
            ui.label(RichText::new(text).small());
        }
    });
}

/// Image indices in viewing order: as in the dataset, or most false positives first.
fn image_order(
    dataset: &Dataset,
    report: Option<&EvalReport>,
    threshold: f32,
    by_false_positives: bool,
) -> Vec<usize> {
    let mut order: Vec<usize> = (0..dataset.val.len()).collect();
    if let (true, Some(report)) = (by_false_positives, report) {
        let counts = report.evaluation.counts_per_image(threshold);
        let fp = |i: &usize| counts.get(i).map_or(0, |c| c.fp);
        order.sort_by(|a, b| fp(b).cmp(&fp(a)).then(a.cmp(b)));
    }
    order
}

/// The image's annotated boxes: missed ones thick and dashed in the "missed" colour, the rest
/// thin and dashed.
fn ground_truth_boxes(
    dataset: &Dataset,
    image: usize,
    report: Option<&EvalReport>,
    threshold: f32,
) -> Vec<(Rect, BoxStyle)> {
    // Ground-truth indices run over the validation images in order, each image's boxes in order.
    let first: usize = dataset.val[..image].iter().map(|r| r.boxes.len()).sum();
    dataset.val[image]
        .boxes
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let missed =
                report.is_some_and(|r| r.evaluation.is_false_negative(first + i, threshold));
            let style = if missed {
                BoxStyle {
                    color: theme::MISSED,
                    width: 3.0,
                    dashed: true,
                    label: None,
                }
            } else {
                BoxStyle {
                    color: theme::GROUND_TRUTH,
                    width: 1.0,
                    dashed: true,
                    label: None,
                }
            };
            (b.rect, style)
        })
        .collect()
}
