//! Bootstrapping's hard-negative cache, the offline loop OHEM replaced (Dalal–Triggs,
//! Felzenszwalb): every few hundred steps the bootstrapping model, frozen, scans training images
//! for the background RoIs it scores highest; while the cache lasts, its batches take part of
//! their negatives from what the scan found on the same images.

use std::collections::BTreeMap;
use std::time::Instant;

use rand::seq::index::sample;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Device;

use super::batch::{quotas, subsample, Batch, ImageRois};
use super::images::TrainImage;
use crate::data::Dataset;
use crate::detector::rois::{assign, Object, POSITIVE_IOU};
use crate::detector::{Detector, SCORE_FLOOR};
use crate::geometry::Rect;

/// Hard negatives kept from one scan.
pub const CACHE_SIZE: usize = 512;
/// Training images one scan looks at (all of them when there are fewer).
pub const IMAGES_PER_SCAN: usize = 64;
/// Share of a batch image's negatives replaced by cached hard negatives of that image.
pub const CACHED_SHARE: f64 = 0.5;

/// The hard negatives of the last scan, by training image.
#[derive(Default)]
pub struct HardNegativeCache {
    /// Training image → its cached RoIs in original pixels with their scores at the scan.
    by_image: BTreeMap<usize, Vec<(Rect, f32)>>,
    /// The step the cache was filled at.
    pub filled_at_step: Option<u64>,
}

/// What one scan did, for the person watching.
pub struct ScanReport {
    pub images: usize,
    pub kept: usize,
    pub secs: f32,
    /// Lowest and highest score among the kept RoIs.
    pub scores: Option<(f32, f32)>,
}

impl HardNegativeCache {
    /// Replaces the cache with the highest-scoring background detections `net` finds on up to
    /// [`IMAGES_PER_SCAN`] training images (drawn from `seed` and `step`).
    pub fn scan(
        &mut self,
        net: &Detector,
        dataset: &Dataset,
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
            let detections = net.detect(&record.pixels, SCORE_FLOOR, device);
            found.extend(
                detections
                    .into_iter()
                    .filter(|d| objects.iter().all(|o| o.iou(&d.rect) < POSITIVE_IOU))
                    .map(|d| (d.score, image, record.to_original(&d.rect))),
            );
        }
        found.sort_by(|a, b| b.0.total_cmp(&a.0));
        found.truncate(CACHE_SIZE);
        self.by_image.clear();
        for &(score, image, rect) in &found {
            self.by_image.entry(image).or_default().push((rect, score));
        }
        self.filled_at_step = Some(step);
        ScanReport {
            images: count,
            kept: found.len(),
            secs: started.elapsed().as_secs_f32(),
            scores: found
                .last()
                .zip(found.first())
                .map(|(low, high)| (low.0, high.0)),
        }
    }

    /// The cached RoIs of every image, highest score first within an image.
    pub fn entries(&self) -> impl Iterator<Item = (usize, Rect, f32)> + '_ {
        self.by_image
            .iter()
            .flat_map(|(&image, rois)| rois.iter().map(move |&(r, s)| (image, r, s)))
    }

    /// The batch of `images` with up to `k` RoIs, as [`Batch::sampled`] draws it, but with
    /// [`CACHED_SHARE`] of each cached image's negatives swapped for its cached hard negatives
    /// (drawn from `seed` and `step`); `None` while the cache holds none of these images.
    pub fn batch_from(
        &self,
        images: &[TrainImage],
        k: usize,
        (seed, step): (u64, u64),
        device: Device,
    ) -> Option<Batch> {
        let cached = |image: &TrainImage| {
            image
                .source_image()
                .and_then(|i| self.by_image.get(&i))
                .filter(|rois| !rois.is_empty())
        };
        if !images.iter().any(|i| cached(i).is_some()) {
            return None;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ step.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let rois = images
            .iter()
            .zip(quotas(k, images.len()))
            .map(|(image, quota)| {
                let mut own = ImageRois::of(image, &subsample(image, quota, seed));
                if let Some(hard) = cached(image) {
                    swap_in(image, &mut own, hard, &mut rng);
                }
                own
            })
            .collect();
        Some(Batch::new(images, rois, device))
    }
}

/// Replaces about [`CACHED_SHARE`] of `own`'s negatives with RoIs of `hard` (original pixels),
/// labelled by their overlap with the image's objects as every candidate is.
fn swap_in(image: &TrainImage, own: &mut ImageRois, hard: &[(Rect, f32)], rng: &mut ChaCha8Rng) {
    let objects: Vec<Object> = own
        .rects
        .iter()
        .zip(&own.labels)
        .filter(|(_, &l)| l > 0)
        .map(|(r, &l)| Object {
            rect: *r,
            class_id: l - 1,
        })
        .collect();
    let (w, h) = (image.input.width as f32, image.input.height as f32);
    for i in 0..own.rects.len() {
        if own.labels[i] != 0 || !rng.random_bool(CACHED_SHARE) {
            continue;
        }
        let (rect, _) = hard[rng.random_range(0..hard.len())];
        let roi = image.from_original(&rect).clipped(w, h);
        if roi.width() < 1.0 || roi.height() < 1.0 {
            continue;
        }
        let (labels, targets) = assign(&[roi], &objects);
        own.rects[i] = roi;
        own.labels[i] = labels[0];
        own.targets[i] = targets[0];
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;
    use crate::data::{GtBox, ImageRecord, Layout, Split};
    use crate::detector::{BackboneKind, ModelInfo};
    use crate::train::images::ImageSampler;

    /// Dark photos with one bright object each, and a bright patch away from it.
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
    fn the_cache_holds_high_scoring_background_and_feeds_the_same_images() {
        let dataset = dataset();
        let info = ModelInfo::from_dataset(&dataset, BackboneKind::Small, 96);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let mut net = Detector::new(&vs.root(), &info);
        // Every RoI starts out an object with probability one half: plenty above the floor.
        net.set_object_prior(0.5);
        let mut cache = HardNegativeCache::default();
        let report = cache.scan(&net, &dataset, Device::Cpu, (1, 500));
        assert_eq!(report.images, 4);
        assert!(report.kept > 0, "some background scored above the floor");
        assert_eq!(cache.filled_at_step, Some(500));
        for (image, rect, _) in cache.entries() {
            assert!(dataset.train[image].boxes[0].rect.iou(&rect) < POSITIVE_IOU);
        }

        let sampler = ImageSampler::new(dataset.clone(), Split::Train, &info, 0.0);
        let images: Vec<TrainImage> = (0..2).map(|i| sampler.image(3, i)).collect();
        let plain = Batch::sampled(&images, 256, 3, Device::Cpu);
        let mixed = cache
            .batch_from(&images, 256, (3, 501), Device::Cpu)
            .expect("the cache holds these images");
        assert_eq!(mixed.len(), plain.len());
        let changed = (0..plain.len())
            .filter(|&i| plain.candidates[i].window != mixed.candidates[i].window)
            .count();
        assert!(changed > 0, "hard negatives swapped in");
        assert!(HardNegativeCache::default()
            .batch_from(&images, 256, (3, 1), Device::Cpu)
            .is_none());
    }
}
