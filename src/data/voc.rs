//! The Pascal VOC layout: one XML file per image (`<size>`, `<object><name>`, `<difficult>`,
//! `<bndbox>` with 1-based pixel corners). Three arrangements are recognised:
//! the standard `Annotations/` + `JPEGImages/` + `ImageSets/Main/*.txt`; `annots/` beside an
//! `images/` folder; and XML beside each image, in the top folder or in split folders such as
//! `train/` and `test/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use super::assemble::{Assignment, BoxGeometry, Loaded, PendingBox, PendingItem};
use super::decode::file_name;
use super::diagnostics::{pixel_coordinate, read_file, read_or_note, Diagnostic, DiagnosticKind};
use super::walk::Scan;
use super::xml::{parse_tree, XmlNode};
use crate::geometry::Rect;

pub use super::xml::XmlError;

/// One `<object>` of an annotation.
#[derive(Clone, Debug, PartialEq)]
pub struct VocObject {
    pub name: String,
    pub difficult: bool,
    /// `<bndbox>` converted to continuous 0-based pixels: `(xmin − 1, ymin − 1, xmax, ymax)`.
    pub rect: Rect,
    /// 1-based line of the `<object>` tag.
    pub line: usize,
}

/// A parsed annotation file. Objects that cannot be understood are in `problems`; the others
/// are kept.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VocAnnotation {
    pub filename: Option<String>,
    /// `<size>` width and height, when both are present and numeric (possibly 0).
    pub size: Option<(u32, u32)>,
    pub objects: Vec<VocObject>,
    /// `(line, reason)` for each object left out.
    pub problems: Vec<(usize, String)>,
}

/// Parses one VOC annotation document.
pub fn parse_xml(text: &str) -> Result<VocAnnotation, XmlError> {
    let root = parse_tree(text)?;
    let Some(annotation) = root.children.first() else {
        return Err(XmlError {
            line: 1,
            message: "the document has no <annotation> element".to_string(),
        });
    };
    let mut parsed = VocAnnotation {
        filename: annotation
            .child("filename")
            .map(|n| n.text.trim().to_string())
            .filter(|s| !s.is_empty()),
        ..VocAnnotation::default()
    };
    if let Some(size) = annotation.child("size") {
        let dimension = |name| {
            size.child(name)
                .and_then(|n| parse_number(&n.text))
                .map(|v| v.max(0.0).min(u32::MAX as f64) as u32)
        };
        if let (Some(w), Some(h)) = (dimension("width"), dimension("height")) {
            parsed.size = Some((w, h));
        }
    }
    for (index, object) in annotation
        .children
        .iter()
        .filter(|c| c.name == "object")
        .enumerate()
    {
        match parse_object(object) {
            Ok((name, difficult, rect)) => parsed.objects.push(VocObject {
                name,
                difficult,
                rect,
                line: object.line,
            }),
            Err(reason) => parsed
                .problems
                .push((object.line, format!("object {}: {reason}", index + 1))),
        }
    }
    Ok(parsed)
}

fn parse_object(object: &XmlNode) -> Result<(String, bool, Rect), String> {
    let name = object
        .child("name")
        .map(|n| n.text.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or("it has no <name>")?;
    let difficult = object
        .child("difficult")
        .map(|n| matches!(n.text.trim(), "1" | "true" | "True"))
        .unwrap_or(false);
    let bndbox = object.child("bndbox").ok_or("it has no <bndbox>")?;
    let mut corners = [0.0f32; 4];
    for (value, name) in corners.iter_mut().zip(["xmin", "ymin", "xmax", "ymax"]) {
        let node = bndbox
            .child(name)
            .ok_or_else(|| format!("<bndbox> has no <{name}>"))?;
        let what = format!("<{name}> {:?}", node.text.trim());
        let number = parse_number(&node.text).ok_or_else(|| format!("{what} is not a number"))?;
        *value = pixel_coordinate(number, &what)?;
    }
    let [xmin, ymin, xmax, ymax] = corners;
    Ok((
        name,
        difficult,
        Rect::new(xmin - 1.0, ymin - 1.0, xmax, ymax),
    ))
}

fn parse_number(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Reads and parses one annotation file; `None` (with a diagnostic) when it cannot be used or
/// leads outside the dataset.
fn read_annotation(
    xml: &Path,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<VocAnnotation> {
    if !scan.admit(xml) {
        return None;
    }
    let bytes = read_or_note(xml, "the file", read_file, diagnostics)?;
    match parse_xml(&String::from_utf8_lossy(&bytes)) {
        Ok(annotation) => {
            for (line, reason) in &annotation.problems {
                diagnostics.push(Diagnostic::at_line(
                    xml,
                    *line,
                    DiagnosticKind::MalformedLabel,
                    reason.clone(),
                ));
            }
            Some(annotation)
        }
        Err(e) => {
            diagnostics.push(Diagnostic::at_line(
                xml,
                e.line,
                DiagnosticKind::MalformedLabel,
                e.message,
            ));
            None
        }
    }
}

/// An annotation waiting for class indices (known once every file is read).
struct Annotated {
    image: PathBuf,
    split: Assignment,
    xml: Option<(PathBuf, VocAnnotation)>,
}

/// Which VOC arrangement a folder uses, if any.
pub(crate) enum Arrangement {
    /// `Annotations/` + `JPEGImages/` (+ `ImageSets/Main/`).
    Standard,
    /// An XML folder beside an `images/` folder.
    SiblingFolders {
        xml_dir: PathBuf,
        image_dir: PathBuf,
    },
    /// XML beside the images in these folders.
    Beside(Vec<PathBuf>),
}

/// Finds a VOC arrangement in `root`; `allow_beside` is false when another layout claims the
/// folders that would hold XML beside images.
pub(crate) fn detect(root: &Path, allow_beside: bool, scan: &Scan) -> Option<Arrangement> {
    if root.join("Annotations").is_dir() {
        return Some(Arrangement::Standard);
    }
    for xml_name in ["annots", "annotations", "Annotations", "xml", "labels"] {
        let xml_dir = root.join(xml_name);
        if xml_dir.is_dir() && !list_xml(&xml_dir, scan).is_empty() {
            for image_name in ["images", "JPEGImages", "imgs"] {
                let image_dir = root.join(image_name);
                if image_dir.is_dir() {
                    return Some(Arrangement::SiblingFolders { xml_dir, image_dir });
                }
            }
        }
    }
    if !allow_beside {
        return None;
    }
    let folders: Vec<PathBuf> = std::iter::once(root.to_path_buf())
        .chain(scan.dirs(root))
        .filter(|dir| has_xml_beside_image(dir, scan))
        .collect();
    (!folders.is_empty()).then_some(Arrangement::Beside(folders))
}

/// The `.xml` files directly inside `dir`, sorted.
fn list_xml(dir: &Path, scan: &Scan) -> Vec<PathBuf> {
    let mut files = scan.files(dir);
    files.retain(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")));
    files
}

fn has_xml_beside_image(dir: &Path, scan: &Scan) -> bool {
    let stems: BTreeSet<_> = scan
        .images(dir)
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_owned()))
        .collect();
    list_xml(dir, scan)
        .iter()
        .any(|x| x.file_stem().is_some_and(|s| stems.contains(s)))
}

/// Assignment folder names, as `train/` and `test/` in many exported sets.
pub(crate) fn split_of_folder(name: &str) -> Assignment {
    match name.to_ascii_lowercase().as_str() {
        "train" | "training" => Assignment::Train,
        "val" | "valid" | "validation" | "test" | "testing" => Assignment::Val,
        _ => Assignment::Unassigned,
    }
}

/// Loads a VOC dataset; the class names are the sorted unique names found.
pub(crate) fn load(
    root: &Path,
    arrangement: Arrangement,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Loaded {
    let annotated = match arrangement {
        Arrangement::Standard => load_standard(root, scan, diagnostics),
        Arrangement::SiblingFolders { xml_dir, image_dir } => load_pairs(
            &xml_dir,
            &image_dir,
            Assignment::Unassigned,
            scan,
            diagnostics,
        ),
        Arrangement::Beside(folders) => {
            let mut all = Vec::new();
            for folder in folders {
                let split = if folder == root {
                    Assignment::Unassigned
                } else {
                    split_of_folder(&file_name(&folder))
                };
                all.extend(load_pairs(&folder, &folder, split, scan, diagnostics));
            }
            all
        }
    };
    finish(annotated, None)
}

/// Gives every object its class index. With `known_names`, objects of other classes are
/// dropped with a diagnostic; otherwise the names are the sorted unique names found.
pub(crate) fn finish_with_names(
    items: Vec<(PathBuf, Assignment, PathBuf, VocAnnotation)>,
    known_names: &[String],
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<PendingItem> {
    let annotated = items
        .into_iter()
        .map(|(image, split, xml, annotation)| Annotated {
            image,
            split,
            xml: Some((xml, annotation)),
        })
        .collect();
    finish(annotated, Some((known_names, diagnostics))).items
}

fn finish(annotated: Vec<Annotated>, known: Option<(&[String], &mut Vec<Diagnostic>)>) -> Loaded {
    let (class_names, mut diagnostics): (Vec<String>, Option<&mut Vec<Diagnostic>>) = match known {
        Some((names, diagnostics)) => (names.to_vec(), Some(diagnostics)),
        None => {
            let unique: BTreeSet<&str> = annotated
                .iter()
                .filter_map(|a| a.xml.as_ref())
                .flat_map(|(_, ann)| ann.objects.iter().map(|o| o.name.as_str()))
                .collect();
            (unique.into_iter().map(str::to_string).collect(), None)
        }
    };
    let index: BTreeMap<&str, usize> = class_names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), i))
        .collect();
    let mut items = Vec::with_capacity(annotated.len());
    for a in &annotated {
        let mut item = PendingItem::new(a.image.clone(), a.split);
        if let Some((xml, annotation)) = &a.xml {
            if let Some((w, h)) = annotation.size {
                item.stated_size = Some((w, h, xml.clone()));
            }
            for (number, object) in annotation.objects.iter().enumerate() {
                let Some(&class_id) = index.get(object.name.as_str()) else {
                    if let Some(diagnostics) = diagnostics.as_deref_mut() {
                        diagnostics.push(Diagnostic::at_line(
                            xml,
                            object.line,
                            DiagnosticKind::UnknownClass,
                            format!(
                                "object {} has class {:?}, which is not one of {}",
                                number + 1,
                                object.name,
                                class_names.join(", ")
                            ),
                        ));
                    }
                    continue;
                };
                item.boxes.push(PendingBox {
                    class_id,
                    geometry: BoxGeometry::Pixels(object.rect),
                    difficult: object.difficult,
                    source: xml.clone(),
                    line: Some(object.line),
                    label: format!("object {}", number + 1),
                });
            }
        }
        items.push(item);
    }
    Loaded { class_names, items }
}

/// The image an annotation describes: the same stem in `image_dir` first (the `<filename>` of
/// copied or renamed sets is often stale), then `<filename>`.
fn image_for(
    xml: &Path,
    annotation: &VocAnnotation,
    image_dir: &Path,
    scan: &Scan,
) -> Option<PathBuf> {
    let stem = xml.file_stem()?;
    let by_stem = list_images_with_stem(image_dir, stem, scan);
    by_stem.or_else(|| {
        let named = image_dir.join(Path::new(annotation.filename.as_deref()?).file_name()?);
        named.is_file().then_some(named)
    })
}

fn list_images_with_stem(dir: &Path, stem: &std::ffi::OsStr, scan: &Scan) -> Option<PathBuf> {
    super::decode::IMAGE_EXTENSIONS
        .iter()
        .flat_map(|ext| [ext.to_string(), ext.to_ascii_uppercase()])
        .map(|ext| dir.join(stem).with_extension(ext))
        .find(|p| p.is_file())
        .or_else(|| {
            scan.images(dir)
                .into_iter()
                .find(|p| p.file_stem() == Some(stem))
        })
}

/// Every XML in `xml_dir` with its image in `image_dir`, plus the images of `image_dir` with
/// no XML (images without objects). Stops early when loading is cancelled.
fn load_pairs(
    xml_dir: &Path,
    image_dir: &Path,
    split: Assignment,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Annotated> {
    let mut annotated = Vec::new();
    let mut used = BTreeSet::new();
    for xml in list_xml(xml_dir, scan) {
        if scan.cancelled() {
            break;
        }
        let Some(annotation) = read_annotation(&xml, scan, diagnostics) else {
            // The image's objects are unknown: leaving it out beats training on it as empty.
            if let Some(stem) = xml.file_stem() {
                if let Some(image) = list_images_with_stem(image_dir, stem, scan) {
                    used.insert(image);
                }
            }
            continue;
        };
        match image_for(&xml, &annotation, image_dir, scan) {
            Some(image) => {
                used.insert(image.clone());
                annotated.push(Annotated {
                    image,
                    split,
                    xml: Some((xml, annotation)),
                });
            }
            None => diagnostics.push(Diagnostic::new(
                &xml,
                DiagnosticKind::LabelWithoutImage,
                format!(
                    "no image {} for this annotation in {}",
                    annotation
                        .filename
                        .as_deref()
                        .unwrap_or("with the same name"),
                    image_dir.display()
                ),
            )),
        }
    }
    for image in scan.images(image_dir) {
        if !used.contains(&image) {
            annotated.push(Annotated {
                image,
                split,
                xml: None,
            });
        }
    }
    annotated
}

/// The standard VOC arrangement. With `ImageSets/Main/` split files only the listed ids load
/// (train ← train.txt or trainval.txt, val ← val.txt or test.txt); without them every
/// annotation loads and the seeded split decides.
fn load_standard(root: &Path, scan: &Scan, diagnostics: &mut Vec<Diagnostic>) -> Vec<Annotated> {
    let xml_dir = root.join("Annotations");
    let image_dir = root.join("JPEGImages");
    let lists = split_lists(&root.join("ImageSets").join("Main"), scan);
    if lists.is_empty() {
        return load_unlisted(&xml_dir, &image_dir, scan, diagnostics);
    }
    let mut annotated = Vec::new();
    for (list, split) in lists {
        annotated.extend(load_listed(
            &xml_dir,
            &image_dir,
            list,
            split,
            scan,
            diagnostics,
        ));
    }
    annotated
}

/// An `ImageSets/Main/` split file: the image ids it lists, each with its 1-based line.
struct IdList {
    path: PathBuf,
    ids: Vec<(usize, String)>,
}

/// Reads `sets_dir/name`; `None` when it does not exist, cannot be read, or leads outside the
/// dataset (reported).
fn read_id_list(sets_dir: &Path, name: &str, scan: &Scan) -> Option<IdList> {
    let path = sets_dir.join(name);
    if !scan.admit(&path) {
        return None;
    }
    let text = read_file(&path).ok()?;
    let ids = String::from_utf8_lossy(&text)
        .lines()
        .enumerate()
        .filter_map(|(i, l)| {
            l.split_whitespace()
                .next()
                .map(|id| (i + 1, id.to_string()))
        })
        .collect();
    Some(IdList { path, ids })
}

/// The split files present in `sets_dir`, each with the split it fills; empty when there are
/// none.
fn split_lists(sets_dir: &Path, scan: &Scan) -> Vec<(IdList, Assignment)> {
    let train = read_id_list(sets_dir, "train.txt", scan)
        .map(|t| (t, false))
        .or_else(|| read_id_list(sets_dir, "trainval.txt", scan).map(|t| (t, true)));
    let val = read_id_list(sets_dir, "val.txt", scan)
        .or_else(|| read_id_list(sets_dir, "test.txt", scan));
    let val_ids: BTreeSet<String> = val
        .iter()
        .flat_map(|list| list.ids.iter().map(|(_, id)| id.clone()))
        .collect();
    let mut lists = Vec::new();
    if let Some((mut list, is_trainval)) = train {
        // trainval.txt also holds the validation ids: keep them out of train.
        list.ids
            .retain(|(_, id)| !(is_trainval && val_ids.contains(id)));
        lists.push((list, Assignment::Train));
    }
    if let Some(list) = val {
        lists.push((list, Assignment::Val));
    }
    lists
}

/// Without split files: every annotation in `xml_dir` with its image; images with no XML are
/// left out.
fn load_unlisted(
    xml_dir: &Path,
    image_dir: &Path,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Annotated> {
    if !image_dir.is_dir() {
        diagnostics.push(Diagnostic::new(
            image_dir,
            DiagnosticKind::MissingFolder,
            "the VOC layout needs a JPEGImages folder beside Annotations",
        ));
    }
    load_pairs(
        xml_dir,
        image_dir,
        Assignment::Unassigned,
        scan,
        diagnostics,
    )
    .into_iter()
    .filter(|a| a.xml.is_some())
    .collect()
}

/// The images a split file lists, with their annotations. An id with no XML is an image with
/// no object; an id whose XML cannot be read, or that leads outside the dataset, is skipped.
fn load_listed(
    xml_dir: &Path,
    image_dir: &Path,
    list: IdList,
    split: Assignment,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<Annotated> {
    let mut annotated = Vec::new();
    for (line, id) in list.ids {
        if scan.cancelled() {
            break;
        }
        let xml = xml_dir.join(format!("{id}.xml"));
        let annotation = if !xml.is_file() {
            None
        } else if leads_outside(&list.path, line, &id, &xml, scan, diagnostics) {
            continue;
        } else {
            match read_annotation(&xml, scan, diagnostics) {
                Some(annotation) => Some(annotation),
                None => continue,
            }
        };
        let image = match &annotation {
            Some(annotation) => image_for(&xml, annotation, image_dir, scan),
            None => list_images_with_stem(image_dir, std::ffi::OsStr::new(&id), scan),
        };
        match image {
            Some(image) if leads_outside(&list.path, line, &id, &image, scan, diagnostics) => {}
            Some(image) => annotated.push(Annotated {
                image,
                split,
                xml: annotation.map(|a| (xml, a)),
            }),
            None => diagnostics.push(Diagnostic::at_line(
                &list.path,
                line,
                if annotation.is_some() {
                    DiagnosticKind::LabelWithoutImage
                } else {
                    DiagnosticKind::UnreadableImage
                },
                format!("no image for id {id} in {}", image_dir.display()),
            )),
        }
    }
    annotated
}

/// Whether `path`, made from the id on `line` of a split file, leads outside the dataset (an id
/// such as `../../x`, or a symbolic link); says so when it does.
fn leads_outside(
    list: &Path,
    line: usize,
    id: &str,
    path: &Path,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> bool {
    let Some(target) = scan.outside(path) else {
        return false;
    };
    let plain_name = Path::new(id)
        .components()
        .all(|c| matches!(c, Component::Normal(_)));
    if plain_name {
        // Only a symbolic link takes a plain name outside: the link is reported, once.
        scan.admit(path);
        return true;
    }
    diagnostics.push(Diagnostic::at_line(
        list,
        line,
        DiagnosticKind::OutsideDataset,
        format!(
            "id {id} leads outside the dataset (→ {}); skipped",
            target.display()
        ),
    ));
    true
}

/// Reads XML beside `image` (same stem), for layouts that accept VOC annotations in a folder.
pub(crate) fn read_beside(
    image: &Path,
    scan: &Scan,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Result<(PathBuf, VocAnnotation), ()>> {
    let xml = image.with_extension("xml");
    if !xml.is_file() {
        return None;
    }
    Some(
        read_annotation(&xml, scan, diagnostics)
            .map(|a| (xml, a))
            .ok_or(()),
    )
}
