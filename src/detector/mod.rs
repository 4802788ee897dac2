//! The detector, behind one seam: Fast R-CNN's design (Girshick 2015) on an ImageNet-pretrained
//! EfficientNet-Lite backbone (or a small one trained from scratch). The backbone runs once per
//! image; RoIs — dense windows at several sizes and aspects — share its feature map through
//! RoIAlign; a head scores each RoI and regresses its box.
//!
//! What the rest of the program sees: an image in → its feature map → per-RoI losses from a
//! pass that may or may not keep gradients → detections. Owns tch; knows nothing of batches,
//! strategies or the UI.

pub mod backbone;
pub mod checkpoint;
pub mod head;
pub mod input;
pub mod model;
pub mod pretrained;
pub mod roi_align;
pub mod rois;
pub mod score_map;

use image::RgbImage;
use tch::{nn, Device, Kind, Tensor};

use crate::data::ImageRecord;
use crate::eval::Detection;
use crate::geometry::{nms, Rect};
pub use backbone::BackboneKind;
pub use checkpoint::LoadedModel;
pub use head::{ClassLoss, RoiLosses};
pub use input::InputImage;
pub use model::{resolve_device, DeviceChoice, ModelInfo};
pub use rois::{Object, WindowSet};

/// IoU above which a lower-scored detection of the same class is suppressed.
pub const DETECTION_NMS_IOU: f32 = 0.45;
/// Detections kept per image after NMS.
pub const MAX_DETECTIONS_PER_IMAGE: usize = 100;
/// Detections below this score are not kept for evaluation (the threshold slider starts here).
pub const SCORE_FLOOR: f32 = 0.05;
/// RoIs through the head at once at inference: bounds the memory of a large image.
const ROI_CHUNK: i64 = 4096;

/// One detection in the pixels of the image it was found in.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawDetection {
    pub rect: Rect,
    /// Object class, 0-based (background excluded).
    pub class_id: usize,
    pub score: f32,
}

/// Backbone, neck and RoI head, their variables under `backbone.`, `neck.` and `head.`.
#[derive(Debug)]
pub struct Detector {
    pub info: ModelInfo,
    backbone: backbone::Backbone,
    neck: head::Neck,
    head: head::RoiHead,
}

/// RoIs of one image with their training labels, as tensors on the run's device.
pub struct LabelledRois {
    /// `[R, 4]` in input pixels.
    pub rois: Tensor,
    /// `[R]` 0 for background, `c + 1` for class `c`.
    pub labels: Tensor,
    /// `[R, 4]` weighted box deltas (zeros for background).
    pub targets: Tensor,
}

impl LabelledRois {
    pub fn new(rois: &[Rect], labels: &[usize], targets: &[[f32; 4]], device: Device) -> Self {
        let boxes: Vec<f32> = rois.iter().flat_map(|r| [r.x0, r.y0, r.x1, r.y1]).collect();
        let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        let targets: Vec<f32> = targets.iter().flatten().copied().collect();
        let n = rois.len() as i64;
        Self {
            rois: Tensor::from_slice(&boxes).view([n, 4]).to_device(device),
            labels: Tensor::from_slice(&labels).to_device(device),
            targets: Tensor::from_slice(&targets).view([n, 4]).to_device(device),
        }
    }

    /// The RoIs at `index` `[S]` (a tensor of row numbers), in that order.
    pub fn select(&self, index: &Tensor) -> Self {
        Self {
            rois: self.rois.index_select(0, index),
            labels: self.labels.index_select(0, index),
            targets: self.targets.index_select(0, index),
        }
    }

    pub fn len(&self) -> usize {
        self.rois.size()[0] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Detector {
    /// A detector with random weights (the backbone's ImageNet weights are loaded separately,
    /// see [`Detector::load_pretrained`]).
    pub fn new(p: &nn::Path, info: &ModelInfo) -> Self {
        let backbone = backbone::Backbone::new(&(p / "backbone"), info.backbone);
        let neck = head::Neck::new(&(p / "neck"), info.backbone.feature_channels());
        let head = head::RoiHead::new(&(p / "head"), info.class_names.len());
        Self {
            info: info.clone(),
            backbone,
            neck,
            head,
        }
    }

    /// Loads the backbone's ImageNet weights into `vs`, the store this detector was built in
    /// at its root.
    pub fn load_pretrained(&self, vs: &nn::VarStore) -> anyhow::Result<()> {
        pretrained::load_backbone(vs, "backbone.", self.info.backbone)
    }

    pub fn num_classes(&self) -> usize {
        self.info.class_names.len()
    }

    /// The stride-16 feature map `[1, 64, H/16, W/16]` of one image `[1, 3, H, W]`. Gradient
    /// reaches the unfrozen backbone when grad mode is on.
    pub fn feature_map(&self, pixels: &Tensor) -> Tensor {
        self.neck.forward(&self.backbone.forward(pixels))
    }

    /// Per-RoI losses of `rois` on `map`.
    pub fn roi_losses(
        &self,
        map: &Tensor,
        rois: &LabelledRois,
        class_loss: ClassLoss,
    ) -> RoiLosses {
        self.head
            .losses(map, &rois.rois, &rois.labels, &rois.targets, class_loss)
    }

    /// Class probabilities `[R, C + 1]` and deltas `[R, 4]` of `rois` `[R, 4]`, without gradient.
    pub fn score_rois(&self, map: &Tensor, rois: &Tensor) -> (Tensor, Tensor) {
        let _guard = tch::no_grad_guard();
        let count = rois.size()[0];
        let mut probs = Vec::new();
        let mut deltas = Vec::new();
        for start in (0..count).step_by(ROI_CHUNK as usize) {
            let chunk = rois.narrow(0, start, ROI_CHUNK.min(count - start));
            let (logits, d) = self.head.forward(map, &chunk);
            probs.push(logits.softmax(1, Kind::Float));
            deltas.push(d);
        }
        if probs.is_empty() {
            let classes = self.num_classes() as i64 + 1;
            let options = (Kind::Float, map.device());
            return (
                Tensor::zeros([0, classes], options),
                Tensor::zeros([0, 4], options),
            );
        }
        (Tensor::cat(&probs, 0), Tensor::cat(&deltas, 0))
    }

    /// Starts every RoI out an object with probability `prior` (the focal loss's start).
    pub fn set_object_prior(&mut self, prior: f64) {
        self.head.set_object_prior(prior);
    }

    /// `image` as this detector takes it at inference.
    pub fn input(&self, image: &RgbImage) -> InputImage {
        InputImage::new(image, self.info.input_px)
    }

    /// The detections above `score_floor` on `image` (in its pixels), at most
    /// [`MAX_DETECTIONS_PER_IMAGE`], highest score first.
    pub fn detect(&self, image: &RgbImage, score_floor: f32, device: Device) -> Vec<RawDetection> {
        let input = self.input(image);
        let _guard = tch::no_grad_guard();
        let map = self.feature_map(&input.to_tensor(device));
        self.detect_on(&map, &input, score_floor)
    }

    /// [`Detector::detect`] on an image whose feature map is already computed.
    fn detect_on(&self, map: &Tensor, input: &InputImage, score_floor: f32) -> Vec<RawDetection> {
        let windows = self
            .info
            .windows
            .windows(input.width as f32, input.height as f32);
        if windows.is_empty() {
            return Vec::new();
        }
        let rois = LabelledRois::new(
            &windows,
            &vec![0; windows.len()],
            &vec![[0.0; 4]; windows.len()],
            map.device(),
        );
        let (probs, deltas) = self.score_rois(map, &rois.rois);
        let probs = to_vec(&probs);
        let deltas = to_vec(&deltas);
        let classes = self.num_classes() + 1;
        let (w, h) = (input.width as f32, input.height as f32);
        let mut candidates = Vec::new();
        for (i, window) in windows.iter().enumerate() {
            for class in 1..classes {
                let score = probs.get(i * classes + class).copied().unwrap_or(0.0);
                if !(score.is_finite() && score >= score_floor) {
                    continue;
                }
                let d = std::array::from_fn(|k| deltas.get(i * 4 + k).copied().unwrap_or(0.0));
                let rect = rois::decode(window, d).clipped(w, h);
                if rect.area() > 0.0 {
                    candidates.push(RawDetection {
                        rect: input.to_source(&rect),
                        class_id: class - 1,
                        score,
                    });
                }
            }
        }
        suppress(candidates)
    }

    /// The detections on `record`'s image (in its original pixels) and the mean loss of its
    /// windows against its boxes: one backbone pass for both.
    pub fn evaluate_image(&self, record: &ImageRecord, device: Device) -> (Vec<RawDetection>, f32) {
        let input = self.input(&record.pixels);
        let _guard = tch::no_grad_guard();
        let map = self.feature_map(&input.to_tensor(device));
        let detections = self
            .detect_on(&map, &input, SCORE_FLOOR)
            .into_iter()
            .map(|d| RawDetection {
                rect: record.to_original(&d.rect),
                ..d
            })
            .collect();
        let windows = self
            .info
            .windows
            .windows(input.width as f32, input.height as f32);
        let objects: Vec<Object> = record
            .boxes
            .iter()
            .filter(|b| !b.difficult)
            .map(|b| Object {
                rect: input.to_input(&record.to_decoded(&b.rect)),
                class_id: b.class_id,
            })
            .collect();
        let mut rois = windows;
        rois.extend(objects.iter().map(|o| o.rect));
        let (labels, targets) = rois::assign(&rois, &objects);
        let labelled = LabelledRois::new(&rois, &labels, &targets, device);
        let loss = if labelled.is_empty() {
            f32::NAN
        } else {
            self.roi_losses(&map, &labelled, ClassLoss::CrossEntropy)
                .loss
                .mean(Kind::Float)
                .double_value(&[]) as f32
        };
        (detections, loss)
    }
}

/// Per-class NMS over `candidates`, the best [`MAX_DETECTIONS_PER_IMAGE`] kept.
fn suppress(mut candidates: Vec<RawDetection>) -> Vec<RawDetection> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let boxes: Vec<(Rect, f32, usize)> = candidates
        .iter()
        .map(|d| (d.rect, d.score, d.class_id))
        .collect();
    nms(&boxes, DETECTION_NMS_IOU, MAX_DETECTIONS_PER_IMAGE)
        .into_iter()
        .map(|i| candidates[i])
        .collect()
}

/// Detections above [`SCORE_FLOOR`] on every image of a split, in original pixels, for
/// evaluation (`image` indexes `images`), with the mean window loss over the images.
pub fn detect_images(
    net: &Detector,
    images: &[ImageRecord],
    device: Device,
) -> (Vec<Detection>, f32) {
    detect_images_unless(net, images, device, &|| false).unwrap_or((Vec::new(), f32::NAN))
}

/// [`detect_images`], given up (`None`) as soon as `stop` says so between two images.
pub fn detect_images_unless(
    net: &Detector,
    images: &[ImageRecord],
    device: Device,
    stop: &dyn Fn() -> bool,
) -> Option<(Vec<Detection>, f32)> {
    let mut found = Vec::new();
    let mut losses = Vec::new();
    for (image, record) in images.iter().enumerate() {
        if stop() {
            return None;
        }
        let (detections, loss) = net.evaluate_image(record, device);
        losses.push(loss);
        found.extend(detections.into_iter().map(|d| Detection {
            image,
            class_id: d.class_id,
            rect: d.rect,
            score: d.score,
        }));
    }
    let finite: Vec<f32> = losses.into_iter().filter(|l| l.is_finite()).collect();
    let loss = if finite.is_empty() {
        f32::NAN
    } else {
        finite.iter().sum::<f32>() / finite.len() as f32
    };
    Some((found, loss))
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))
        .unwrap_or_default()
}
