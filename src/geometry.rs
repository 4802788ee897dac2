//! Axis-aligned boxes in pixel coordinates, shared by every layer. Plain Rust, no dependencies.

use serde::{Deserialize, Serialize};

/// A box in continuous pixel coordinates: `x0, y0` is the top-left corner, `x1, y1` the
/// bottom-right one (exclusive), so a box covering pixel columns 0..=9 has `x0 = 0, x1 = 10`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Rect {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl Rect {
    pub fn new(x0: f32, y0: f32, x1: f32, y1: f32) -> Self {
        Self { x0, y0, x1, y1 }
    }

    /// The box of `width` × `height` centred on `(cx, cy)`.
    pub fn from_center_size(cx: f32, cy: f32, width: f32, height: f32) -> Self {
        Self::new(
            cx - width / 2.0,
            cy - height / 2.0,
            cx + width / 2.0,
            cy + height / 2.0,
        )
    }

    /// From COCO's `[x, y, width, height]`.
    pub fn from_xywh(x: f32, y: f32, width: f32, height: f32) -> Self {
        Self::new(x, y, x + width, y + height)
    }

    pub fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    pub fn center(&self) -> (f32, f32) {
        ((self.x0 + self.x1) * 0.5, (self.y0 + self.y1) * 0.5)
    }

    /// COCO's `[x, y, width, height]`.
    pub fn to_xywh(&self) -> [f32; 4] {
        [self.x0, self.y0, self.width(), self.height()]
    }

    pub fn scaled(&self, factor: f32) -> Self {
        self.scaled_xy(factor, factor)
    }

    /// The box with x multiplied by `fx` and y by `fy` (images resized to whole pixels scale
    /// their two axes a little differently).
    pub fn scaled_xy(&self, fx: f32, fy: f32) -> Self {
        Self::new(self.x0 * fx, self.y0 * fy, self.x1 * fx, self.y1 * fy)
    }

    pub fn intersection_area(&self, other: &Rect) -> f32 {
        let w = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let h = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        w * h
    }

    /// Intersection over union; 0 when both boxes are empty.
    pub fn iou(&self, other: &Rect) -> f32 {
        let inter = self.intersection_area(other);
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }

    /// The box clipped to an image of `width` × `height` pixels.
    pub fn clipped(&self, width: f32, height: f32) -> Self {
        Self::new(
            self.x0.clamp(0.0, width),
            self.y0.clamp(0.0, height),
            self.x1.clamp(0.0, width),
            self.y1.clamp(0.0, height),
        )
    }
}

/// Indices of `keys` from the highest to the lowest, ties by index (so the order is
/// deterministic); `total_cmp` order, so NaN sorts above every number.
pub fn descending_order(keys: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_by(|&a, &b| keys[b].total_cmp(&keys[a]).then(a.cmp(&b)));
    order
}

/// Greedy non-maximum suppression within groups: `items` are `(box, score, group)`; a box is
/// suppressed by a higher-scored kept box of the same group overlapping it by more than
/// `iou_threshold`. Returns at most `max_kept` kept indices, highest score first (ties by
/// index); the walk stops there, so taking the top few of thousands costs little.
pub fn nms(items: &[(Rect, f32, usize)], iou_threshold: f32, max_kept: usize) -> Vec<usize> {
    let scores: Vec<f32> = items.iter().map(|item| item.1).collect();
    let mut kept: Vec<usize> = Vec::new();
    for i in descending_order(&scores) {
        if kept.len() >= max_kept {
            break;
        }
        let (rect, _, group) = items[i];
        let suppressed = kept
            .iter()
            .any(|&k| items[k].2 == group && items[k].0.iou(&rect) > iou_threshold);
        if !suppressed {
            kept.push(i);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_half_overlapping_boxes() {
        let a = Rect::new(0.0, 0.0, 10.0, 10.0);
        let b = Rect::new(5.0, 0.0, 15.0, 10.0);
        // intersection 50, union 150
        assert!((a.iou(&b) - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(a.iou(&Rect::new(20.0, 20.0, 30.0, 30.0)), 0.0);
        assert_eq!(a.iou(&a), 1.0);
    }

    #[test]
    fn nms_keeps_best_of_overlapping_boxes_per_group() {
        let a = Rect::new(0.0, 0.0, 10.0, 10.0);
        let b = Rect::new(1.0, 0.0, 11.0, 10.0); // IoU with a = 90/110
        let c = Rect::new(50.0, 50.0, 60.0, 60.0);
        let items = [(a, 0.9, 0), (b, 0.8, 0), (c, 0.7, 0), (b, 0.95, 1)];
        assert_eq!(nms(&items, 0.7, usize::MAX), vec![3, 0, 2]);
        assert_eq!(nms(&items, 0.95, usize::MAX), vec![3, 0, 1, 2]);
        assert_eq!(nms(&items, 0.7, 2), vec![3, 0]);
    }

    #[test]
    fn descending_order_breaks_ties_by_index() {
        assert_eq!(descending_order(&[0.1, 0.9, 0.5, 0.9]), vec![1, 3, 2, 0]);
    }
}
