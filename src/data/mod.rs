//! Dataset folders: layout detection, annotation parsing, image decoding and diagnostics.
//!
//! Plain Rust (image, serde, quick-xml): never tch, never egui. Bad input never panics and never
//! aborts the whole load: each problem becomes a [`Diagnostic`] and loading goes on with the
//! good items.

mod assemble;
pub mod coco;
mod decode;
mod diagnostics;
mod orientation;
mod posneg;
mod summary;
pub mod voc;
mod walk;
mod xml;
pub mod yolo;
mod yolo_folders;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::geometry::Rect;
use walk::Scan;

pub use decode::{decode_image, is_image_path, list_images, IMAGE_EXTENSIONS};
pub use diagnostics::{DatasetError, Diagnostic, DiagnosticKind, LOADING_CANCELLED};
pub use summary::{summary, DatasetSummary, SplitSummary};

/// The folder layouts the loader recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Layout {
    /// `pos/` crops of the object, `neg/` images with no object, optional `val/` or `test/`.
    PosNeg,
    /// `images/…` + `labels/…/<stem>.txt`, described by `data.yaml` or, without it, by the
    /// folder names, `classes.txt` or `*.names`, and the label files.
    Yolo,
    /// Pascal VOC XML (standard `Annotations/` + `JPEGImages/`, or XML beside / near each image).
    Voc,
    /// One COCO JSON file.
    Coco,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::PosNeg => "pos/neg",
            Layout::Yolo => "YOLO",
            Layout::Voc => "Pascal VOC",
            Layout::Coco => "COCO",
        })
    }
}

/// One ground-truth object, in the original image's pixel coordinates (upright).
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
    /// Decoded size of the original file, upright by its EXIF orientation (trusted over any
    /// size an annotation states).
    pub width: u32,
    pub height: u32,
    pub boxes: Vec<GtBox>,
    /// The decoded pixels, downscaled so that the longer side is at most
    /// [`LoadOptions::max_side_px`]. [`ImageRecord::to_decoded`] maps original coordinates
    /// onto these pixels.
    pub pixels: Arc<image::RgbImage>,
    /// `pixels.width() / width` (1.0 when no downscaling was needed).
    pub scale: f32,
}

impl ImageRecord {
    /// An image of one grey level held in memory, with class-0 boxes: for tests.
    #[cfg(test)]
    pub(crate) fn in_memory(width: u32, height: u32, grey: u8, boxes: Vec<Rect>) -> Self {
        Self {
            path: PathBuf::from("memory.png"),
            width,
            height,
            boxes: boxes
                .into_iter()
                .map(|rect| GtBox {
                    class_id: 0,
                    rect,
                    difficult: false,
                })
                .collect(),
            pixels: Arc::new(image::RgbImage::from_pixel(
                width,
                height,
                image::Rgb([grey; 3]),
            )),
            scale: 1.0,
        }
    }

    /// Decoded-over-original size on each axis: rounding to whole pixels makes them differ a
    /// little, and a lot for very elongated images.
    fn factors(&self) -> (f32, f32) {
        (
            self.pixels.width() as f32 / self.width.max(1) as f32,
            self.pixels.height() as f32 / self.height.max(1) as f32,
        )
    }

    /// A box in original pixels → the same box in [`ImageRecord::pixels`].
    pub fn to_decoded(&self, rect: &Rect) -> Rect {
        let (sx, sy) = self.factors();
        rect.scaled_xy(sx, sy)
    }

    /// A box in [`ImageRecord::pixels`] → the same box in original pixels.
    pub fn to_original(&self, rect: &Rect) -> Rect {
        let (sx, sy) = self.factors();
        rect.scaled_xy(1.0 / sx, 1.0 / sy)
    }
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
    /// Folder entries read at most: past them the walk stops with a diagnostic, so that
    /// opening a folder far larger than a dataset (a home folder, `/`) stays short.
    pub max_files_scanned: usize,
    /// Set to `true` (from another thread) to stop loading soon: the walk and the decoding stop
    /// and [`load_dataset`] returns [`DatasetError::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            max_side_px: 800,
            max_pixels: 64_000_000,
            split_seed: 0,
            val_fraction: 0.2,
            max_files_scanned: 200_000,
            cancel: None,
        }
    }
}

impl LoadOptions {
    /// Whether [`LoadOptions::cancel`] is set.
    pub fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|cancel| cancel.load(Ordering::Relaxed))
    }
}

/// One of a dataset's lists of full images.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Val,
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

impl Dataset {
    /// The images of one split.
    pub fn images(&self, split: Split) -> &[ImageRecord] {
        match split {
            Split::Train => &self.train,
            Split::Val => &self.val,
        }
    }
}

/// A layout found in a folder, with what loading it needs.
enum Detected {
    Yolo(PathBuf),
    /// `images/` + `labels/` without `data.yaml`.
    YoloFolders,
    Voc(voc::Arrangement),
    Coco(Vec<PathBuf>),
    PosNeg,
}

/// Looks for each layout in turn: YOLO (`data.yaml`), Pascal VOC, COCO, YOLO without
/// `data.yaml` (`images/` + `labels/`), pos/neg. XML beside images only counts as VOC when there
/// is no `pos/`/`neg/` folder, whose `val/` may hold it. VOC and COCO come before the bare YOLO
/// folders because their sets often keep an `images/` folder too, and a `labels/` one beside it.
fn detect(root: &Path, scan: &Scan) -> Option<Detected> {
    for name in ["data.yaml", "data.yml", "dataset.yaml"] {
        let yaml = root.join(name);
        if yaml.is_file() {
            return Some(Detected::Yolo(yaml));
        }
    }
    let posneg = posneg::detect(root);
    if let Some(arrangement) = voc::detect(root, !posneg, scan) {
        return Some(Detected::Voc(arrangement));
    }
    let coco_files = coco::detect(root, scan);
    if !coco_files.is_empty() {
        return Some(Detected::Coco(coco_files));
    }
    if yolo_folders::detect(root) {
        return Some(Detected::YoloFolders);
    }
    posneg.then_some(Detected::PosNeg)
}

/// The layout of the dataset in `root`, without loading it; `None` when none is recognised.
pub fn detect_layout(root: &Path) -> Option<Layout> {
    let options = LoadOptions::default();
    detect(root, &Scan::new(root, &options)).map(|d| match d {
        Detected::Yolo(_) | Detected::YoloFolders => Layout::Yolo,
        Detected::Voc(_) => Layout::Voc,
        Detected::Coco(_) => Layout::Coco,
        Detected::PosNeg => Layout::PosNeg,
    })
}

/// Loads the dataset in `root`, whatever its layout.
///
/// Returns only the items that loaded, and a diagnostic for every problem met on the way
/// (the items around a problem still load). Fails only when `root` is not a folder, holds no
/// known layout, or yields no usable image, or when loading is cancelled. Nothing outside
/// `root` is read, even through a symbolic link.
pub fn load_dataset(
    root: &Path,
    options: &LoadOptions,
) -> Result<(Dataset, Vec<Diagnostic>), DatasetError> {
    if !root.exists() {
        return Err(DatasetError::MissingFolder(root.to_path_buf()));
    }
    if !root.is_dir() {
        return Err(DatasetError::NotAFolder(root.to_path_buf()));
    }
    let scan = Scan::new(root, options);
    let detected = detect(root, &scan);
    if scan.cancelled() {
        return Err(DatasetError::Cancelled);
    }
    let detected = detected.ok_or_else(|| DatasetError::UnknownLayout {
        root: root.to_path_buf(),
    })?;
    let mut found = Vec::new();
    let (layout, loaded) = load_layout(root, detected, &scan, &mut found);
    let items = assemble::admit(loaded.items, &scan, &mut found);
    let assembled = assemble::assemble(items, options, &mut found);
    if scan.cancelled() {
        return Err(DatasetError::Cancelled);
    }
    // What the walk met (links, the scan limit) comes first: it explains what is missing.
    let mut diagnostics = scan.into_diagnostics();
    diagnostics.extend(found);
    diagnostics.extend(assembled.turned.note(root));
    if assembled.train.is_empty() && assembled.val.is_empty() && assembled.crops.is_empty() {
        return Err(DatasetError::Empty {
            root: root.to_path_buf(),
            diagnostics,
        });
    }
    let dataset = Dataset {
        root: root.to_path_buf(),
        layout,
        class_names: loaded.class_names,
        train: assembled.train,
        val: assembled.val,
        positive_crops: assembled.crops,
    };
    Ok((dataset, diagnostics))
}

/// Reads the annotations of the layout found, and lists the images they lead to.
fn load_layout(
    root: &Path,
    detected: Detected,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Layout, assemble::Loaded) {
    match detected {
        Detected::Yolo(yaml) => (Layout::Yolo, yolo::load(&yaml, scan, diagnostics)),
        Detected::YoloFolders => (Layout::Yolo, yolo_folders::load(root, scan, diagnostics)),
        Detected::Voc(arrangement) => {
            (Layout::Voc, voc::load(root, arrangement, scan, diagnostics))
        }
        Detected::Coco(files) => (Layout::Coco, coco::load(root, &files, scan, diagnostics)),
        Detected::PosNeg => (Layout::PosNeg, posneg::load(root, scan, diagnostics)),
    }
}
