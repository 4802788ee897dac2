//! The detector's object score over a whole image at one scale: one read-only pass, for the
//! heat map that shows where in an image the model sees objects. Knows nothing of runs or UI.

use image::RgbImage;
use tch::{Device, Kind};

use super::{forward_at_scale, DetectorNet, STRIDE_PX};
use crate::geometry::Rect;

/// The object score of every window position of one pyramid level.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreMap {
    pub cols: usize,
    pub rows: usize,
    /// `rows × cols`, row-major: the highest object-class probability of the window there.
    pub scores: Vec<f32>,
    /// The extent of the cells in the image's pixels: cell `(x, y)` is one stride wide and
    /// centred on the centre of its window, so the map lies over the image as the windows do.
    pub area: Rect,
}

impl ScoreMap {
    /// The score of cell `(x, y)`.
    pub fn at(&self, x: usize, y: usize) -> Option<f32> {
        (x < self.cols)
            .then(|| self.scores.get(y * self.cols + x).copied())
            .flatten()
    }
}

/// Slides `net` over `image` once, windows covering `scale ×` the window's pixels, and returns
/// the object score of every position; `None` when the image is smaller than half a window at
/// this scale (the detector does not look there either).
pub fn score_map(
    net: &DetectorNet,
    image: &RgbImage,
    scale: f32,
    device: Device,
) -> Option<ScoreMap> {
    let _guard = tch::no_grad_guard();
    let pass = forward_at_scale(net, image, scale, device)?;
    let (rows, cols) = (pass.out.size()[2] as usize, pass.out.size()[3] as usize);
    let classes = net.num_classes as i64;
    let scores = pass
        .out
        .narrow(1, 0, classes + 1)
        .softmax(1, Kind::Float)
        .narrow(1, 1, classes)
        .amax(1, false)
        .to_device(Device::Cpu)
        .flatten(0, -1);
    let scores = Vec::<f32>::try_from(scores).ok()?;
    let (half_w, half_h) = (
        net.shape.width_px as f32 / 2.0,
        net.shape.height_px as f32 / 2.0,
    );
    let half_stride = STRIDE_PX as f32 / 2.0;
    let area = Rect::new(
        half_w - half_stride,
        half_h - half_stride,
        half_w - half_stride + (cols * STRIDE_PX) as f32,
        half_h - half_stride + (rows * STRIDE_PX) as f32,
    )
    .scaled_xy(pass.sx, pass.sy);
    Some(ScoreMap {
        cols,
        rows,
        scores,
        area,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{NetSize, WindowShape};

    #[test]
    fn the_map_covers_the_image_one_cell_per_stride() {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let shape = WindowShape {
            width_px: 32,
            height_px: 16,
        };
        let net = DetectorNet::new(&vs.root(), 2, shape, NetSize::Small);
        let image = RgbImage::from_fn(160, 80, |x, y| image::Rgb([x as u8, y as u8, 90]));
        let map = score_map(&net, &image, 2.0, Device::Cpu).unwrap();
        // 80×40 resampled pixels: (80 − 32) / 8 + 1 by (40 − 16) / 8 + 1 window positions.
        assert_eq!((map.cols, map.rows), (7, 4));
        assert_eq!(map.scores.len(), 28);
        assert!(map.scores.iter().all(|s| (0.0..=1.0).contains(s)));
        // The first cell is centred on the first window's centre, (16, 8) × 2.
        let first = (map.area.x0 + 8.0, map.area.y0 + 8.0);
        assert_eq!(first, (32.0, 16.0));
        assert_eq!(map.area.width(), 7.0 * 16.0);
        assert!(map.at(6, 3).is_some() && map.at(7, 0).is_none());
        // Too small at this scale: a quarter of a window.
        assert!(score_map(&net, &image, 20.0, Device::Cpu).is_none());
    }
}
