//! The validation-image viewer: one image with the latest evaluation's detections at the score
//! threshold (true positives green, false positives red) and the objects missed (a third colour).

use std::collections::BTreeMap;
use std::sync::Arc;

use egui::RichText;

use super::images::{image_with_boxes_ui, BoxStyle, ImageTextures, Labels, Split};
use super::theme;
use crate::data::Dataset;
use crate::eval::Outcome;
use crate::files::file_name;
use crate::geometry::Rect;
use crate::train::config::Strategy;
use crate::train::messages::EvalReport;

/// Up to this many boxes on an image, each is labelled; above it only the one under the pointer.
const MAX_LABELLED_BOXES: usize = 8;

/// Which of an image's boxes the viewer draws.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BoxFilter {
    /// Every detection at the threshold (up to the top N) and every annotated box.
    #[default]
    All,
    /// False positives only, over the annotated boxes.
    FalsePositives,
    /// The annotated boxes no detection found, nothing else.
    Misses,
}

/// What the viewer shows.
pub struct DetectionsState {
    /// Position in the (possibly sorted) image order.
    pub position: usize,
    pub sort_by_false_positives: bool,
    /// Show the full-batch model's detections instead of OHEM's.
    pub show_full_batch: bool,
    /// At most this many detections per image, highest score first.
    pub top_n: usize,
    pub filter: BoxFilter,
}

impl Default for DetectionsState {
    fn default() -> Self {
        Self {
            position: 0,
            sort_by_false_positives: false,
            show_full_batch: false,
            top_n: 20,
            filter: BoxFilter::All,
        }
    }
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
    let report = shown_report(state, latest).cloned();
    let order = image_order(
        dataset,
        report.as_deref(),
        threshold,
        state.sort_by_false_positives,
    );
    state.position = state.position.min(order.len() - 1);
    viewer_settings_ui(ui, state, order.len());
    let image = order[state.position];
    let record = &dataset.val[image];
    let Some(report) = report else {
        ui.weak("No evaluation yet: boxes appear after the first one (or press Evaluate now).");
        let texture = textures.get(ui.ctx(), Split::Val, image, record);
        let boxes = ground_truth_boxes(dataset, image, None, threshold, state.filter);
        image_with_boxes_ui(
            ui,
            &texture,
            record,
            &boxes,
            ui.available_size(),
            Labels::OnHover,
        );
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

    let mut boxes = ground_truth_boxes(dataset, image, Some(&report), threshold, state.filter);
    let detections = detection_boxes(&report, image, threshold, state);
    ui.weak(format!(
        "showing {} of {} detections at ≥ {threshold:.2}",
        detections.shown.len(),
        detections.total
    ));
    boxes.extend(detections.shown);
    let labels = if boxes.len() <= MAX_LABELLED_BOXES {
        Labels::Always
    } else {
        Labels::OnHover
    };
    let texture = textures.get(ui.ctx(), Split::Val, image, record);
    let response = image_with_boxes_ui(ui, &texture, record, &boxes, ui.available_size(), labels);
    response.on_hover_text(record.path.display().to_string());
}

/// The evaluation the viewer shows: OHEM's (or full batch's when asked), else the first there is.
pub fn shown_report<'a>(
    state: &DetectionsState,
    latest: &'a BTreeMap<Strategy, Arc<EvalReport>>,
) -> Option<&'a Arc<EvalReport>> {
    let wanted = if state.show_full_batch {
        Strategy::FullBatch
    } else {
        Strategy::Ohem
    };
    latest.get(&wanted).or_else(|| latest.values().next())
}

/// Image navigation, sorting, the model shown, top N and the box filter.
fn viewer_settings_ui(ui: &mut egui::Ui, state: &mut DetectionsState, images: usize) {
    ui.horizontal_wrapped(|ui| {
        if ui.button("< prev").clicked() {
            state.position = state.position.checked_sub(1).unwrap_or(images - 1);
        }
        if ui.button("next >").clicked() {
            state.position = (state.position + 1) % images;
        }
        ui.label(format!("{}/{}", state.position + 1, images));
        ui.checkbox(
            &mut state.sort_by_false_positives,
            "sort by false positives",
        );
        ui.checkbox(&mut state.show_full_batch, "full-batch model");
    });
    ui.horizontal_wrapped(|ui| {
        ui.add(
            egui::Slider::new(&mut state.top_n, 1..=100)
                .logarithmic(true)
                .text("top N"),
        )
        .on_hover_text("At most this many detections per image, highest score first");
        ui.selectable_value(&mut state.filter, BoxFilter::All, "all");
        ui.selectable_value(
            &mut state.filter,
            BoxFilter::FalsePositives,
            "false positives only",
        );
        ui.selectable_value(&mut state.filter, BoxFilter::Misses, "misses only");
    });
}

/// The detections the viewer draws on one image, and how many pass the threshold.
struct DetectionBoxes {
    shown: Vec<(Rect, BoxStyle)>,
    total: usize,
}

/// The image's detections at the threshold, highest score first, filtered and cut to the top N;
/// each labelled with its score and, for a false positive, its error type.
fn detection_boxes(
    report: &EvalReport,
    image: usize,
    threshold: f32,
    state: &DetectionsState,
) -> DetectionBoxes {
    // A NaN score is never kept, as in the evaluation.
    let mut kept: Vec<usize> = (0..report.detections.len())
        .filter(|&i| report.detections[i].image == image && report.detections[i].score >= threshold)
        .collect();
    let total = kept.len();
    kept.sort_by(|&a, &b| {
        report.detections[b]
            .score
            .total_cmp(&report.detections[a].score)
    });
    let shown = kept
        .into_iter()
        .filter_map(|index| {
            let outcome = report.evaluation.outcome(index);
            let wanted = match state.filter {
                BoxFilter::All => true,
                BoxFilter::FalsePositives => outcome == Outcome::FalsePositive,
                BoxFilter::Misses => false,
            };
            wanted.then(|| detection_box(report, index, outcome))
        })
        .take(state.top_n)
        .collect();
    DetectionBoxes { shown, total }
}

fn detection_box(report: &EvalReport, index: usize, outcome: Outcome) -> (Rect, BoxStyle) {
    let detection = &report.detections[index];
    let color = match outcome {
        Outcome::TruePositive { .. } => theme::TRUE_POSITIVE,
        Outcome::FalsePositive => theme::FALSE_POSITIVE,
        Outcome::Ignored => theme::IGNORED,
    };
    let label = match report.evaluation.error_kind(index) {
        Some(kind) => format!("{} {:.2}", kind.label(), detection.score),
        None => format!("{:.2}", detection.score),
    };
    (
        detection.rect,
        BoxStyle {
            color,
            width: 2.0,
            dashed: false,
            label: Some(label),
        },
    )
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
    filter: BoxFilter,
) -> Vec<(Rect, BoxStyle)> {
    // Ground-truth indices run over the validation images in order, each image's boxes in order.
    let first: usize = dataset.val[..image].iter().map(|r| r.boxes.len()).sum();
    dataset.val[image]
        .boxes
        .iter()
        .enumerate()
        .filter_map(|(i, b)| {
            let missed =
                report.is_some_and(|r| r.evaluation.is_false_negative(first + i, threshold));
            if filter == BoxFilter::Misses && !missed {
                return None;
            }
            let style = if missed {
                BoxStyle {
                    color: theme::MISSED,
                    width: 3.0,
                    dashed: true,
                    label: Some("missed".to_string()),
                }
            } else {
                BoxStyle {
                    color: theme::GROUND_TRUTH,
                    width: 1.0,
                    dashed: true,
                    label: None,
                }
            };
            Some((b.rect, style))
        })
        .collect()
}
