//! Greedy VOC matching of detections to ground-truth boxes, done once for every score threshold.

use std::collections::HashMap;

use super::{Detection, GroundTruth, Outcome};
use crate::geometry::descending_order;

/// The matching of every detection and every ground-truth box.
pub(super) struct Matching {
    /// Detection indices in descending score order, ties in input order.
    pub order: Vec<usize>,
    /// One per detection.
    pub outcomes: Vec<Outcome>,
    /// One per ground-truth box: the detection that matched it.
    pub gt_matched: Vec<Option<usize>>,
}

/// The score used for ordering and thresholds: NaN counts as the lowest possible score.
pub(super) fn effective_score(score: f32) -> f32 {
    if score.is_nan() {
        f32::NEG_INFINITY
    } else {
        score
    }
}

/// VOC devkit matching (`VOCevaldet`): each detection, best score first, looks at the boxes of
/// its image and class and takes the one with the highest IoU, matched or not. Below the
/// threshold → false positive; a difficult box → ignored; a box already taken → false positive
/// (a duplicate); otherwise a true positive that takes the box.
///
/// A match also needs the boxes to overlap, so an `iou_threshold` of 0 does not pair disjoint
/// boxes; degenerate boxes have IoU 0 and never match. Detections of a class ≥ `num_classes`
/// never match, and a NaN `iou_threshold` matches nothing.
pub(super) fn match_detections(
    detections: &[Detection],
    ground_truth: &[GroundTruth],
    scores: &[f32],
    num_classes: usize,
    iou_threshold: f32,
) -> Matching {
    let mut boxes_by_image_class: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
    for (index, gt) in ground_truth.iter().enumerate() {
        boxes_by_image_class
            .entry((gt.image, gt.class_id))
            .or_default()
            .push(index);
    }

    let order = descending_order(scores);
    let mut outcomes = vec![Outcome::FalsePositive; detections.len()];
    let mut gt_matched = vec![None; ground_truth.len()];
    for &det_index in &order {
        let detection = &detections[det_index];
        if detection.class_id >= num_classes {
            continue;
        }
        let Some(candidates) = boxes_by_image_class.get(&(detection.image, detection.class_id))
        else {
            continue;
        };
        let mut best: Option<(usize, f32)> = None;
        for &gt_index in candidates {
            let iou = detection.rect.iou(&ground_truth[gt_index].rect);
            // Strictly greater: among equal IoUs the first box wins, as with VOC's argmax.
            if iou > 0.0 && best.is_none_or(|(_, best_iou)| iou > best_iou) {
                best = Some((gt_index, iou));
            }
        }
        let Some((gt_index, iou)) = best else {
            continue;
        };
        if iou < iou_threshold || iou_threshold.is_nan() {
            continue;
        }
        if ground_truth[gt_index].difficult {
            outcomes[det_index] = Outcome::Ignored;
        } else if gt_matched[gt_index].is_none() {
            gt_matched[gt_index] = Some(det_index);
            outcomes[det_index] = Outcome::TruePositive { gt: gt_index };
        }
    }
    Matching {
        order,
        outcomes,
        gt_matched,
    }
}
