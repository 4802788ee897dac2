//! Evaluation metrics checked against cases worked out by hand, plus a property test that
//! `evaluate` holds up on arbitrary small inputs.

use ohem_studio::eval::{evaluate, Detection, GroundTruth, Outcome};
use ohem_studio::geometry::Rect;
use proptest::prelude::*;

/// A 10 × 10 box with its left edge at `x`.
fn square(x: f32) -> Rect {
    Rect::new(x, 0.0, x + 10.0, 10.0)
}

fn assert_close(actual: f32, expected: f32) {
    assert!(
        (actual - expected).abs() < 1e-5,
        "expected {expected}, got {actual}"
    );
}

/// Three boxes A, B, C in one image and five detections:
///
/// | rank | score | on        | outcome             |
/// |------|-------|-----------|---------------------|
/// | 1    | 0.9   | A         | TP                  |
/// | 2    | 0.8   | A again   | FP (duplicate)      |
/// | 3    | 0.7   | nothing   | FP                  |
/// | 4    | 0.6   | B         | TP                  |
/// | 5    | 0.5   | C         | TP                  |
fn five_detections_three_boxes() -> (Vec<Detection>, Vec<GroundTruth>) {
    let gts = vec![
        GroundTruth::new(0, 0, square(0.0)),
        GroundTruth::new(0, 0, square(30.0)),
        GroundTruth::new(0, 0, square(60.0)),
    ];
    let dets = vec![
        Detection::new(0, 0, square(0.0), 0.9),
        Detection::new(0, 0, square(1.0), 0.8),
        Detection::new(0, 0, square(90.0), 0.7),
        Detection::new(0, 0, square(30.0), 0.6),
        Detection::new(0, 0, square(61.0), 0.5),
    ];
    (dets, gts)
}

#[test]
fn hand_computed_all_point_ap() {
    // Cumulative over the ranking (TP, FP, FP, TP, TP), 3 positives:
    //
    // | rank | TP | FP | precision | recall |
    // |------|----|----|-----------|--------|
    // | 1    | 1  | 0  | 1         | 1/3    |
    // | 2    | 1  | 1  | 1/2       | 1/3    |
    // | 3    | 1  | 2  | 1/3       | 1/3    |
    // | 4    | 2  | 2  | 1/2       | 2/3    |
    // | 5    | 3  | 2  | 3/5       | 1      |
    //
    // Envelope from the right (max of precision at this rank and every later one):
    // rank 5: 3/5; rank 4: max(1/2, 3/5) = 3/5; rank 3: 3/5; rank 2: 3/5; rank 1: 1.
    //
    // Area where recall changes:
    //   0   → 1/3 at 1   = 1/3
    //   1/3 → 2/3 at 3/5 = 1/5   (rank 4's own precision 1/2 is lifted to 3/5 by rank 5)
    //   2/3 → 1   at 3/5 = 1/5
    // AP = 1/3 + 1/5 + 1/5 = 11/15 ≈ 0.7333.
    // Without the envelope it would be 1/3 + 1/6 + 1/5 = 0.7.
    let (dets, gts) = five_detections_three_boxes();
    let eval = evaluate(&dets, &gts, 1, 0.5);
    let outcomes: Vec<Outcome> = (0..dets.len()).map(|d| eval.outcome(d)).collect();
    assert_eq!(
        outcomes,
        vec![
            Outcome::TruePositive { gt: 0 },
            Outcome::FalsePositive,
            Outcome::FalsePositive,
            Outcome::TruePositive { gt: 1 },
            Outcome::TruePositive { gt: 2 },
        ]
    );
    let ap = eval.ap_per_class()[0].expect("class 0 has boxes");
    assert_close(ap, 11.0 / 15.0);
    assert_close(eval.map(), 11.0 / 15.0);
}

#[test]
fn counts_at_several_thresholds() {
    let (dets, gts) = five_detections_three_boxes();
    let eval = evaluate(&dets, &gts, 1, 0.5);
    // (threshold, tp, fp, fn, precision, recall)
    let expected = [
        (0.95, 0, 0, 3, 1.0, 0.0),
        (0.9, 1, 0, 2, 1.0, 1.0 / 3.0),
        (0.75, 1, 1, 2, 0.5, 1.0 / 3.0),
        (0.6, 2, 2, 1, 0.5, 2.0 / 3.0),
        (0.0, 3, 2, 0, 0.6, 1.0),
    ];
    for (threshold, tp, fp, fn_, precision, recall) in expected {
        let counts = eval.counts_at(threshold);
        assert_eq!(
            (counts.tp, counts.fp, counts.fn_),
            (tp, fp, fn_),
            "at {threshold}"
        );
        assert_close(counts.precision, precision);
        assert_close(counts.recall, recall);
        let point = eval.point_at(threshold);
        assert_close(point.precision, precision);
        assert_close(point.recall, recall);
    }
    // F1 at 0: 2 · 0.6 · 1 / 1.6 = 0.75; at 0.95 precision 1, recall 0 → 0.
    assert_close(eval.counts_at(0.0).f1, 0.75);
    assert_close(eval.counts_at(0.95).f1, 0.0);
    assert!(eval.is_false_negative(2, 0.55));
    assert!(!eval.is_false_negative(2, 0.5));
}

#[test]
fn per_image_counts_rank_images_by_false_positives() {
    let gts = [
        GroundTruth::new(0, 0, square(0.0)),
        GroundTruth::new(1, 0, square(0.0)),
        GroundTruth::new(1, 0, square(30.0)),
    ];
    let dets = [
        Detection::new(0, 0, square(0.0), 0.9),  // image 0: TP
        Detection::new(1, 0, square(50.0), 0.8), // image 1: FP
        Detection::new(1, 0, square(80.0), 0.4), // image 1: FP below 0.5
        Detection::new(1, 0, square(30.0), 0.7), // image 1: TP
        Detection::new(2, 0, square(0.0), 0.9),  // image 2 has no boxes: FP
    ];
    let eval = evaluate(&dets, &gts, 1, 0.5);

    let image_1 = eval.image_counts(1, 0.5);
    assert_eq!((image_1.tp, image_1.fp, image_1.fn_), (1, 1, 1));
    let image_1 = eval.image_counts(1, 0.0);
    assert_eq!((image_1.tp, image_1.fp, image_1.fn_), (1, 2, 1));
    let image_0 = eval.image_counts(0, 0.5);
    assert_eq!((image_0.tp, image_0.fp, image_0.fn_), (1, 0, 0));
    let unseen = eval.image_counts(7, 0.5);
    assert_eq!((unseen.tp, unseen.fp, unseen.fn_), (0, 0, 0));

    let per_image = eval.counts_per_image(0.0);
    let mut by_fp: Vec<(usize, usize)> = per_image.iter().map(|(&i, c)| (i, c.fp)).collect();
    by_fp.sort_by_key(|&(image, fp)| (std::cmp::Reverse(fp), image));
    assert_eq!(by_fp, vec![(1, 2), (2, 1), (0, 0)]);
}

#[test]
fn perfect_detections_give_ap_one() {
    let gts: Vec<GroundTruth> = (0..4)
        .map(|i| GroundTruth::new(i % 2, 0, square(i as f32 * 20.0)))
        .collect();
    let dets: Vec<Detection> = gts
        .iter()
        .enumerate()
        .map(|(i, g)| Detection::new(g.image, 0, g.rect, 0.5 + i as f32 * 0.1))
        .collect();
    let eval = evaluate(&dets, &gts, 1, 0.5);
    assert_eq!(eval.ap_per_class(), &[Some(1.0)]);
    assert_eq!(eval.map(), 1.0);
    let counts = eval.counts_at(0.0);
    assert_eq!((counts.tp, counts.fp, counts.fn_), (4, 0, 0));
    assert_eq!(counts.f1, 1.0);
}

#[test]
fn only_false_positives_give_ap_zero() {
    let gts = [
        GroundTruth::new(0, 0, square(0.0)),
        GroundTruth::new(0, 0, square(30.0)),
    ];
    let dets = [
        Detection::new(0, 0, square(100.0), 0.9),
        Detection::new(0, 0, square(200.0), 0.8),
        Detection::new(1, 0, square(0.0), 0.7), // right place, wrong image
    ];
    let eval = evaluate(&dets, &gts, 1, 0.5);
    assert_eq!(eval.ap_per_class(), &[Some(0.0)]);
    assert_eq!(eval.map(), 0.0);
    assert!(eval.pr_curve().iter().all(|p| p.precision == 0.0));
}

#[test]
fn map_is_the_mean_over_classes_with_boxes() {
    // Class 0: one box, found by the only detection → AP 1.
    // Class 1: two boxes; a miss at 0.9 then a hit at 0.8 → P/R = (0, 0), (1/2, 1/2).
    //          Envelope 1/2 on recall 0 → 1/2, nothing beyond → AP 1/4.
    // Class 2: no box → None, left out of the mean.
    // mAP = (1 + 1/4) / 2 = 5/8.
    let gts = [
        GroundTruth::new(0, 0, square(0.0)),
        GroundTruth::new(0, 1, square(30.0)),
        GroundTruth::new(1, 1, square(30.0)),
    ];
    let dets = [
        Detection::new(0, 0, square(0.0), 0.95),
        Detection::new(0, 1, square(70.0), 0.9),
        Detection::new(1, 1, square(30.0), 0.8),
        Detection::new(0, 2, square(0.0), 0.5),
    ];
    let eval = evaluate(&dets, &gts, 3, 0.5);
    assert_eq!(eval.ap_per_class()[0], Some(1.0));
    assert_close(eval.ap_per_class()[1].expect("class 1 has boxes"), 0.25);
    assert_eq!(eval.ap_per_class()[2], None);
    assert_close(eval.map(), 0.625);
}

#[test]
fn difficult_boxes_neither_reward_nor_penalise() {
    let mut gts = vec![
        GroundTruth::new(0, 0, square(0.0)),
        GroundTruth::new(0, 0, square(30.0)),
    ];
    gts[1].difficult = true;
    let dets = [
        Detection::new(0, 0, square(30.0), 0.9),
        Detection::new(0, 0, square(0.0), 0.8),
    ];
    let eval = evaluate(&dets, &gts, 1, 0.5);
    assert_eq!(eval.outcome(0), Outcome::Ignored);
    assert_eq!(eval.outcome(1), Outcome::TruePositive { gt: 0 });
    // The ignored detection ranked first does not cost precision.
    assert_eq!(eval.ap_per_class(), &[Some(1.0)]);
    let counts = eval.counts_at(0.0);
    assert_eq!((counts.tp, counts.fp, counts.fn_), (1, 0, 0));
    assert!(!eval.is_false_negative(1, 1.0));
}

#[test]
fn evaluation_serializes() {
    let (dets, gts) = five_detections_three_boxes();
    let json = serde_json::to_string(&evaluate(&dets, &gts, 1, 0.5)).expect("serializable");
    assert!(json.contains("\"map\""));
}

fn rect_strategy() -> impl Strategy<Value = Rect> {
    // Coordinates on a coarse grid so boxes often overlap; inverted and empty boxes included.
    (0..6u8, 0..6u8, 0..6u8, 0..6u8).prop_map(|(x0, y0, x1, y1)| {
        Rect::new(
            f32::from(x0) * 5.0,
            f32::from(y0) * 5.0,
            f32::from(x1) * 5.0 + 5.0,
            f32::from(y1) * 5.0 + 5.0,
        )
    })
}

fn score_strategy() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => 0.0f32..=1.0,
        1 => Just(0.5f32),
        1 => proptest::num::f32::ANY,
    ]
}

fn detection_strategy() -> impl Strategy<Value = Detection> {
    (0..3usize, 0..3usize, rect_strategy(), score_strategy()).prop_map(
        |(image, class_id, rect, score)| Detection {
            image,
            class_id,
            rect,
            score,
        },
    )
}

fn ground_truth_strategy() -> impl Strategy<Value = GroundTruth> {
    (
        0..3usize,
        0..3usize,
        rect_strategy(),
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(image, class_id, rect, difficult)| GroundTruth {
            image,
            class_id,
            rect,
            difficult,
        })
}

fn in_unit(value: f32) -> bool {
    (0.0..=1.0).contains(&value)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn evaluate_stays_in_bounds(
        dets in proptest::collection::vec(detection_strategy(), 0..12),
        gts in proptest::collection::vec(ground_truth_strategy(), 0..8),
        // Class ids go up to 2, so num_classes 2 exercises out-of-range detections.
        num_classes in 0..4usize,
        iou_threshold in prop_oneof![Just(0.0f32), Just(0.5f32), Just(1.0f32), 0.0f32..=1.0],
    ) {
        let eval = evaluate(&dets, &gts, num_classes, iou_threshold);
        let positives = gts.iter().filter(|g| !g.difficult).count();

        let mut thresholds = vec![f32::NEG_INFINITY, 0.0, 0.5, 1.0, f32::INFINITY, f32::NAN];
        thresholds.extend(dets.iter().map(|d| d.score));
        for &threshold in &thresholds {
            let counts = eval.counts_at(threshold);
            prop_assert!(in_unit(counts.precision) && in_unit(counts.recall) && in_unit(counts.f1));
            prop_assert_eq!(counts.tp + counts.fn_, positives);
            let point = eval.point_at(threshold);
            prop_assert_eq!((point.precision, point.recall), (counts.precision, counts.recall));

            let per_image = eval.counts_per_image(threshold);
            let summed = per_image
                .values()
                .fold((0, 0, 0), |acc, c| (acc.0 + c.tp, acc.1 + c.fp, acc.2 + c.fn_));
            prop_assert_eq!(summed, (counts.tp, counts.fp, counts.fn_));
            for c in per_image.values() {
                prop_assert!(in_unit(c.precision) && in_unit(c.recall) && in_unit(c.f1));
            }
        }

        prop_assert_eq!(eval.ap_per_class().len(), num_classes);
        for ap in eval.ap_per_class().iter().flatten() {
            prop_assert!(in_unit(*ap), "AP {} out of [0, 1]", ap);
        }
        prop_assert!(in_unit(eval.map()));
        for pair in eval.pr_curve().windows(2) {
            prop_assert!(pair[0].score > pair[1].score);
        }
        for point in eval.pr_curve() {
            prop_assert!(in_unit(point.precision) && in_unit(point.recall));
        }
        for d in 0..dets.len() {
            if let Outcome::TruePositive { gt } = eval.outcome(d) {
                prop_assert_eq!(eval.matched_detection(gt), Some(d));
            }
        }
    }
}
