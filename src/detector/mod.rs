//! The detector: a small fully convolutional window classifier with box regression, slid over
//! an image pyramid, its candidates reduced by non-maximum suppression. Owns tch; knows nothing
//! of batches, strategies or the UI.

pub mod checkpoint;
pub mod model;
pub mod net;
pub mod score_map;
pub mod window;

use image::RgbImage;
use tch::{Device, Kind, Tensor};

use crate::data::ImageRecord;
use crate::eval::Detection;
use crate::geometry::{nms, Rect};
pub use model::{resolve_device, DeviceChoice, LoadedModel, ModelInfo};
pub use net::{ClassLoss, DetectorNet, NetSize, WindowLosses};
pub use window::{WindowShape, STRIDE_PX};

/// IoU above which a lower-scored detection of the same class is suppressed.
pub const DETECTION_NMS_IOU: f32 = 0.4;
/// A detection lying this much inside a higher-scored one of the same class is dropped.
pub const CONTAINED_SHARE: f32 = 0.7;
/// Detections kept per image after NMS.
pub const MAX_DETECTIONS_PER_IMAGE: usize = 100;
/// Detections below this score are not kept for evaluation (the threshold slider starts here).
pub const SCORE_FLOOR: f32 = 0.05;
/// Candidates considered per image before NMS.
const MAX_CANDIDATES_PER_IMAGE: usize = 2000;

/// One detection in the pixels of the image it was found in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawDetection {
    pub rect: Rect,
    /// Object class, 0-based (background excluded).
    pub class_id: usize,
    pub score: f32,
}

/// Stacked RGB windows (`n × height × width × 3` bytes) → normalised `[n, 3, height, width]`.
pub fn pixels_to_tensor(
    pixels: &[u8],
    n: usize,
    height: usize,
    width: usize,
    device: Device,
) -> Tensor {
    Tensor::from_slice(pixels)
        .view([n as i64, height as i64, width as i64, 3])
        .to_device(device)
        .permute([0, 3, 1, 2])
        // The permute leaves a channels-last layout; without this every convolution converts it.
        .contiguous()
        .to_kind(Kind::Float)
        / 255.0
        - 0.5
}

/// Slides the detector over `image` at every scale and returns its detections above
/// `score_floor`, at most [`MAX_DETECTIONS_PER_IMAGE`], highest score first.
pub fn detect(
    net: &DetectorNet,
    image: &RgbImage,
    scales: &[f32],
    score_floor: f32,
    device: Device,
) -> Vec<RawDetection> {
    let _guard = tch::no_grad_guard();
    let mut candidates: Vec<RawDetection> = scales
        .iter()
        .flat_map(|&scale| candidates_at_scale(net, image, scale, score_floor, device))
        .collect();
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    candidates.truncate(MAX_CANDIDATES_PER_IMAGE);
    suppress(candidates)
}

/// The network's output over a whole image resampled to one pyramid level.
pub(crate) struct LevelPass {
    /// `[1, C + 1 + 4, map_h, map_w]`: class logits then box deltas per window position.
    pub out: Tensor,
    /// Image pixels per resampled pixel, on each axis.
    pub sx: f32,
    pub sy: f32,
}

/// One forward pass over `image` resampled by `1 / scale`, so that a window covers `scale ×`
/// the window's pixels; `None` when the image is smaller than half a window at this scale.
pub(crate) fn forward_at_scale(
    net: &DetectorNet,
    image: &RgbImage,
    scale: f32,
    device: Device,
) -> Option<LevelPass> {
    let shape = net.shape;
    let fit_w = ((image.width() as f32 / scale).floor() as usize).max(1);
    let fit_h = ((image.height() as f32 / scale).floor() as usize).max(1);
    // An object that fills the photo needs a window as large as the photo or larger: pad the
    // resampled image with grey up to one window, as training crops near an edge are padded.
    // Only while the image still fills half of the window's side.
    if 2 * fit_w < shape.width_px || 2 * fit_h < shape.height_px {
        return None;
    }
    let (out_w, out_h) = (fit_w.max(shape.width_px), fit_h.max(shape.height_px));
    // The image was resampled to whole pixels: the true factors differ a little per axis.
    let (sx, sy) = (
        image.width() as f32 / fit_w as f32,
        image.height() as f32 / fit_h as f32,
    );
    let region = Rect::new(0.0, 0.0, out_w as f32 * sx, out_h as f32 * sy);
    let pixels = window::sample_region(image, region, out_w, out_h);
    let out = net.forward(&pixels_to_tensor(&pixels, 1, out_h, out_w, device));
    Some(LevelPass { out, sx, sy })
}

/// Every window position of one pyramid level scoring at least `score_floor` for some class,
/// with its regressed box, in the image's pixels.
fn candidates_at_scale(
    net: &DetectorNet,
    image: &RgbImage,
    scale: f32,
    score_floor: f32,
    device: Device,
) -> Vec<RawDetection> {
    let shape = net.shape;
    let classes = net.num_classes;
    let Some(LevelPass { out, sx, sy }) = forward_at_scale(net, image, scale, device) else {
        return Vec::new();
    };
    let (map_h, map_w) = (out.size()[2] as usize, out.size()[3] as usize);
    let probs = out
        .narrow(1, 0, classes as i64 + 1)
        .softmax(1, Kind::Float)
        .to_device(Device::Cpu);
    let deltas = out.narrow(1, classes as i64 + 1, 4).to_device(Device::Cpu);
    let probs = Vec::<f32>::try_from(probs.flatten(0, -1)).unwrap_or_default();
    let deltas = Vec::<f32>::try_from(deltas.flatten(0, -1)).unwrap_or_default();
    let cells = map_h * map_w;
    let mut candidates = Vec::new();
    for cell in 0..cells {
        let (y, x) = (cell / map_w, cell % map_w);
        let window_rect = Rect::new(
            (x * STRIDE_PX) as f32,
            (y * STRIDE_PX) as f32,
            (x * STRIDE_PX + shape.width_px) as f32,
            (y * STRIDE_PX + shape.height_px) as f32,
        )
        .scaled_xy(sx, sy);
        for class in 1..=classes {
            let score = probs.get(class * cells + cell).copied().unwrap_or(0.0);
            if score.is_finite() && score >= score_floor {
                let d = [0, 1, 2, 3].map(|i| deltas.get(i * cells + cell).copied().unwrap_or(0.0));
                let rect = window::apply_deltas(&window_rect, d)
                    .clipped(image.width() as f32, image.height() as f32);
                candidates.push(RawDetection {
                    rect,
                    class_id: class - 1,
                    score,
                });
            }
        }
    }
    candidates
}

/// Per-class NMS, then boxes lying mostly inside a better one of their class are dropped;
/// `candidates` come highest score first.
fn suppress(candidates: Vec<RawDetection>) -> Vec<RawDetection> {
    let boxes: Vec<(Rect, f32, usize)> = candidates
        .iter()
        .map(|d| (d.rect, d.score, d.class_id))
        .collect();
    let mut kept: Vec<RawDetection> = Vec::new();
    for i in nms(&boxes, DETECTION_NMS_IOU) {
        let d = candidates[i];
        // A window on part of an object (the front half of a car) looks like the object too, and
        // its box hardly overlaps the whole one by IoU; drop it when a better box covers it.
        let covered = kept.iter().any(|k| {
            k.class_id == d.class_id
                && d.rect.intersection_area(&k.rect) > CONTAINED_SHARE * d.rect.area()
        });
        if !covered {
            kept.push(d);
        }
    }
    kept.truncate(MAX_DETECTIONS_PER_IMAGE);
    kept
}

/// Detections above [`SCORE_FLOOR`] on every image of a split, in original pixels, for
/// evaluation (`image` indexes `images`).
pub fn detect_images(
    net: &DetectorNet,
    images: &[ImageRecord],
    scales: &[f32],
    device: Device,
) -> Vec<Detection> {
    detect_images_unless(net, images, scales, device, &|| false).unwrap_or_default()
}

/// [`detect_images`], given up (`None`) as soon as `stop` says so between two images.
pub fn detect_images_unless(
    net: &DetectorNet,
    images: &[ImageRecord],
    scales: &[f32],
    device: Device,
    stop: &dyn Fn() -> bool,
) -> Option<Vec<Detection>> {
    let mut found = Vec::new();
    for (image, record) in images.iter().enumerate() {
        if stop() {
            return None;
        }
        found.extend(
            detect(net, &record.pixels, scales, SCORE_FLOOR, device)
                .into_iter()
                .map(|d| Detection {
                    image,
                    class_id: d.class_id,
                    rect: record.to_original(&d.rect),
                    score: d.score,
                }),
        );
    }
    Some(found)
}
