//! The YOLO layout without `data.yaml`, as Ultralytics exports often leave it: `images/` and
//! `labels/` side by side, with split folders (`images/train`, `images/val`) or without.
//!
//! The labels are read as with `data.yaml` ([`super::yolo`]). What `data.yaml` would say is
//! worked out instead, and each such choice becomes a [`super::DiagnosticKind::Note`]: the
//! splits come from the folder names, the class names from `classes.txt` or a darknet `*.names`
//! file (in the top folder or in `labels/`), or else are made up as `class0`, `class1`, … from
//! the class ids the labels use.

use std::path::{Path, PathBuf};

use super::assemble::{drop_unknown_classes, Assignment, Loaded, PendingItem};
use super::decode::file_name;
use super::diagnostics::{read_or_note, Diagnostic};
use super::voc::split_of_folder;
use super::walk::Scan;
use super::yolo::{
    names_from_labels, read_all_labels, read_name_list, report_labels_without_images,
};

/// Whether `root` holds `images/` and `labels/` side by side.
pub(crate) fn detect(root: &Path) -> bool {
    root.join("images").is_dir() && root.join("labels").is_dir()
}

/// Reads every image below `root/images` with its labels.
pub(crate) fn load(root: &Path, scan: &Scan, diagnostics: &mut Vec<Diagnostic>) -> Loaded {
    let images_dir = root.join("images");
    report_labels_without_images(&images_dir, scan, diagnostics);
    let images = images_with_splits(&images_dir, scan, diagnostics);
    let mut items = read_all_labels(images, scan, diagnostics);
    let class_names = class_names(root, &mut items, scan, diagnostics);
    Loaded { class_names, items }
}

/// Every image below `images_dir`, with the split its folder's name gives (read as VOC split
/// folders are). Images directly in `images_dir` or in folders of other names get the seeded
/// split, and so does everything when no folder is for validation. Notes how it was read.
fn images_with_splits(
    images_dir: &Path,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<(PathBuf, Assignment)> {
    let mut images: Vec<(PathBuf, Assignment)> = scan
        .images(images_dir)
        .into_iter()
        .map(|image| (image, Assignment::Unassigned))
        .collect();
    let mut folders = Vec::new();
    for folder in scan.dirs(images_dir) {
        let name = file_name(&folder);
        let split = split_of_folder(&name);
        images.extend(
            scan.images_recursive(&folder)
                .into_iter()
                .map(|image| (image, split)),
        );
        folders.push((name, split));
    }
    let has_val = folders.iter().any(|(_, split)| *split == Assignment::Val);
    if !has_val {
        for (_, split) in &mut images {
            *split = Assignment::Unassigned;
        }
    }
    diagnostics.push(Diagnostic::note(
        images_dir,
        split_message(&folders, has_val),
    ));
    images
}

/// How the folders in `images/` were read, for the note.
fn split_message(folders: &[(String, Assignment)], has_val: bool) -> String {
    if folders.is_empty() {
        return "no data.yaml and no split folders in images/: the seeded split shares out the \
                images"
            .to_string();
    }
    let names = |wanted: Option<Assignment>| {
        folders
            .iter()
            .filter(|(_, split)| wanted.is_none_or(|w| *split == w))
            .map(|(name, _)| format!("{name}/"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !has_val {
        return format!(
            "no data.yaml and no validation folder in images/ (only {}): the seeded split \
             shares out the images",
            names(None)
        );
    }
    let mut parts = Vec::new();
    for (split, read_as) in [
        (Assignment::Train, "train"),
        (Assignment::Val, "validation"),
        (Assignment::Unassigned, "the seeded split"),
    ] {
        let named = names(Some(split));
        if !named.is_empty() {
            parts.push(format!("{named} → {read_as}"));
        }
    }
    format!(
        "no data.yaml: splits from the folders in images/: {}",
        parts.join("; ")
    )
}

/// The class names: those of a names file when there is one (boxes of other class ids are
/// dropped with a diagnostic), otherwise `class0`, `class1`, … up to the highest class id the
/// labels use. Notes where they came from.
fn class_names(
    root: &Path,
    items: &mut [PendingItem],
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let names_file = find_names_file(root, scan);
    if let Some(file) = &names_file {
        let names = read_or_note(file, "the class names", read_name_list, diagnostics);
        if let Some(names) = names.filter(|n| !n.is_empty()) {
            let declared_by = file_name(file);
            diagnostics.push(Diagnostic::note(
                file,
                format!(
                    "no data.yaml: {} class names from {declared_by}",
                    names.len()
                ),
            ));
            drop_unknown_classes(items, names.len(), &declared_by, diagnostics);
            return names;
        }
    }
    let names = names_from_labels(items, "class");
    let source = match &names_file {
        Some(file) => format!("no data.yaml and no class names in {}", file_name(file)),
        None => "no data.yaml and no classes.txt or *.names file".to_string(),
    };
    let made_up = match names.as_slice() {
        [] => "no label has a box, so there is no class".to_string(),
        [only] => format!("1 class named {only} from the label files"),
        [first, .., last] => format!(
            "{} classes named {first}…{last} after the highest class id in the label files",
            names.len()
        ),
    };
    diagnostics.push(Diagnostic::note(
        &root.join("labels"),
        format!("{source}: {made_up}"),
    ));
    names
}

/// `classes.txt` (LabelImg and many exporters) in the top folder or in `labels/`, or else the
/// first darknet `*.names` file there. A `classes.txt` that leads outside the dataset is
/// reported and passed over.
fn find_names_file(root: &Path, scan: &Scan) -> Option<PathBuf> {
    let folders = [root.to_path_buf(), root.join("labels")];
    let classes_txt = folders
        .iter()
        .map(|folder| folder.join("classes.txt"))
        .find(|path| path.is_file() && scan.admit(path));
    classes_txt.or_else(|| {
        folders
            .iter()
            .flat_map(|folder| scan.files(folder))
            .find(|path| {
                path.extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("names"))
            })
    })
}
