//! Window shape, pyramid scales and the pixel sampling shared by training crops and inference.

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::geometry::Rect;

/// Total downsampling of the network: one score-map cell per this many input pixels.
pub const STRIDE_PX: usize = 8;

/// About this many pixels per window by default: small enough to train on a CPU in minutes,
/// large enough to tell a car from a car-coloured box.
pub const DEFAULT_WINDOW_AREA_PX: f32 = 1152.0;

/// The fixed input shape of the window classifier, a multiple of the stride on both sides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowShape {
    pub width_px: usize,
    pub height_px: usize,
}

impl WindowShape {
    /// The window of about `area_px` pixels whose aspect matches the median box of the
    /// training data.
    pub fn from_box_sizes(sizes: &[(f32, f32)], area_px: f32) -> Self {
        let mut aspects: Vec<f32> = sizes
            .iter()
            .filter(|(w, h)| *w > 0.0 && *h > 0.0)
            .map(|(w, h)| w / h)
            .collect();
        let aspect = median(&mut aspects).unwrap_or(1.0).clamp(0.33, 3.0);
        let round = |v: f32| ((v / STRIDE_PX as f32).round().max(2.0) as usize) * STRIDE_PX;
        Self {
            width_px: round((area_px * aspect).sqrt()),
            height_px: round((area_px / aspect).sqrt()),
        }
    }

    /// Score-map cells covered by one window.
    pub fn cells(&self) -> (usize, usize) {
        (self.width_px / STRIDE_PX, self.height_px / STRIDE_PX)
    }
}

/// Image scales at which the window is slid: a window at scale `s` covers `s × window` pixels.
/// Spaced by √2 over the range of box sizes seen in training.
pub fn pyramid_scales(sizes: &[(f32, f32)], window: WindowShape) -> Vec<f32> {
    let mut ratios: Vec<f32> = sizes
        .iter()
        .filter(|(w, h)| *w > 0.0 && *h > 0.0)
        .map(|(w, h)| (w / window.width_px as f32 * (h / window.height_px as f32)).sqrt())
        .collect();
    if ratios.is_empty() {
        return vec![1.0];
    }
    ratios.sort_by(f32::total_cmp);
    let pick = |q: f32| ratios[((ratios.len() - 1) as f32 * q).round() as usize];
    let (low, high) = (pick(0.05).max(0.25), pick(0.95).max(0.25));
    let step = std::f32::consts::SQRT_2;
    let mut scales = vec![low];
    while let Some(&last) = scales.last() {
        if last * step > high * 1.15 || scales.len() >= 8 {
            break;
        }
        scales.push(last * step);
    }
    scales
}

fn median(values: &mut [f32]) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f32::total_cmp);
    Some(values[values.len() / 2])
}

/// Samples `region` of `image` into an `out_w × out_h` RGB buffer (bilinear, with a 2×2
/// supersample when shrinking a lot). Outside the image reads as mid grey. Training crops and
/// the inference pyramid both go through here, so the network sees the same resampling in both.
pub fn sample_region(image: &RgbImage, region: Rect, out_w: usize, out_h: usize) -> Vec<u8> {
    let step_x = region.width() / out_w as f32;
    let step_y = region.height() / out_h as f32;
    let offsets: &[f32] = if step_x.max(step_y) > 1.5 {
        &[-0.25, 0.25]
    } else {
        &[0.0]
    };
    // Separable: every output column (and row) reads the same source texels with the same
    // weights, so they are worked out once per column and once per row.
    let columns = taps(region.x0, step_x, out_w, offsets, image.width() as i64);
    let rows = taps(region.y0, step_y, out_h, offsets, image.height() as i64);
    let raw = image.as_raw();
    let stride = image.width() as usize * 3;
    let norm = 1.0 / (offsets.len() * offsets.len()) as f32;
    let mut out = vec![0u8; out_w * out_h * 3];
    for (oy, row_taps) in rows.chunks(offsets.len() * 2).enumerate() {
        for (ox, col_taps) in columns.chunks(offsets.len() * 2).enumerate() {
            let mut acc = [0.0f32; 3];
            for &(y, wy) in row_taps {
                for &(x, wx) in col_taps {
                    let w = wy * wx;
                    match (y, x) {
                        (Some(y), Some(x)) => {
                            let i = y * stride + x * 3;
                            acc[0] += w * raw[i] as f32;
                            acc[1] += w * raw[i + 1] as f32;
                            acc[2] += w * raw[i + 2] as f32;
                        }
                        _ => acc.iter_mut().for_each(|a| *a += w * 128.0),
                    }
                }
            }
            let o = (oy * out_w + ox) * 3;
            for c in 0..3 {
                out[o + c] = (acc[c] * norm).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// For each output position along one axis: two `(source index, weight)` pairs per sub-sample
/// (linear interpolation), `None` for a source outside the image.
fn taps(
    start: f32,
    step: f32,
    count: usize,
    offsets: &[f32],
    size: i64,
) -> Vec<(Option<usize>, f32)> {
    let inside = |i: i64| (0..size).contains(&i).then_some(i as usize);
    let mut taps = Vec::with_capacity(count * offsets.len() * 2);
    for o in 0..count {
        for dx in offsets {
            // Pixel centres sit at +0.5.
            let s = start + (o as f32 + 0.5 + dx) * step - 0.5;
            let i = s.floor();
            let f = s - i;
            taps.push((inside(i as i64), 1.0 - f));
            taps.push((inside(i as i64 + 1), f));
        }
    }
    taps
}

/// Regression target of `object` relative to `window` (R-CNN parameterisation).
pub fn box_deltas(window: &Rect, object: &Rect) -> [f32; 4] {
    let (wx, wy) = window.center();
    let (ox, oy) = object.center();
    [
        (ox - wx) / window.width(),
        (oy - wy) / window.height(),
        (object.width() / window.width()).ln(),
        (object.height() / window.height()).ln(),
    ]
}

/// Inverse of [`box_deltas`]; the size terms are clamped so a wild prediction stays finite.
pub fn apply_deltas(window: &Rect, deltas: [f32; 4]) -> Rect {
    let (wx, wy) = window.center();
    let cx = wx + deltas[0] * window.width();
    let cy = wy + deltas[1] * window.height();
    let w = window.width() * deltas[2].clamp(-2.0, 2.0).exp();
    let h = window.height() * deltas[3].clamp(-2.0, 2.0).exp();
    Rect::from_center_size(cx, cy, w, h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_follows_box_aspect() {
        let cars = vec![(100.0, 44.0); 5];
        let w = WindowShape::from_box_sizes(&cars, DEFAULT_WINDOW_AREA_PX);
        assert_eq!((w.width_px, w.height_px), (48, 24));
        let square = WindowShape::from_box_sizes(&[(30.0, 30.0)], DEFAULT_WINDOW_AREA_PX);
        assert_eq!(square.width_px, square.height_px);
    }

    #[test]
    fn deltas_round_trip() {
        let window = Rect::new(10.0, 10.0, 58.0, 34.0);
        let object = Rect::new(14.0, 8.0, 70.0, 36.0);
        let back = apply_deltas(&window, box_deltas(&window, &object));
        assert!((back.x0 - object.x0).abs() < 1e-3 && (back.y1 - object.y1).abs() < 1e-3);
    }

    #[test]
    fn sampling_identity_region_copies_pixels() {
        let img = RgbImage::from_fn(4, 2, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 7]));
        let out = sample_region(&img, Rect::new(0.0, 0.0, 4.0, 2.0), 4, 2);
        assert_eq!(out, img.into_raw());
    }
}
