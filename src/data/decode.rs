//! Finding and decoding image files: any supported format whatever the extension says, any
//! colour type turned into 8-bit RGB, turned upright by its EXIF orientation, downscaled on load.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{ImageDecoder, ImageReader, RgbImage};

use super::diagnostics::{Diagnostic, DiagnosticKind, NOT_A_REGULAR_FILE};
use super::orientation::turned_size;
use super::LoadOptions;

/// File extensions treated as images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "gif", "tif", "tiff", "webp"];

/// Whether `path` has an image extension.
pub fn is_image_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The image files directly inside `dir` (not in subfolders), sorted; empty when `dir` cannot
/// be read. A plain listing of one folder, for folders of images that are not a dataset; the
/// loaders list dataset folders through their walk, which keeps inside the dataset.
pub fn list_images(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| !is_hidden(p) && p.is_file() && is_image_path(p))
        .collect();
    paths.sort();
    paths
}

/// The last component of `path` for messages (the whole path when it has none, e.g. `..`).
pub(crate) use crate::files::file_name;

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Decodes one image file into RGB, turned upright by its EXIF orientation and downscaled so
/// that its longer side is at most `options.max_side_px`; also returns the upright width and
/// height of the original.
///
/// The format is guessed from the content, so a PNG named `.jpg` loads. Images larger than
/// `options.max_pixels` are refused from their header, before any pixel is decoded.
pub fn decode_image(
    path: &Path,
    options: &LoadOptions,
) -> Result<(RgbImage, u32, u32), Diagnostic> {
    decode_upright(path, options).map(|d| (d.pixels, d.width, d.height))
}

/// A decoded image standing upright, and how it was stored.
pub(crate) struct Decoded {
    /// Upright and downscaled.
    pub pixels: RgbImage,
    /// The upright size of the original.
    pub width: u32,
    pub height: u32,
    /// The turn that made the stored pixels upright.
    pub orientation: Orientation,
}

/// [`decode_image`], also telling how the stored pixels were turned.
pub(crate) fn decode_upright(path: &Path, options: &LoadOptions) -> Result<Decoded, Diagnostic> {
    let unreadable =
        |reason: String| Diagnostic::new(path, DiagnosticKind::UnreadableImage, reason);
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => return Err(unreadable(NOT_A_REGULAR_FILE.to_string())),
        Ok(m) if m.len() == 0 => return Err(unreadable("the file is empty (0 bytes)".into())),
        _ => {}
    }
    let reader = ImageReader::open(path)
        .map_err(|e| unreadable(format!("cannot open the image: {e}")))?
        .with_guessed_format()
        .map_err(|e| unreadable(format!("cannot read the image: {e}")))?;
    let Some(format) = reader.format() else {
        return Err(unreadable("not an image in a known format".to_string()));
    };
    let mut decoder = reader
        .into_decoder()
        .map_err(|e| unreadable(format!("cannot decode the {format:?} image: {e}")))?;
    let (width, height) = decoder.dimensions();
    check_size(path, width, height, options)?;
    // A metadata block that cannot be read leaves the pixels as stored; a real fault of the
    // file shows when the pixels are decoded.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let missing_end_marker = format == image::ImageFormat::Jpeg && lacks_end_marker(path);
    let decoded = image::DynamicImage::from_decoder(decoder).map_err(|e| match e {
        image::ImageError::Limits(limit) => Diagnostic::new(
            path,
            DiagnosticKind::ImageTooLarge,
            format!("the {width}×{height} image exceeds the decoder's memory limit: {limit}"),
        ),
        other => unreadable(format!("cannot decode the {format:?} image: {other}")),
    })?;
    let rgb = decoded.into_rgb8();
    if missing_end_marker && last_row_is_flat(&rgb) {
        // The JPEG decoder fills the part of a cut-short scan it never received with one flat
        // grey instead of failing. A file that only lost its end marker decodes fully (such
        // files exist in public sets) and is kept; one whose bottom is grey fill is refused.
        return Err(unreadable(
            "the JPEG file is truncated: its bottom rows are missing".to_string(),
        ));
    }
    // Turning after the downscale moves fewer pixels and gives the same image: the downscale
    // treats both axes alike.
    let mut upright = image::DynamicImage::ImageRgb8(downscale(rgb, options.max_side_px));
    upright.apply_orientation(orientation);
    let (width, height) = turned_size(orientation, width, height);
    Ok(Decoded {
        pixels: upright.into_rgb8(),
        width,
        height,
        orientation,
    })
}

/// Refuses an image over the pixel limit, or one with no pixel, from its header size.
fn check_size(
    path: &Path,
    width: u32,
    height: u32,
    options: &LoadOptions,
) -> Result<(), Diagnostic> {
    let pixel_count = u64::from(width) * u64::from(height);
    if pixel_count > options.max_pixels {
        return Err(Diagnostic::new(
            path,
            DiagnosticKind::ImageTooLarge,
            format!(
                "the {width}×{height} image has {pixel_count} pixels, more than the limit of {}",
                options.max_pixels
            ),
        ));
    }
    if width == 0 || height == 0 {
        return Err(Diagnostic::new(
            path,
            DiagnosticKind::UnreadableImage,
            format!("the image is {width}×{height} pixels"),
        ));
    }
    Ok(())
}

/// Shrinks `rgb` (never enlarges it) so that its longer side is at most `max_side_px`,
/// keeping the aspect ratio.
pub(crate) fn downscale(rgb: RgbImage, max_side_px: u32) -> RgbImage {
    let (width, height) = rgb.dimensions();
    let longer = width.max(height);
    if max_side_px == 0 || longer <= max_side_px {
        return rgb;
    }
    let factor = f64::from(max_side_px) / f64::from(longer);
    let new_width = ((f64::from(width) * factor).round() as u32).clamp(1, max_side_px);
    let new_height = ((f64::from(height) * factor).round() as u32).clamp(1, max_side_px);
    // Triangle (bilinear) averages over the shrink footprint, so small objects do not alias away.
    image::imageops::resize(&rgb, new_width, new_height, FilterType::Triangle)
}

/// Whether every pixel of the bottom row has the same colour.
fn last_row_is_flat(rgb: &RgbImage) -> bool {
    let (width, height) = rgb.dimensions();
    let first = rgb.get_pixel(0, height - 1);
    (1..width).all(|x| rgb.get_pixel(x, height - 1) == first)
}

/// Whether a JPEG's last bytes hold no end-of-image marker (FF D9), the sign of a file cut
/// short. Only the tail is searched: an EXIF thumbnail near the start has its own marker, and
/// some cameras append a few bytes of padding after the real one.
fn lacks_end_marker(path: &Path) -> bool {
    const TAIL_BYTES: u64 = 4096;
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    let Ok(len) = file.seek(SeekFrom::End(0)) else {
        return false;
    };
    let start = len.saturating_sub(TAIL_BYTES);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return false;
    }
    let mut tail = Vec::with_capacity(TAIL_BYTES as usize);
    if file.read_to_end(&mut tail).is_err() {
        return false;
    }
    !tail.windows(2).any(|w| w == [0xFF, 0xD9])
}
