//! The COCO layout: one JSON file (per split) with `images`, `annotations` (`bbox` = x, y, w, h
//! in pixels) and `categories`. Category ids map to contiguous class indices in sorted id order;
//! `iscrowd` boxes are kept as difficult.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::assemble::{Assignment, BoxGeometry, Loaded, PendingBox, PendingItem};
use super::decode::file_name;
use super::diagnostics::{pixel_coordinate, read_file, read_or_note, Diagnostic, DiagnosticKind};
use super::walk::{Resolved, Scan};
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
    /// The id as a whole number, whether written as a number or as text (`1` and `"1"` are
    /// the same id); numeric ids sort as numbers, others after them as text.
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
                    numeric_id: id.parse().ok(),
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
    for ((value, raw), name) in values
        .iter_mut()
        .zip(bbox)
        .zip(["x", "y", "width", "height"])
    {
        let what = format!("`bbox` {name} {raw}");
        let number = raw
            .as_f64()
            .ok_or_else(|| format!("{what} is not a number"))?;
        *value = pixel_coordinate(number, &what)?;
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
pub(crate) fn detect(root: &Path, scan: &Scan) -> Vec<PathBuf> {
    let mut candidates = scan.files(root);
    candidates.extend(scan.files(&root.join("annotations")));
    candidates
        .into_iter()
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        })
        .filter(|p| {
            read_file(p).is_ok_and(|bytes| {
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
pub(crate) fn load(
    root: &Path,
    files: &[PathBuf],
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Loaded {
    let parsed: Vec<(PathBuf, CocoFile)> = files
        .iter()
        .filter_map(|json| read_coco_file(json, diagnostics).map(|file| (json.clone(), file)))
        .collect();
    let classes = Classes::of(&parsed, diagnostics);
    let mut items = Vec::new();
    // An image named by two files (a train and a trainval JSON, say) loads once, from the first.
    let mut seen = BTreeMap::new();
    for (json, file) in &parsed {
        let mut images = FileImages::find(root, json, file, &mut seen, scan, diagnostics);
        for annotation in &file.annotations {
            images.add_annotation(json, annotation, &classes.index_of, diagnostics);
        }
        if let Some(said) = images.shared_files(json) {
            diagnostics.push(said);
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
    let bytes = read_or_note(json, "the file", read_file, diagnostics)?;
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

/// How category ids sort: whole numbers as numbers, other ids after them as text.
fn sort_key(id: &str) -> (i64, String) {
    (id.parse().unwrap_or(i64::MAX), id.to_string())
}

/// A category's name and the file that declares it.
type Declared = (String, PathBuf);

impl Classes {
    /// The union of every file's categories in sorted id order; when no file has categories, the
    /// category ids the annotations use, named by themselves. Categories of one name under
    /// several ids make one class, at the place of the first id (with a diagnostic).
    fn of(parsed: &[(PathBuf, CocoFile)], diagnostics: &mut Vec<Diagnostic>) -> Self {
        let mut categories = declared_categories(parsed, diagnostics);
        if parsed.iter().all(|(_, f)| f.categories.is_empty()) {
            for (json, file) in parsed {
                for annotation in &file.annotations {
                    let id = &annotation.category_id;
                    categories
                        .entry(sort_key(id))
                        .or_insert_with(|| (id.clone(), json.clone()));
                }
            }
        }
        let mut names = Vec::new();
        let mut index_of = BTreeMap::new();
        // Name → (class index, the first id of that name).
        let mut by_name: HashMap<String, (usize, String)> = HashMap::new();
        for ((_, id), (name, json)) in categories {
            if let Some((index, first_id)) = by_name.get(&name) {
                diagnostics.push(Diagnostic::new(
                    &json,
                    DiagnosticKind::Duplicate,
                    format!(
                        "categories {first_id} and {id} are both named {name}: their boxes make \
                         one class, {name}"
                    ),
                ));
                index_of.insert(id, *index);
                continue;
            }
            by_name.insert(name.clone(), (names.len(), id.clone()));
            index_of.insert(id, names.len());
            names.push(name);
        }
        Self { names, index_of }
    }
}

/// Every category the files declare, by sorted id. An id declared twice in one file, or under
/// two names in two files, keeps its first name, with a diagnostic.
fn declared_categories(
    parsed: &[(PathBuf, CocoFile)],
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeMap<(i64, String), Declared> {
    let mut categories: BTreeMap<(i64, String), Declared> = BTreeMap::new();
    for (json, file) in parsed {
        let mut in_this_file = BTreeSet::new();
        for category in &file.categories {
            let twice_in_file = !in_this_file.insert(sort_key(&category.id));
            match categories.entry(sort_key(&category.id)) {
                Entry::Vacant(slot) => {
                    slot.insert((category.name.clone(), json.clone()));
                }
                // The same category in a second file (train and val JSON) is no news.
                Entry::Occupied(first) if !twice_in_file && first.get().0 == category.name => {}
                Entry::Occupied(first) => {
                    let first_name = &first.get().0;
                    diagnostics.push(Diagnostic::new(
                        json,
                        DiagnosticKind::Duplicate,
                        format!(
                            "category id {} is declared twice ({first_name}, then {}): its boxes \
                             are of class {first_name}",
                            category.id, category.name
                        ),
                    ));
                }
            }
        }
    }
    categories
}

/// The images of one COCO file, in its order, waiting for their annotations.
struct FileImages<'a> {
    /// Image id → position in `slots`, and the file name given with the id.
    by_id: BTreeMap<&'a str, (usize, &'a str)>,
    /// `None` for an image that is missing or already loaded from another file: its
    /// annotations are dropped.
    slots: Vec<Option<PendingItem>>,
    /// The slots of image ids whose file an earlier image id took.
    shared: BTreeSet<usize>,
    /// The first of them, for the message: its id and file_name, and the earlier id and the
    /// COCO file that named the file first.
    first_shared: Option<(&'a str, &'a str, String, PathBuf)>,
    /// Boxes dropped with those image ids.
    shared_boxes: usize,
}

/// Who named an image file first: its COCO file and image id.
type FirstNamed = BTreeMap<PathBuf, (PathBuf, String)>;

impl<'a> FileImages<'a> {
    /// Finds every image `file` lists; a missing one, or one that leads outside the dataset, is
    /// noted, and one in `seen` is left out (and counted, see [`FileImages::shared_files`]). An
    /// image id given twice keeps its first image.
    fn find(
        root: &Path,
        json: &Path,
        file: &'a CocoFile,
        seen: &mut FirstNamed,
        scan: &Scan,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Self {
        let split = split_of_file(json);
        let bases = image_bases(root, json, scan);
        let mut images = FileImages {
            by_id: BTreeMap::new(),
            slots: Vec::with_capacity(file.images.len()),
            shared: BTreeSet::new(),
            first_shared: None,
            shared_boxes: 0,
        };
        for image in &file.images {
            if let Some(&(_, first)) = images.by_id.get(image.id.as_str()) {
                diagnostics.push(duplicate_image(json, image, first));
                continue;
            }
            let (kind, message) = match resolve_image(&bases, &image.file_name, scan) {
                Resolved::Inside(path) => {
                    let slot = match seen.get(&path) {
                        Some((first_json, first_id)) => {
                            images.shared.insert(images.slots.len());
                            images.first_shared.get_or_insert_with(|| {
                                let (id, name) = (image.id.as_str(), image.file_name.as_str());
                                (id, name, first_id.clone(), first_json.clone())
                            });
                            None
                        }
                        None => {
                            seen.insert(path.clone(), (json.to_path_buf(), image.id.clone()));
                            let mut item = PendingItem::new(path, split);
                            if let (Some(w), Some(h)) = (image.width, image.height) {
                                item.stated_size = Some((w, h, json.to_path_buf()));
                            }
                            Some(item)
                        }
                    };
                    images.add_slot(image, slot);
                    continue;
                }
                Resolved::Outside(target) => (
                    DiagnosticKind::OutsideDataset,
                    format!(
                        "image id {}: file_name leads outside the dataset ({} → {}); skipped",
                        image.id,
                        image.file_name,
                        target.display()
                    ),
                ),
                Resolved::Missing => (
                    DiagnosticKind::LabelWithoutImage,
                    format!(
                        "image id {}: {} not found beside the JSON or in an images/ folder",
                        image.id, image.file_name
                    ),
                ),
            };
            diagnostics.push(Diagnostic::new(json, kind, message));
            images.add_slot(image, None);
        }
        images
    }

    /// Records the slot of `image` (`None`: its annotations are dropped).
    fn add_slot(&mut self, image: &'a CocoImage, slot: Option<PendingItem>) {
        let entry = (self.slots.len(), image.file_name.as_str());
        self.by_id.insert(image.id.as_str(), entry);
        self.slots.push(slot);
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
        let Some(&(slot, _)) = self.by_id.get(annotation.image_id.as_str()) else {
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
            if self.shared.contains(&slot) {
                self.shared_boxes += 1;
            }
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

impl FileImages<'_> {
    /// One problem for every image id of `json` whose file an earlier image id already named
    /// (in this file or an earlier one), with their count and the boxes dropped with them: the
    /// file loads once, under its first id.
    fn shared_files(&self, json: &Path) -> Option<Diagnostic> {
        let (id, file_name, first_id, first_json) = self.first_shared.as_ref()?;
        let count = self.shared.len();
        let where_first = if first_json == json {
            String::new()
        } else {
            format!(" in {}", first_json.display())
        };
        let (ids, name, boxes) = (
            if count == 1 { "image id" } else { "image ids" },
            if count == 1 { "names" } else { "name" },
            if self.shared_boxes == 1 {
                "box"
            } else {
                "boxes"
            },
        );
        Some(Diagnostic::new(
            json,
            DiagnosticKind::Duplicate,
            format!(
                "{count} {ids} {name} an image file that an earlier image id names (the first: id {id} → {file_name}, named first by id {first_id}{where_first}): each file loads once, under its first id, and the {} {boxes} of the later ids are dropped",
                self.shared_boxes
            ),
        ))
    }
}

/// The diagnostic for a second image under the id of `first`: the first is kept, and it gets
/// the annotations of that id.
fn duplicate_image(json: &Path, image: &CocoImage, first: &str) -> Diagnostic {
    let id = &image.id;
    let message = if image.file_name == first {
        format!(
            "image id {id} is given twice ({first} both times): it loads once, with every \
             annotation of image id {id}"
        )
    } else {
        format!(
            "image id {id} is given twice ({first}, then {}): {} is left out and every \
             annotation of image id {id} goes to {first}",
            image.file_name, image.file_name
        )
    };
    Diagnostic::new(json, DiagnosticKind::Duplicate, message)
}

/// Folders where a COCO file's images may be: beside it, in `images/` beside it, and the same
/// one level up (for JSON kept in `annotations/`), plus their immediate subfolders
/// (`images/train2017/`).
fn image_bases(root: &Path, json: &Path, scan: &Scan) -> Vec<PathBuf> {
    let json_dir = json.parent().unwrap_or(root).to_path_buf();
    let mut bases = vec![json_dir.clone(), json_dir.join("images")];
    if json_dir != root {
        bases.push(root.to_path_buf());
        bases.push(root.join("images"));
    }
    let mut extra = Vec::new();
    for base in &bases {
        extra.extend(
            scan.dirs(base)
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

/// Where an image's `file_name` leads: the path as written (absolute, or below one of
/// `bases`), else its last component in one of `bases`. A path outside the dataset is taken
/// only to say so.
fn resolve_image(bases: &[PathBuf], file_name: &str, scan: &Scan) -> Resolved {
    let written = Path::new(file_name);
    let mut candidates = Vec::new();
    if written.is_absolute() {
        candidates.push(written.to_path_buf());
    }
    let base_name = written.file_name().map(Path::new);
    for base in bases {
        if !written.is_absolute() {
            candidates.push(base.join(written));
        }
        candidates.extend(base_name.map(|name| base.join(name)));
    }
    scan.resolve(candidates, Path::is_file)
}
