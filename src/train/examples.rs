//! Examples (windows) and the loader thread that prepares them ahead of the trainer.
//!
//! Example `i` of a run is a pure function of `(seed, i)`, so every strategy sees the same
//! sequence of batches, a run can be reproduced, and the loader can fill batches in parallel.

use std::sync::Arc;

use crossbeam_channel::{bounded, Receiver};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::data::{Dataset, ImageRecord};
use crate::detector::window::{box_deltas, sample_region};
use crate::detector::WindowShape;
use crate::geometry::Rect;

/// A window counts as background when its IoU with every object is below this.
pub const NEGATIVE_MAX_IOU: f32 = 0.3;
/// A jittered positive window keeps at least this IoU with its object.
pub const POSITIVE_MIN_IOU: f32 = 0.5;
/// Share of negatives drawn right beside an object rather than anywhere in the image.
const NEAR_MISS_SHARE: f32 = 0.3;
/// Share of negatives cut from a `pos/` crop beside or around its object, when there are crops.
const PARTIAL_CROP_SHARE: f32 = 0.3;
/// Examples the loader prepares per message.
const CHUNK: usize = 32;
/// Chunks the loader may run ahead of the trainer.
const CHUNKS_AHEAD: usize = 16;

/// One window, ready to become a row of a batch.
#[derive(Clone, Debug)]
pub struct Example {
    /// `height × width × 3` RGB bytes at the window's size.
    pub pixels: Vec<u8>,
    /// 0 is background, `c + 1` is class `c`.
    pub label: usize,
    /// Box regression target (zeros for background).
    pub target: [f32; 4],
    /// Index of the source image in its split, `None` for a `pos/` crop.
    pub source_image: Option<usize>,
    /// The window in the source's original pixels.
    pub window: Rect,
}

pub use crate::data::Split;

#[derive(Clone, Copy, Debug)]
enum Positive {
    Box { image: usize, object: usize },
    Crop(usize),
}

/// Draws examples from one split of a dataset.
#[derive(Clone)]
pub struct ExampleSampler {
    dataset: Arc<Dataset>,
    split: Split,
    /// The detector's window, in pixels (its placement on an image is each example's `window`).
    shape: WindowShape,
    scales: Vec<f32>,
    negative_fraction: f32,
    /// Strength of the photometric augmentation (0: none).
    colour_jitter: f32,
    positives: Vec<Positive>,
}

impl ExampleSampler {
    pub fn new(
        dataset: Arc<Dataset>,
        split: Split,
        shape: WindowShape,
        scales: Vec<f32>,
        negative_fraction: f32,
        colour_jitter: f32,
    ) -> Self {
        let images = match split {
            Split::Train => &dataset.train,
            Split::Val => &dataset.val,
        };
        let mut positives: Vec<Positive> = images
            .iter()
            .enumerate()
            .flat_map(|(image, record)| {
                record
                    .boxes
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| !b.difficult && b.rect.area() > 0.0)
                    .map(move |(object, _)| Positive::Box { image, object })
            })
            .collect();
        if split == Split::Train {
            positives.extend((0..dataset.positive_crops.len()).map(Positive::Crop));
        }
        Self {
            dataset,
            split,
            shape,
            scales,
            negative_fraction: negative_fraction.clamp(0.0, 1.0),
            colour_jitter: colour_jitter.clamp(0.0, 1.0),
            positives,
        }
    }

    fn images(&self) -> &[ImageRecord] {
        self.dataset.images(self.split)
    }

    pub fn has_positives(&self) -> bool {
        !self.positives.is_empty()
    }

    pub fn has_images(&self) -> bool {
        !self.images().is_empty()
    }

    /// Example number `index` of the stream seeded by `seed`.
    pub fn example(&self, seed: u64, index: u64) -> Example {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // Draw unconditionally so the stream does not shift when the fraction is 0 or 1.
        let coin = rng.random::<f32>();
        let positive = !self.positives.is_empty()
            && (self.images().is_empty() || coin >= self.negative_fraction);
        let mut example = if positive {
            let pick = self.positives[rng.random_range(0..self.positives.len())];
            self.positive(pick, &mut rng)
        } else {
            self.negative(&mut rng)
        };
        if self.colour_jitter > 0.0 {
            jitter_colours(&mut example.pixels, self.colour_jitter, &mut rng);
        }
        example
    }

    fn positive(&self, pick: Positive, rng: &mut ChaCha8Rng) -> Example {
        let (record, object, source_image, label) = match pick {
            Positive::Box { image, object } => {
                let record = &self.images()[image];
                let gt = &record.boxes[object];
                (
                    record,
                    record.to_decoded(&gt.rect),
                    Some(image),
                    gt.class_id + 1,
                )
            }
            Positive::Crop(crop) => {
                let record = &self.dataset.positive_crops[crop];
                let whole = Rect::new(
                    0.0,
                    0.0,
                    record.pixels.width() as f32,
                    record.pixels.height() as f32,
                );
                (record, whole, None, 1)
            }
        };
        let window = jittered_window(&object, self.shape, rng);
        let mut target = box_deltas(&window, &object);
        let mut pixels = sample_region(
            &record.pixels,
            window,
            self.shape.width_px,
            self.shape.height_px,
        );
        if rng.random::<bool>() {
            flip_horizontally(&mut pixels, self.shape.width_px);
            target[0] = -target[0];
        }
        Example {
            pixels,
            label,
            target,
            source_image,
            window: record.to_original(&window),
        }
    }

    fn negative(&self, rng: &mut ChaCha8Rng) -> Example {
        let crops = &self.dataset.positive_crops;
        if self.split == Split::Train
            && !crops.is_empty()
            && rng.random::<f32>() < PARTIAL_CROP_SHARE
        {
            return self.partial_crop(&crops[rng.random_range(0..crops.len())], rng);
        }
        let images = self.images();
        let (low, high) = (
            self.scales.first().copied().unwrap_or(1.0) / 1.2,
            self.scales.last().copied().unwrap_or(1.0) * 1.2,
        );
        let mut fallback: Option<(usize, Rect, f32)> = None;
        for attempt in 0..64 {
            let image = rng.random_range(0..images.len());
            let record = &images[image];
            if attempt == 0 && !record.boxes.is_empty() && rng.random::<f32>() < NEAR_MISS_SHARE {
                let object =
                    record.to_decoded(&record.boxes[rng.random_range(0..record.boxes.len())].rect);
                let window = near_miss_window(&object, self.shape, rng);
                if max_overlap(record, &window) < NEGATIVE_MAX_IOU {
                    return self.background(record, Some(image), window);
                }
            }
            let (iw, ih) = (record.pixels.width() as f32, record.pixels.height() as f32);
            let fit = (iw / self.shape.width_px as f32).min(ih / self.shape.height_px as f32);
            let scale = rng
                .random_range(low.ln()..=high.ln().max(low.ln()))
                .exp()
                .min(fit);
            let (ww, wh) = (
                self.shape.width_px as f32 * scale,
                self.shape.height_px as f32 * scale,
            );
            let x0 = rng.random_range(0.0..=(iw - ww).max(0.0));
            let y0 = rng.random_range(0.0..=(ih - wh).max(0.0));
            let window = Rect::new(x0, y0, x0 + ww, y0 + wh);
            let overlap = max_overlap(record, &window);
            if overlap < NEGATIVE_MAX_IOU {
                return self.background(record, Some(image), window);
            }
            if fallback.is_none_or(|(_, _, best)| overlap < best) {
                fallback = Some((image, window, overlap));
            }
        }
        // Objects fill these images: no window found is background, and calling one background
        // would teach the detector that objects are background. Train on an object instead.
        if !self.positives.is_empty() {
            let pick = self.positives[rng.random_range(0..self.positives.len())];
            return self.positive(pick, rng);
        }
        let (image, window, _) = fallback.unwrap_or((0, Rect::new(0.0, 0.0, 1.0, 1.0), 0.0));
        self.background(&images[image], Some(image), window)
    }

    /// Background cut from a `pos/` crop: half its object, or the object far too small or too
    /// large in the window, padded with mid grey. Tight crops alone never show the detector a
    /// window that holds half an object and is told "background", so at test time the windows
    /// beside an object fire as badly placed detections.
    fn partial_crop(&self, record: &ImageRecord, rng: &mut ChaCha8Rng) -> Example {
        let (w, h) = (record.pixels.width() as f32, record.pixels.height() as f32);
        let window = partial_window(&Rect::new(0.0, 0.0, w, h), self.shape, rng);
        self.background(record, None, window)
    }

    /// Image `image` of the split, cut at `window` (in its decoded pixels), as background.
    pub fn background_at(&self, image: usize, window: Rect) -> Option<Example> {
        let record = self.images().get(image)?;
        Some(self.background(record, Some(image), window))
    }

    /// `window` of `record` (`source_image` in its split, `None` for a crop) as background.
    fn background(
        &self,
        record: &ImageRecord,
        source_image: Option<usize>,
        window: Rect,
    ) -> Example {
        Example {
            pixels: sample_region(
                &record.pixels,
                window,
                self.shape.width_px,
                self.shape.height_px,
            ),
            label: 0,
            target: [0.0; 4],
            source_image,
            window: record.to_original(&window),
        }
    }
}

/// The highest IoU of `window` (in decoded pixels) with an object of the image.
fn max_overlap(record: &ImageRecord, window: &Rect) -> f32 {
    record
        .boxes
        .iter()
        .map(|b| record.to_decoded(&b.rect).iou(window))
        .fold(0.0f32, f32::max)
}

/// The window of the detector's aspect around `object`, shifted and scaled at random by about as
/// much as the sliding window's grid and the pyramid's √2 steps miss objects by at test time, so
/// the box regression learns the corrections inference needs. Stays at IoU ≥ 0.5 with the object;
/// an object whose aspect is far from the window's gets the snug window, which contains it whole.
fn jittered_window(object: &Rect, shape: WindowShape, rng: &mut ChaCha8Rng) -> Rect {
    let snug = window_around(object, shape);
    for _ in 0..8 {
        let zoom = rng.random_range(-0.25f32..0.25).exp();
        let (ww, wh) = (snug.width() * zoom, snug.height() * zoom);
        let (cx, cy) = snug.center();
        let cx = cx + rng.random_range(-0.2f32..0.2) * ww;
        let cy = cy + rng.random_range(-0.2f32..0.2) * wh;
        let window = Rect::from_center_size(cx, cy, ww, wh);
        if window.iou(object) >= POSITIVE_MIN_IOU {
            return window;
        }
    }
    snug
}

/// A window near `object` but mostly beside it: the partial views that would otherwise fire as
/// badly placed detections.
fn near_miss_window(object: &Rect, shape: WindowShape, rng: &mut ChaCha8Rng) -> Rect {
    let snug = window_around(object, shape);
    let zoom = rng.random_range(-0.5f32..0.5).exp();
    let (ww, wh) = (snug.width() * zoom, snug.height() * zoom);
    let angle = rng.random_range(0.0..std::f32::consts::TAU);
    let reach = rng.random_range(0.35f32..0.9);
    let (cx, cy) = snug.center();
    let cx = cx + angle.cos() * reach * ww;
    let cy = cy + angle.sin() * reach * wh;
    Rect::from_center_size(cx, cy, ww, wh)
}

/// A window of the detector's aspect on `object` that must count as background (IoU below
/// [`NEGATIVE_MAX_IOU`]): the snug window around it shifted by half a window or more, or scaled
/// two to three times up, or down to half its size or less.
pub fn partial_window(object: &Rect, shape: WindowShape, rng: &mut ChaCha8Rng) -> Rect {
    let snug = window_around(object, shape);
    let (cx, cy) = snug.center();
    let (sw, sh) = (snug.width(), snug.height());
    for _ in 0..16 {
        let window = if rng.random::<bool>() {
            let angle = rng.random_range(0.0..std::f32::consts::TAU);
            let reach = rng.random_range(0.5f32..1.0);
            Rect::from_center_size(
                cx + angle.cos() * reach * sw,
                cy + angle.sin() * reach * sh,
                sw,
                sh,
            )
        } else {
            let zoom = if rng.random::<bool>() {
                rng.random_range(2.0f32..3.0)
            } else {
                rng.random_range(0.3f32..0.5)
            };
            let dx = rng.random_range(-0.3f32..0.3) * object.width();
            let dy = rng.random_range(-0.3f32..0.3) * object.height();
            Rect::from_center_size(cx + dx, cy + dy, sw * zoom, sh * zoom)
        };
        if window.iou(object) < NEGATIVE_MAX_IOU {
            return window;
        }
    }
    Rect::from_center_size(cx + sw, cy, sw, sh)
}

/// The smallest window of the detector's aspect that contains `object`, centred on it.
fn window_around(object: &Rect, shape: WindowShape) -> Rect {
    let aspect = shape.width_px as f32 / shape.height_px as f32;
    let (ow, oh) = (object.width().max(1.0), object.height().max(1.0));
    let (ww, wh) = if ow / oh > aspect {
        (ow, ow / aspect)
    } else {
        (oh * aspect, oh)
    };
    let (cx, cy) = object.center();
    Rect::from_center_size(cx, cy, ww, wh)
}

/// Random brightness, contrast and saturation, each scaled by a factor in `1 ± strength`:
/// photos of the same object differ in light and camera far more than a few hundred training
/// images show.
fn jitter_colours(pixels: &mut [u8], strength: f32, rng: &mut ChaCha8Rng) {
    let mut factor = || rng.random_range(1.0 - strength..=1.0 + strength);
    let (brightness, contrast, saturation) = (factor(), factor(), factor());
    let luma = |p: &[f32; 3]| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2];
    let count = (pixels.len() / 3).max(1) as f32;
    let mean_luma = pixels
        .chunks_exact(3)
        .map(|p| luma(&[p[0] as f32, p[1] as f32, p[2] as f32]))
        .sum::<f32>()
        / count
        * brightness;
    for p in pixels.chunks_exact_mut(3) {
        let rgb = [p[0] as f32, p[1] as f32, p[2] as f32].map(|v| v * brightness);
        let grey = luma(&rgb);
        for (out, v) in p.iter_mut().zip(rgb) {
            let saturated = grey + (v - grey) * saturation;
            let contrasted = mean_luma + (saturated - mean_luma) * contrast;
            *out = contrasted.round().clamp(0.0, 255.0) as u8;
        }
    }
}

fn flip_horizontally(pixels: &mut [u8], width: usize) {
    for row in pixels.chunks_mut(width * 3) {
        for x in 0..width / 2 {
            for c in 0..3 {
                row.swap(x * 3 + c, (width - 1 - x) * 3 + c);
            }
        }
    }
}

/// Examples prepared ahead by a named loader thread, in stream order.
pub struct ExampleStream {
    chunks: Receiver<Vec<Example>>,
    buffer: std::collections::VecDeque<Example>,
}

impl ExampleStream {
    /// Starts the loader at example `first` of the stream (0 for a new run; the examples a
    /// resumed run had drawn); it ends by itself once the stream is dropped.
    pub fn spawn(sampler: ExampleSampler, seed: u64, first: u64) -> std::io::Result<Self> {
        let (sender, chunks) = bounded(CHUNKS_AHEAD);
        std::thread::Builder::new()
            .name("batch-loader".into())
            .spawn(move || {
                for chunk in 0u64.. {
                    let start = first + chunk * CHUNK as u64;
                    let examples: Vec<Example> = (start..start + CHUNK as u64)
                        .into_par_iter()
                        .map(|i| sampler.example(seed, i))
                        .collect();
                    if sender.send(examples).is_err() {
                        return;
                    }
                }
            })?;
        Ok(Self {
            chunks,
            buffer: Default::default(),
        })
    }

    /// The next `k` examples of the stream; `None` if the loader is gone.
    pub fn next_batch(&mut self, k: usize) -> Option<Vec<Example>> {
        while self.buffer.len() < k {
            self.buffer.extend(self.chunks.recv().ok()?);
        }
        Some(self.buffer.drain(..k).collect())
    }
}

/// A fixed set of examples drawn once, e.g. the validation windows.
pub fn fixed_examples(sampler: &ExampleSampler, seed: u64, count: usize) -> Vec<Example> {
    (0..count as u64)
        .into_par_iter()
        .map(|i| sampler.example(seed, i))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    use crate::data::Layout;

    fn record(width: u32, height: u32, colour: u8) -> ImageRecord {
        ImageRecord {
            path: PathBuf::from("memory.png"),
            width,
            height,
            boxes: Vec::new(),
            pixels: Arc::new(image::RgbImage::from_pixel(
                width,
                height,
                image::Rgb([colour, colour, colour]),
            )),
            scale: 1.0,
        }
    }

    #[test]
    fn partial_windows_are_background_by_overlap() {
        let object = Rect::new(0.0, 0.0, 100.0, 40.0);
        let shape = WindowShape {
            width_px: 48,
            height_px: 24,
        };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let windows: Vec<Rect> = (0..300)
            .map(|_| partial_window(&object, shape, &mut rng))
            .collect();
        assert!(windows.iter().all(|w| w.iou(&object) < NEGATIVE_MAX_IOU));
        // Both kinds occur: windows that still touch the object, and wrong-scale windows.
        assert!(windows.iter().filter(|w| w.iou(&object) > 0.05).count() > 100);
        assert!(windows.iter().any(|w| w.width() > 2.0 * object.width()));
        assert!(windows.iter().any(|w| w.width() < 0.6 * object.width()));
    }

    #[test]
    fn crops_yield_partial_crop_negatives_padded_with_grey() {
        // One white crop, one black background image: a negative that shows white came from a
        // crop, and a grey border shows the padding around a crop.
        let dataset = Arc::new(Dataset {
            root: PathBuf::from("memory"),
            layout: Layout::PosNeg,
            class_names: vec!["object".into()],
            train: vec![record(200, 200, 0)],
            val: Vec::new(),
            positive_crops: vec![record(100, 40, 255)],
        });
        let shape = WindowShape {
            width_px: 48,
            height_px: 24,
        };
        let sampler = ExampleSampler::new(dataset, Split::Train, shape, vec![1.0], 1.0, 0.0);
        let negatives = fixed_examples(&sampler, 3, 400);
        assert!(negatives.iter().all(|e| e.label == 0));
        let from_crops: Vec<&Example> = negatives
            .iter()
            .filter(|e| e.pixels.iter().any(|&v| v > 200))
            .collect();
        let share = from_crops.len() as f32 / negatives.len() as f32;
        assert!(
            (0.2..0.4).contains(&share),
            "share of crop negatives {share}"
        );
        assert!(from_crops.iter().all(|e| e.source_image.is_none()));
        assert!(from_crops
            .iter()
            .any(|e| e.pixels.iter().any(|&v| (120..=136).contains(&v))));
    }
}
