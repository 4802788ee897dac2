//! Detection evaluation: VOC matching, per-class AP and mAP, a pooled precision–recall curve,
//! and TP/FP/FN counts with precision, recall and F1 at any score threshold, overall or per image.
//!
//! Plain Rust over plain values ([`Rect`]s, scores, class ids): no tch, no egui, so the trainer,
//! the CLI and the UI can all call it, and it can be tested without a GPU.
//!
//! Greedy matching of higher-scored detections never depends on lower-scored ones, so one
//! matching with every detection serves all score thresholds: [`evaluate`] stores each
//! detection's [`Outcome`] and the detection matched to each ground-truth box, and every query
//! at a threshold is one pass over those.
//!
//! Conventions, chosen once for the whole module:
//! - A NaN score counts as the lowest possible score (−∞): the detection comes last in every
//!   ranking and is only counted at a threshold of −∞. A NaN threshold counts no detection.
//! - A detection whose `class_id` is ≥ `num_classes` is a false positive: the model claimed an
//!   object of a class that does not exist. A ground-truth box of such a class can never be
//!   matched, so it is a false negative (unless difficult); neither enters any class's AP.
//! - Precision is 1 when there is no detection (nothing claimed, nothing wrong) and recall is 1
//!   when there is no non-difficult box (nothing to miss); F1 is 0 when both are 0.

mod ap;
mod errors;
mod matching;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::data::ImageRecord;
use crate::geometry::Rect;

pub use ap::all_point_ap;
pub use errors::{BoxSize, ErrorBreakdown, ErrorKind};

/// IoU at which a detection matches a ground-truth box (VOC's AP50).
pub const MATCH_IOU: f32 = 0.5;

/// The annotated boxes of `images`, each tagged with its image's index.
pub fn ground_truth(images: &[ImageRecord]) -> Vec<GroundTruth> {
    images
        .iter()
        .enumerate()
        .flat_map(|(image, record)| {
            record.boxes.iter().map(move |b| GroundTruth {
                image,
                class_id: b.class_id,
                rect: b.rect,
                difficult: b.difficult,
            })
        })
        .collect()
}

/// One box predicted by the detector.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// Index of the image it was found in.
    pub image: usize,
    pub class_id: usize,
    pub rect: Rect,
    /// Higher means more confident. NaN counts as the lowest score.
    pub score: f32,
}

impl Detection {
    pub fn new(image: usize, class_id: usize, rect: Rect, score: f32) -> Self {
        Self {
            image,
            class_id,
            rect,
            score,
        }
    }
}

/// One annotated box.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Index of the image it belongs to.
    pub image: usize,
    pub class_id: usize,
    pub rect: Rect,
    /// VOC `difficult`: a detection on it is neither rewarded nor penalised, and missing it is
    /// not a false negative.
    pub difficult: bool,
}

impl GroundTruth {
    /// A box that counts (not `difficult`).
    pub fn new(image: usize, class_id: usize, rect: Rect) -> Self {
        Self {
            image,
            class_id,
            rect,
            difficult: false,
        }
    }
}

/// What a detection turned out to be once matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// It matched the non-difficult ground-truth box with index `gt`.
    TruePositive { gt: usize },
    /// No box of its image and class overlaps it enough, the best such box was already taken
    /// by a higher-scored detection, or its class is out of range.
    FalsePositive,
    /// Its best box is `difficult`: neither a true nor a false positive.
    Ignored,
}

/// TP/FP/FN at one score threshold, with the rates derived from them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Counts {
    pub tp: usize,
    pub fp: usize,
    /// Non-difficult boxes without a detection at or above the threshold.
    pub fn_: usize,
    /// `tp / (tp + fp)`, 1 when there is no detection.
    pub precision: f32,
    /// `tp / (tp + fn_)`, 1 when there is no non-difficult box.
    pub recall: f32,
    /// Harmonic mean of precision and recall, 0 when both are 0.
    pub f1: f32,
}

impl Counts {
    pub fn new(tp: usize, fp: usize, fn_: usize) -> Self {
        let precision = ratio_or_one(tp, tp + fp);
        let recall = ratio_or_one(tp, tp + fn_);
        Self {
            tp,
            fp,
            fn_,
            precision,
            recall,
            f1: f1(precision, recall),
        }
    }
}

fn ratio_or_one(numerator: usize, denominator: usize) -> f32 {
    if denominator == 0 {
        1.0
    } else {
        numerator as f32 / denominator as f32
    }
}

fn f1(precision: f32, recall: f32) -> f32 {
    if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    }
}

/// Precision and recall, over all classes, when detections scored `>= score` are kept.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PrPoint {
    pub score: f32,
    pub precision: f32,
    pub recall: f32,
}

impl PrPoint {
    pub fn f1(&self) -> f32 {
        f1(self.precision, self.recall)
    }
}

/// The result of [`evaluate`]: the matching, and the metrics derived from it.
#[derive(Clone, Debug, Serialize)]
pub struct Evaluation {
    num_classes: usize,
    iou_threshold: f32,
    /// Per detection: image, effective score (NaN replaced by −∞), outcome.
    det_images: Vec<usize>,
    det_scores: Vec<f32>,
    outcomes: Vec<Outcome>,
    /// Per ground-truth box: image, difficult, matched detection.
    gt_images: Vec<usize>,
    gt_difficult: Vec<bool>,
    gt_matched: Vec<Option<usize>>,
    /// Per ground-truth box: area in pixels², for splitting misses by size.
    gt_areas: Vec<f32>,
    /// Per detection: the type of a false positive.
    error_kinds: Vec<Option<ErrorKind>>,
    ap_per_class: Vec<Option<f32>>,
    map: f32,
    pr_curve: Vec<PrPoint>,
}

/// Matches `detections` to `ground_truth` VOC style at `iou_threshold` (0.5 for PASCAL VOC) and
/// computes every metric. `num_classes` sizes [`Evaluation::ap_per_class`]; see the module doc
/// for out-of-range classes, NaN scores and empty inputs. Never panics.
pub fn evaluate(
    detections: &[Detection],
    ground_truth: &[GroundTruth],
    num_classes: usize,
    iou_threshold: f32,
) -> Evaluation {
    let det_scores: Vec<f32> = detections
        .iter()
        .map(|d| matching::effective_score(d.score))
        .collect();
    let matching::Matching {
        order,
        outcomes,
        gt_matched,
    } = matching::match_detections(
        detections,
        ground_truth,
        &det_scores,
        num_classes,
        iou_threshold,
    );

    let ap_per_class: Vec<Option<f32>> = (0..num_classes)
        .map(|class_id| {
            let hits: Vec<bool> = order
                .iter()
                .filter(|&&d| detections[d].class_id == class_id)
                .filter(|&&d| outcomes[d] != Outcome::Ignored)
                .map(|&d| matches!(outcomes[d], Outcome::TruePositive { .. }))
                .collect();
            let num_positives = ground_truth
                .iter()
                .filter(|g| g.class_id == class_id && !g.difficult)
                .count();
            all_point_ap(&hits, num_positives)
        })
        .collect();
    let defined: Vec<f32> = ap_per_class.iter().flatten().copied().collect();
    let map = if defined.is_empty() {
        0.0
    } else {
        defined.iter().sum::<f32>() / defined.len() as f32
    };

    let num_positives = ground_truth.iter().filter(|g| !g.difficult).count();
    let pr_curve = pooled_pr_curve(&order, &outcomes, &det_scores, num_positives);
    let error_kinds = errors::classify(
        detections,
        ground_truth,
        &outcomes,
        &gt_matched,
        iou_threshold,
    );

    Evaluation {
        num_classes,
        iou_threshold,
        det_images: detections.iter().map(|d| d.image).collect(),
        det_scores,
        outcomes,
        gt_images: ground_truth.iter().map(|g| g.image).collect(),
        gt_difficult: ground_truth.iter().map(|g| g.difficult).collect(),
        gt_matched,
        gt_areas: ground_truth.iter().map(|g| g.rect.area()).collect(),
        error_kinds,
        ap_per_class,
        map,
        pr_curve,
    }
}

/// One point per distinct score, after the last detection with that score, so that each point
/// is exactly the precision and recall at a threshold equal to its score.
fn pooled_pr_curve(
    order: &[usize],
    outcomes: &[Outcome],
    scores: &[f32],
    num_positives: usize,
) -> Vec<PrPoint> {
    let counted: Vec<usize> = order
        .iter()
        .copied()
        .filter(|&d| outcomes[d] != Outcome::Ignored)
        .collect();
    let mut curve = Vec::new();
    let (mut tp, mut fp) = (0usize, 0usize);
    for (k, &d) in counted.iter().enumerate() {
        match outcomes[d] {
            Outcome::TruePositive { .. } => tp += 1,
            _ => fp += 1,
        }
        let last_of_its_score = counted
            .get(k + 1)
            .is_none_or(|&next| scores[next] != scores[d]);
        if last_of_its_score {
            curve.push(PrPoint {
                score: scores[d],
                precision: ratio_or_one(tp, tp + fp),
                recall: ratio_or_one(tp, num_positives),
            });
        }
    }
    curve
}

impl Evaluation {
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    pub fn iou_threshold(&self) -> f32 {
        self.iou_threshold
    }

    /// What detection `det_index` (its index in the slice given to [`evaluate`]) turned out to be.
    ///
    /// # Panics
    /// If `det_index` is out of range.
    pub fn outcome(&self, det_index: usize) -> Outcome {
        self.outcomes[det_index]
    }

    /// The detection that matched ground-truth box `gt_index`, at the lowest threshold.
    ///
    /// # Panics
    /// If `gt_index` is out of range.
    pub fn matched_detection(&self, gt_index: usize) -> Option<usize> {
        self.gt_matched[gt_index]
    }

    /// Whether box `gt_index` is missed when only detections scored `>= threshold` are kept.
    /// Always false for a difficult box.
    ///
    /// # Panics
    /// If `gt_index` is out of range.
    pub fn is_false_negative(&self, gt_index: usize, threshold: f32) -> bool {
        self.gt_difficult.get(gt_index) == Some(&false)
            && self
                .gt_matched
                .get(gt_index)
                .is_some_and(|m| m.is_none_or(|d| !self.is_kept(d, threshold)))
    }

    /// Whether detection `det_index` is kept at `threshold`.
    fn is_kept(&self, det_index: usize, threshold: f32) -> bool {
        self.det_scores[det_index] >= threshold
    }

    /// Counts over all images and classes, keeping detections scored `>= threshold`.
    pub fn counts_at(&self, threshold: f32) -> Counts {
        self.counts_where(threshold, |_| true)
    }

    /// Counts over one image, keeping detections scored `>= threshold`.
    pub fn image_counts(&self, image: usize, threshold: f32) -> Counts {
        self.counts_where(threshold, |i| i == image)
    }

    /// Counts of every image that has a detection or a ground-truth box, keyed by image, in one
    /// pass: for ranking images by false positives without one query per image.
    pub fn counts_per_image(&self, threshold: f32) -> BTreeMap<usize, Counts> {
        let mut raw: BTreeMap<usize, (usize, usize, usize)> = BTreeMap::new();
        for (d, &image) in self.det_images.iter().enumerate() {
            let entry = raw.entry(image).or_default();
            if self.is_kept(d, threshold) {
                match self.outcomes[d] {
                    Outcome::TruePositive { .. } => entry.0 += 1,
                    Outcome::FalsePositive => entry.1 += 1,
                    Outcome::Ignored => {}
                }
            }
        }
        for (g, &image) in self.gt_images.iter().enumerate() {
            let entry = raw.entry(image).or_default();
            if self.is_false_negative(g, threshold) {
                entry.2 += 1;
            }
        }
        raw.into_iter()
            .map(|(image, (tp, fp, fn_))| (image, Counts::new(tp, fp, fn_)))
            .collect()
    }

    fn counts_where(&self, threshold: f32, in_scope: impl Fn(usize) -> bool) -> Counts {
        let (mut tp, mut fp) = (0, 0);
        for (d, outcome) in self.outcomes.iter().enumerate() {
            if in_scope(self.det_images[d]) && self.is_kept(d, threshold) {
                match outcome {
                    Outcome::TruePositive { .. } => tp += 1,
                    Outcome::FalsePositive => fp += 1,
                    Outcome::Ignored => {}
                }
            }
        }
        let fn_ = (0..self.gt_images.len())
            .filter(|&g| in_scope(self.gt_images[g]) && self.is_false_negative(g, threshold))
            .count();
        Counts::new(tp, fp, fn_)
    }

    /// The type of detection `det_index` if it is a false positive.
    ///
    /// # Panics
    /// If `det_index` is out of range.
    pub fn error_kind(&self, det_index: usize) -> Option<ErrorKind> {
        self.error_kinds[det_index]
    }

    /// False positives by type and misses by size, keeping detections scored `>= threshold`.
    pub fn error_breakdown(&self, threshold: f32) -> ErrorBreakdown {
        let mut breakdown = ErrorBreakdown::default();
        for (d, kind) in self.error_kinds.iter().enumerate() {
            if let Some(kind) = kind.filter(|_| self.is_kept(d, threshold)) {
                breakdown.add_false_positive(kind);
            }
        }
        for (g, &area) in self.gt_areas.iter().enumerate() {
            if self.is_false_negative(g, threshold) {
                breakdown.add_miss(BoxSize::of(area));
            }
        }
        breakdown
    }

    /// VOC all-point AP per class id; `None` for a class without non-difficult boxes.
    pub fn ap_per_class(&self) -> &[Option<f32>] {
        &self.ap_per_class
    }

    /// Mean of the defined per-class APs; 0 when no class has a non-difficult box.
    pub fn map(&self) -> f32 {
        self.map
    }

    /// Precision–recall over all classes pooled, one point per distinct score, in descending
    /// score order; empty without detections. A NaN-scored detection's point has score −∞.
    pub fn pr_curve(&self) -> &[PrPoint] {
        &self.pr_curve
    }

    /// The point of the curve with the highest F1 (the highest score among ties); a point at
    /// threshold 1 without detections.
    pub fn best_f1_point(&self) -> PrPoint {
        self.pr_curve
            .iter()
            .copied()
            .fold(None, |best: Option<PrPoint>, p| match best {
                Some(b) if b.f1() >= p.f1() => Some(b),
                _ => Some(p),
            })
            .unwrap_or_else(|| self.point_at(1.0))
    }

    /// Precision and recall when detections scored `>= threshold` are kept, from the curve in
    /// O(log n); equal to [`Evaluation::counts_at`]'s rates. `score` is `threshold`.
    pub fn point_at(&self, threshold: f32) -> PrPoint {
        let kept = self.pr_curve.partition_point(|p| p.score >= threshold);
        match kept.checked_sub(1).map(|k| self.pr_curve[k]) {
            Some(point) => PrPoint {
                score: threshold,
                ..point
            },
            None => {
                let num_positives = self.gt_difficult.iter().filter(|&&d| !d).count();
                PrPoint {
                    score: threshold,
                    precision: 1.0,
                    recall: ratio_or_one(0, num_positives),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: f32) -> Rect {
        Rect::new(x, 0.0, x + 10.0, 10.0)
    }

    #[test]
    fn best_f1_point_is_the_curve_point_with_the_highest_f1() {
        // Scores 0.9 (TP), 0.8 (FP), 0.7 (TP), 0.2 (FP) on three boxes: F1 is 0.5 at 0.9,
        // 0.4 at 0.8, 2/3 at 0.7 and 4/7 at 0.2.
        let gts: Vec<GroundTruth> = (0..3)
            .map(|i| GroundTruth::new(0, 0, square(20.0 * i as f32)))
            .collect();
        let dets = [
            Detection::new(0, 0, square(0.0), 0.9),
            Detection::new(0, 0, square(100.0), 0.8),
            Detection::new(0, 0, square(20.0), 0.7),
            Detection::new(0, 0, square(200.0), 0.2),
        ];
        let best = evaluate(&dets, &gts, 1, 0.5).best_f1_point();
        assert_eq!(best.score, 0.7);
        assert!((best.f1() - 2.0 / 3.0).abs() < 1e-6);
        assert_eq!(evaluate(&[], &gts, 1, 0.5).best_f1_point().f1(), 0.0);
    }

    #[test]
    fn duplicate_detection_is_a_false_positive() {
        let gts = [GroundTruth::new(0, 0, square(0.0))];
        let dets = [
            Detection::new(0, 0, square(1.0), 0.6),
            Detection::new(0, 0, square(0.0), 0.9),
        ];
        let eval = evaluate(&dets, &gts, 1, 0.5);
        // The higher score wins the box even though it comes second in the input.
        assert_eq!(eval.outcome(1), Outcome::TruePositive { gt: 0 });
        assert_eq!(eval.outcome(0), Outcome::FalsePositive);
        assert_eq!(eval.matched_detection(0), Some(1));
    }

    #[test]
    fn tied_scores_keep_input_order() {
        let gts = [GroundTruth::new(0, 0, square(0.0))];
        let dets = [
            Detection::new(0, 0, square(1.0), 0.5),
            Detection::new(0, 0, square(0.0), 0.5),
        ];
        let eval = evaluate(&dets, &gts, 1, 0.5);
        assert_eq!(eval.outcome(0), Outcome::TruePositive { gt: 0 });
        assert_eq!(eval.outcome(1), Outcome::FalsePositive);
    }

    #[test]
    fn best_box_taken_makes_a_false_positive_even_with_a_free_neighbour() {
        // VOC takes the highest-IoU box whether or not it is matched; a duplicate does not fall
        // back to a second-best box.
        let gts = [
            GroundTruth::new(0, 0, square(0.0)),
            GroundTruth::new(0, 0, square(3.0)),
        ];
        let dets = [
            Detection::new(0, 0, square(0.0), 0.9),
            Detection::new(0, 0, square(1.0), 0.8),
        ];
        let eval = evaluate(&dets, &gts, 1, 0.5);
        assert_eq!(eval.outcome(0), Outcome::TruePositive { gt: 0 });
        assert_eq!(eval.outcome(1), Outcome::FalsePositive);
        assert!(eval.is_false_negative(1, 0.0));
    }

    #[test]
    fn difficult_box_is_ignored_and_never_missed() {
        let mut hard = GroundTruth::new(0, 0, square(0.0));
        hard.difficult = true;
        let dets = [
            Detection::new(0, 0, square(0.0), 0.9),
            Detection::new(0, 0, square(0.0), 0.8),
        ];
        let eval = evaluate(&dets, &[hard], 1, 0.5);
        assert_eq!(eval.outcome(0), Outcome::Ignored);
        // Duplicates on a difficult box are ignored too, as in VOC.
        assert_eq!(eval.outcome(1), Outcome::Ignored);
        assert!(!eval.is_false_negative(0, 0.0));
        assert!(!eval.is_false_negative(0, 1.0));
        let counts = eval.counts_at(0.0);
        assert_eq!((counts.tp, counts.fp, counts.fn_), (0, 0, 0));
        assert_eq!(eval.ap_per_class(), &[None]);
    }

    #[test]
    fn wrong_class_is_a_false_positive_and_a_miss() {
        let gts = [GroundTruth::new(0, 0, square(0.0))];
        let dets = [Detection::new(0, 1, square(0.0), 0.9)];
        let eval = evaluate(&dets, &gts, 2, 0.5);
        assert_eq!(eval.outcome(0), Outcome::FalsePositive);
        assert!(eval.is_false_negative(0, 0.0));
        let counts = eval.counts_at(0.0);
        assert_eq!((counts.tp, counts.fp, counts.fn_), (0, 1, 1));
    }

    #[test]
    fn other_image_never_matches() {
        let eval = evaluate(
            &[Detection::new(1, 0, square(0.0), 0.9)],
            &[GroundTruth::new(0, 0, square(0.0))],
            1,
            0.5,
        );
        assert_eq!(eval.outcome(0), Outcome::FalsePositive);
    }

    #[test]
    fn iou_below_threshold_is_a_false_positive() {
        // IoU of squares shifted by 5 px: 50 / 150 = 1/3.
        let gts = [GroundTruth::new(0, 0, square(0.0))];
        let dets = [Detection::new(0, 0, square(5.0), 0.9)];
        assert_eq!(
            evaluate(&dets, &gts, 1, 0.5).outcome(0),
            Outcome::FalsePositive
        );
        assert_eq!(
            evaluate(&dets, &gts, 1, 0.3).outcome(0),
            Outcome::TruePositive { gt: 0 }
        );
    }

    #[test]
    fn zero_iou_threshold_does_not_pair_disjoint_boxes() {
        let eval = evaluate(
            &[Detection::new(0, 0, square(20.0), 0.9)],
            &[GroundTruth::new(0, 0, square(0.0))],
            1,
            0.0,
        );
        assert_eq!(eval.outcome(0), Outcome::FalsePositive);
    }

    #[test]
    fn degenerate_boxes_never_match() {
        let empty = Rect::new(5.0, 5.0, 5.0, 5.0);
        let inverted = Rect::new(10.0, 10.0, 0.0, 0.0);
        let gts = [
            GroundTruth::new(0, 0, empty),
            GroundTruth::new(0, 0, inverted),
        ];
        let dets = [
            Detection::new(0, 0, empty, 0.9),
            Detection::new(0, 0, inverted, 0.8),
        ];
        let eval = evaluate(&dets, &gts, 1, 0.5);
        assert_eq!(eval.outcome(0), Outcome::FalsePositive);
        assert_eq!(eval.outcome(1), Outcome::FalsePositive);
        assert_eq!(eval.counts_at(0.0).fn_, 2);
    }

    #[test]
    fn out_of_range_class_is_a_false_positive_outside_every_ap() {
        let gts = [
            GroundTruth::new(0, 0, square(0.0)),
            GroundTruth::new(0, 5, square(30.0)),
        ];
        let dets = [
            Detection::new(0, 0, square(0.0), 0.9),
            Detection::new(0, 5, square(30.0), 0.8),
        ];
        let eval = evaluate(&dets, &gts, 1, 0.5);
        assert_eq!(eval.outcome(1), Outcome::FalsePositive);
        assert!(eval.is_false_negative(1, 0.0));
        assert_eq!(eval.ap_per_class(), &[Some(1.0)]);
        let counts = eval.counts_at(0.0);
        assert_eq!((counts.tp, counts.fp, counts.fn_), (1, 1, 1));
    }

    #[test]
    fn nan_score_ranks_last() {
        let gts = [GroundTruth::new(0, 0, square(0.0))];
        let dets = [
            Detection::new(0, 0, square(0.0), f32::NAN),
            Detection::new(0, 0, square(0.0), 0.1),
        ];
        let eval = evaluate(&dets, &gts, 1, 0.5);
        assert_eq!(eval.outcome(1), Outcome::TruePositive { gt: 0 });
        assert_eq!(eval.outcome(0), Outcome::FalsePositive);
        assert_eq!(eval.counts_at(0.0).fp, 0);
        assert_eq!(eval.counts_at(f32::NEG_INFINITY).fp, 1);
        assert_eq!(eval.counts_at(f32::NAN).tp, 0);
        assert_eq!(
            eval.pr_curve().last().map(|p| p.score),
            Some(f32::NEG_INFINITY)
        );
    }

    #[test]
    fn empty_inputs() {
        let eval = evaluate(&[], &[], 3, 0.5);
        assert_eq!(eval.ap_per_class(), &[None, None, None]);
        assert_eq!(eval.map(), 0.0);
        assert!(eval.pr_curve().is_empty());
        let counts = eval.counts_at(0.5);
        assert_eq!(
            counts,
            Counts {
                tp: 0,
                fp: 0,
                fn_: 0,
                precision: 1.0,
                recall: 1.0,
                f1: 1.0
            }
        );

        let only_gt = evaluate(&[], &[GroundTruth::new(0, 0, square(0.0))], 1, 0.5);
        assert_eq!(only_gt.ap_per_class(), &[Some(0.0)]);
        let counts = only_gt.counts_at(0.0);
        assert_eq!(
            (counts.fn_, counts.precision, counts.recall, counts.f1),
            (1, 1.0, 0.0, 0.0)
        );

        let only_dets = evaluate(&[Detection::new(0, 0, square(0.0), 0.7)], &[], 1, 0.5);
        assert_eq!(only_dets.ap_per_class(), &[None]);
        let counts = only_dets.counts_at(0.0);
        assert_eq!(
            (counts.fp, counts.precision, counts.recall, counts.f1),
            (1, 0.0, 1.0, 0.0)
        );
    }

    #[test]
    fn false_negative_depends_on_the_matched_score() {
        let gts = [GroundTruth::new(0, 0, square(0.0))];
        let eval = evaluate(&[Detection::new(0, 0, square(0.0), 0.6)], &gts, 1, 0.5);
        assert!(!eval.is_false_negative(0, 0.6));
        assert!(eval.is_false_negative(0, 0.61));
    }

    #[test]
    fn point_at_matches_counts_between_and_on_scores() {
        let gts = [
            GroundTruth::new(0, 0, square(0.0)),
            GroundTruth::new(0, 0, square(40.0)),
        ];
        let dets = [
            Detection::new(0, 0, square(0.0), 0.9),
            Detection::new(0, 0, square(20.0), 0.7),
            Detection::new(0, 0, square(40.0), 0.7),
        ];
        let eval = evaluate(&dets, &gts, 1, 0.5);
        // Tied scores share one point.
        assert_eq!(eval.pr_curve().len(), 2);
        for threshold in [1.0, 0.9, 0.8, 0.7, 0.1] {
            let point = eval.point_at(threshold);
            let counts = eval.counts_at(threshold);
            assert_eq!(
                (point.precision, point.recall),
                (counts.precision, counts.recall)
            );
        }
    }

    #[test]
    fn counts_per_image_agree_with_image_counts() {
        let gts = [
            GroundTruth::new(0, 0, square(0.0)),
            GroundTruth::new(2, 0, square(0.0)),
        ];
        let dets = [
            Detection::new(0, 0, square(0.0), 0.9),
            Detection::new(1, 0, square(0.0), 0.8),
        ];
        let eval = evaluate(&dets, &gts, 1, 0.5);
        let all = eval.counts_per_image(0.5);
        assert_eq!(all.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2]);
        for (&image, &counts) in &all {
            assert_eq!(counts, eval.image_counts(image, 0.5));
        }
        assert_eq!(all[&1].fp, 1);
        assert_eq!(all[&2].fn_, 1);
    }
}
