//! Training images and the loader thread that prepares them ahead of the trainer: each image
//! resampled to an input size drawn around the detector's, mirrored at random, colour-jittered,
//! with its candidate RoIs — the detector's dense windows and jittered copies of every box —
//! labelled by overlap. A `pos/` crop is an image whose frame is its box; a `neg/` image has none.
//!
//! Image `i` of a run is a pure function of `(seed, i)`, so every strategy sees the same
//! sequence of batches, a run can be reproduced and continued, and the loader can prepare
//! images in parallel.

use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use rayon::prelude::*;

use crate::data::{Dataset, ImageRecord};
use crate::detector::rois::{assign, Object};
use crate::detector::{InputImage, ModelInfo, WindowSet};
use crate::geometry::Rect;

pub use crate::data::Split;

/// Jittered copies of every box among an image's candidates (with the box itself), so that
/// each object has positives of several placements however the windows fall.
pub const JITTERED_PER_OBJECT: usize = 8;
/// Input sizes of training images, as shares of the detector's input size: the scale jitter
/// that makes a detector hold up when objects are a little larger or smaller than in training.
const TRAIN_SCALES: [f32; 4] = [0.833, 0.917, 1.0, 1.083];
/// A `pos/` crop is shown at between this share of the input size and all of it: the photos
/// a detector trained on crops looks at show the object at any size.
const SMALLEST_CROP_SHARE: f32 = 0.3;
/// Images the loader prepares per message.
const CHUNK: usize = 4;
/// Chunks the loader may run ahead of the trainer.
const CHUNKS_AHEAD: usize = 4;

/// What a training image is cut from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Image `i` of the split.
    Image(usize),
    /// `pos/` crop `i`: its whole frame is the object.
    Crop(usize),
}

/// One training image, ready to become part of a batch.
#[derive(Clone, Debug)]
pub struct TrainImage {
    pub source: Source,
    /// Its position in the image stream.
    pub stream_index: u64,
    /// The pixels the network sees (mirrored when `flipped`).
    pub input: InputImage,
    pub flipped: bool,
    /// Candidate RoIs in input pixels, their labels (0 background, `c + 1` class `c`) and
    /// regression targets.
    pub rois: Vec<Rect>,
    pub labels: Vec<usize>,
    pub targets: Vec<[f32; 4]>,
    /// Original pixels of the source per input pixel, on each axis.
    original_per_input: (f32, f32),
}

impl TrainImage {
    /// The training image the RoIs lie in, `None` for a crop.
    pub fn source_image(&self) -> Option<usize> {
        match self.source {
            Source::Image(i) => Some(i),
            Source::Crop(_) => None,
        }
    }

    /// A RoI in input pixels → the same region of the source in its original pixels.
    pub fn to_original(&self, roi: &Rect) -> Rect {
        let unflipped = if self.flipped {
            let w = self.input.width as f32;
            Rect::new(w - roi.x1, roi.y0, w - roi.x0, roi.y1)
        } else {
            *roi
        };
        unflipped.scaled_xy(self.original_per_input.0, self.original_per_input.1)
    }

    /// A region of the source in original pixels → input pixels (mirrored when the image is).
    pub fn from_original(&self, rect: &Rect) -> Rect {
        let (fx, fy) = self.original_per_input;
        let scaled = rect.scaled_xy(1.0 / fx, 1.0 / fy);
        if self.flipped {
            let w = self.input.width as f32;
            Rect::new(w - scaled.x1, scaled.y0, w - scaled.x0, scaled.y1)
        } else {
            scaled
        }
    }
}

/// Draws training images from one split of a dataset.
#[derive(Clone)]
pub struct ImageSampler {
    dataset: Arc<Dataset>,
    split: Split,
    windows: WindowSet,
    input_px: u32,
    /// Strength of the photometric augmentation (0: none).
    colour_jitter: f32,
    items: Vec<Source>,
}

impl ImageSampler {
    pub fn new(dataset: Arc<Dataset>, split: Split, info: &ModelInfo, colour_jitter: f32) -> Self {
        let mut items: Vec<Source> = (0..dataset.images(split).len())
            .map(Source::Image)
            .collect();
        if split == Split::Train {
            items.extend((0..dataset.positive_crops.len()).map(Source::Crop));
        }
        Self {
            dataset,
            split,
            windows: info.windows.clone(),
            input_px: info.input_px,
            colour_jitter: colour_jitter.clamp(0.0, 1.0),
            items,
        }
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    /// Whether any image or crop holds an object to learn.
    pub fn has_positives(&self) -> bool {
        self.items.iter().any(|&s| match s {
            Source::Crop(_) => true,
            Source::Image(i) => self.dataset.images(self.split)[i]
                .boxes
                .iter()
                .any(|b| !b.difficult && b.rect.area() > 0.0),
        })
    }

    /// Images and crops to draw from.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Which item image `index` of the stream shows: every item once per pass, in an order
    /// that changes from pass to pass.
    fn item(&self, seed: u64, index: u64) -> Source {
        let n = self.items.len() as u64;
        let (pass, position) = (index / n, index % n);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ pass.wrapping_mul(0xD1B5_4A32_D192_ED03));
        // An affine map with a multiplier prime to n is a permutation of 0..n.
        let multiplier = loop {
            let a = rng.random_range(1..n.max(2));
            if gcd(a, n) == 1 {
                break a;
            }
        };
        let offset = rng.random_range(0..n);
        self.items[((multiplier * position + offset) % n) as usize]
    }

    /// Image number `index` of the stream seeded by `seed`.
    pub fn image(&self, seed: u64, index: u64) -> TrainImage {
        let source = self.item(seed, index);
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let (record, objects): (&ImageRecord, Vec<Object>) = match source {
            Source::Image(i) => {
                let record = &self.dataset.images(self.split)[i];
                let objects = record
                    .boxes
                    .iter()
                    .filter(|b| !b.difficult && b.rect.area() > 0.0)
                    .map(|b| Object {
                        rect: record.to_decoded(&b.rect),
                        class_id: b.class_id,
                    })
                    .collect();
                (record, objects)
            }
            Source::Crop(i) => {
                let record = &self.dataset.positive_crops[i];
                let (w, h) = (record.pixels.width() as f32, record.pixels.height() as f32);
                let whole = Object {
                    rect: Rect::new(0.0, 0.0, w, h),
                    class_id: 0,
                };
                (record, vec![whole])
            }
        };
        let share = match source {
            Source::Image(_) => TRAIN_SCALES[rng.random_range(0..TRAIN_SCALES.len())],
            Source::Crop(_) => rng.random_range(SMALLEST_CROP_SHARE..=1.0),
        };
        let long_side = ((self.input_px as f32 * share).round() as u32).max(32);
        let mut input = InputImage::new(&record.pixels, long_side);
        if self.colour_jitter > 0.0 {
            jitter_colours(&mut input, self.colour_jitter, &mut rng);
        }
        let flipped = rng.random::<bool>();
        if flipped {
            input.flip_horizontally();
        }
        let (w, h) = (input.width as f32, input.height as f32);
        let objects: Vec<Object> = objects
            .iter()
            .map(|o| {
                let r = input.to_input(&o.rect);
                Object {
                    rect: if flipped {
                        Rect::new(w - r.x1, r.y0, w - r.x0, r.y1)
                    } else {
                        r
                    },
                    class_id: o.class_id,
                }
            })
            .collect();
        let mut rois = self.windows.windows(w, h);
        for object in &objects {
            rois.push(object.rect);
            rois.extend(
                (0..JITTERED_PER_OBJECT).map(|_| jittered(&object.rect, &mut rng).clipped(w, h)),
            );
        }
        rois.retain(|r| r.width() >= 1.0 && r.height() >= 1.0);
        let (labels, targets) = assign(&rois, &objects);
        TrainImage {
            source,
            stream_index: index,
            original_per_input: (record.width as f32 / w, record.height as f32 / h),
            input,
            flipped,
            rois,
            labels,
            targets,
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `object` moved by about a tenth of its size and scaled by about 15 % (log-normal), as the
/// proposals of a region proposal method scatter around an object.
fn jittered(object: &Rect, rng: &mut ChaCha8Rng) -> Rect {
    let mut normal = |sigma: f32| Normal::new(0.0f32, sigma).map_or(0.0, |n| n.sample(rng));
    let (cx, cy) = object.center();
    let (w, h) = (object.width(), object.height());
    let (dx, dy) = (normal(0.1) * w, normal(0.1) * h);
    let (sw, sh) = (normal(0.15).exp(), normal(0.15).exp());
    Rect::from_center_size(cx + dx, cy + dy, w * sw, h * sh)
}

/// Random brightness, contrast and saturation, each scaled by a factor in `1 ± strength`:
/// photos of the same object differ in light and camera far more than a few hundred training
/// images show.
fn jitter_colours(input: &mut InputImage, strength: f32, rng: &mut ChaCha8Rng) {
    let mut factor = || rng.random_range(1.0 - strength..=1.0 + strength);
    let (brightness, contrast, saturation) = (factor(), factor(), factor());
    let luma = |p: &[f32; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let (w, row_len) = (input.width, input.padded_width * 3);
    let rows = input.pixels.chunks_exact_mut(row_len).take(input.height);
    let content: Vec<&mut [u8]> = rows.map(|row| &mut row[..w * 3]).collect();
    let count = (w * content.len()).max(1) as f32;
    let mean_luma = content
        .iter()
        .flat_map(|row| row.chunks_exact(3))
        .map(|p| luma(&[p[0] as f32, p[1] as f32, p[2] as f32]))
        .sum::<f32>()
        / count
        * brightness;
    for row in content {
        for p in row.chunks_exact_mut(3) {
            let rgb = [p[0] as f32, p[1] as f32, p[2] as f32].map(|v| v * brightness);
            let grey = luma(&rgb);
            for (out, v) in p.iter_mut().zip(rgb) {
                let saturated = grey + (v - grey) * saturation;
                let contrasted = mean_luma + (saturated - mean_luma) * contrast;
                *out = contrasted.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// Training images prepared ahead by a named loader thread, in stream order.
pub struct ImageStream {
    chunks: Receiver<Vec<TrainImage>>,
    buffer: std::collections::VecDeque<TrainImage>,
}

impl ImageStream {
    /// Starts the loader at image `first` of the stream (0 for a new run; the images a resumed
    /// run had drawn); it ends by itself once the stream is dropped.
    pub fn spawn(sampler: ImageSampler, seed: u64, first: u64) -> std::io::Result<Self> {
        let (sender, chunks) = bounded(CHUNKS_AHEAD);
        std::thread::Builder::new()
            .name("batch-loader".into())
            .spawn(move || {
                for chunk in 0u64.. {
                    let start = first + chunk * CHUNK as u64;
                    let images: Vec<TrainImage> = (start..start + CHUNK as u64)
                        .into_par_iter()
                        .map(|i| sampler.image(seed, i))
                        .collect();
                    if sender.send(images).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            chunks,
            buffer: Default::default(),
        })
    }

    /// The next `n` images of the stream; `None` if the loader is gone.
    pub fn next_batch(&mut self, n: usize) -> Option<Vec<TrainImage>> {
        while self.buffer.len() < n {
            self.buffer.extend(self.chunks.recv().ok()?);
        }
        Some(self.buffer.drain(..n).collect())
    }
}

/// Images `first..first + count` of the stream, prepared on this thread's pool.
pub fn stream_images(
    sampler: &ImageSampler,
    seed: u64,
    first: u64,
    count: usize,
) -> Vec<TrainImage> {
    (first..first + count as u64)
        .into_par_iter()
        .map(|i| sampler.image(seed, i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use crate::data::Layout;
    use crate::detector::BackboneKind;

    fn dataset() -> Arc<Dataset> {
        Arc::new(Dataset {
            root: PathBuf::from("memory"),
            layout: Layout::PosNeg,
            class_names: vec!["object".into()],
            train: vec![
                ImageRecord::in_memory(400, 300, 0, vec![Rect::new(100.0, 100.0, 200.0, 180.0)]),
                ImageRecord::in_memory(300, 300, 60, Vec::new()),
            ],
            val: Vec::new(),
            positive_crops: vec![ImageRecord::in_memory(100, 40, 255, Vec::new())],
        })
    }

    #[test]
    fn every_item_comes_once_per_pass_and_images_repeat_exactly() {
        let dataset = dataset();
        let info = ModelInfo::from_dataset(&dataset, BackboneKind::Small, 192);
        let sampler = ImageSampler::new(dataset, Split::Train, &info, 0.2);
        assert_eq!(sampler.len(), 3);
        for pass in 0..4u64 {
            let mut seen: Vec<String> = (pass * 3..pass * 3 + 3)
                .map(|i| format!("{:?}", sampler.item(5, i)))
                .collect();
            seen.sort();
            assert_eq!(seen, ["Crop(0)", "Image(0)", "Image(1)"]);
        }
        let a = sampler.image(5, 7);
        let b = sampler.image(5, 7);
        assert_eq!(a.input.pixels, b.input.pixels);
        assert_eq!(a.rois, b.rois);
    }

    #[test]
    fn candidates_are_labelled_by_overlap_and_map_back_to_the_original() {
        let dataset = dataset();
        let info = ModelInfo::from_dataset(&dataset, BackboneKind::Small, 192);
        let sampler = ImageSampler::new(dataset.clone(), Split::Train, &info, 0.0);
        for index in 0..12 {
            let image = sampler.image(1, index);
            assert_eq!(image.rois.len(), image.labels.len());
            let positives = image.labels.iter().filter(|&&l| l > 0).count();
            match image.source {
                Source::Image(0) => {
                    assert!(positives > JITTERED_PER_OBJECT / 2, "{positives}");
                    let object = dataset.train[0].boxes[0].rect;
                    for (roi, &label) in image.rois.iter().zip(&image.labels) {
                        let overlap = image.to_original(roi).iou(&object);
                        assert_eq!(label > 0, overlap >= 0.5 - 1e-3, "{roi:?} {overlap}");
                    }
                    let there = image.from_original(&object);
                    assert!(image.to_original(&there).iou(&object) > 0.999);
                }
                Source::Image(_) => assert_eq!(positives, 0),
                // The crop's frame is its object: the frame itself is a positive.
                Source::Crop(_) => {
                    assert!(positives >= 1);
                    assert!(image.input.width <= 192);
                }
            }
        }
    }
}
