//! Images as the network takes them: resampled so that the longer side has a given length,
//! padded to a multiple of the backbone's stride, normalised as the ImageNet checkpoints were
//! trained ((x − 127) / 128, TensorFlow's convention). Training images and inference go through
//! the same resampling, so the network sees the same pixels in both.

use image::RgbImage;
use tch::{Device, Kind, Tensor};

use crate::geometry::Rect;

/// Inputs are padded to a multiple of this (the backbone's total stride).
pub const PAD_MULTIPLE: usize = 32;
/// The byte value padding takes: 0 after normalisation.
const PAD_VALUE: u8 = 127;

/// One image at network-input size.
#[derive(Clone, Debug)]
pub struct InputImage {
    /// `padded_height × padded_width × 3` RGB bytes; the image fills the top-left
    /// `width × height`, the rest is padding.
    pub pixels: Vec<u8>,
    pub width: usize,
    pub height: usize,
    pub padded_width: usize,
    pub padded_height: usize,
    /// Input pixels per pixel of the source image, on each axis.
    pub scale_x: f32,
    pub scale_y: f32,
}

impl InputImage {
    /// `image` resampled so that its longer side is `long_side_px`, padded.
    pub fn new(image: &RgbImage, long_side_px: u32) -> Self {
        let (iw, ih) = (image.width().max(1) as f32, image.height().max(1) as f32);
        let s = long_side_px as f32 / iw.max(ih);
        let width = ((iw * s).round() as usize).max(1);
        let height = ((ih * s).round() as usize).max(1);
        let padded_width = width.div_ceil(PAD_MULTIPLE) * PAD_MULTIPLE;
        let padded_height = height.div_ceil(PAD_MULTIPLE) * PAD_MULTIPLE;
        let content = sample_region(image, Rect::new(0.0, 0.0, iw, ih), width, height);
        let mut pixels = vec![PAD_VALUE; padded_width * padded_height * 3];
        for (y, row) in content.chunks_exact(width * 3).enumerate() {
            let start = y * padded_width * 3;
            pixels[start..start + width * 3].copy_from_slice(row);
        }
        Self {
            pixels,
            width,
            height,
            padded_width,
            padded_height,
            scale_x: width as f32 / iw,
            scale_y: height as f32 / ih,
        }
    }

    /// A box in the source image's pixels → input pixels.
    pub fn to_input(&self, rect: &Rect) -> Rect {
        rect.scaled_xy(self.scale_x, self.scale_y)
    }

    /// A box in input pixels → the source image's pixels.
    pub fn to_source(&self, rect: &Rect) -> Rect {
        rect.scaled_xy(1.0 / self.scale_x, 1.0 / self.scale_y)
    }

    /// Mirrors the image left to right (the padding stays on the right).
    pub fn flip_horizontally(&mut self) {
        let (w, row_len) = (self.width, self.padded_width * 3);
        for row in self.pixels.chunks_exact_mut(row_len) {
            for x in 0..w / 2 {
                for c in 0..3 {
                    row.swap(x * 3 + c, (w - 1 - x) * 3 + c);
                }
            }
        }
    }

    /// `region` (input pixels) resampled to `out_w × out_h` RGB bytes.
    pub fn crop(&self, region: Rect, out_w: usize, out_h: usize) -> Vec<u8> {
        let source = Raw {
            pixels: &self.pixels,
            width: self.padded_width,
            height: self.padded_height,
        };
        sample_raw(&source, region, out_w, out_h)
    }

    /// `[1, 3, H, W]` normalised pixels on `device`.
    pub fn to_tensor(&self, device: Device) -> Tensor {
        Tensor::from_slice(&self.pixels)
            .view([1, self.padded_height as i64, self.padded_width as i64, 3])
            .to_device(device)
            .permute([0, 3, 1, 2])
            // The permute leaves a channels-last layout; without this every convolution
            // converts it.
            .contiguous()
            .to_kind(Kind::Float)
            .g_sub_scalar(f64::from(PAD_VALUE))
            / 128.0
    }
}

/// Samples `region` of `image` into an `out_w × out_h` RGB buffer (bilinear, with a 2×2
/// supersample when shrinking a lot). A sample inside the image reads its edge pixels where
/// interpolation reaches past them; a sample outside the image reads as mid grey.
pub fn sample_region(image: &RgbImage, region: Rect, out_w: usize, out_h: usize) -> Vec<u8> {
    let source = Raw {
        pixels: image.as_raw(),
        width: image.width() as usize,
        height: image.height() as usize,
    };
    sample_raw(&source, region, out_w, out_h)
}

/// RGB bytes, row-major, of a `width × height` image.
struct Raw<'a> {
    pixels: &'a [u8],
    width: usize,
    height: usize,
}

fn sample_raw(image: &Raw<'_>, region: Rect, out_w: usize, out_h: usize) -> Vec<u8> {
    let step_x = region.width() / out_w as f32;
    let step_y = region.height() / out_h as f32;
    let offsets: &[f32] = if step_x.max(step_y) > 1.5 {
        &[-0.25, 0.25]
    } else {
        &[0.0]
    };
    // Separable: every output column (and row) reads the same source texels with the same
    // weights, so they are worked out once per column and once per row.
    let columns = taps(region.x0, step_x, out_w, offsets, image.width as i64);
    let rows = taps(region.y0, step_y, out_h, offsets, image.height as i64);
    let raw = image.pixels;
    let stride = image.width * 3;
    let norm = 1.0 / (offsets.len() * offsets.len()) as f32;
    let mut out = vec![0u8; out_w * out_h * 3];
    for (oy, row_taps) in rows.chunks(offsets.len() * 2).enumerate() {
        for (ox, col_taps) in columns.chunks(offsets.len() * 2).enumerate() {
            let mut acc = [0.0f32; 3];
            for &(y, wy) in row_taps {
                for &(x, wx) in col_taps {
                    let w = wy * wx;
                    match (y, x) {
                        (Some(y), Some(x)) => {
                            let i = y * stride + x * 3;
                            acc[0] += w * raw[i] as f32;
                            acc[1] += w * raw[i + 1] as f32;
                            acc[2] += w * raw[i + 2] as f32;
                        }
                        _ => acc.iter_mut().for_each(|a| *a += w * 128.0),
                    }
                }
            }
            let o = (oy * out_w + ox) * 3;
            for c in 0..3 {
                out[o + c] = (acc[c] * norm).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// For each output position along one axis: two `(source index, weight)` pairs per sub-sample
/// (linear interpolation), `None` for a sample outside the image.
fn taps(
    start: f32,
    step: f32,
    count: usize,
    offsets: &[f32],
    size: i64,
) -> Vec<(Option<usize>, f32)> {
    let mut taps = Vec::with_capacity(count * offsets.len() * 2);
    for o in 0..count {
        for dx in offsets {
            // Pixel centres sit at +0.5.
            let s = start + (o as f32 + 0.5 + dx) * step - 0.5;
            let within = (-0.5..=size as f32 - 0.5).contains(&s);
            let source = |i: i64| within.then(|| i.clamp(0, size - 1) as usize);
            let i = s.floor();
            let f = s - i;
            taps.push((source(i as i64), 1.0 - f));
            taps.push((source(i as i64 + 1), f));
        }
    }
    taps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_identity_region_copies_pixels() {
        let img = RgbImage::from_fn(4, 2, |x, y| image::Rgb([x as u8 * 10, y as u8 * 10, 7]));
        let out = sample_region(&img, Rect::new(0.0, 0.0, 4.0, 2.0), 4, 2);
        assert_eq!(out, img.into_raw());
    }

    #[test]
    fn the_long_side_is_resized_and_the_rest_padded_to_the_stride() {
        let image = RgbImage::from_pixel(200, 100, image::Rgb([255, 0, 0]));
        let input = InputImage::new(&image, 300);
        assert_eq!((input.width, input.height), (300, 150));
        assert_eq!((input.padded_width, input.padded_height), (320, 160));
        assert_eq!(input.scale_x, 1.5);
        let t = input.to_tensor(Device::Cpu);
        assert_eq!(t.size(), [1, 3, 160, 320]);
        assert!((t.double_value(&[0, 0, 0, 0]) - 1.0).abs() < 1e-6);
        assert_eq!(t.double_value(&[0, 0, 159, 319]), 0.0, "padding is zero");
        let back = input.to_source(&Rect::new(30.0, 15.0, 60.0, 30.0));
        assert_eq!(back, Rect::new(20.0, 10.0, 40.0, 20.0));
    }
}
