//! Why detections are wrong and which boxes are missed, after Hoiem, Chodpathumwan and Dai,
//! "Diagnosing error in object detectors" (ECCV 2012): every false positive gets one type, and
//! misses are split by box size.

use serde::Serialize;

use super::{Detection, GroundTruth, Outcome};

/// Overlap with a box below which a false positive is on background.
pub const TOUCH_IOU: f32 = 0.1;
/// Box areas (original pixels²) separating small, medium and large boxes: COCO's 32² and 96².
pub const SMALL_AREA: f32 = 32.0 * 32.0;
pub const LARGE_AREA: f32 = 96.0 * 96.0;

/// The type of one false positive, decided in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ErrorKind {
    /// Overlaps a box of its class enough to match it, but that box was already taken by a
    /// higher-scored detection.
    Duplicate,
    /// Overlaps a box of its class, too little to match it (0.1 ≤ IoU < the match IoU).
    Localisation,
    /// Overlaps a box of another class (IoU ≥ 0.1).
    Confusion,
    /// Touches no box.
    Background,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 4] = [
        ErrorKind::Localisation,
        ErrorKind::Duplicate,
        ErrorKind::Confusion,
        ErrorKind::Background,
    ];

    /// Name shown to people and used in file headers.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::Localisation => "localisation",
            ErrorKind::Confusion => "confusion",
            ErrorKind::Background => "background",
        }
    }
}

/// Size class of a missed box.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum BoxSize {
    Small,
    Medium,
    Large,
}

impl BoxSize {
    pub fn of(area: f32) -> Self {
        if area < SMALL_AREA {
            BoxSize::Small
        } else if area < LARGE_AREA {
            BoxSize::Medium
        } else {
            BoxSize::Large
        }
    }
}

/// Counts of each error at one score threshold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorBreakdown {
    pub localisation: usize,
    pub duplicate: usize,
    pub confusion: usize,
    pub background: usize,
    pub missed_small: usize,
    pub missed_medium: usize,
    pub missed_large: usize,
}

impl ErrorBreakdown {
    pub fn count(&self, kind: ErrorKind) -> usize {
        match kind {
            ErrorKind::Duplicate => self.duplicate,
            ErrorKind::Localisation => self.localisation,
            ErrorKind::Confusion => self.confusion,
            ErrorKind::Background => self.background,
        }
    }

    pub fn false_positives(&self) -> usize {
        self.localisation + self.duplicate + self.confusion + self.background
    }

    pub fn misses(&self) -> usize {
        self.missed_small + self.missed_medium + self.missed_large
    }

    pub(super) fn add_false_positive(&mut self, kind: ErrorKind) {
        match kind {
            ErrorKind::Duplicate => self.duplicate += 1,
            ErrorKind::Localisation => self.localisation += 1,
            ErrorKind::Confusion => self.confusion += 1,
            ErrorKind::Background => self.background += 1,
        }
    }

    pub(super) fn add_miss(&mut self, size: BoxSize) {
        match size {
            BoxSize::Small => self.missed_small += 1,
            BoxSize::Medium => self.missed_medium += 1,
            BoxSize::Large => self.missed_large += 1,
        }
    }
}

/// The type of every detection that the matching made a false positive (`None` for the rest).
pub(super) fn classify(
    detections: &[Detection],
    ground_truth: &[GroundTruth],
    outcomes: &[Outcome],
    gt_matched: &[Option<usize>],
    iou_threshold: f32,
) -> Vec<Option<ErrorKind>> {
    detections
        .iter()
        .enumerate()
        .map(|(d, det)| {
            (outcomes[d] == Outcome::FalsePositive).then(|| {
                let mut kind = ErrorKind::Background;
                for (g, gt) in ground_truth.iter().enumerate() {
                    if gt.image != det.image {
                        continue;
                    }
                    let iou = gt.rect.iou(&det.rect);
                    let candidate = if gt.class_id == det.class_id {
                        let taken = gt_matched[g].is_some_and(|other| other != d);
                        if iou >= iou_threshold.max(TOUCH_IOU) && taken {
                            ErrorKind::Duplicate
                        } else if iou >= TOUCH_IOU {
                            ErrorKind::Localisation
                        } else {
                            continue;
                        }
                    } else if iou >= TOUCH_IOU {
                        ErrorKind::Confusion
                    } else {
                        continue;
                    };
                    kind = more_telling(kind, candidate);
                }
                kind
            })
        })
        .collect()
}

/// Of two explanations of one false positive, the one earlier in [`ErrorKind`]'s order.
fn more_telling(a: ErrorKind, b: ErrorKind) -> ErrorKind {
    let rank = |k| match k {
        ErrorKind::Duplicate => 0,
        ErrorKind::Localisation => 1,
        ErrorKind::Confusion => 2,
        ErrorKind::Background => 3,
    };
    if rank(b) < rank(a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::super::{evaluate, Detection, GroundTruth};
    use super::*;
    use crate::geometry::Rect;

    #[test]
    fn each_false_positive_gets_its_type() {
        let cat = Rect::new(0.0, 0.0, 100.0, 100.0);
        let dog = Rect::new(300.0, 0.0, 400.0, 100.0);
        let gts = [GroundTruth::new(0, 0, cat), GroundTruth::new(0, 1, dog)];
        let dets = [
            Detection::new(0, 0, cat, 0.9), // true positive
            Detection::new(0, 0, Rect::new(2.0, 0.0, 102.0, 100.0), 0.8), // same box again: duplicate
            Detection::new(0, 0, Rect::new(60.0, 0.0, 160.0, 100.0), 0.7), // IoU 40/160 = 0.25: localisation
            Detection::new(0, 0, dog, 0.6), // a cat on the dog: confusion
            Detection::new(0, 0, Rect::new(0.0, 500.0, 50.0, 550.0), 0.5), // nothing there: background
        ];
        let eval = evaluate(&dets, &gts, 2, 0.5);
        assert_eq!(eval.error_kind(0), None);
        assert_eq!(eval.error_kind(1), Some(ErrorKind::Duplicate));
        assert_eq!(eval.error_kind(2), Some(ErrorKind::Localisation));
        assert_eq!(eval.error_kind(3), Some(ErrorKind::Confusion));
        assert_eq!(eval.error_kind(4), Some(ErrorKind::Background));
        let all = eval.error_breakdown(0.0);
        assert_eq!(
            (
                all.duplicate,
                all.localisation,
                all.confusion,
                all.background
            ),
            (1, 1, 1, 1)
        );
        // The dog is missed; it is 100 × 100 pixels, a large box.
        assert_eq!(
            (all.missed_small, all.missed_medium, all.missed_large),
            (0, 0, 1)
        );
        // Above 0.65 only the true positive, the duplicate and the localisation error remain.
        let high = eval.error_breakdown(0.65);
        assert_eq!(high.false_positives(), 2);
        assert_eq!(high.confusion + high.background, 0);
    }

    #[test]
    fn misses_are_split_by_size_and_follow_the_threshold() {
        let small = Rect::new(0.0, 0.0, 20.0, 20.0);
        let medium = Rect::new(100.0, 0.0, 150.0, 50.0);
        let gts = [
            GroundTruth::new(0, 0, small),
            GroundTruth::new(0, 0, medium),
        ];
        let dets = [Detection::new(0, 0, small, 0.3)];
        let eval = evaluate(&dets, &gts, 1, 0.5);
        let low = eval.error_breakdown(0.2);
        assert_eq!((low.missed_small, low.missed_medium), (0, 1));
        let high = eval.error_breakdown(0.5);
        assert_eq!((high.missed_small, high.missed_medium), (1, 1));
        assert_eq!(high.misses(), 2);
    }

    #[test]
    fn a_localisation_error_beats_background_and_confusion() {
        let a = Rect::new(0.0, 0.0, 100.0, 100.0);
        let gts = [GroundTruth::new(0, 1, a), GroundTruth::new(0, 0, a)];
        // Overlaps both boxes by IoU 0.25: same class wins over the other class.
        let dets = [Detection::new(
            0,
            0,
            Rect::new(60.0, 0.0, 160.0, 100.0),
            0.9,
        )];
        let eval = evaluate(&dets, &gts, 2, 0.5);
        assert_eq!(eval.error_kind(0), Some(ErrorKind::Localisation));
    }
}
