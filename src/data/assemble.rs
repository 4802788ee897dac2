//! The step every layout shares: the parsers describe each image and its boxes as a
//! [`PendingItem`]; here the images are decoded in parallel, the boxes turned into original-image
//! pixels and checked, and the splits filled.
//!
//! Images are turned upright by their EXIF orientation as they are decoded. Normalised (YOLO)
//! boxes are taken as drawn on the upright image, as Ultralytics takes them. Pixel boxes (VOC,
//! COCO) are too, unless the annotation states the stored size and a quarter turn makes that
//! differ from the upright one: those were drawn on the stored pixels and turn with them.

use std::collections::hash_map::{Entry, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::metadata::Orientation;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;

use super::decode::{decode_upright, file_name, Decoded};
use super::diagnostics::{Diagnostic, DiagnosticKind};
use super::orientation::{describe, turned_size, upright_rect};
use super::walk::Scan;
use super::{GtBox, ImageRecord, LoadOptions};
use crate::geometry::Rect;

/// Where an item goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Assignment {
    Train,
    Val,
    /// A `pos/` crop: the whole image is one object.
    Crop,
    /// The dataset names no split for it: the seeded split decides.
    Unassigned,
}

/// A box as an annotation states it, before the image size is known.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum BoxGeometry {
    /// YOLO: centre and size as fractions of the image size.
    Normalized { cx: f32, cy: f32, w: f32, h: f32 },
    /// Original-image pixels (VOC after the 1-based shift, COCO).
    Pixels(Rect),
    /// The whole image (a `pos/` crop).
    WholeImage,
}

/// One box and where it was written, so that a problem with it can point there.
#[derive(Clone, Debug)]
pub(crate) struct PendingBox {
    pub class_id: usize,
    pub geometry: BoxGeometry,
    pub difficult: bool,
    pub source: PathBuf,
    pub line: Option<usize>,
    /// How the annotation refers to this box in messages: "box 3", "object 2", "annotation 17".
    pub label: String,
}

/// One image and its boxes, not yet decoded.
#[derive(Clone, Debug)]
pub(crate) struct PendingItem {
    pub image: PathBuf,
    pub split: Assignment,
    pub boxes: Vec<PendingBox>,
    /// The size the annotation states, with the file that states it.
    pub stated_size: Option<(u32, u32, PathBuf)>,
}

impl PendingItem {
    pub fn new(image: PathBuf, split: Assignment) -> Self {
        Self {
            image,
            split,
            boxes: Vec::new(),
            stated_size: None,
        }
    }
}

/// What every layout's loader returns: the class names and the items, not yet decoded.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub class_names: Vec<String>,
    pub items: Vec<PendingItem>,
}

/// The decoded items, in the order they were given, per split.
pub(crate) struct Assembled {
    pub train: Vec<ImageRecord>,
    pub val: Vec<ImageRecord>,
    pub crops: Vec<ImageRecord>,
    /// The images their EXIF orientation turned upright.
    pub turned: TurnedImages,
}

/// How one image was turned upright.
#[derive(Clone, Copy, Debug)]
struct Turn {
    orientation: Orientation,
    /// Its pixel boxes were drawn on the stored pixels and were turned with them.
    boxes_turned: bool,
}

/// The images their EXIF orientation turned upright, counted for a note.
#[derive(Debug, Default)]
pub(crate) struct TurnedImages {
    images: usize,
    /// Of `images`, those whose boxes were turned with the pixels.
    with_boxes_turned: usize,
    /// The first one, and how it was turned, to name in the note.
    first: Option<(PathBuf, Orientation)>,
}

impl TurnedImages {
    fn add(&mut self, path: &Path, turn: Turn) {
        if turn.orientation == Orientation::NoTransforms {
            return;
        }
        self.images += 1;
        self.with_boxes_turned += usize::from(turn.boxes_turned);
        if self.first.is_none() {
            self.first = Some((path.to_path_buf(), turn.orientation));
        }
    }

    /// The note about the dataset in `root`; `None` when no image was turned.
    pub fn note(&self, root: &Path) -> Option<Diagnostic> {
        let (first, orientation) = self.first.as_ref()?;
        let example = format!("{}, {}", file_name(first), describe(*orientation));
        let turned = match self.images {
            1 => format!("1 image was turned upright by its EXIF orientation ({example})"),
            n => format!(
                "{n} images were turned upright by their EXIF orientation (the first: {example})"
            ),
        };
        const STORED: &str = "were drawn on the stored pixels (the annotation states the stored \
                              size) and were turned with the pixels";
        let boxes = match (self.with_boxes_turned, self.images - self.with_boxes_turned) {
            (0, _) => "boxes are taken as drawn on the upright image".to_string(),
            (_, 0) if self.images == 1 => format!("its boxes {STORED}"),
            (_, 0) => format!("their boxes {STORED}"),
            (turned, upright) => format!(
                "the boxes of {turned} of them {STORED}; those of the other {upright} are taken \
                 as drawn on the upright image"
            ),
        };
        Some(Diagnostic::note(root, format!("{turned}; {boxes}")))
    }
}

/// The items that may be decoded: an image that leads outside the dataset (through a symbolic
/// link) is left out, and of the items for one file (given twice, or reached by two paths
/// through a link) only one is kept, each with a diagnostic. The one kept is the first reached
/// without a link, else the first: a link never takes an image away from its own folder. An
/// image that cannot be resolved stays, for decoding to report.
pub(crate) fn admit(
    items: Vec<PendingItem>,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<PendingItem> {
    let canonical: Vec<Option<PathBuf>> = items
        .iter()
        .map(|item| std::fs::canonicalize(&item.image).ok())
        .collect();
    // Canonical path → the index of the item kept for it, and whether that one is direct.
    let mut kept: HashMap<&Path, (usize, bool)> = HashMap::new();
    for (index, (item, canonical)) in items.iter().zip(&canonical).enumerate() {
        let Some(canonical) = canonical.as_deref().filter(|c| scan.holds(c)) else {
            continue;
        };
        let direct = scan.is_direct(&item.image, canonical);
        match kept.entry(canonical) {
            Entry::Vacant(slot) => {
                slot.insert((index, direct));
            }
            Entry::Occupied(mut slot) if direct && !slot.get().1 => {
                slot.insert((index, direct));
            }
            Entry::Occupied(_) => {}
        }
    }
    let keep: Vec<bool> = items
        .iter()
        .zip(&canonical)
        .enumerate()
        .map(|(index, (item, canonical))| {
            let keeper = canonical.as_deref().and_then(|c| kept.get(c));
            match keeper {
                Some(&(keeper, _)) if keeper != index => {
                    diagnostics.push(duplicate(&item.image, &items[keeper].image));
                    false
                }
                Some(_) => true,
                // Outside the dataset (reported here), or not there at all (reported when
                // decoding fails).
                None => scan.admit(&item.image),
            }
        })
        .collect();
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(item, keep)| keep.then_some(item))
        .collect()
}

/// The diagnostic for an item left out because `kept` is the same file.
fn duplicate(image: &Path, kept: &Path) -> Diagnostic {
    let message = if image == kept {
        "given twice: it loads once, where it was given first".to_string()
    } else {
        format!(
            "the same file as {}: it loads once, as that file",
            kept.display()
        )
    };
    Diagnostic::new(image, DiagnosticKind::Duplicate, message)
}

/// Assigns the unassigned items, decodes every image in parallel and checks every box. Once
/// [`LoadOptions::cancel`] is set, the images not yet decoded are left out.
pub(crate) fn assemble(
    mut items: Vec<PendingItem>,
    options: &LoadOptions,
    diagnostics: &mut Vec<Diagnostic>,
) -> Assembled {
    assign_unsplit(&mut items, options);
    type Built = (
        Assignment,
        Result<(ImageRecord, Turn), Diagnostic>,
        Vec<Diagnostic>,
    );
    let results: Vec<Option<Built>> = items
        .into_par_iter()
        .map(|item| {
            if options.cancelled() {
                return None;
            }
            let mut notes = Vec::new();
            let split = item.split;
            let record = build_record(item, options, &mut notes);
            Some((split, record, notes))
        })
        .collect();
    let mut assembled = Assembled {
        train: Vec::new(),
        val: Vec::new(),
        crops: Vec::new(),
        turned: TurnedImages::default(),
    };
    for (split, record, notes) in results.into_iter().flatten() {
        match record {
            Ok((record, turn)) => {
                diagnostics.extend(notes);
                assembled.turned.add(&record.path, turn);
                match split {
                    Assignment::Train | Assignment::Unassigned => assembled.train.push(record),
                    Assignment::Val => assembled.val.push(record),
                    Assignment::Crop => assembled.crops.push(record),
                }
            }
            // An image that does not load makes its box problems moot: report only the image.
            Err(problem) => diagnostics.push(problem),
        }
    }
    assembled
}

/// The deterministic split for datasets that have none: the unassigned items, sorted by path
/// so that directory order does not matter, are shuffled with `split_seed` and the first
/// `val_fraction` of them go to validation (at least one when there are two or more).
fn assign_unsplit(items: &mut [PendingItem], options: &LoadOptions) {
    let mut unsplit: Vec<usize> = (0..items.len())
        .filter(|&i| items[i].split == Assignment::Unassigned)
        .collect();
    if unsplit.is_empty() {
        return;
    }
    unsplit.sort_by(|&a, &b| items[a].image.cmp(&items[b].image));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(options.split_seed);
    unsplit.shuffle(&mut rng);
    let count = unsplit.len();
    let fraction = if options.val_fraction.is_finite() {
        options.val_fraction.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let mut val_count = (count as f64 * f64::from(fraction)).round() as usize;
    if fraction > 0.0 && count >= 2 {
        val_count = val_count.clamp(1, count - 1);
    }
    for (rank, &index) in unsplit.iter().enumerate() {
        items[index].split = if rank < val_count {
            Assignment::Val
        } else {
            Assignment::Train
        };
    }
}

fn build_record(
    mut item: PendingItem,
    options: &LoadOptions,
    notes: &mut Vec<Diagnostic>,
) -> Result<(ImageRecord, Turn), Diagnostic> {
    let decoded = decode_upright(&item.image, options)?;
    let (width, height) = (decoded.width, decoded.height);
    let boxes_turned = drawn_on_stored_pixels(&item, &decoded);
    if boxes_turned {
        let (stored_width, stored_height) = turned_size(decoded.orientation, width, height);
        for pending in &mut item.boxes {
            if let BoxGeometry::Pixels(rect) = pending.geometry {
                pending.geometry = BoxGeometry::Pixels(upright_rect(
                    &rect,
                    decoded.orientation,
                    stored_width as f32,
                    stored_height as f32,
                ));
            }
        }
    } else {
        note_size_mismatch(&item, width, height, notes);
    }
    let boxes = item
        .boxes
        .iter()
        .filter_map(|b| check_box(b, width, height, notes))
        .collect();
    let pixels = decoded.pixels;
    let scale = pixels.width() as f32 / width as f32;
    let record = ImageRecord {
        path: item.image,
        width,
        height,
        boxes,
        pixels: Arc::new(pixels),
        scale,
    };
    let turn = Turn {
        orientation: decoded.orientation,
        boxes_turned,
    };
    Ok((record, turn))
}

/// Whether the item's boxes were drawn on the stored pixels of an image that EXIF turns
/// upright: its annotation states the stored size, and that differs from the upright size
/// (a quarter turn of a non-square image). A size that fits both, or neither, is no evidence:
/// the boxes are then taken as drawn upright.
fn drawn_on_stored_pixels(item: &PendingItem, decoded: &Decoded) -> bool {
    let Some((stated_width, stated_height, _)) = &item.stated_size else {
        return false;
    };
    let stated = (*stated_width, *stated_height);
    let upright = (decoded.width, decoded.height);
    stated != upright && stated == turned_size(decoded.orientation, upright.0, upright.1)
}

/// Notes an annotation that states a size other than the decoded one.
fn note_size_mismatch(item: &PendingItem, width: u32, height: u32, notes: &mut Vec<Diagnostic>) {
    let Some((stated_width, stated_height, source)) = &item.stated_size else {
        return;
    };
    // Zero means "unknown" to many annotation tools; only a real disagreement is worth a note.
    let stated_known = *stated_width > 0 && *stated_height > 0;
    if stated_known && (*stated_width != width || *stated_height != height) {
        notes.push(Diagnostic::new(
            source,
            DiagnosticKind::SizeMismatch,
            format!(
                "the annotation says the image is {stated_width}×{stated_height} but {} is \
                 {width}×{height}; using the decoded size",
                file_name(&item.image)
            ),
        ));
    }
}

/// Turns a box into original-image pixels. A box partly outside the image is clipped to it,
/// without a note when most of it is inside (annotation tools routinely overshoot the border
/// by a pixel); a box with no area, swapped corners, or entirely outside, is dropped with a note.
fn check_box(
    pending: &PendingBox,
    width: u32,
    height: u32,
    notes: &mut Vec<Diagnostic>,
) -> Option<GtBox> {
    let (w, h) = (width as f32, height as f32);
    let rect = match pending.geometry {
        BoxGeometry::Normalized {
            cx,
            cy,
            w: bw,
            h: bh,
        } => Rect::from_center_size(cx, cy, bw, bh).scaled_xy(w, h),
        BoxGeometry::Pixels(rect) => rect,
        BoxGeometry::WholeImage => Rect::new(0.0, 0.0, w, h),
    };
    let note = |kind, message: String| match pending.line {
        Some(line) => Diagnostic::at_line(&pending.source, line, kind, message),
        None => Diagnostic::new(&pending.source, kind, message),
    };
    let finite = [rect.x0, rect.y0, rect.x1, rect.y1]
        .iter()
        .all(|v| v.is_finite());
    if finite && (rect.x1 < rect.x0 || rect.y1 < rect.y0) {
        let (axis, low, high) = if rect.x1 < rect.x0 {
            ("x", rect.x0, rect.x1)
        } else {
            ("y", rect.y0, rect.y1)
        };
        notes.push(note(
            DiagnosticKind::EmptyBox,
            format!(
                "{} has its corners swapped: its {axis} starts at {low:.1} and ends at {high:.1}, before it; dropped",
                pending.label
            ),
        ));
        return None;
    }
    if !finite || rect.x1 <= rect.x0 || rect.y1 <= rect.y0 {
        let what = format!("{} has no area {}; dropped", pending.label, corners(&rect));
        notes.push(note(DiagnosticKind::EmptyBox, what));
        return None;
    }
    let clipped = rect.clipped(w, h);
    if clipped.area() <= 0.0 {
        let what = format!(
            "{} {} lies outside the {width}×{height} image; dropped",
            pending.label,
            corners(&rect)
        );
        notes.push(note(DiagnosticKind::BoxOutsideImage, what));
        return None;
    }
    // A pixel over the border is routine; a box mostly outside is worth a word.
    if clipped.area() < 0.5 * rect.area() {
        let what = format!(
            "{} {} lies mostly outside the {width}×{height} image; kept, clipped to {}",
            pending.label,
            corners(&rect),
            corners(&clipped)
        );
        notes.push(note(DiagnosticKind::BoxClipped, what));
    }
    Some(GtBox {
        class_id: pending.class_id,
        rect: clipped,
        difficult: pending.difficult,
    })
}

/// A box's corners as the messages write them: `(x0, y0) – (x1, y1)`.
fn corners(rect: &Rect) -> String {
    format!(
        "({:.1}, {:.1}) – ({:.1}, {:.1})",
        rect.x0, rect.y0, rect.x1, rect.y1
    )
}

/// Drops every box whose class id has no name, with a diagnostic naming `declared_by` (the file
/// or folder the class names come from).
pub(crate) fn drop_unknown_classes(
    items: &mut [PendingItem],
    class_count: usize,
    declared_by: &str,
    diagnostics: &mut Vec<Diagnostic>,
) {
    for item in items {
        item.boxes.retain(|b| {
            if b.class_id < class_count {
                return true;
            }
            diagnostics.push(Diagnostic {
                path: b.source.clone(),
                line: b.line,
                kind: DiagnosticKind::UnknownClass,
                message: format!(
                    "{} has class {} but {declared_by} declares {class_count} classes (0–{})",
                    b.label,
                    b.class_id,
                    class_count.saturating_sub(1)
                ),
            });
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(names: &[&str]) -> Vec<PendingItem> {
        names
            .iter()
            .map(|n| PendingItem::new(PathBuf::from(n), Assignment::Unassigned))
            .collect()
    }

    fn val_names(items: &[PendingItem]) -> Vec<PathBuf> {
        let mut names: Vec<PathBuf> = items
            .iter()
            .filter(|i| i.split == Assignment::Val)
            .map(|i| i.image.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn seeded_split_ignores_directory_order() {
        let options = LoadOptions {
            val_fraction: 0.25,
            split_seed: 5,
            ..LoadOptions::default()
        };
        let mut forward = items(&["a", "b", "c", "d", "e", "f", "g", "h"]);
        let mut backward = items(&["h", "g", "f", "e", "d", "c", "b", "a"]);
        assign_unsplit(&mut forward, &options);
        assign_unsplit(&mut backward, &options);
        assert_eq!(val_names(&forward).len(), 2);
        assert_eq!(val_names(&forward), val_names(&backward));
    }

    #[test]
    fn seeded_split_keeps_one_of_each_when_it_can() {
        let options = LoadOptions {
            val_fraction: 0.01,
            ..LoadOptions::default()
        };
        let mut two = items(&["a", "b"]);
        assign_unsplit(&mut two, &options);
        assert_eq!(val_names(&two).len(), 1);
    }
}
