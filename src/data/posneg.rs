//! The classic positive/negative layout: `pos/` crops, each one whole object of class 0;
//! `neg/` images with no object; optionally `val/` (or `test/`) with full images annotated
//! beside each image in YOLO `.txt` or VOC `.xml`. Class names come from `names.txt`
//! (one per line) when present.

use std::path::{Path, PathBuf};

use super::assemble::{
    drop_unknown_classes, Assignment, BoxGeometry, Loaded, PendingBox, PendingItem,
};
use super::diagnostics::{Diagnostic, DiagnosticKind};
use super::voc::VocAnnotation;
use super::walk::Scan;

const POSITIVE_FOLDERS: [&str; 3] = ["pos", "positive", "positives"];
const NEGATIVE_FOLDERS: [&str; 3] = ["neg", "negative", "negatives"];
const VALIDATION_FOLDERS: [&str; 4] = ["val", "valid", "validation", "test"];

fn first_dir(root: &Path, names: &[&str]) -> Option<PathBuf> {
    names.iter().map(|n| root.join(n)).find(|p| p.is_dir())
}

/// Whether `root` has a `pos/` or `neg/` folder.
pub(crate) fn detect(root: &Path) -> bool {
    first_dir(root, &POSITIVE_FOLDERS).is_some() || first_dir(root, &NEGATIVE_FOLDERS).is_some()
}

/// Loads the layout: crops first, then negatives, then the validation images.
pub(crate) fn load(root: &Path, scan: &Scan, diagnostics: &mut Vec<Diagnostic>) -> Loaded {
    let declared = read_names_file(root, scan);
    let mut class_names = declared
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| vec!["object".to_string()]);
    let validation = first_dir(root, &VALIDATION_FOLDERS);
    let mut items = positive_crops(root, scan, diagnostics);
    // With a validation folder every negative trains; without one the seeded split decides.
    let negative_split = if validation.is_some() {
        Assignment::Train
    } else {
        Assignment::Unassigned
    };
    items.extend(negative_images(root, negative_split, scan, diagnostics));
    let Some(validation) = validation else {
        return Loaded { class_names, items };
    };

    let (validation_items, voc_items) = read_validation(&validation, scan, diagnostics);
    items.extend(validation_items);
    if declared.is_none() {
        // Without names.txt, a single class named in the VOC files names the crops too.
        if let Some(name) = single_class_name(&voc_items) {
            class_names = vec![name];
        }
    }
    items.extend(super::voc::finish_with_names(
        voc_items,
        &class_names,
        diagnostics,
    ));
    let class_count = class_names.len();
    drop_unknown_classes(&mut items, class_count, "the dataset", diagnostics);
    Loaded { class_names, items }
}

/// The non-empty lines of `names.txt`; `None` when there is no such file, or when it leads
/// outside the dataset (reported).
fn read_names_file(root: &Path, scan: &Scan) -> Option<Vec<String>> {
    let names_txt = root.join("names.txt");
    if !scan.admit(&names_txt) {
        return None;
    }
    super::yolo::read_name_list(&names_txt).ok()
}

/// Every image in `pos/`, each one whole object of class 0.
fn positive_crops(root: &Path, scan: &Scan, diagnostics: &mut Vec<Diagnostic>) -> Vec<PendingItem> {
    let Some(pos) = first_dir(root, &POSITIVE_FOLDERS) else {
        diagnostics.push(Diagnostic::new(
            &root.join("pos"),
            DiagnosticKind::MissingFolder,
            "no pos/ folder: there are no positive crops",
        ));
        return Vec::new();
    };
    scan.images(&pos)
        .into_iter()
        .map(|image| {
            let mut item = PendingItem::new(image.clone(), Assignment::Crop);
            item.boxes.push(PendingBox {
                class_id: 0,
                geometry: BoxGeometry::WholeImage,
                difficult: false,
                source: image,
                line: None,
                label: "the crop".to_string(),
            });
            item
        })
        .collect()
}

/// Every image in `neg/`, with no object.
fn negative_images(
    root: &Path,
    split: Assignment,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<PendingItem> {
    let Some(neg) = first_dir(root, &NEGATIVE_FOLDERS) else {
        diagnostics.push(Diagnostic::new(
            &root.join("neg"),
            DiagnosticKind::MissingFolder,
            "no neg/ folder: there are no negative images",
        ));
        return Vec::new();
    };
    scan.images(&neg)
        .into_iter()
        .map(|image| PendingItem::new(image, split))
        .collect()
}

/// A validation image whose VOC annotation waits for the class names.
type VocValidation = (PathBuf, Assignment, PathBuf, VocAnnotation);

/// The validation images: those with YOLO labels (`<stem>.txt`) or none, ready; those with VOC
/// XML (`<stem>.xml`), still to be given class indices. An image whose annotation leads
/// outside the dataset is left out (the link is reported).
fn read_validation(
    validation: &Path,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Vec<PendingItem>, Vec<VocValidation>) {
    let mut items = Vec::new();
    let mut voc_items = Vec::new();
    for image in scan.images(validation) {
        let txt = image.with_extension("txt");
        if !scan.admit(&txt) {
            continue;
        }
        if let Ok(bytes) = super::diagnostics::read_file(&txt) {
            let mut item = PendingItem::new(image, Assignment::Val);
            item.boxes =
                super::yolo::parse_label_text(&String::from_utf8_lossy(&bytes), &txt, diagnostics);
            items.push(item);
            continue;
        }
        match super::voc::read_beside(&image, scan, diagnostics) {
            Some(Ok((xml, annotation))) => {
                voc_items.push((image, Assignment::Val, xml, annotation))
            }
            // An annotation that cannot be read leaves the image's objects unknown: skip it.
            Some(Err(())) => {}
            None => items.push(PendingItem::new(image, Assignment::Val)),
        }
    }
    (items, voc_items)
}

/// The class name of the VOC objects when they all have the same one.
fn single_class_name(voc_items: &[VocValidation]) -> Option<String> {
    let mut names: Vec<&str> = voc_items
        .iter()
        .flat_map(|(_, _, _, a)| a.objects.iter().map(|o| o.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    match names.as_slice() {
        [only] => Some(only.to_string()),
        _ => None,
    }
}
