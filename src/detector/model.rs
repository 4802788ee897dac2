//! A detector as a description and on a device: what it takes to rebuild one (`model.json`)
//! and which device it runs on. Loading saved weights back is `checkpoint.rs`'s.

use anyhow::bail;
use serde::{Deserialize, Serialize};
use tch::Device;

use super::backbone::BackboneKind;
use super::rois::WindowSet;
use crate::data::Dataset;

/// Where tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when available, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// The device a choice resolves to, and its name for people.
pub fn resolve_device(choice: DeviceChoice) -> anyhow::Result<(Device, String)> {
    let cuda = tch::Cuda::is_available();
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, "CPU".to_string())),
        DeviceChoice::Cuda if !cuda => bail!(
            "--device cuda was asked for, but libtorch finds no CUDA device (is the NVIDIA driver loaded?)"
        ),
        DeviceChoice::Cuda | DeviceChoice::Auto if cuda => Ok((Device::Cuda(0), cuda_name())),
        DeviceChoice::Auto | DeviceChoice::Cuda => Ok((Device::Cpu, "CPU".to_string())),
    }
}

/// The GPU's name as the driver reports it (libtorch's C API does not expose it).
fn cuda_name() -> String {
    std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=name", "--format=csv,noheader", "-i", "0"])
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .map(|s| format!("CUDA: {s}"))
        .unwrap_or_else(|| "CUDA".to_string())
}

/// The detector design every model of this program has: RoIs pooled from a shared feature map
/// and scored by a Fast R-CNN head.
pub const ARCHITECTURE: &str = "fast-rcnn-roi-head";

/// The longer image side the detector sees by default on the CPU.
pub const INPUT_PX: u32 = 384;
/// And on a GPU, where a larger input is cheap.
pub const CUDA_INPUT_PX: u32 = 512;

/// What it takes to rebuild a trained detector: written as `model.json` beside the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// Always [`ARCHITECTURE`]; a `model.json` of another design is refused by name.
    pub architecture: String,
    pub backbone: BackboneKind,
    pub class_names: Vec<String>,
    /// The longer image side at inference, in pixels.
    pub input_px: u32,
    /// The RoIs slid over every image at inference.
    pub windows: WindowSet,
}

impl ModelInfo {
    /// The detector for `dataset`'s classes, its windows spanning the training objects' sizes
    /// as the network sees them at `input_px`.
    pub fn from_dataset(dataset: &Dataset, backbone: BackboneKind, input_px: u32) -> Self {
        let at_input = |w: f32, h: f32, image_w: f32, image_h: f32| {
            (w * h).sqrt() * input_px as f32 / image_w.max(image_h).max(1.0)
        };
        let sizes: Vec<f32> = dataset
            .train
            .iter()
            .flat_map(|r| {
                let (iw, ih) = (r.width as f32, r.height as f32);
                r.boxes
                    .iter()
                    .map(move |b| at_input(b.rect.width(), b.rect.height(), iw, ih))
            })
            .collect();
        // Without boxes (pos/neg crops fill their frame, but the photos a detector trained on
        // them looks at show the object at any size) windows go from an eighth of the image up.
        let windows = WindowSet::for_objects(&sizes, input_px as f32);
        Self {
            architecture: ARCHITECTURE.to_string(),
            backbone,
            class_names: dataset.class_names.clone(),
            input_px,
            windows,
        }
    }

    /// "EfficientNet-Lite0 (ImageNet) + RoI head, 384 px": the detector in a few words.
    pub fn describe(&self) -> String {
        format!("{} + RoI head, {} px", self.backbone.label(), self.input_px)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::data::{ImageRecord, Layout};
    use crate::geometry::Rect;

    #[test]
    fn windows_follow_the_objects_as_the_network_sees_them() {
        // 800-pixel photos seen at 400: 100- and 300-pixel objects become 50 and 150.
        let dataset = Dataset {
            root: PathBuf::from("memory"),
            layout: Layout::Voc,
            class_names: vec!["kangaroo".into()],
            train: vec![ImageRecord::in_memory(
                800,
                600,
                0,
                vec![
                    Rect::new(0.0, 0.0, 100.0, 100.0),
                    Rect::new(0.0, 0.0, 300.0, 300.0),
                ],
            )],
            val: Vec::new(),
            positive_crops: Vec::new(),
        };
        let info = ModelInfo::from_dataset(&dataset, BackboneKind::Small, 400);
        let sizes = &info.windows.sizes_px;
        assert!(
            sizes[0] <= 50.0 && *sizes.last().unwrap() >= 150.0,
            "{sizes:?}"
        );
        assert!(*sizes.last().unwrap() <= 200.0, "{sizes:?}");
        // Crops only: windows from small to the whole image.
        let crops = Dataset {
            train: vec![ImageRecord::in_memory(600, 400, 0, Vec::new())],
            positive_crops: vec![ImageRecord::in_memory(200, 220, 0, Vec::new())],
            ..dataset
        };
        let info = ModelInfo::from_dataset(&crops, BackboneKind::Small, 400);
        let sizes = &info.windows.sizes_px;
        assert!(
            sizes[0] <= 60.0 && *sizes.last().unwrap() >= 399.0,
            "{sizes:?}"
        );
    }
}
