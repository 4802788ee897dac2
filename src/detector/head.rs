//! What follows the backbone: a neck that merges the stride-16 and stride-32 features into one
//! stride-16 map, and the Fast R-CNN head that scores RoIs on it (RoIAlign 7×7, two fully
//! connected layers, class scores and class-agnostic box deltas), with its per-RoI losses.

use tch::nn::{self, Module};
use tch::{Kind, Reduction, Tensor};

use super::backbone::Features;
use super::roi_align::{roi_align, POOLED_SIZE};

/// Image pixels per cell of the map the RoIs are pooled from.
pub const FEATURE_STRIDE_PX: f64 = 16.0;
/// Channels of that map.
const NECK_CHANNELS: i64 = 64;
/// Width of the head's two hidden layers.
const HIDDEN: i64 = 256;
/// Smooth-L1's transition point on the weighted deltas (Fast R-CNN's σ = 1).
const SMOOTH_L1_BETA: f64 = 1.0;

/// Lateral 1×1 convolutions, the stride-32 map upsampled onto the stride-16 one, and a 3×3
/// convolution over their sum (one level of a feature pyramid).
#[derive(Debug)]
pub struct Neck {
    lat16: nn::Conv2D,
    lat32: nn::Conv2D,
    smooth: nn::Conv2D,
}

impl Neck {
    pub fn new(p: &nn::Path, (c16, c32): (i64, i64)) -> Self {
        let one = nn::ConvConfig::default();
        let three = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        Self {
            lat16: nn::conv2d(p / "lat16", c16, NECK_CHANNELS, 1, one),
            lat32: nn::conv2d(p / "lat32", c32, NECK_CHANNELS, 1, one),
            smooth: nn::conv2d(p / "smooth", NECK_CHANNELS, NECK_CHANNELS, 3, three),
        }
    }

    /// The stride-16 map `[1, 64, H/16, W/16]`.
    pub fn forward(&self, features: &Features) -> Tensor {
        let size = features.c16.size();
        let top =
            self.lat32
                .forward(&features.c32)
                .upsample_nearest2d([size[2], size[3]], None, None);
        self.smooth
            .forward(&(self.lat16.forward(&features.c16) + top))
            .relu()
    }
}

/// The classification term a strategy trains with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ClassLoss {
    CrossEntropy,
    /// `−α_t (1 − p_t)^γ log p_t` (Lin et al. 2017): α for the object classes, 1 − α for
    /// background; at γ = 0 it is α-weighted cross-entropy.
    Focal {
        gamma: f32,
        alpha: f32,
    },
}

/// Per-RoI losses and what the model thinks of each RoI, from one pass of the head.
#[derive(Debug)]
pub struct RoiLosses {
    /// `[R]` classification plus box loss per RoI: the measure every strategy is compared by,
    /// and what OHEM ranks by.
    pub loss: Tensor,
    /// `[R]` what a trained pass backpropagates: `loss`, or under the focal loss its
    /// classification term replaced by the focal term.
    pub objective: Tensor,
    /// `[R]` the classification term of `loss` alone.
    pub classification: Tensor,
    /// `[R]` highest object-class probability per RoI.
    pub object_score: Tensor,
}

/// Background plus `num_classes` scores and four box deltas per RoI.
#[derive(Debug)]
pub struct RoiHead {
    fc1: nn::Linear,
    fc2: nn::Linear,
    cls: nn::Linear,
    bbox: nn::Linear,
    num_classes: usize,
}

impl RoiHead {
    pub fn new(p: &nn::Path, num_classes: usize) -> Self {
        let pooled = NECK_CHANNELS * POOLED_SIZE * POOLED_SIZE;
        // Fast R-CNN's initialisation of the last layers: small scores, tiny deltas.
        let normal = |stdev| nn::LinearConfig {
            ws_init: nn::Init::Randn { mean: 0.0, stdev },
            bs_init: Some(nn::Init::Const(0.0)),
            bias: true,
        };
        Self {
            fc1: nn::linear(p / "fc1", pooled, HIDDEN, Default::default()),
            fc2: nn::linear(p / "fc2", HIDDEN, HIDDEN, Default::default()),
            cls: nn::linear(p / "cls", HIDDEN, num_classes as i64 + 1, normal(0.01)),
            bbox: nn::linear(p / "bbox", HIDDEN, 4, normal(0.001)),
            num_classes,
        }
    }

    /// Logits `[R, C + 1]` and deltas `[R, 4]` of `rois` `[R, 4]` (input pixels) on `map`.
    pub fn forward(&self, map: &Tensor, rois: &Tensor) -> (Tensor, Tensor) {
        let pooled = roi_align(map, rois, FEATURE_STRIDE_PX, POOLED_SIZE).flatten(1, -1);
        let hidden = self.fc2.forward(&self.fc1.forward(&pooled).relu()).relu();
        (self.cls.forward(&hidden), self.bbox.forward(&hidden))
    }

    /// Per-RoI losses against `labels` `[R]` and `targets` `[R, 4]`: cross-entropy plus
    /// smooth-L1 on the deltas of positives.
    pub fn losses(
        &self,
        map: &Tensor,
        rois: &Tensor,
        labels: &Tensor,
        targets: &Tensor,
        class_loss: ClassLoss,
    ) -> RoiLosses {
        let (logits, deltas) = self.forward(map, rois);
        let classification =
            logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::None, -100, 0.0);
        let positive = labels.gt(0).to_kind(Kind::Float);
        let box_term = deltas
            .smooth_l1_loss(targets, Reduction::None, SMOOTH_L1_BETA)
            .sum_dim_intlist(1, false, Kind::Float)
            * &positive;
        let object_score = logits
            .softmax(1, Kind::Float)
            .narrow(1, 1, self.num_classes as i64)
            .amax(1, false);
        let loss = &classification + &box_term;
        let objective = match class_loss {
            ClassLoss::CrossEntropy => loss.shallow_clone(),
            ClassLoss::Focal { gamma, alpha } => {
                focal_loss(&logits, labels, &positive, gamma, alpha) + &box_term
            }
        };
        RoiLosses {
            loss,
            objective,
            classification,
            object_score,
        }
    }

    /// Sets the background bias so that every RoI starts out an object with probability
    /// `prior` (RetinaNet's initialisation, which keeps the focal loss of the many easy
    /// negatives from swamping the first steps).
    pub fn set_object_prior(&mut self, prior: f64) {
        let classes = self.num_classes as f64;
        let background = (classes * (1.0 - prior) / prior).ln();
        if let Some(bias) = &mut self.cls.bs {
            tch::no_grad(|| {
                let _ = bias.narrow(0, 0, 1).fill_(background);
                let _ = bias.narrow(0, 1, self.num_classes as i64).fill_(0.0);
            });
        }
    }
}

/// `[N]` focal loss of `logits` `[N, C + 1]` against `labels`; `positive` is `[N]` 1.0 where the
/// label is an object class.
pub fn focal_loss(
    logits: &Tensor,
    labels: &Tensor,
    positive: &Tensor,
    gamma: f32,
    alpha: f32,
) -> Tensor {
    let log_pt = logits
        .log_softmax(1, Kind::Float)
        .gather(1, &labels.unsqueeze(1), false)
        .squeeze_dim(1);
    let alpha = f64::from(alpha);
    // α for objects, 1 − α for background.
    let weight: Tensor = positive * (2.0 * alpha - 1.0) + (1.0 - alpha);
    let modulating: Tensor = (log_pt.exp() * -1.0 + 1.0)
        .clamp_min(0.0)
        .pow_tensor_scalar(f64::from(gamma));
    weight * modulating * log_pt * -1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focal_loss_at_gamma_zero_is_alpha_weighted_cross_entropy() {
        let logits = Tensor::from_slice(&[2.0f32, -1.0, 0.5, 0.3, 1.2, -0.7]).view([3, 2]);
        let labels = Tensor::from_slice(&[0i64, 1, 1]);
        let positive = labels.gt(0).to_kind(Kind::Float);
        let alpha = 0.25;
        let focal = focal_loss(&logits, &labels, &positive, 0.0, alpha);
        let ce = logits.cross_entropy_loss::<Tensor>(&labels, None, Reduction::None, -100, 0.0);
        let weights = Tensor::from_slice(&[0.75f32, 0.25, 0.25]);
        let difference = (focal - ce * weights).abs().max().double_value(&[]);
        assert!(difference < 1e-6, "{difference}");
        // At γ = 2 a confidently right example counts far less than under cross-entropy.
        let focused = focal_loss(&logits, &labels, &positive, 2.0, 0.5);
        let right = focused.double_value(&[0]);
        let plain = 0.5
            * logits
                .cross_entropy_loss::<Tensor>(&labels, None, Reduction::None, -100, 0.0)
                .double_value(&[0]);
        assert!(right < 0.05 * plain, "{right} vs {plain}");
    }
}
