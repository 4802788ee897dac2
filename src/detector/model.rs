//! A detector as a thing on disk and on a device: what it takes to rebuild one (`model.json`),
//! which device it runs on, and loading saved weights back.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tch::Device;

use super::checkpoint::{check_shapes, ModelFile};
use super::window::{self, WindowShape};
use super::{DetectorNet, NetSize};
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

/// What it takes to rebuild a trained detector: written as `model.json` beside the weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    pub class_names: Vec<String>,
    pub window: WindowShape,
    /// Pyramid scales (window pixels → image pixels) the detector slides over.
    pub scales: Vec<f32>,
    /// The network's width.
    #[serde(default)]
    pub size: NetSize,
}

impl ModelInfo {
    /// Window shape (of about `window_area_px` pixels) and pyramid from the training boxes, in
    /// the decoded pixels the detector sees.
    pub fn from_dataset(dataset: &Dataset, window_area_px: f32, size: NetSize) -> Self {
        let mut sizes: Vec<(f32, f32)> = dataset
            .train
            .iter()
            .flat_map(|r| {
                r.boxes.iter().map(move |b| {
                    let decoded = r.to_decoded(&b.rect);
                    (decoded.width(), decoded.height())
                })
            })
            .collect();
        sizes.extend(
            dataset
                .positive_crops
                .iter()
                .map(|r| (r.pixels.width() as f32, r.pixels.height() as f32)),
        );
        let window = WindowShape::from_box_sizes(&sizes, window_area_px);
        let crops_only =
            !dataset.positive_crops.is_empty() && dataset.train.iter().all(|r| r.boxes.is_empty());
        let scales = if crops_only {
            // Crops are cut at the size their objects have in photos, but a test photo may show
            // an object larger or smaller: slide from half to twice the crops' range.
            let widened: Vec<(f32, f32)> = sizes
                .iter()
                .flat_map(|&(w, h)| [(w * 0.5, h * 0.5), (w, h), (w * 2.0, h * 2.0)])
                .collect();
            window::pyramid_scales(&widened, window)
        } else {
            window::pyramid_scales(&sizes, window)
        };
        Self {
            class_names: dataset.class_names.clone(),
            window,
            scales,
            size,
        }
    }
}

/// A trained detector loaded from `<strategy>.safetensors` and the `model.json` beside it.
pub struct LoadedModel {
    pub info: ModelInfo,
    pub net: DetectorNet,
    pub device: Device,
    /// Owns the weights `net` points at.
    _vs: tch::nn::VarStore,
}

impl LoadedModel {
    /// Loads `checkpoint` after checking it against the `model.json` beside it: listed there
    /// byte for byte, and holding exactly the tensors of the network it describes.
    pub fn load(checkpoint: &Path, device: DeviceChoice) -> anyhow::Result<Self> {
        if !checkpoint.is_file() {
            bail!("{}: no such checkpoint file", checkpoint.display());
        }
        let model_path = checkpoint.with_file_name("model.json");
        if !model_path.is_file() {
            bail!(
                "{} needs the model.json that `train` writes beside it, and there is none (was the save interrupted?)",
                checkpoint.display()
            );
        }
        let model = ModelFile::load(&model_path)?;
        model.check_listed(checkpoint)?;
        let info = model.info;
        let (device, _) = resolve_device(device)?;
        let mut vs = tch::nn::VarStore::new(device);
        let net = DetectorNet::new(&vs.root(), info.class_names.len(), info.window, info.size);
        let expected: BTreeMap<String, Vec<i64>> = vs
            .variables()
            .into_iter()
            .map(|(name, tensor)| (name, tensor.size()))
            .collect();
        check_shapes(checkpoint, &expected)?;
        vs.load(checkpoint)
            .with_context(|| format!("{}: not weights of this detector", checkpoint.display()))?;
        Ok(Self {
            info,
            net,
            device,
            _vs: vs,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::data::{ImageRecord, Layout};

    fn record(width: u32, height: u32) -> ImageRecord {
        ImageRecord {
            path: PathBuf::from("memory.png"),
            width,
            height,
            boxes: Vec::new(),
            pixels: Arc::new(image::RgbImage::new(width, height)),
            scale: 1.0,
        }
    }

    #[test]
    fn crops_set_the_pyramid_around_their_own_size() {
        // 240-pixel crops and a 32×32 window: the objects need a scale near 7.5, far beyond
        // the 1–4 a fixed range would give.
        let dataset = Dataset {
            root: PathBuf::from("memory"),
            layout: Layout::PosNeg,
            class_names: vec!["kangaroo".into()],
            train: vec![record(600, 400)],
            val: Vec::new(),
            positive_crops: (0..20).map(|i| record(200 + 4 * i, 220 + 4 * i)).collect(),
        };
        let info = ModelInfo::from_dataset(&dataset, 1152.0, NetSize::Small);
        let covers = |scale: f32| info.scales.iter().any(|s| (s / scale).ln().abs() < 0.35);
        assert!(covers(7.5), "{:?}", info.scales);
        assert!(
            covers(3.75) && covers(14.0),
            "half and twice: {:?}",
            info.scales
        );
    }
}
