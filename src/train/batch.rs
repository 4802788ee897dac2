//! A batch of examples turned into what the network and the selection take: tensors on the
//! run's device, and where each example came from.

use tch::{Device, Tensor};

use super::examples::Example;
use super::messages::Thumbnail;
use crate::detector::{self, WindowShape};
use crate::ohem::Candidate;

/// A batch as tensors on the run's device.
pub struct BatchTensors {
    /// `[K, 3, height, width]` normalised pixels.
    pub pixels: Tensor,
    /// `[K]` class of each example, 0 for background.
    pub labels: Tensor,
    /// `[K, 4]` box regression targets.
    pub targets: Tensor,
}

impl BatchTensors {
    pub fn new(examples: &[Example], window: WindowShape, device: Device) -> Self {
        let pixels: Vec<u8> = examples
            .iter()
            .flat_map(|e| e.pixels.iter().copied())
            .collect();
        let labels: Vec<i64> = examples.iter().map(|e| e.label as i64).collect();
        let targets: Vec<f32> = examples.iter().flat_map(|e| e.target).collect();
        Self {
            pixels: detector::pixels_to_tensor(
                &pixels,
                examples.len(),
                window.height_px,
                window.width_px,
                device,
            ),
            labels: Tensor::from_slice(&labels).to_device(device),
            targets: Tensor::from_slice(&targets)
                .view([examples.len() as i64, 4])
                .to_device(device),
        }
    }
}

/// What OHEM's selection needs to know about each example of a batch.
pub fn candidates(examples: &[Example]) -> Vec<Candidate> {
    examples
        .iter()
        .map(|e| Candidate {
            image: e.source_image,
            window: e.window,
            positive: e.label > 0,
        })
        .collect()
}

/// The example's pixels as an RGBA thumbnail for the app.
pub fn thumbnail(example: &Example, window: WindowShape) -> Thumbnail {
    Thumbnail {
        width: window.width_px,
        height: window.height_px,
        rgba: example
            .pixels
            .chunks(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
    }
}
