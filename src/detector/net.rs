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

/// Per-example loss and what the model thinks of each example, from one forward pass.
#[derive(Debug)]
pub struct WindowLosses {
    /// `[N]` classification plus box loss per example.
    pub loss: Tensor,
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
        let (logits, deltas) = self.forward_windows(xs);
        let classification =
            logits.cross_entropy_loss::<Tensor>(labels, None, Reduction::None, -100, 0.0);
        let positive = labels.gt(0).to_kind(Kind::Float);
        let box_term = deltas
            .smooth_l1_loss(targets, Reduction::None, 1.0 / 9.0)
            .sum_dim_intlist(1, false, Kind::Float)
            * &positive;
        let object_score = logits
            .softmax(1, Kind::Float)
            .narrow(1, 1, self.num_classes as i64)
            .amax(1, false);
        WindowLosses {
            loss: &classification + box_term * BOX_LOSS_WEIGHT,
            classification,
            object_score,
        }
    }
}
