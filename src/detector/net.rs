//! The window classifier: fully convolutional, so the network trained on fixed-size windows
//! slides over a whole image in one pass per pyramid scale.

use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Kind, Reduction, Tensor};

use super::window::WindowShape;

/// How much network: the CPU default stays interactive (a batch of 128 windows trains in tens
/// of milliseconds on a laptop), the GPU preset doubles every layer's channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NetSize {
    #[default]
    Small,
    Large,
}

impl NetSize {
    /// `(channels, stride)` of each stage; the strides multiply to [`super::STRIDE_PX`].
    fn stages(self) -> [(i64, i64); 4] {
        let [a, b, c, d] = self.channel_widths();
        [(a, 2), (b, 1), (c, 2), (d, 2)]
    }

    fn channel_widths(self) -> [i64; 4] {
        match self {
            NetSize::Small => [16, 32, 48, 64],
            NetSize::Large => [32, 64, 96, 128],
        }
    }

    fn head_channels(self) -> i64 {
        match self {
            NetSize::Small => 96,
            NetSize::Large => 192,
        }
    }

    /// The preset for a device: the larger one where a GPU makes it cheap.
    pub fn for_device(device: tch::Device) -> Self {
        if device.is_cuda() {
            NetSize::Large
        } else {
            NetSize::Small
        }
    }
}

impl std::fmt::Display for NetSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NetSize::Small => "small",
            NetSize::Large => "large",
        })
    }
}
/// Weight of the box term next to classification, as in Fast R-CNN.
const BOX_LOSS_WEIGHT: f64 = 1.0;

/// Background plus `num_classes` scores and four box deltas per window.
#[derive(Debug)]
pub struct DetectorNet {
    stages: Vec<nn::Conv2D>,
    /// Covers a whole window's cells: on a window it yields one vector, on an image a map.
    head: nn::Conv2D,
    out: nn::Conv2D,
    pub num_classes: usize,
    /// The window it was trained on, in pixels.
    pub shape: WindowShape,
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

/// Per-example loss and what the model thinks of each example, from one forward pass.
#[derive(Debug)]
pub struct WindowLosses {
    /// `[N]` classification plus box loss per example: the measure every strategy is compared
    /// by.
    pub loss: Tensor,
    /// `[N]` what the trained pass backpropagates: `loss`, or under the focal loss its
    /// classification term replaced by the focal term.
    pub objective: Tensor,
    /// `[N]` the classification term of `loss` alone.
    pub classification: Tensor,
    /// `[N]` highest object-class probability per example.
    pub object_score: Tensor,
}

impl DetectorNet {
    pub fn new(vs: &nn::Path, num_classes: usize, shape: WindowShape, size: NetSize) -> Self {
        let conv = |name: &str, c_in, c_out, k, stride| {
            let config = nn::ConvConfig {
                padding: k / 2,
                stride,
                ..Default::default()
            };
            nn::conv2d(vs / name, c_in, c_out, k, config)
        };
        let mut c_in = 3;
        let mut stages = Vec::new();
        for (i, &(c_out, stride)) in size.stages().iter().enumerate() {
            // Strided convolutions rather than conv + max-pool: on the CPU, max-pooling took
            // more than half of the forward pass, which made OHEM's read-only pass nearly as
            // costly as a full training step.
            stages.push(conv(&format!("conv{}", i + 1), c_in, c_out, 3, stride));
            c_in = c_out;
        }
        let (cells_w, cells_h) = shape.cells();
        let head = nn::conv(
            vs / "head",
            c_in,
            size.head_channels(),
            [cells_h as i64, cells_w as i64],
            nn::ConvConfigND::<[i64; 2]>::default(),
        );
        let out = conv(
            "out",
            size.head_channels(),
            num_classes as i64 + 1 + 4,
            1,
            1,
        );
        Self {
            stages,
            head,
            out,
            num_classes,
            shape,
        }
    }

    /// `[N, 3, H, W]` normalised pixels → `[N, C + 1 + 4, h, w]`: class logits then box deltas,
    /// one cell per window position (a single cell when the input is one window).
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let mut h = xs.shallow_clone();
        for stage in &self.stages {
            h = stage.forward(&h).relu();
        }
        self.out.forward(&self.head.forward(&h).relu())
    }

    /// Logits `[N, C + 1]` and deltas `[N, 4]` for a batch of windows.
    pub fn forward_windows(&self, xs: &Tensor) -> (Tensor, Tensor) {
        let out = self.forward(xs).flatten(1, -1);
        let classes = self.num_classes as i64 + 1;
        (out.narrow(1, 0, classes), out.narrow(1, classes, 4))
    }

    /// Per-example loss: cross-entropy plus smooth-L1 on the box deltas of positives.
    pub fn window_losses(&self, xs: &Tensor, labels: &Tensor, targets: &Tensor) -> WindowLosses {
        self.window_losses_with(xs, labels, targets, ClassLoss::CrossEntropy)
    }

    /// [`Self::window_losses`], with `objective` under the given classification loss.
    pub fn window_losses_with(
        &self,
        xs: &Tensor,
        labels: &Tensor,
        targets: &Tensor,
        class_loss: ClassLoss,
    ) -> WindowLosses {
        let (logits, deltas) = self.forward_windows(xs);
        let classification =
            logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::None, -100, 0.0);
        let positive = labels.gt(0).to_kind(Kind::Float);
        let box_term = deltas
            .smooth_l1_loss(targets, Reduction::None, 1.0 / 9.0)
            .sum_dim_intlist(1, false, Kind::Float)
            * &positive
            * BOX_LOSS_WEIGHT;
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
        WindowLosses {
            loss,
            objective,
            classification,
            object_score,
        }
    }

    /// Sets the background bias so that every window starts out an object with probability
    /// `prior` (RetinaNet's initialisation, which keeps the focal loss of the many easy
    /// negatives from swamping the first steps).
    pub fn set_object_prior(&mut self, prior: f64) {
        let classes = self.num_classes as f64;
        let background = (classes * (1.0 - prior) / prior).ln();
        if let Some(bias) = &mut self.out.bs {
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
