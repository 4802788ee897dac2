//! The classic positive/negative layout: `pos/` crops, each one whole object of class 0;
//! `neg/` images with no object; optionally `val/` (or `test/`) with full images annotated
//! beside each image in YOLO `.txt` or VOC `.xml`. Class names come from `names.txt`
//! (one per line) when present.

use std::path::{Path, PathBuf};

use super::assemble::{drop_unknown_classes, BoxGeometry, PendingBox, PendingItem, Split};
use super::decode::list_images;
use super::diagnostics::{Diagnostic, DiagnosticKind};

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

/// Loads the layout; returns the class names and the items.
pub(crate) fn load(
    root: &Path,
    diagnostics: &mut Vec<Diagnostic>,
) -> (Vec<String>, Vec<PendingItem>) {
    let names_file = root.join("names.txt");
    let declared: Option<Vec<String>> = std::fs::read(&names_file).ok().map(|bytes| {
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    });
    let mut class_names = declared
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| vec!["object".to_string()]);

    let mut items = Vec::new();
    match first_dir(root, &POSITIVE_FOLDERS) {
        Some(pos) => {
            for image in list_images(&pos) {
                let mut item = PendingItem::new(image.clone(), Split::Crop);
                item.boxes.push(PendingBox {
                    class_id: 0,
                    geometry: BoxGeometry::WholeImage,
                    difficult: false,
                    source: image,
                    line: None,
                    label: "the crop".to_string(),
                });
                items.push(item);
            }
        }
        None => diagnostics.push(Diagnostic::new(
            &root.join("pos"),
            DiagnosticKind::MissingFolder,
            "no pos/ folder: there are no positive crops",
        )),
    }
    let validation = first_dir(root, &VALIDATION_FOLDERS);
    let negative_split = if validation.is_some() {
        Split::Train
    } else {
        Split::Unassigned
    };
    match first_dir(root, &NEGATIVE_FOLDERS) {
        Some(neg) => items.extend(
            list_images(&neg)
                .into_iter()
                .map(|image| PendingItem::new(image, negative_split)),
        ),
        None => diagnostics.push(Diagnostic::new(
            &root.join("neg"),
            DiagnosticKind::MissingFolder,
            "no neg/ folder: there are no negative images",
        )),
    }
    let Some(validation) = validation else {
        return (class_names, items);
    };

    let mut voc_items = Vec::new();
    for image in list_images(&validation) {
        let txt = image.with_extension("txt");
        if let Ok(bytes) = std::fs::read(&txt) {
            let mut item = PendingItem::new(image, Split::Val);
            item.boxes =
                super::yolo::parse_label_text(&String::from_utf8_lossy(&bytes), &txt, diagnostics);
            items.push(item);
            continue;
        }
        match super::voc::read_beside(&image, diagnostics) {
            Some(Ok((xml, annotation))) => voc_items.push((image, Split::Val, xml, annotation)),
            // An annotation that cannot be read leaves the image's objects unknown: skip it.
            Some(Err(())) => {}
            None => items.push(PendingItem::new(image, Split::Val)),
        }
    }
    if declared.is_none() {
        // Without names.txt, a single class named in the VOC files names the crops too.
        let mut names: Vec<&str> = voc_items
            .iter()
            .flat_map(|(_, _, _, a)| a.objects.iter().map(|o| o.name.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        if let [only] = names.as_slice() {
            class_names = vec![only.to_string()];
        }
    }
    items.extend(super::voc::finish_with_names(
        voc_items,
        &class_names,
        diagnostics,
    ));
    let class_count = class_names.len();
    drop_unknown_classes(&mut items, class_count, "the dataset", diagnostics);
    (class_names, items)
}
