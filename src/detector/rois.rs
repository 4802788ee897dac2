//! Regions of interest: the dense windows the detector scores on every image (its proposals),
//! their training labels by overlap with the objects, and the box regression's encoding.

use serde::{Deserialize, Serialize};

use crate::geometry::Rect;

/// A RoI is an object of a class when its IoU with that object is at least this (Fast R-CNN's
/// FG_THRESH); below, it is background, down to no overlap at all (BG_THRESH_LO = 0, as the
/// OHEM paper sets it: no heuristic keeps easy negatives out, the selection does that).
pub const POSITIVE_IOU: f32 = 0.5;
/// Fast R-CNN's weights of the four box deltas (x, y, w, h).
pub const DELTA_WEIGHTS: [f32; 4] = [10.0, 10.0, 5.0, 5.0];
/// A window at least this far inside the image on each side (pixels), so RoIs clipped to the
/// border keep some area.
const MIN_SIDE_PX: f32 = 16.0;
/// Windows wider or taller than the image by more than this factor are not placed.
const MAX_OVERHANG: f32 = 1.3;
/// Windows of one size are spaced by a third of it, and never closer than one feature cell.
const MIN_SPACING_PX: f32 = 16.0;

/// The windows slid over an image: every size at every aspect, in network-input pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowSet {
    /// √(width · height) of each size.
    pub sizes_px: Vec<f32>,
    /// Height over width of each aspect.
    pub aspects: Vec<f32>,
}

/// The aspects every detector slides: wide, square and tall.
pub const ASPECTS: [f32; 3] = [0.5, 1.0, 2.0];
/// Neighbouring window sizes differ by this factor.
const SIZE_STEP: f32 = 1.6;
/// At most this many sizes.
const MAX_SIZES: usize = 7;

impl WindowSet {
    /// Sizes spanning the objects' (given as √(w·h) in network-input pixels), from a little
    /// under the smallest to a little over the largest, spaced by [`SIZE_STEP`]; capped by
    /// the image side `input_px`.
    pub fn for_objects(object_sizes: &[f32], input_px: f32) -> Self {
        let mut sizes: Vec<f32> = object_sizes
            .iter()
            .copied()
            .filter(|s| s.is_finite() && *s > 0.0)
            .collect();
        sizes.sort_by(f32::total_cmp);
        let pick = |q: f32| sizes[((sizes.len() - 1) as f32 * q).round() as usize];
        let (low, high) = if sizes.is_empty() {
            (input_px / 8.0, input_px)
        } else {
            (pick(0.02) / 1.25, pick(0.98) * 1.25)
        };
        let low = low.clamp(2.0 * MIN_SIDE_PX, input_px);
        let high = high.clamp(low, MAX_OVERHANG * input_px);
        let steps = ((high / low).ln() / SIZE_STEP.ln()).ceil().max(0.0) as usize;
        let count = (steps + 1).min(MAX_SIZES);
        let ratio = if count > 1 {
            (high / low).powf(1.0 / (count - 1) as f32)
        } else {
            1.0
        };
        Self {
            sizes_px: (0..count).map(|i| low * ratio.powi(i as i32)).collect(),
            aspects: ASPECTS.to_vec(),
        }
    }

    /// Every window on a `width × height` image (network-input pixels), clipped to it, without
    /// duplicates; windows left thinner than [`MIN_SIDE_PX`] are dropped.
    pub fn windows(&self, width: f32, height: f32) -> Vec<Rect> {
        let mut out: Vec<Rect> = Vec::new();
        for &size in &self.sizes_px {
            let spacing = (size / 3.0).max(MIN_SPACING_PX);
            let centres = |extent: f32| {
                let count = (extent / spacing).ceil().max(1.0) as usize;
                (0..count).map(move |i| (i as f32 + 0.5) * spacing)
            };
            for &aspect in &self.aspects {
                let (w, h) = (size / aspect.sqrt(), size * aspect.sqrt());
                if w > MAX_OVERHANG * width || h > MAX_OVERHANG * height {
                    continue;
                }
                for cy in centres(height).filter(|&c| c < height) {
                    for cx in centres(width).filter(|&c| c < width) {
                        let rect = Rect::from_center_size(cx, cy, w, h).clipped(width, height);
                        if rect.width() >= MIN_SIDE_PX && rect.height() >= MIN_SIDE_PX {
                            out.push(round(rect));
                        }
                    }
                }
            }
        }
        // Clipping at the border makes some windows coincide.
        out.sort_by(|a, b| {
            (a.x0, a.y0, a.x1, a.y1)
                .partial_cmp(&(b.x0, b.y0, b.x1, b.y1))
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        out.dedup();
        out
    }
}

fn round(rect: Rect) -> Rect {
    Rect::new(
        rect.x0.round(),
        rect.y0.round(),
        rect.x1.round(),
        rect.y1.round(),
    )
}

/// One object as the assignment sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Object {
    pub rect: Rect,
    /// 0-based object class.
    pub class_id: usize,
}

/// The label of each RoI (0 background, `c + 1` class `c`) and its regression target toward
/// the object it overlaps most (zeros for background).
pub fn assign(rois: &[Rect], objects: &[Object]) -> (Vec<usize>, Vec<[f32; 4]>) {
    rois.iter()
        .map(|roi| {
            let best = objects
                .iter()
                .map(|o| (roi.iou(&o.rect), o))
                .max_by(|a, b| a.0.total_cmp(&b.0));
            match best {
                Some((iou, object)) if iou >= POSITIVE_IOU => {
                    (object.class_id + 1, encode(roi, &object.rect))
                }
                _ => (0, [0.0; 4]),
            }
        })
        .unzip()
}

/// The regression target of `object` relative to `roi` (R-CNN's parameterisation, scaled by
/// [`DELTA_WEIGHTS`]).
pub fn encode(roi: &Rect, object: &Rect) -> [f32; 4] {
    let (rw, rh) = (roi.width().max(1.0), roi.height().max(1.0));
    let (rx, ry) = roi.center();
    let (ox, oy) = object.center();
    let raw = [
        (ox - rx) / rw,
        (oy - ry) / rh,
        (object.width().max(1.0) / rw).ln(),
        (object.height().max(1.0) / rh).ln(),
    ];
    std::array::from_fn(|i| raw[i] * DELTA_WEIGHTS[i])
}

/// Inverse of [`encode`]; the size terms are clamped so that a wild prediction stays finite.
pub fn decode(roi: &Rect, deltas: [f32; 4]) -> Rect {
    let [dx, dy, dw, dh] = [0, 1, 2, 3].map(|i| deltas[i] / DELTA_WEIGHTS[i]);
    let (rx, ry) = roi.center();
    let cx = rx + dx * roi.width();
    let cy = ry + dy * roi.height();
    let w = roi.width() * dw.clamp(-4.0, 4.0).exp();
    let h = roi.height() * dh.clamp(-4.0, 4.0).exp();
    Rect::from_center_size(cx, cy, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_round_trip() {
        let roi = Rect::new(10.0, 10.0, 58.0, 34.0);
        let object = Rect::new(14.0, 8.0, 70.0, 36.0);
        let back = decode(&roi, encode(&roi, &object));
        assert!((back.x0 - object.x0).abs() < 1e-3 && (back.y1 - object.y1).abs() < 1e-3);
    }

    #[test]
    fn sizes_span_the_objects_and_windows_cover_the_image() {
        let set = WindowSet::for_objects(&[40.0, 60.0, 120.0, 200.0], 384.0);
        assert!(set.sizes_px[0] < 40.0 && *set.sizes_px.last().unwrap() > 200.0);
        assert!(set
            .sizes_px
            .windows(2)
            .all(|w| w[1] / w[0] <= SIZE_STEP + 1e-3));
        let windows = set.windows(384.0, 288.0);
        assert!((500..4000).contains(&windows.len()), "{}", windows.len());
        assert!(windows
            .iter()
            .all(|w| w.x0 >= 0.0 && w.y1 <= 288.0 && w.width() >= MIN_SIDE_PX));
        // Every object of a plausible size has a window it would be assigned to.
        for object in [
            Rect::new(100.0, 50.0, 150.0, 150.0),
            Rect::new(10.0, 200.0, 90.0, 240.0),
            Rect::new(0.0, 0.0, 380.0, 280.0),
        ] {
            let best = windows.iter().map(|w| w.iou(&object)).fold(0.0, f32::max);
            assert!(best >= POSITIVE_IOU, "{object:?}: best IoU {best}");
        }
    }

    #[test]
    fn assignment_labels_by_overlap_with_no_lower_bound_for_background() {
        let objects = [Object {
            rect: Rect::new(0.0, 0.0, 10.0, 10.0),
            class_id: 2,
        }];
        let rois = [
            Rect::new(0.0, 0.0, 10.0, 10.0),
            Rect::new(5.0, 0.0, 15.0, 10.0),
            Rect::new(50.0, 50.0, 60.0, 60.0),
        ];
        let (labels, targets) = assign(&rois, &objects);
        assert_eq!(labels, vec![3, 0, 0]);
        assert_eq!(targets[0], [0.0; 4]);
        assert_eq!(targets[1], [0.0; 4]);
        let (none, _) = assign(&rois, &[]);
        assert_eq!(none, vec![0, 0, 0]);
    }
}
