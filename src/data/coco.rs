//! The COCO layout: one JSON file (per split) with `images`, `annotations` (`bbox` = x, y, w, h
//! in pixels) and `categories`. Category ids map to contiguous class indices in sorted id order;
//! `iscrowd` boxes are kept as difficult.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::assemble::{Assignment, BoxGeometry, Loaded, PendingBox, PendingItem};
use super::decode::{file_name, list_dirs, list_files};
use super::diagnostics::{read_or_note, Diagnostic, DiagnosticKind};
use crate::geometry::Rect;

/// One entry of `images`.
#[derive(Clone, Debug, PartialEq)]
pub struct CocoImage {
    /// The id as written (a number or a string), as text.
    pub id: String,
    pub file_name: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// One entry of `annotations`.
#[derive(Clone, Debug, PartialEq)]
pub struct CocoAnnotation {
    /// Position in the `annotations` array (0-based).
    pub index: usize,
    pub image_id: String,
    pub category_id: String,
    /// `[x, y, width, height]` in pixels.
    pub bbox: [f32; 4],
    /// `iscrowd` (or `ignore`) set.
    pub crowd: bool,
}

/// One entry of `categories`.
#[derive(Clone, Debug, PartialEq)]
pub struct CocoCategory {
    pub id: String,
    /// Numeric ids sort as numbers, others after them as text.
    pub numeric_id: Option<i64>,
    pub name: String,
}

/// A parsed COCO file; entries that cannot be understood are described in `problems`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CocoFile {
    pub images: Vec<CocoImage>,
    pub annotations: Vec<CocoAnnotation>,
    pub categories: Vec<CocoCategory>,
    pub problems: Vec<String>,
}

/// Why a whole JSON file cannot be used.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonError {
    pub line: Option<usize>,
    pub message: String,
}

/// Parses one COCO document.
pub fn parse_json(text: &str) -> Result<CocoFile, JsonError> {
    let value: Value = serde_json::from_str(text.strip_prefix('\u{feff}').unwrap_or(text))
        .map_err(|e| JsonError {
            line: Some(e.line()).filter(|&l| l > 0),
            message: format!("not valid JSON: {e}"),
        })?;
    let array = |key: &str| -> Result<&Vec<Value>, JsonError> {
        value
            .get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| JsonError {
                line: None,
                message: format!("no `{key}` array: not a COCO annotation file"),
            })
    };
    let mut file = CocoFile::default();
    for (index, entry) in array("images")?.iter().enumerate() {
        let id = entry.get("id").and_then(id_text);
        let file_name = entry.get("file_name").and_then(Value::as_str);
        match (id, file_name) {
            (Some(id), Some(file_name)) if !file_name.trim().is_empty() => {
                file.images.push(CocoImage {
                    id,
                    file_name: file_name.to_string(),
                    width: entry.get("width").and_then(as_dimension),
                    height: entry.get("height").and_then(as_dimension),
                })
            }
            _ => file
                .problems
                .push(format!("image {index} has no usable `id` and `file_name`")),
        }
    }
    for (index, entry) in array("annotations")?.iter().enumerate() {
        match parse_annotation(index, entry) {
            Ok(annotation) => file.annotations.push(annotation),
            Err(reason) => file.problems.push(format!(
                "annotation {index}{}: {reason}",
                describe_id(entry)
            )),
        }
    }
    if let Some(categories) = value.get("categories").and_then(Value::as_array) {
        for (index, entry) in categories.iter().enumerate() {
            let id = entry.get("id").and_then(id_text);
            let name = entry.get("name").and_then(Value::as_str);
            match (id, name) {
                (Some(id), Some(name)) => file.categories.push(CocoCategory {
                    numeric_id: entry.get("id").and_then(Value::as_i64),
                    id,
                    name: name.to_string(),
                }),
                _ => file
                    .problems
                    .push(format!("category {index} has no usable `id` and `name`")),
            }
        }
    } else {
        file.problems
            .push("no `categories` array: class names are the category ids".to_string());
    }
    Ok(file)
}

fn describe_id(entry: &Value) -> String {
    entry
        .get("id")
        .and_then(id_text)
        .map(|id| format!(" (id {id})"))
        .unwrap_or_default()
}

fn parse_annotation(index: usize, entry: &Value) -> Result<CocoAnnotation, String> {
    let image_id = entry
        .get("image_id")
        .and_then(id_text)
        .ok_or("no `image_id`")?;
    let category_id = entry
        .get("category_id")
        .and_then(id_text)
        .ok_or("no `category_id`")?;
    let bbox = entry
        .get("bbox")
        .and_then(Value::as_array)
        .filter(|b| b.len() == 4)
        .ok_or("`bbox` is not [x, y, width, height]")?;
    let mut values = [0.0f32; 4];
    for (value, raw) in values.iter_mut().zip(bbox) {
        *value = raw
            .as_f64()
            .map(|v| v as f32)
            .filter(|v| v.is_finite())
            .ok_or("`bbox` holds something that is not a number")?;
    }
    let flag = |key: &str| {
        entry
            .get(key)
            .is_some_and(|v| v.as_bool().unwrap_or(false) || v.as_f64().is_some_and(|n| n != 0.0))
    };
    Ok(CocoAnnotation {
        index,
        image_id,
        category_id,
        bbox: values,
        crowd: flag("iscrowd") || flag("ignore"),
    })
}

/// An id written as a number or a string.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

fn as_dimension(value: &Value) -> Option<u32> {
    value
        .as_f64()
        .filter(|v| v.is_finite() && *v >= 0.0 && *v <= u32::MAX as f64)
        .map(|v| v as u32)
}

/// The JSON files at the top of `root` or in `root/annotations/` that look like COCO
/// annotations (they mention both `images` and `annotations`).
pub(crate) fn detect(root: &Path) -> Vec<PathBuf> {
    let mut candidates = list_files(root);
    candidates.extend(list_files(&root.join("annotations")));
    candidates
        .into_iter()
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        })
        .filter(|p| {
            std::fs::read(p).is_ok_and(|bytes| {
                let text = String::from_utf8_lossy(&bytes);
                text.contains("\"images\"") && text.contains("\"annotations\"")
            })
        })
        .collect()
}

/// The split a file name suggests: `instances_train2017.json` → train, `…val…`/`…test…` → val.
fn split_of_file(json: &Path) -> Assignment {
    let stem = json
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    if stem.contains("train") {
        Assignment::Train
    } else if stem.contains("val") || stem.contains("test") {
        Assignment::Val
    } else {
        Assignment::Unassigned
    }
}

/// Loads every COCO file found: the class names are the categories of all files together.
pub(crate) fn load(root: &Path, files: &[PathBuf], diagnostics: &mut Vec<Diagnostic>) -> Loaded {
    let parsed: Vec<(PathBuf, CocoFile)> = files
        .iter()
        .filter_map(|json| read_coco_file(json, diagnostics).map(|file| (json.clone(), file)))
        .collect();
    let classes = Classes::of(&parsed);
    let mut items = Vec::new();
    // An image named by two files (a train and a trainval JSON, say) loads once, from the first.
    let mut seen = BTreeSet::new();
    for (json, file) in &parsed {
        let mut images = FileImages::find(root, json, file, &mut seen, diagnostics);
        for annotation in &file.annotations {
            images.add_annotation(json, annotation, &classes.index_of, diagnostics);
        }
        items.extend(images.slots.into_iter().flatten());
    }
    Loaded {
        class_names: classes.names,
        items,
    }
}

/// Reads and parses one file; `None` (with a diagnostic) when it cannot be used. Entries it
/// cannot understand are noted and left out.
fn read_coco_file(json: &Path, diagnostics: &mut Vec<Diagnostic>) -> Option<CocoFile> {
    let bytes = read_or_note(json, "the file", std::fs::read, diagnostics)?;
    match parse_json(&String::from_utf8_lossy(&bytes)) {
        Ok(file) => {
            for problem in &file.problems {
                diagnostics.push(Diagnostic::new(
                    json,
                    DiagnosticKind::MalformedLabel,
                    problem.clone(),
                ));
            }
            Some(file)
        }
        Err(e) => {
            diagnostics.push(Diagnostic {
                path: json.to_path_buf(),
                line: e.line,
                kind: DiagnosticKind::MalformedLabel,
                message: e.message,
            });
            None
        }
    }
}

/// The classes of a set of COCO files.
struct Classes {
    names: Vec<String>,
    /// Category id → class index.
    index_of: BTreeMap<String, usize>,
}

impl Classes {
    /// The union of every file's categories in sorted id order; when no file has categories, the
    /// category ids the annotations use, named by themselves.
    fn of(parsed: &[(PathBuf, CocoFile)]) -> Self {
        let mut categories: BTreeMap<(i64, String), String> = BTreeMap::new();
        for (_, file) in parsed {
            for category in &file.categories {
                let key = (category.numeric_id.unwrap_or(i64::MAX), category.id.clone());
                categories
                    .entry(key)
                    .or_insert_with(|| category.name.clone());
            }
        }
        if parsed.iter().all(|(_, f)| f.categories.is_empty()) {
            for (_, file) in parsed {
                for annotation in &file.annotations {
                    let numeric = annotation.category_id.parse::<i64>().unwrap_or(i64::MAX);
                    categories
                        .entry((numeric, annotation.category_id.clone()))
                        .or_insert_with(|| annotation.category_id.clone());
                }
            }
        }
        let index_of = categories
            .keys()
            .enumerate()
            .map(|(i, (_, id))| (id.clone(), i))
            .collect();
        Self {
            names: categories.into_values().collect(),
            index_of,
        }
    }
}

/// The images of one COCO file, in its order, waiting for their annotations.
struct FileImages<'a> {
    /// Image id → position in `slots`.
    by_id: BTreeMap<&'a str, usize>,
    /// `None` for an image that is missing or already loaded from another file: its
    /// annotations are dropped.
    slots: Vec<Option<PendingItem>>,
}

impl<'a> FileImages<'a> {
    /// Finds every image `file` lists; a missing one is noted, one in `seen` is left out.
    fn find(
        root: &Path,
        json: &Path,
        file: &'a CocoFile,
        seen: &mut BTreeSet<PathBuf>,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Self {
        let split = split_of_file(json);
        let bases = image_bases(root, json);
        let mut images = FileImages {
            by_id: BTreeMap::new(),
            slots: Vec::with_capacity(file.images.len()),
        };
        for image in &file.images {
            let slot = match resolve_image(&bases, &image.file_name) {
                Some(path) if seen.insert(path.clone()) => {
                    let mut item = PendingItem::new(path, split);
                    if let (Some(w), Some(h)) = (image.width, image.height) {
                        item.stated_size = Some((w, h, json.to_path_buf()));
                    }
                    Some(item)
                }
                Some(_) => None,
                None => {
                    diagnostics.push(Diagnostic::new(
                        json,
                        DiagnosticKind::LabelWithoutImage,
                        format!(
                            "image id {}: {} not found beside the JSON or in an images/ folder",
                            image.id, image.file_name
                        ),
                    ));
                    None
                }
            };
            images.by_id.insert(image.id.as_str(), images.slots.len());
            images.slots.push(slot);
        }
        images
    }

    /// Adds one annotation's box to its image; an unknown image id or category id is noted.
    fn add_annotation(
        &mut self,
        json: &Path,
        annotation: &CocoAnnotation,
        index_of: &BTreeMap<String, usize>,
        diagnostics: &mut Vec<Diagnostic>,
    ) {
        let label = format!("annotation {} ", annotation.index);
        let Some(&slot) = self.by_id.get(annotation.image_id.as_str()) else {
            diagnostics.push(Diagnostic::new(
                json,
                DiagnosticKind::MalformedLabel,
                format!(
                    "{label}refers to image id {}, which is not in `images`",
                    annotation.image_id
                ),
            ));
            return;
        };
        let Some(item) = self.slots[slot].as_mut() else {
            return;
        };
        let Some(&class_id) = index_of.get(&annotation.category_id) else {
            diagnostics.push(Diagnostic::new(
                json,
                DiagnosticKind::UnknownClass,
                format!(
                    "{label}has category id {}, which is not in `categories`",
                    annotation.category_id
                ),
            ));
            return;
        };
        let [x, y, w, h] = annotation.bbox;
        item.boxes.push(PendingBox {
            class_id,
            geometry: BoxGeometry::Pixels(Rect::from_xywh(x, y, w, h)),
            difficult: annotation.crowd,
            source: json.to_path_buf(),
            line: None,
            label: format!(
                "annotation {} (image {})",
                annotation.index,
                file_name(&item.image)
            ),
        });
    }
}

/// Folders where a COCO file's images may be: beside it, in `images/` beside it, and the same
/// one level up (for JSON kept in `annotations/`), plus their immediate subfolders
/// (`images/train2017/`).
fn image_bases(root: &Path, json: &Path) -> Vec<PathBuf> {
    let json_dir = json.parent().unwrap_or(root).to_path_buf();
    let mut bases = vec![json_dir.clone(), json_dir.join("images")];
    if json_dir != root {
        bases.push(root.to_path_buf());
        bases.push(root.join("images"));
    }
    let mut extra = Vec::new();
    for base in &bases {
        extra.extend(
            list_dirs(base)
                .into_iter()
                .filter(|d| !d.ends_with("annotations")),
        );
    }
    bases.extend(extra);
    let mut unique = Vec::new();
    for base in bases {
        if base.is_dir() && !unique.contains(&base) {
            unique.push(base);
        }
    }
    unique
}

fn resolve_image(bases: &[PathBuf], file_name: &str) -> Option<PathBuf> {
    let relative = Path::new(file_name);
    if relative.is_absolute() && relative.is_file() {
        return Some(relative.to_path_buf());
    }
    let base_name = relative.file_name().map(Path::new);
    bases.iter().find_map(|base| {
        let direct = base.join(relative);
        if !relative.is_absolute() && direct.is_file() {
            return Some(direct);
        }
        let by_name = base.join(base_name?);
        by_name.is_file().then_some(by_name)
    })
}
