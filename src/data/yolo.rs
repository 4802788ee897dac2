//! The YOLO (Ultralytics) layout: `data.yaml` naming the split folders (or list files) and the
//! class names; one `labels/…/<stem>.txt` per image with `class cx cy w h` lines normalised to
//! 0–1. A missing or empty label file means an image with no object. The same folders without
//! `data.yaml` are read by [`super::yolo_folders`].

use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

use super::assemble::{
    drop_unknown_classes, Assignment, BoxGeometry, Loaded, PendingBox, PendingItem,
};
use super::diagnostics::{read_file, read_or_note, read_text, Diagnostic, DiagnosticKind};
use super::walk::{Resolved, Scan};

/// One parsed label line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct YoloLine {
    pub class_id: usize,
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
}

/// The largest |value| a YOLO coordinate may have: boxes overshoot the border, but a box ten
/// images wide is a damaged number.
const MAX_FRACTION: f32 = 10.0;

/// Parses one label line: `Ok(None)` for a blank line, `Err(reason)` for anything that is not
/// exactly a class index and four numbers of at most [`MAX_FRACTION`].
pub fn parse_line(line: &str) -> Result<Option<YoloLine>, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    if fields.is_empty() {
        return Ok(None);
    }
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 fields (class cx cy w h), found {}",
            fields.len()
        ));
    }
    let class_id = parse_class(fields[0])?;
    let mut values = [0.0f32; 4];
    for (value, (field, name)) in values
        .iter_mut()
        .zip(fields[1..].iter().zip(["cx", "cy", "w", "h"]))
    {
        *value = field
            .parse::<f32>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("{name} {field:?} is not a number"))?;
        if value.abs() > MAX_FRACTION {
            return Err(format!(
                "{name} {field} is not a fraction of the image size (YOLO coordinates lie between 0 and 1)"
            ));
        }
    }
    let [cx, cy, w, h] = values;
    Ok(Some(YoloLine {
        class_id,
        cx,
        cy,
        w,
        h,
    }))
}

/// A class index: a non-negative integer, also written as `3.0` by some exporters.
fn parse_class(field: &str) -> Result<usize, String> {
    if let Ok(id) = field.parse::<usize>() {
        return Ok(id);
    }
    match field.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1e9 => Ok(v as usize),
        _ => Err(format!("class {field:?} is not a non-negative integer")),
    }
}

/// Reads `data.yaml` at `yaml_path` and every image and label file it leads to.
pub(crate) fn load(yaml_path: &Path, scan: &Scan, diagnostics: &mut Vec<Diagnostic>) -> Loaded {
    let Some(data) = DataYaml::read(yaml_path, scan, diagnostics) else {
        return Loaded::default();
    };
    let declared_names = data.class_names(diagnostics);
    let mut images = Vec::new();
    for (key, split) in data.splits() {
        for entry in data.entries(key, diagnostics) {
            let found = data.images(key, &entry, scan, diagnostics);
            images.extend(found.into_iter().map(|image| (image, split)));
        }
    }
    let mut items = read_all_labels(images, scan, diagnostics);
    let class_names = match declared_names {
        Some(names) => {
            drop_unknown_classes(&mut items, names.len(), "data.yaml", diagnostics);
            names
        }
        None => names_from_labels(&items, ""),
    };
    Loaded { class_names, items }
}

/// Each image with the boxes of its label file. An image listed twice belongs to the split it
/// was first listed with. Stops early when loading is cancelled.
pub(crate) fn read_all_labels(
    images: Vec<(PathBuf, Assignment)>,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<PendingItem> {
    let mut seen = BTreeSet::new();
    let mut items = Vec::with_capacity(images.len());
    for (image, split) in images {
        if scan.cancelled() {
            break;
        }
        if seen.insert(image.clone()) {
            items.extend(read_labels(image, split, scan, diagnostics));
        }
    }
    items
}

/// A parsed `data.yaml`, with the folders its paths are relative to.
struct DataYaml {
    path: PathBuf,
    /// The raw text, for pointing diagnostics at a key's line.
    text: String,
    yaml: serde_yaml_ng::Value,
    /// The folder that holds data.yaml.
    dir: PathBuf,
    /// The folder the paths are relative to: `path:` when it names a folder inside the
    /// dataset, otherwise `dir`.
    root: PathBuf,
}

impl DataYaml {
    /// Reads and parses `path`; `None` (with a diagnostic) when it cannot be used.
    fn read(path: &Path, scan: &Scan, diagnostics: &mut Vec<Diagnostic>) -> Option<Self> {
        if !scan.admit(path) {
            return None;
        }
        let text = read_or_note(path, "the file", read_text, diagnostics)?;
        let yaml: serde_yaml_ng::Value = match serde_yaml_ng::from_str(&text) {
            Ok(yaml) => yaml,
            Err(e) => {
                diagnostics.push(Diagnostic {
                    path: path.to_path_buf(),
                    line: e.location().map(|l| l.line()),
                    kind: DiagnosticKind::MalformedLabel,
                    message: format!("not valid YAML: {e}"),
                });
                return None;
            }
        };
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut data = Self {
            path: path.to_path_buf(),
            text,
            yaml,
            root: dir.clone(),
            dir,
        };
        data.root = data.root_folder(scan, diagnostics);
        Some(data)
    }

    /// The folder `path:` names when it is one inside the dataset; otherwise, with a diagnostic,
    /// the folder that holds data.yaml.
    fn root_folder(&self, scan: &Scan, diagnostics: &mut Vec<Diagnostic>) -> PathBuf {
        let Some(path) = self.yaml.get("path").and_then(|v| v.as_str()) else {
            return self.dir.clone();
        };
        let named = self.dir.join(path);
        if !named.is_dir() {
            // A `path` written on another machine (often absolute) is common, and the folder
            // that holds data.yaml is then the one meant: a choice worth a note.
            diagnostics.push(self.at_key(
                "path",
                DiagnosticKind::Note,
                format!(
                    "`path: {path}` names {}, which does not exist here: the paths are read \
                     from the folder of data.yaml",
                    named.display()
                ),
            ));
            return self.dir.clone();
        }
        if let Some(target) = scan.outside(&named) {
            diagnostics.push(self.at_key(
                "path",
                DiagnosticKind::OutsideDataset,
                format!(
                    "`path: {path}` leads outside the dataset folder (→ {}): the paths are read \
                     from the folder of data.yaml instead",
                    target.display()
                ),
            ));
            return self.dir.clone();
        }
        named
    }

    /// A diagnostic pointing at the line where `key:` is written.
    fn at_key(&self, key: &str, kind: DiagnosticKind, message: String) -> Diagnostic {
        Diagnostic {
            path: self.path.clone(),
            line: key_line(&self.text, key),
            kind,
            message,
        }
    }

    /// The declared class names; `None` when `names` (and `nc`) are absent or unusable: names
    /// are then made from the labels.
    fn class_names(&self, diagnostics: &mut Vec<Diagnostic>) -> Option<Vec<String>> {
        match parse_names(&self.yaml) {
            Ok(names) => names,
            Err(reason) => {
                diagnostics.push(self.at_key("names", DiagnosticKind::MalformedLabel, reason));
                None
            }
        }
    }

    /// The keys that name images, with their split: `train`, and `val` (or else `test`) when
    /// present; without either, the seeded split shares out the `train` images.
    fn splits(&self) -> Vec<(&'static str, Assignment)> {
        let val_key = ["val", "test"]
            .into_iter()
            .find(|key| self.yaml.get(key).is_some());
        let train_split = if val_key.is_some() {
            Assignment::Train
        } else {
            Assignment::Unassigned
        };
        let mut splits = vec![("train", train_split)];
        if let Some(key) = val_key {
            splits.push((key, Assignment::Val));
        }
        splits
    }

    /// The paths `key` names: one path or a list of them.
    fn entries(&self, key: &str, diagnostics: &mut Vec<Diagnostic>) -> Vec<String> {
        match self.yaml.get(key) {
            Some(serde_yaml_ng::Value::String(s)) => vec![s.clone()],
            Some(serde_yaml_ng::Value::Sequence(seq)) => seq
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            Some(serde_yaml_ng::Value::Null) | None => {
                if key == "train" {
                    diagnostics.push(Diagnostic::new(
                        &self.path,
                        DiagnosticKind::MalformedLabel,
                        "data.yaml names no `train` images",
                    ));
                }
                Vec::new()
            }
            Some(_) => {
                diagnostics.push(self.at_key(
                    key,
                    DiagnosticKind::MalformedLabel,
                    format!("`{key}` must be a path or a list of paths"),
                ));
                Vec::new()
            }
        }
    }

    /// The images one entry of `key` leads to: every image below a folder, or those an image
    /// list names.
    fn images(
        &self,
        key: &str,
        entry: &str,
        scan: &Scan,
        diagnostics: &mut Vec<Diagnostic>,
    ) -> Vec<PathBuf> {
        let resolved = match resolve_entry(&self.root, &self.dir, entry, scan) {
            Resolved::Inside(resolved) => resolved,
            Resolved::Outside(target) => {
                diagnostics.push(self.at_key(
                    key,
                    DiagnosticKind::OutsideDataset,
                    format!(
                        "`{key}: {entry}` leads outside the dataset folder (→ {}); skipped",
                        target.display()
                    ),
                ));
                return Vec::new();
            }
            Resolved::Missing => {
                diagnostics.push(self.at_key(
                    key,
                    DiagnosticKind::MissingFolder,
                    format!(
                        "`{key}: {entry}` names {}, which does not exist",
                        self.root.join(entry).display()
                    ),
                ));
                return Vec::new();
            }
        };
        if resolved.is_dir() {
            report_labels_without_images(&resolved, scan, diagnostics);
            scan.images_recursive(&resolved)
        } else {
            read_image_list(&resolved, &self.root, scan, diagnostics)
        }
    }
}

/// Class names `{prefix}0`, `{prefix}1`, … up to the largest class id the labels use.
pub(crate) fn names_from_labels(items: &[PendingItem], prefix: &str) -> Vec<String> {
    let max_id = items
        .iter()
        .flat_map(|i| i.boxes.iter().map(|b| b.class_id))
        .max();
    (0..max_id.map_or(0, |m| m + 1))
        .map(|i| format!("{prefix}{i}"))
        .collect()
}

/// `text` without the byte-order mark that editors on Windows may start a file with.
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The class names of a names file (`classes.txt`, darknet `*.names`, `names.txt`): one per
/// line, blank lines skipped.
pub(crate) fn read_name_list(path: &Path) -> std::io::Result<Vec<String>> {
    let bytes = read_file(path)?;
    let text = String::from_utf8_lossy(&bytes);
    Ok(without_bom(&text)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect())
}

/// `names` as a list, or as a map from index to name (gaps filled with the index).
/// `Ok(None)` when neither `names` nor `nc` is given.
fn parse_names(yaml: &serde_yaml_ng::Value) -> Result<Option<Vec<String>>, String> {
    use serde_yaml_ng::Value;
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match yaml.get("names") {
        Some(Value::Sequence(seq)) => seq
            .iter()
            .map(|v| scalar(v).ok_or_else(|| "a class name in `names` is not text".to_string()))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(Value::Mapping(map)) => {
            let mut pairs = Vec::new();
            for (k, v) in map {
                let id = k
                    .as_u64()
                    .or_else(|| k.as_str().and_then(|s| s.trim().parse().ok()))
                    .filter(|&id| id < 100_000)
                    .ok_or_else(|| "`names` keys must be class indices 0, 1, 2, …".to_string())?;
                let name =
                    scalar(v).ok_or_else(|| format!("the name of class {id} is not text"))?;
                pairs.push((id as usize, name));
            }
            let count = pairs.iter().map(|(id, _)| id + 1).max().unwrap_or(0);
            let mut names: Vec<String> = (0..count).map(|i| i.to_string()).collect();
            for (id, name) in pairs {
                names[id] = name;
            }
            Ok(Some(names))
        }
        Some(_) => Err("`names` must be a list or a map from class index to name".to_string()),
        None => match yaml.get("nc").and_then(|v| v.as_u64()) {
            Some(nc) if nc < 100_000 => Ok(Some((0..nc).map(|i| i.to_string()).collect())),
            _ => Ok(None),
        },
    }
}

/// The 1-based line where `key:` starts a line, for pointing a diagnostic at it.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|line| {
            line.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })
        .map(|i| i + 1)
}

/// A `train`/`val` entry resolved against the dataset root; also tried against the folder of
/// data.yaml, and without a leading `../` (Roboflow exports write `../train/images`). A
/// candidate outside the dataset is taken only to say so.
fn resolve_entry(root: &Path, yaml_dir: &Path, entry: &str, scan: &Scan) -> Resolved {
    let mut candidates = vec![root.join(entry), yaml_dir.join(entry)];
    if let Some(stripped) = entry.strip_prefix("../") {
        candidates.push(root.join(stripped));
    }
    scan.resolve(candidates, Path::exists)
}

/// The images a `.txt` list names, one path per line (relative to the dataset root or to the
/// list's folder); a line that leads outside the dataset is reported and skipped.
fn read_image_list(
    list: &Path,
    root: &Path,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<PathBuf> {
    let Some(bytes) = read_or_note(list, "the image list", read_file, diagnostics) else {
        return Vec::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let list_dir = list.parent().unwrap_or(Path::new("."));
    let mut images = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let entry = line.trim();
        if entry.is_empty() {
            continue;
        }
        let (kind, message) =
            match scan.resolve([root.join(entry), list_dir.join(entry)], Path::is_file) {
                Resolved::Inside(path) => {
                    images.push(path);
                    continue;
                }
                Resolved::Outside(target) => (
                    DiagnosticKind::OutsideDataset,
                    format!(
                        "the listed image {entry} leads outside the dataset (→ {}); skipped",
                        target.display()
                    ),
                ),
                Resolved::Missing => (
                    DiagnosticKind::UnreadableImage,
                    format!("the listed image {entry} does not exist"),
                ),
            };
        diagnostics.push(Diagnostic::at_line(list, index + 1, kind, message));
    }
    images
}

/// Where Ultralytics looks for an image's labels: the last `images` folder in its path
/// replaced by `labels`, extension `.txt` (beside the image when there is no `images` folder).
pub(crate) fn label_path_for(image: &Path) -> PathBuf {
    let components: Vec<Component> = image.components().collect();
    let last_images = components.iter().rposition(|c| c.as_os_str() == "images");
    let mut path: PathBuf = components
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if Some(i) == last_images {
                std::ffi::OsStr::new("labels")
            } else {
                c.as_os_str()
            }
        })
        .collect();
    path.set_extension("txt");
    path
}

/// Reads the label file of `image` (none or empty: no object) into a pending item; `None` when
/// the label file leads outside the dataset (reported): its objects are then unknown, and
/// training on the image as empty would be wrong.
pub(crate) fn read_labels(
    image: PathBuf,
    split: Assignment,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<PendingItem> {
    let label_path = label_path_for(&image);
    if !scan.admit(&label_path) {
        return None;
    }
    let mut item = PendingItem::new(image, split);
    match read_file(&label_path) {
        Ok(bytes) => {
            item.boxes =
                parse_label_text(&String::from_utf8_lossy(&bytes), &label_path, diagnostics);
        }
        // No label file: an image without objects.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        // One that cannot be read hides objects: the image cannot count as empty.
        Err(e) => {
            diagnostics.push(Diagnostic::new(
                &label_path,
                DiagnosticKind::MalformedLabel,
                format!("cannot read the label file: {e}; its image is skipped"),
            ));
            return None;
        }
    }
    Some(item)
}

/// Every good line of a label file as a pending box; a bad line becomes a diagnostic and the
/// others still count.
pub(crate) fn parse_label_text(
    text: &str,
    label_path: &Path,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<PendingBox> {
    let mut boxes = Vec::new();
    for (index, line) in without_bom(text).lines().enumerate() {
        let line_number = index + 1;
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some(parsed)) => boxes.push(PendingBox {
                class_id: parsed.class_id,
                geometry: BoxGeometry::Normalized {
                    cx: parsed.cx,
                    cy: parsed.cy,
                    w: parsed.w,
                    h: parsed.h,
                },
                difficult: false,
                source: label_path.to_path_buf(),
                line: Some(line_number),
                label: format!("the box on line {line_number}"),
            }),
            Err(reason) => diagnostics.push(Diagnostic::at_line(
                label_path,
                line_number,
                DiagnosticKind::MalformedLabel,
                reason,
            )),
        }
    }
    boxes
}

/// Label files under the labels folder matching `images_dir` whose image does not exist.
pub(crate) fn report_labels_without_images(
    images_dir: &Path,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) {
    // Only a folder literally called `images` has a separate labels folder to check.
    let probe = label_path_for(&images_dir.join("probe.jpg"));
    let Some(labels_dir) = probe.parent() else {
        return;
    };
    if labels_dir == images_dir || !labels_dir.is_dir() {
        return;
    }
    let image_stems: BTreeSet<PathBuf> = scan
        .images_recursive(images_dir)
        .iter()
        .filter_map(|p| {
            p.strip_prefix(images_dir)
                .ok()
                .map(|r| r.with_extension(""))
        })
        .collect();
    for label in scan.files_recursive(labels_dir) {
        let is_txt = label
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("txt"));
        if !is_txt || label.file_name().is_some_and(|n| n == "classes.txt") {
            continue;
        }
        let Ok(relative) = label.strip_prefix(labels_dir) else {
            continue;
        };
        if !image_stems.contains(&relative.with_extension("")) {
            diagnostics.push(Diagnostic::new(
                &label,
                DiagnosticKind::LabelWithoutImage,
                format!(
                    "no image {} for this label file in {}",
                    relative.with_extension("*").display(),
                    images_dir.display()
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_sit_where_the_last_images_folder_is_replaced() {
        assert_eq!(
            label_path_for(Path::new("ds/images/train/images/a.JPG")),
            Path::new("ds/images/train/labels/a.txt")
        );
        assert_eq!(
            label_path_for(Path::new("flat/a.png")),
            Path::new("flat/a.txt")
        );
    }

    #[test]
    fn lines_parse_strictly() {
        let line = parse_line(" 2 0.5 0.25 0.1 0.2 ")
            .expect("valid")
            .expect("not blank");
        assert_eq!((line.class_id, line.cx, line.h), (2, 0.5, 0.2));
        assert_eq!(parse_line("   "), Ok(None));
        assert_eq!(
            parse_line("3.0 0 0 1 1")
                .expect("valid")
                .map(|l| l.class_id),
            Some(3)
        );
        assert!(parse_line("1.5 0 0 1 1").is_err());
        assert!(parse_line("0 nan 0 1 1").is_err());
        assert!(parse_line("0 0 0 1 1 1").is_err());
    }
}
