//! Average precision with PASCAL VOC's all-point interpolation (VOC 2010 onwards).

/// Average precision of one class from its detections' hits, in descending score order.
///
/// `hits[k]` says whether the k-th best-scored detection is a true positive; detections that
/// matched a `difficult` box are left out by the caller, as VOC does. `num_positives` is the
/// number of non-difficult ground-truth boxes. `None` when `num_positives` is 0: AP is undefined
/// for a class with nothing to find, and averaging in a 0 or a 1 would bias mAP.
///
/// All-point interpolation: the precision at each recall is replaced by the best precision at
/// that recall or any higher one (the envelope, built from the right), and the area under that
/// step function is summed over the points where recall changes. Recall never exceeds 1, even
/// if `hits` holds more true positives than `num_positives`.
pub fn all_point_ap(hits: &[bool], num_positives: usize) -> Option<f32> {
    if num_positives == 0 {
        return None;
    }
    let num_positives = num_positives as f64;
    let mut true_positives = 0usize;
    let points: Vec<(f64, f64)> = hits
        .iter()
        .enumerate()
        .map(|(k, &hit)| {
            true_positives += usize::from(hit);
            let recall = (true_positives as f64 / num_positives).min(1.0);
            let precision = true_positives as f64 / (k + 1) as f64;
            (recall, precision)
        })
        .collect();

    let mut area = 0.0f64;
    let mut envelope = 0.0f64;
    for k in (0..points.len()).rev() {
        let (recall, precision) = points[k];
        envelope = envelope.max(precision);
        let previous_recall = if k == 0 { 0.0 } else { points[k - 1].0 };
        // Zero-width steps (false positives) add nothing but still lift the envelope to their left.
        area += (recall - previous_recall) * envelope;
    }
    Some(area as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f32>, b: f32) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-6)
    }

    #[test]
    fn no_positives_is_undefined() {
        assert_eq!(all_point_ap(&[false, false], 0), None);
        assert_eq!(all_point_ap(&[], 0), None);
    }

    #[test]
    fn no_detections_is_zero() {
        assert!(close(all_point_ap(&[], 3), 0.0));
    }

    #[test]
    fn all_hits_first_is_one() {
        assert!(close(all_point_ap(&[true, true, false, false], 2), 1.0));
    }

    #[test]
    fn missed_positives_cap_the_area_at_recall() {
        // Two of four found, both ranked first: precision 1 up to recall 0.5, nothing after.
        assert!(close(all_point_ap(&[true, true], 4), 0.5));
    }

    #[test]
    fn envelope_lifts_an_earlier_dip() {
        // Hits F, T over 1 positive: P/R = (0, 0), (0.5, 1). The envelope at recall 1 is 0.5,
        // so AP = 1 * 0.5.
        assert!(close(all_point_ap(&[false, true], 1), 0.5));
        // T, F, F, T over 2: P/R = (1, .5), (.5, .5), (.333, .5), (.5, 1). Recall 0→0.5 at precision 1,
        // 0.5→1 at 0.5: AP = 0.5 + 0.25.
        assert!(close(all_point_ap(&[true, false, false, true], 2), 0.75));
    }

    #[test]
    fn recall_is_clamped_when_hits_exceed_positives() {
        assert!(close(all_point_ap(&[true, true, true], 2), 1.0));
    }
}
