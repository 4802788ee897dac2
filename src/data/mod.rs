//! Dataset folders: layout detection, annotation parsing, image decoding and diagnostics.
//!
//! Plain Rust (image, serde, quick-xml): never tch, never egui. Bad input never panics and never
//! aborts the whole load: each problem becomes a [`Diagnostic`] and loading goes on with the
//! good items.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::geometry::Rect;

/// The folder layouts the loader recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Layout {
    /// `pos/` crops of the object, `neg/` images with no object, optional `val/` or `test/`.
    PosNeg,
    /// `data.yaml` + `images/…` + `labels/…/<stem>.txt`.
    Yolo,
    /// Pascal VOC XML (standard `Annotations/` + `JPEGImages/`, or XML beside / near each image).
    Voc,
    /// One COCO JSON file.
    Coco,
}

/// One ground-truth object, in the original image's pixel coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct GtBox {
    /// Index into [`Dataset::class_names`].
    pub class_id: usize,
    pub rect: Rect,
    /// VOC `difficult`: neither counted nor penalised by evaluation.
    pub difficult: bool,
}

/// One image of a split, decoded and ready to use.
#[derive(Clone, Debug)]
pub struct ImageRecord {
    pub path: PathBuf,
    /// Decoded size of the original file (trusted over any size an annotation states).
    pub width: u32,
    pub height: u32,
    pub boxes: Vec<GtBox>,
    /// The decoded pixels, downscaled so that the longer side is at most
    /// [`LoadOptions::max_side_px`]. Multiply original coordinates by [`ImageRecord::scale`]
    /// to address these pixels.
    pub pixels: Arc<image::RgbImage>,
    /// `pixels.width() / width` (1.0 when no downscaling was needed).
    pub scale: f32,
}

/// How to load a dataset.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Images are downscaled on load so that their longer side is at most this.
    pub max_side_px: u32,
    /// Images with more pixels than this are refused before decoding.
    pub max_pixels: u64,
    /// Seed of the deterministic train/validation split made when a dataset has none.
    pub split_seed: u64,
    /// Share of images put in validation when the dataset has no split.
    pub val_fraction: f32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_side_px: 800,
            max_pixels: 64_000_000,
            split_seed: 0,
            val_fraction: 0.2,
        }
    }
}

/// A loaded dataset: only good items; the problems are in the diagnostics beside it.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub root: PathBuf,
    pub layout: Layout,
    pub class_names: Vec<String>,
    pub train: Vec<ImageRecord>,
    pub val: Vec<ImageRecord>,
    /// `pos/` crops (whole image = one object of class 0); empty for other layouts.
    pub positive_crops: Vec<ImageRecord>,
}

mod pending;
pub use pending::*;
