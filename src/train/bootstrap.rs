//! Bootstrapping's hard-negative cache, the offline loop OHEM replaced (Dalal–Triggs,
//! Felzenszwalb): every few hundred steps the bootstrapping model, frozen, scans training images
//! for the background windows it scores highest; its batches then draw part of their negatives
//! from that cache until the next scan.

use std::time::Instant;

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Device;

use super::examples::{Example, ExampleSampler, NEGATIVE_MAX_IOU};
use crate::data::Dataset;
use crate::detector::{self, DetectorNet, SCORE_FLOOR};
use crate::geometry::Rect;

/// Hard negatives kept from one scan.
pub const CACHE_SIZE: usize = 512;
/// Training images one scan looks at (all of them when there are fewer).
pub const IMAGES_PER_SCAN: usize = 64;
/// Share of a batch's negatives replaced by cached hard negatives.
pub const CACHED_SHARE: f64 = 0.5;

/// The hard negatives of the last scan.
#[derive(Default)]
pub struct HardNegativeCache {
    examples: Vec<Example>,
    /// The score of each cached window at the scan, highest first.
    scores: Vec<f32>,
    /// The step the cache was filled at.
    pub filled_at_step: Option<u64>,
}

/// What one scan did, for the person watching.
pub struct ScanReport {
    pub images: usize,
    pub kept: usize,
    pub secs: f32,
    /// Lowest and highest score among the kept windows.
    pub scores: Option<(f32, f32)>,
}

impl HardNegativeCache {
    /// Replaces the cache with the highest-scoring background windows `net` finds on up to
    /// [`IMAGES_PER_SCAN`] training images (drawn from `seed` and `step`).
    pub fn scan(
        &mut self,
        net: &DetectorNet,
        sampler: &ExampleSampler,
        dataset: &Dataset,
        scales: &[f32],
        device: Device,
        (seed, step): (u64, u64),
    ) -> ScanReport {
        let started = Instant::now();
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x5851_F42D_4C95_7F2D));
        let count = IMAGES_PER_SCAN.min(dataset.train.len());
        let mut found: Vec<(f32, usize, Rect)> = Vec::new();
        for image in sample(&mut rng, dataset.train.len(), count) {
            let record = &dataset.train[image];
            let objects: Vec<Rect> = record
                .boxes
                .iter()
                .map(|b| record.to_decoded(&b.rect))
                .collect();
            let detections = detector::detect(net, &record.pixels, scales, SCORE_FLOOR, device);
            found.extend(
                detections
                    .into_iter()
                    .filter(|d| objects.iter().all(|o| o.iou(&d.rect) < NEGATIVE_MAX_IOU))
                    .map(|d| (d.score, image, d.rect)),
            );
        }
        found.sort_by(|a, b| b.0.total_cmp(&a.0));
        found.truncate(CACHE_SIZE);
        let (examples, scores) = found
            .iter()
            .filter_map(|&(score, image, window)| {
                Some((sampler.background_at(image, window)?, score))
            })
            .unzip();
        self.examples = examples;
        self.scores = scores;
        self.filled_at_step = Some(step);
        ScanReport {
            images: count,
            kept: self.examples.len(),
            secs: started.elapsed().as_secs_f32(),
            scores: found
                .last()
                .zip(found.first())
                .map(|(low, high)| (low.0, high.0)),
        }
    }

    /// The cached negatives and their scores at the scan, highest first.
    pub fn entries(&self) -> impl Iterator<Item = (&Example, f32)> {
        self.examples.iter().zip(self.scores.iter().copied())
    }

    /// `examples` with [`CACHED_SHARE`] of their negatives swapped for cached hard negatives
    /// (drawn from `seed` and `step`); `None` while the cache is empty.
    pub fn batch_from(
        &self,
        examples: &[Example],
        (seed, step): (u64, u64),
    ) -> Option<Vec<Example>> {
        if self.examples.is_empty() {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let batch = examples
            .iter()
            .map(|e| {
                if e.label == 0 && rng.random_bool(CACHED_SHARE) {
                    self.examples[rng.random_range(0..self.examples.len())].clone()
                } else {
                    e.clone()
                }
            })
            .collect();
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::data::{GtBox, ImageRecord, Layout, Split};
    use crate::detector::{ModelInfo, NetSize};

    /// Dark photos with one bright object each, and a bright patch away from it: the patch is
    /// the background an untrained-but-biased model scores highest.
    fn dataset() -> Arc<Dataset> {
        let record = |i: u32| {
            let pixels = image::RgbImage::from_fn(96, 96, |x, y| {
                let object = (10..42).contains(&x) && (10..42).contains(&y);
                let patch = (60..90).contains(&x) && (60..90).contains(&y);
                if object || patch {
                    image::Rgb([230, 200, 40 + i as u8])
                } else {
                    image::Rgb([20, 20, 20])
                }
            });
            ImageRecord {
                path: PathBuf::from(format!("{i}.png")),
                width: 96,
                height: 96,
                boxes: vec![GtBox {
                    class_id: 0,
                    rect: Rect::new(10.0, 10.0, 42.0, 42.0),
                    difficult: false,
                }],
                pixels: Arc::new(pixels),
                scale: 1.0,
            }
        };
        Arc::new(Dataset {
            root: PathBuf::from("memory"),
            layout: Layout::Yolo,
            class_names: vec!["thing".into()],
            train: (0..4).map(record).collect(),
            val: Vec::new(),
            positive_crops: Vec::new(),
        })
    }

    #[test]
    fn the_cache_holds_the_highest_scoring_background_windows_and_feeds_batches() {
        let dataset = dataset();
        let info = ModelInfo::from_dataset(&dataset, 1024.0, NetSize::Small);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let mut net = DetectorNet::new(&vs.root(), 1, info.window, info.size);
        // Every window starts out an object with probability one half: plenty above the floor.
        net.set_object_prior(0.5);
        let sampler = ExampleSampler::new(
            dataset.clone(),
            Split::Train,
            info.window,
            info.scales.clone(),
            0.75,
            0.0,
        );
        let mut cache = HardNegativeCache::default();
        let report = cache.scan(
            &net,
            &sampler,
            &dataset,
            &info.scales,
            Device::Cpu,
            (1, 500),
        );
        assert_eq!(report.images, 4);
        assert!(report.kept > 0, "some background scored above the floor");
        assert_eq!(cache.filled_at_step, Some(500));
        let entries: Vec<(&Example, f32)> = cache.entries().collect();
        assert!(
            entries.windows(2).all(|w| w[0].1 >= w[1].1),
            "highest score first"
        );
        for (example, _) in &entries {
            assert_eq!(example.label, 0);
            let record = &dataset.train[example.source_image.unwrap()];
            assert!(record.boxes[0].rect.iou(&example.window) < NEGATIVE_MAX_IOU);
        }

        // A batch of negatives takes about half of them from the cache.
        let batch: Vec<Example> = (0..64)
            .map(|i| {
                sampler
                    .background_at(i % 4, Rect::new(0.0, 0.0, 8.0, 8.0))
                    .unwrap()
            })
            .collect();
        let mixed = cache.batch_from(&batch, (1, 501)).unwrap();
        let from_cache = mixed
            .iter()
            .filter(|e| {
                entries
                    .iter()
                    .any(|(c, _)| c.window == e.window && c.source_image == e.source_image)
            })
            .count();
        assert!(
            (16..=48).contains(&from_cache),
            "{from_cache} of 64 from the cache"
        );
        assert!(HardNegativeCache::default()
            .batch_from(&batch, (1, 1))
            .is_none());
    }
}
