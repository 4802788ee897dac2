//! A batch: N training images and K of their candidate RoIs, as tensors on the run's device,
//! with where each RoI lies (for the selection) and what it shows (for the app and the files).

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::{Device, Tensor};

use super::images::TrainImage;
use super::messages::{SeenExample, Thumbnail};
use crate::detector::LabelledRois;
use crate::geometry::Rect;
use crate::ohem::Candidate;

/// Side of the square every hard-example thumbnail is drawn in.
pub const THUMBNAIL_PX: usize = 64;

/// One image of a batch.
pub struct BatchImage {
    /// `[1, 3, H, W]` normalised pixels.
    pub pixels: Tensor,
    /// Its RoIs of this batch.
    pub rois: LabelledRois,
    /// Index of its first RoI among the batch's.
    pub offset: usize,
}

/// The RoIs one image brings to a batch: candidate RoIs of the image, in input pixels.
pub struct ImageRois {
    pub rects: Vec<Rect>,
    pub labels: Vec<usize>,
    pub targets: Vec<[f32; 4]>,
}

impl ImageRois {
    /// The candidates of `image` at `picked` (indices into its RoIs), in that order.
    pub fn of(image: &TrainImage, picked: &[usize]) -> Self {
        Self {
            rects: picked.iter().map(|&i| image.rois[i]).collect(),
            labels: picked.iter().map(|&i| image.labels[i]).collect(),
            targets: picked.iter().map(|&i| image.targets[i]).collect(),
        }
    }
}

/// N images and their RoIs.
pub struct Batch {
    pub images: Vec<BatchImage>,
    /// Every RoI in batch order (image after image).
    pub candidates: Vec<Candidate>,
    /// Per RoI, its image of the batch, its place there (input pixels), label and target.
    places: Vec<(usize, Rect, usize, [f32; 4])>,
    /// What each RoI is, in the source's original pixels, without the read-only pass's view.
    seen: Vec<SeenExample>,
}

/// At most `quota` of `image`'s candidates: every positive first (a batch without them teaches
/// nothing of the objects), then negatives drawn at random, from a stream fixed by the image's
/// place in the run, so the same batch comes back on a continued run.
pub fn subsample(image: &TrainImage, quota: usize, seed: u64) -> Vec<usize> {
    let count = image.rois.len();
    if count <= quota {
        return (0..count).collect();
    }
    let positives: Vec<usize> = (0..count).filter(|&i| image.labels[i] > 0).collect();
    let negatives: Vec<usize> = (0..count).filter(|&i| image.labels[i] == 0).collect();
    let mut picked: Vec<usize> = positives.into_iter().take(quota).collect();
    let room = quota - picked.len();
    let mut rng = ChaCha8Rng::seed_from_u64(
        seed ^ image.stream_index.wrapping_mul(0xA24B_AED4_963E_E407) ^ 0x5EED,
    );
    let mut drawn: Vec<usize> = sample(&mut rng, negatives.len(), room.min(negatives.len()))
        .into_iter()
        .map(|i| negatives[i])
        .collect();
    drawn.sort_unstable();
    picked.extend(drawn);
    picked
}

/// RoIs per image when a batch of `images` holds `k` RoIs: as even as whole numbers allow.
pub fn quotas(k: usize, images: usize) -> Vec<usize> {
    let images = images.max(1);
    (0..images)
        .map(|i| k / images + usize::from(i < k % images))
        .collect()
}

impl Batch {
    /// The batch of `images`, each bringing `rois[i]`.
    pub fn new(images: &[TrainImage], rois: Vec<ImageRois>, device: Device) -> Self {
        let mut batch_images = Vec::with_capacity(images.len());
        let mut candidates = Vec::new();
        let mut places = Vec::new();
        let mut seen = Vec::new();
        for (index, (image, own)) in images.iter().zip(rois).enumerate() {
            batch_images.push(BatchImage {
                pixels: image.input.to_tensor(device),
                rois: LabelledRois::new(&own.rects, &own.labels, &own.targets, device),
                offset: candidates.len(),
            });
            for ((rect, &label), &target) in own.rects.iter().zip(&own.labels).zip(&own.targets) {
                candidates.push(Candidate {
                    image: index,
                    window: *rect,
                    positive: label > 0,
                });
                places.push((index, *rect, label, target));
                seen.push(SeenExample {
                    source_image: image.source_image(),
                    batch_image: index,
                    window: image.to_original(rect),
                    label,
                    loss: f32::NAN,
                    classification_loss: f32::NAN,
                    score: f32::NAN,
                });
            }
        }
        Self {
            images: batch_images,
            candidates,
            places,
            seen,
        }
    }

    /// The batch of `images` with up to `k` RoIs in all (see [`subsample`]).
    pub fn sampled(images: &[TrainImage], k: usize, seed: u64, device: Device) -> Self {
        let rois = images
            .iter()
            .zip(quotas(k, images.len()))
            .map(|(image, quota)| ImageRois::of(image, &subsample(image, quota, seed)))
            .collect();
        Self::new(images, rois, device)
    }

    /// RoIs in the batch (K).
    pub fn len(&self) -> usize {
        self.candidates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.candidates.is_empty()
    }

    /// The RoIs image `image` brings to this batch, in batch order.
    pub fn rois_of(&self, image: usize) -> ImageRois {
        let mut own = ImageRois {
            rects: Vec::new(),
            labels: Vec::new(),
            targets: Vec::new(),
        };
        for &(at, rect, label, target) in self.places.iter().filter(|p| p.0 == image) {
            debug_assert_eq!(at, image);
            own.rects.push(rect);
            own.labels.push(label);
            own.targets.push(target);
        }
        own
    }

    /// A batch of the same `images` (those this batch was made of) holding only the RoIs at
    /// `indices`, grouped by image in the order given: what training on exactly those RoIs
    /// means.
    pub fn subset(&self, images: &[TrainImage], indices: &[usize], device: Device) -> Batch {
        let mut rois: Vec<ImageRois> = (0..images.len())
            .map(|_| ImageRois {
                rects: Vec::new(),
                labels: Vec::new(),
                targets: Vec::new(),
            })
            .collect();
        for &i in indices {
            let (image, rect, label, target) = self.places[i];
            rois[image].rects.push(rect);
            rois[image].labels.push(label);
            rois[image].targets.push(target);
        }
        Batch::new(images, rois, device)
    }

    /// The RoIs at `indices` (batch indices) as row numbers of their images, grouped by image
    /// in the order given: what a strategy that trains on a subset backpropagates.
    pub fn restricted_to(&self, indices: &[usize]) -> Vec<(usize, Tensor)> {
        let mut per_image: Vec<Vec<i64>> = vec![Vec::new(); self.images.len()];
        for &i in indices {
            let image = self.candidates[i].image;
            per_image[image].push((i - self.images[image].offset) as i64);
        }
        per_image
            .into_iter()
            .enumerate()
            .filter(|(_, rows)| !rows.is_empty())
            .map(|(image, rows)| {
                let device = self.images[image].pixels.device();
                (image, Tensor::from_slice(&rows).to_device(device))
            })
            .collect()
    }

    /// RoI `i` as the files and the app describe it, with what the read-only pass saw.
    pub fn seen(&self, i: usize, loss: f32, classification_loss: f32, score: f32) -> SeenExample {
        SeenExample {
            loss,
            classification_loss,
            score,
            ..self.seen[i]
        }
    }

    /// RoI `i` cut from the pixels the network saw, fitted into a [`THUMBNAIL_PX`] square
    /// (its aspect kept, the rest transparent).
    pub fn thumbnail(&self, i: usize, images: &[TrainImage]) -> Thumbnail {
        let (image, rect, _, _) = self.places[i];
        let side = THUMBNAIL_PX as f32;
        let fit = side / rect.width().max(rect.height()).max(1.0);
        let w = ((rect.width() * fit).round() as usize).clamp(1, THUMBNAIL_PX);
        let h = ((rect.height() * fit).round() as usize).clamp(1, THUMBNAIL_PX);
        let rgb = images[image].input.crop(rect, w, h);
        let (x0, y0) = ((THUMBNAIL_PX - w) / 2, (THUMBNAIL_PX - h) / 2);
        let mut rgba = vec![0u8; THUMBNAIL_PX * THUMBNAIL_PX * 4];
        for (row, pixels) in rgb.chunks_exact(w * 3).enumerate() {
            for (col, p) in pixels.chunks_exact(3).enumerate() {
                let o = ((y0 + row) * THUMBNAIL_PX + x0 + col) * 4;
                rgba[o..o + 4].copy_from_slice(&[p[0], p[1], p[2], 255]);
            }
        }
        Thumbnail {
            width: THUMBNAIL_PX,
            height: THUMBNAIL_PX,
            rgba,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_split_k_evenly() {
        assert_eq!(quotas(10, 3), vec![4, 3, 3]);
        assert_eq!(quotas(2048, 2), vec![1024, 1024]);
        assert_eq!(quotas(5, 0), vec![5]);
    }
}
