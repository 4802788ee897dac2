//! The detector's object score over a whole image for RoIs of one size: a grid of RoIs, one
//! per feature cell, scored in one read-only pass, for the heat map that shows where in an
//! image the model sees objects. Knows nothing of runs or UI.

use image::RgbImage;
use tch::Device;

use super::head::FEATURE_STRIDE_PX;
use super::Detector;
use crate::geometry::Rect;

/// The object score of RoIs of one size centred on every cell of a grid.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreMap {
    pub cols: usize,
    pub rows: usize,
    /// `rows × cols`, row-major: the highest object-class probability of the RoI there.
    pub scores: Vec<f32>,
    /// The extent of the cells in the image's pixels: each cell is centred on the centre of
    /// its RoI, so the map lies over the image as the RoIs do.
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

/// Scores RoIs of `roi_width × roi_height` (pixels of `image`) centred one feature cell apart
/// over `image`; `None` when such a RoI does not fit in the image.
pub fn score_map(
    net: &Detector,
    image: &RgbImage,
    (roi_width, roi_height): (f32, f32),
    device: Device,
) -> Option<ScoreMap> {
    let input = net.input(image);
    let (w, h) = (roi_width * input.scale_x, roi_height * input.scale_y);
    let (iw, ih) = (input.width as f32, input.height as f32);
    if !(w >= 1.0 && h >= 1.0 && w <= iw * 1.01 && h <= ih * 1.01) {
        return None;
    }
    let step = FEATURE_STRIDE_PX as f32;
    let cols = (((iw - w) / step).floor() as usize) + 1;
    let rows = (((ih - h) / step).floor() as usize) + 1;
    let rois: Vec<f32> = (0..rows * cols)
        .flat_map(|cell| {
            let (x, y) = ((cell % cols) as f32 * step, (cell / cols) as f32 * step);
            [x, y, x + w, y + h]
        })
        .collect();
    let _guard = tch::no_grad_guard();
    let map = net.feature_map(&input.to_tensor(device));
    let rois = tch::Tensor::from_slice(&rois)
        .view([(rows * cols) as i64, 4])
        .to_device(device);
    let (probs, _) = net.score_rois(&map, &rois);
    let classes = net.num_classes() as i64;
    let scores = probs
        .narrow(1, 1, classes)
        .amax(1, false)
        .to_device(Device::Cpu);
    let scores = Vec::<f32>::try_from(scores).ok()?;
    let (half_w, half_h, half_step) = (w / 2.0, h / 2.0, step / 2.0);
    let area = Rect::new(
        half_w - half_step,
        half_h - half_step,
        half_w - half_step + cols as f32 * step,
        half_h - half_step + rows as f32 * step,
    );
    Some(ScoreMap {
        cols,
        rows,
        scores,
        area: input.to_source(&area),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detector::{BackboneKind, ModelInfo, WindowSet};

    #[test]
    fn the_map_covers_the_image_one_cell_per_feature_stride() {
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let info = ModelInfo {
            architecture: crate::detector::model::ARCHITECTURE.into(),
            backbone: BackboneKind::Small,
            class_names: vec!["a".into(), "b".into()],
            input_px: 160,
            windows: WindowSet::for_objects(&[40.0], 160.0),
        };
        let net = Detector::new(&vs.root(), &info);
        // 320×160 seen at 160×80: a 64×32 RoI is 32×16 input pixels.
        let image = RgbImage::from_fn(320, 160, |x, y| image::Rgb([x as u8, y as u8, 90]));
        let map = score_map(&net, &image, (64.0, 32.0), Device::Cpu).unwrap();
        // (160 − 32) / 16 + 1 by (80 − 16) / 16 + 1 positions.
        assert_eq!((map.cols, map.rows), (9, 5));
        assert_eq!(map.scores.len(), 45);
        assert!(map.scores.iter().all(|s| (0.0..=1.0).contains(s)));
        // The first cell is centred on the first RoI's centre, (16, 8) input = (32, 16).
        let first = (map.area.x0 + 16.0, map.area.y0 + 16.0);
        assert_eq!(first, (32.0, 16.0));
        assert_eq!(map.area.width(), 9.0 * 32.0);
        assert!(map.at(8, 4).is_some() && map.at(9, 0).is_none());
        // Larger than the image.
        assert!(score_map(&net, &image, (400.0, 20.0), Device::Cpu).is_none());
    }
}
