//! Every kind of bad input becomes a diagnostic pointing at its file (and line), and the good
//! items around it still load.

mod common;

use std::path::Path;

use common::*;
use image::{GrayImage, ImageBuffer, Luma, Rgb, Rgba, RgbaImage};
use ohem_studio::data::{
    decode_image, load_dataset, DatasetError, Diagnostic, DiagnosticKind, LoadOptions,
};
use proptest::prelude::*;

/// A YOLO dataset with two good training images (`good1`, `good2`, one box each) and no val.
fn yolo_root(root: &Path) {
    write_text(
        root,
        "data.yaml",
        "train: images/train\nval: images/val\nnames: [a, b]\n",
    );
    std::fs::create_dir_all(root.join("images/val")).expect("val folder");
    for name in ["good1", "good2"] {
        write_image(root, &format!("images/train/{name}.png"), 100, 50);
        write_text(
            root,
            &format!("labels/train/{name}.txt"),
            "0 0.5 0.5 0.2 0.2\n",
        );
    }
}

fn load(root: &Path) -> (ohem_studio::data::Dataset, Vec<Diagnostic>) {
    load_dataset(root, &LoadOptions::default()).expect("the good items load")
}

fn only(diagnostics: &[Diagnostic], kind: DiagnosticKind) -> &Diagnostic {
    let matching: Vec<&Diagnostic> = diagnostics.iter().filter(|d| d.kind == kind).collect();
    assert_eq!(
        matching.len(),
        1,
        "one {kind:?} expected in {diagnostics:#?}"
    );
    matching[0]
}

#[test]
fn corrupt_image_is_skipped_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    write_bytes(
        dir.path(),
        "images/train/broken.jpg",
        b"this is not an image at all",
    );
    let (dataset, diagnostics) = load(dir.path());
    assert_eq!(dataset.train.len(), 2);
    let d = only(&diagnostics, DiagnosticKind::UnreadableImage);
    assert!(d.path.ends_with("images/train/broken.jpg"));
    assert_eq!(diagnostics.len(), 1);
}

#[test]
fn truncated_jpeg_is_skipped_and_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    let jpeg = jpeg_bytes(128, 128);
    write_bytes(dir.path(), "images/train/cut.jpg", &jpeg[..jpeg.len() / 2]);
    let (dataset, diagnostics) = load(dir.path());
    assert_eq!(dataset.train.len(), 2);
    let d = only(&diagnostics, DiagnosticKind::UnreadableImage);
    assert!(d.path.ends_with("cut.jpg"));
    assert!(d.message.contains("truncated"), "{d}");
}

#[test]
fn malformed_label_lines_are_reported_and_the_good_lines_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    write_image(dir.path(), "images/train/mixed.png", 100, 50);
    write_text(
        dir.path(),
        "labels/train/mixed.txt",
        "0 0.5 0.5 0.2 0.2\n0 0.5 0.5\n1 0.1 0.1 0.1 0.1 0.9\n1 0.3 x 0.1 0.1\n-1 0.5 0.5 0.1 0.1\n1 0.8 0.8 0.1 0.1\n",
    );
    let (dataset, diagnostics) = load(dir.path());
    let mixed = dataset
        .train
        .iter()
        .find(|r| r.path.ends_with("mixed.png"))
        .expect("kept");
    assert_eq!(mixed.boxes.len(), 2);
    let lines: Vec<Option<usize>> = diagnostics.iter().map(|d| d.line).collect();
    assert_eq!(lines, [Some(2), Some(3), Some(4), Some(5)]);
    assert!(diagnostics
        .iter()
        .all(|d| d.kind == DiagnosticKind::MalformedLabel
            && d.path.ends_with("labels/train/mixed.txt")));
    let shown = diagnostics[0].to_string();
    assert!(shown.contains("mixed.txt:2: "), "{shown}");
}

#[test]
fn boxes_outside_or_without_area_are_dropped_and_partial_ones_clipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    write_image(dir.path(), "images/train/edges.png", 100, 50);
    write_text(
        dir.path(),
        "labels/train/edges.txt",
        "0 1.5 1.5 0.2 0.2\n0 0.5 0.5 0 0.1\n0 0.95 0.5 0.2 0.2\n",
    );
    let (dataset, diagnostics) = load(dir.path());
    let edges = dataset
        .train
        .iter()
        .find(|r| r.path.ends_with("edges.png"))
        .expect("kept");
    assert_eq!(edges.boxes.len(), 1);
    assert_rect(edges.boxes[0].rect, [85.0, 20.0, 100.0, 30.0]);
    let outside = only(&diagnostics, DiagnosticKind::BoxOutsideImage);
    assert_eq!(outside.line, Some(1));
    assert!(
        outside.message.contains("outside the 100×50 image"),
        "{outside}"
    );
    assert_eq!(only(&diagnostics, DiagnosticKind::EmptyBox).line, Some(2));
    assert_eq!(diagnostics.len(), 2);
}

#[test]
fn unknown_class_ids_are_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    write_text(
        dir.path(),
        "labels/train/good2.txt",
        "0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n",
    );
    let (dataset, diagnostics) = load(dir.path());
    let good2 = dataset
        .train
        .iter()
        .find(|r| r.path.ends_with("good2.png"))
        .expect("kept");
    assert_eq!(good2.boxes.len(), 1);
    let d = only(&diagnostics, DiagnosticKind::UnknownClass);
    assert_eq!(d.line, Some(2));
    assert!(d.path.ends_with("labels/train/good2.txt"));
}

#[test]
fn label_without_image_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    write_text(dir.path(), "labels/train/ghost.txt", "0 0.5 0.5 0.2 0.2\n");
    let (dataset, diagnostics) = load(dir.path());
    assert_eq!(dataset.train.len(), 2);
    assert!(only(&diagnostics, DiagnosticKind::LabelWithoutImage)
        .path
        .ends_with("labels/train/ghost.txt"));
}

#[test]
fn a_folder_named_in_data_yaml_that_is_missing_is_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    write_text(
        dir.path(),
        "data.yaml",
        "train: images/train\nval: images/nowhere\nnames: [a, b]\n",
    );
    let (dataset, diagnostics) = load(dir.path());
    assert_eq!(dataset.train.len(), 2);
    let d = only(&diagnostics, DiagnosticKind::MissingFolder);
    assert!(d.path.ends_with("data.yaml"));
    assert_eq!(d.line, Some(2));
    assert!(d.message.contains("images/nowhere"), "{d}");
}

#[test]
fn a_missing_dataset_folder_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-dataset");
    let error = load_dataset(&missing, &LoadOptions::default()).expect_err("nothing to load");
    assert!(matches!(error, DatasetError::MissingFolder(_)));
    let message = error.to_string();
    assert!(
        message.contains("no-such-dataset") && message.contains("does not exist"),
        "{message}"
    );

    let file = write_text(dir.path(), "file.txt", "hello");
    let error = load_dataset(&file, &LoadOptions::default()).expect_err("not a folder");
    assert!(matches!(error, DatasetError::NotAFolder(_)), "{error}");
}

#[test]
fn an_unknown_layout_says_what_was_looked_for() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_text(dir.path(), "notes.txt", "nothing here");
    write_image(dir.path(), "some/picture.png", 10, 10);
    let error = load_dataset(dir.path(), &LoadOptions::default()).expect_err("unknown");
    assert!(matches!(error, DatasetError::UnknownLayout { .. }));
    let message = error.to_string();
    for looked_for in ["data.yaml", "Annotations", "COCO", "pos/"] {
        assert!(message.contains(looked_for), "{message}");
    }
}

#[test]
fn a_dataset_without_a_usable_image_is_an_error_with_its_diagnostics() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_text(dir.path(), "data.yaml", "train: images/train\nnames: [a]\n");
    write_bytes(dir.path(), "images/train/broken.png", b"\x89PNG garbage");
    let error = load_dataset(dir.path(), &LoadOptions::default()).expect_err("empty");
    match &error {
        DatasetError::Empty { diagnostics, .. } => {
            assert_eq!(diagnostics.len(), 1);
            assert_eq!(diagnostics[0].kind, DiagnosticKind::UnreadableImage);
        }
        other => panic!("expected Empty, got {other}"),
    }
    assert!(error.to_string().contains("1 problem"), "{error}");
}

#[test]
fn images_over_the_pixel_limit_are_refused_before_decoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    write_image(dir.path(), "images/train/huge.png", 300, 300);
    let options = LoadOptions {
        max_pixels: 10_000,
        ..LoadOptions::default()
    };
    let (dataset, diagnostics) = load_dataset(dir.path(), &options).expect("loads");
    assert_eq!(dataset.train.len(), 2);
    let d = only(&diagnostics, DiagnosticKind::ImageTooLarge);
    assert!(d.path.ends_with("huge.png"));
    assert!(
        d.message.contains("10000") && d.message.contains("300×300"),
        "{d}"
    );
}

#[test]
fn voc_size_that_disagrees_with_the_image_is_a_warning() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_image(dir.path(), "images/a.jpg", 40, 30);
    write_text(
        dir.path(),
        "annots/a.xml",
        "<annotation><size><width>10</width><height>10</height></size>\
         <object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object>\
         </annotation>",
    );
    let (dataset, diagnostics) = load(dir.path());
    assert_eq!((dataset.train.len() + dataset.val.len()), 1);
    let d = only(&diagnostics, DiagnosticKind::SizeMismatch);
    assert!(
        d.is_warning() && d.message.contains("10×10") && d.message.contains("40×30"),
        "{d}"
    );
    let record = dataset
        .train
        .iter()
        .chain(&dataset.val)
        .next()
        .expect("record");
    assert_eq!((record.width, record.height), (40, 30));
}

#[test]
fn voc_bad_objects_and_bad_files_point_at_their_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["a", "b", "c"] {
        write_image(dir.path(), &format!("images/{name}.png"), 40, 30);
    }
    write_text(
        dir.path(),
        "annots/a.xml",
        "<annotation>\n<object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object>\n\
         <object><name>x</name></object>\n\
         <object><name>x</name><bndbox><xmin>one</xmin><ymin>1</ymin><xmax>20</xmax><ymax>20</ymax></bndbox></object>\n\
         </annotation>\n",
    );
    write_text(
        dir.path(),
        "annots/b.xml",
        "<annotation>\n<object>\n<name>x</name>\n</annotation>\n",
    );
    write_text(dir.path(), "annots/c.xml", "<annotation></annotation>");
    write_text(
        dir.path(),
        "annots/orphan.xml",
        "<annotation><filename>orphan.jpg</filename></annotation>",
    );
    let (dataset, diagnostics) = load(dir.path());
    let loaded = names(
        &dataset
            .train
            .iter()
            .chain(&dataset.val)
            .cloned()
            .collect::<Vec<_>>(),
    );
    assert_eq!(
        loaded,
        ["a.png", "c.png"],
        "an unreadable annotation leaves its image out"
    );
    let a = dataset
        .train
        .iter()
        .chain(&dataset.val)
        .find(|r| r.path.ends_with("a.png"))
        .expect("a");
    assert_eq!(a.boxes.len(), 1);
    let malformed: Vec<(String, Option<usize>)> = diagnostics
        .iter()
        .filter(|d| d.kind == DiagnosticKind::MalformedLabel)
        .map(|d| {
            (
                d.path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                d.line,
            )
        })
        .collect();
    assert_eq!(
        malformed,
        [
            ("a.xml".to_string(), Some(3)),
            ("a.xml".to_string(), Some(4)),
            ("b.xml".to_string(), Some(4))
        ]
    );
    assert!(only(&diagnostics, DiagnosticKind::LabelWithoutImage)
        .path
        .ends_with("orphan.xml"));
}

#[test]
fn coco_bad_entries_are_reported_one_by_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_image(dir.path(), "images/a.jpg", 50, 50);
    write_text(
        dir.path(),
        "annotations.json",
        r#"{"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "gone.jpg"}],
            "annotations": [
              {"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
              {"image_id": 1, "category_id": 9, "bbox": [1, 1, 10, 10]},
              {"image_id": 1, "category_id": 1, "bbox": [1, 1, 0, 10]},
              {"image_id": 1, "category_id": 1, "bbox": [1, 1]},
              {"image_id": 5, "category_id": 1, "bbox": [1, 1, 10, 10]}
            ],
            "categories": [{"id": 1, "name": "thing"}]}"#,
    );
    let (dataset, diagnostics) = load(dir.path());
    let a = dataset.train.iter().chain(&dataset.val).next().expect("a");
    assert_eq!(a.boxes.len(), 1);
    let mut kinds: Vec<DiagnosticKind> = diagnostics.iter().map(|d| d.kind).collect();
    kinds.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(
        kinds,
        [
            DiagnosticKind::EmptyBox,
            DiagnosticKind::LabelWithoutImage,
            DiagnosticKind::MalformedLabel,
            DiagnosticKind::MalformedLabel,
            DiagnosticKind::UnknownClass,
        ]
    );
}

#[test]
fn malformed_json_reports_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_image(dir.path(), "images/a.jpg", 50, 50);
    write_text(
        dir.path(),
        "annotations.json",
        "{\"images\": [],\n\"annotations\": [,]\n}",
    );
    let error = load_dataset(dir.path(), &LoadOptions::default()).expect_err("nothing usable");
    let DatasetError::Empty { diagnostics, .. } = error else {
        panic!("expected Empty");
    };
    assert_eq!(diagnostics[0].kind, DiagnosticKind::MalformedLabel);
    assert_eq!(diagnostics[0].line, Some(2));
}

#[test]
fn png_named_jpg_and_every_colour_type_load_as_rgb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_text(root, "data.yaml", "train: images\nnames: [a]\n");
    write_bytes(root, "images/png_named.jpg", &png_bytes(30, 20));
    GrayImage::from_pixel(30, 20, Luma([77]))
        .save(root.join("images/gray.png"))
        .expect("gray");
    ImageBuffer::<Luma<u16>, Vec<u16>>::from_pixel(30, 20, Luma([40_000]))
        .save(root.join("images/gray16.png"))
        .expect("gray16");
    ImageBuffer::<Rgb<u16>, Vec<u16>>::from_pixel(30, 20, Rgb([65_535, 0, 32_768]))
        .save(root.join("images/rgb16.png"))
        .expect("rgb16");
    RgbaImage::from_pixel(30, 20, Rgba([10, 200, 30, 128]))
        .save(root.join("images/rgba.png"))
        .expect("rgba");
    write_bytes(root, "images/palette.png", &palette_png_bytes(30, 20));
    write_image(root, "images/tiff.TIFF", 30, 20);
    write_image(root, "images/anim.gif", 30, 20);

    let options = LoadOptions {
        val_fraction: 0.0,
        ..LoadOptions::default()
    };
    let (dataset, diagnostics) = load_dataset(root, &options).expect("loads");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(dataset.train.len(), 8);
    for record in &dataset.train {
        assert_eq!(
            (record.width, record.height),
            (30, 20),
            "{}",
            record.path.display()
        );
        assert_eq!(record.pixels.dimensions(), (30, 20));
    }
    let pixel = |name: &str| {
        let record = dataset
            .train
            .iter()
            .find(|r| r.path.ends_with(name))
            .expect(name);
        *record.pixels.get_pixel(0, 0)
    };
    assert_eq!(pixel("gray.png"), Rgb([77, 77, 77]));
    assert_eq!(pixel("rgb16.png").0[0], 255);
    assert_eq!(pixel("palette.png"), Rgb([255, 0, 0]));
    assert_eq!(pixel("palette.png").0.len(), 3);
}

#[test]
fn decode_image_downscales_and_reports_original_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_image(dir.path(), "wide.png", 300, 100);
    let options = LoadOptions {
        max_side_px: 150,
        ..LoadOptions::default()
    };
    let (pixels, width, height) = decode_image(&path, &options).expect("decodes");
    assert_eq!((width, height), (300, 100));
    assert_eq!(pixels.dimensions(), (150, 50));
    let listed = ohem_studio::data::list_images(dir.path());
    assert_eq!(listed, [path]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn yolo_line_parser_never_panics(line in "[0-9 .eE+\\-naifNI\t]{0,40}", bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = ohem_studio::data::yolo::parse_line(&line);
        let _ = ohem_studio::data::yolo::parse_line(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn voc_xml_parser_never_panics(
        parts in proptest::collection::vec(
            "(<annotation>|</annotation>|<object>|</object>|<name>|</name>|<bndbox>|</bndbox>|<xmin>|</xmin>|<ymax>|</ymax>|<size>|<width>|</width>|<height>|</height>|</size>|<difficult>|</difficult>|[0-9.\\-]{1,4}|&amp;|&#x41;|&bogus;|<!\\[CDATA\\[1\\]\\]>|<!-- c -->|<x/>|\n)",
            0..40,
        ),
        bytes in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let _ = ohem_studio::data::voc::parse_xml(&parts.concat());
        let _ = ohem_studio::data::voc::parse_xml(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn coco_json_parser_never_panics(
        parts in proptest::collection::vec(
            "(\\{|\\}|\\[|\\]|,|:|\"images\"|\"annotations\"|\"categories\"|\"id\"|\"image_id\"|\"category_id\"|\"bbox\"|\"file_name\"|\"iscrowd\"|\"name\"|\"a.jpg\"|-?[0-9]{1,3}(\\.[0-9])?|1e999|null|true)",
            0..60,
        ),
        bytes in proptest::collection::vec(any::<u8>(), 0..128),
    ) {
        let _ = ohem_studio::data::coco::parse_json(&parts.concat());
        let _ = ohem_studio::data::coco::parse_json(&String::from_utf8_lossy(&bytes));
    }
}

// Nothing outside the dataset folder is read, and no walk goes on forever.

#[cfg(unix)]
fn symlink(target: impl AsRef<Path>, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("symlink");
}

/// Images, images without objects and boxes of each split.
fn counts(dataset: &ohem_studio::data::Dataset) -> [(usize, usize, usize); 2] {
    let summary = ohem_studio::data::summary(dataset);
    [&summary.train, &summary.val].map(|s| (s.images, s.negative_images, s.boxes))
}

/// `images/` + `labels/` without data.yaml: two labelled training images, one validation image.
fn yolo_folders_root(root: &Path) {
    for (split, name) in [("train", "a"), ("train", "b"), ("val", "c")] {
        write_image(root, &format!("images/{split}/{name}.png"), 60, 40);
        write_text(
            root,
            &format!("labels/{split}/{name}.txt"),
            "0 0.5 0.5 0.2 0.2\n",
        );
    }
}

/// The diagnostics of `kind`, as `path: message` with paths relative to `root`, sorted.
fn reported(diagnostics: &[Diagnostic], kind: DiagnosticKind, root: &Path) -> Vec<String> {
    let mut reported: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.kind == kind)
        .map(|d| {
            let path = d.path.strip_prefix(root).unwrap_or(&d.path);
            format!("{}: {}", path.display(), d.message)
        })
        .collect();
    reported.sort();
    reported
}

#[cfg(unix)]
#[test]
fn a_symbolic_link_loop_is_cut_and_reported_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    yolo_folders_root(root);
    let (without_loop, _) = load(root);
    symlink("..", &root.join("images/train/loop"));
    let (with_loop, diagnostics) = load(root);
    assert_eq!(counts(&with_loop), counts(&without_loop));
    assert_eq!(counts(&with_loop), [(2, 0, 2), (1, 0, 1)]);
    assert_eq!(
        reported(&diagnostics, DiagnosticKind::Symlink, root),
        ["images/train/loop: symbolic link makes a cycle (→ ..)"]
    );
    assert!(diagnostics
        .iter()
        .all(|d| d.is_note() || d.kind == DiagnosticKind::Symlink));
}

#[cfg(unix)]
#[test]
fn symbolic_links_out_of_the_dataset_are_not_followed() {
    let outside = tempfile::tempdir().expect("tempdir");
    write_image(outside.path(), "secret.png", 20, 20);
    write_image(outside.path(), "more/x.png", 20, 20);
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    yolo_root(root);
    symlink("/", &root.join("images/train/everything"));
    symlink(outside.path(), &root.join("images/train/elsewhere"));
    symlink(
        outside.path().join("secret.png"),
        &root.join("images/train/secret.png"),
    );
    let started = std::time::Instant::now();
    let (dataset, diagnostics) = load(root);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(dataset.train.len(), 2);
    let outside_path = outside.path().display();
    assert_eq!(
        reported(&diagnostics, DiagnosticKind::Symlink, root),
        [
            format!("images/train/elsewhere: symbolic link leads outside the dataset (→ {outside_path})"),
            "images/train/everything: symbolic link leads outside the dataset (→ /)".to_string(),
            format!("images/train/secret.png: symbolic link leads outside the dataset (→ {outside_path}/secret.png)"),
        ]
    );
    assert_eq!(diagnostics.len(), 3, "{diagnostics:#?}");
}

#[cfg(unix)]
#[test]
fn a_label_file_that_leads_outside_is_not_read_and_its_image_left_out() {
    let outside = tempfile::tempdir().expect("tempdir");
    let secret = write_text(outside.path(), "secret.txt", "0 0.5 0.5 0.2 0.2\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    yolo_root(root);
    std::fs::remove_file(root.join("labels/train/good2.txt")).expect("remove");
    symlink(&secret, &root.join("labels/train/good2.txt"));
    let (dataset, diagnostics) = load(root);
    assert_eq!(names(&dataset.train), ["good1.png"]);
    assert_eq!(
        reported(&diagnostics, DiagnosticKind::Symlink, root),
        [format!(
            "labels/train/good2.txt: symbolic link leads outside the dataset (→ {})",
            secret.display()
        )]
    );
}

#[cfg(unix)]
#[test]
fn a_file_reached_twice_through_a_link_loads_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    yolo_root(root);
    symlink("good1.png", &root.join("images/train/same.png"));
    let (dataset, diagnostics) = load(root);
    assert_eq!(names(&dataset.train), ["good1.png", "good2.png"]);
    let expected = format!(
        "images/train/same.png: the same file as {}: it loads once, as that file",
        root.join("images/train/good1.png").display()
    );
    assert_eq!(
        reported(&diagnostics, DiagnosticKind::Duplicate, root),
        [expected]
    );
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
}

#[test]
fn the_walk_stops_at_the_scan_limit_and_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    yolo_root(root);
    for i in 0..20 {
        write_image(root, &format!("images/train/more{i}.png"), 20, 20);
    }
    let options = LoadOptions {
        max_files_scanned: 5,
        ..LoadOptions::default()
    };
    let (dataset, diagnostics) = load_dataset(root, &options).expect("what was found loads");
    assert!(
        (1..=5).contains(&dataset.train.len()),
        "{}",
        dataset.train.len()
    );
    let d = only(&diagnostics, DiagnosticKind::ScanLimit);
    assert_eq!(d.path, root);
    assert_eq!(
        d.message,
        "stopped after scanning 5 files: is this the dataset folder?"
    );
    assert_eq!(diagnostics[0], *d, "the walk's problems come first");
}

#[test]
fn a_cancelled_load_stops_with_the_cancelled_error() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    let options = LoadOptions {
        cancel: Some(Arc::new(AtomicBool::new(true))),
        ..LoadOptions::default()
    };
    let error = load_dataset(dir.path(), &options).expect_err("cancelled");
    assert!(matches!(error, DatasetError::Cancelled), "{error:?}");
    assert_eq!(error.to_string(), "loading cancelled");
    assert_eq!(error.to_string(), ohem_studio::data::LOADING_CANCELLED);
}

/// A COCO set in `root`: `annotations.json` as given, and images `a.png`, `b.png`, `c.png`.
fn coco_root(root: &Path, json: &str) {
    for name in ["a", "b", "c"] {
        write_image(root, &format!("images/{name}.png"), 40, 30);
    }
    write_text(root, "annotations.json", json);
}

fn all_images(dataset: &ohem_studio::data::Dataset) -> Vec<&ohem_studio::data::ImageRecord> {
    let mut all: Vec<_> = dataset.train.iter().chain(&dataset.val).collect();
    all.sort_by(|a, b| a.path.cmp(&b.path));
    all
}

#[test]
fn coco_image_id_given_twice_keeps_the_first_image_and_its_boxes() {
    let dir = tempfile::tempdir().expect("tempdir");
    coco_root(
        dir.path(),
        r#"{"images": [{"id": 1, "file_name": "a.png"}, {"id": 1, "file_name": "b.png"},
                       {"id": 2, "file_name": "c.png"}],
            "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
                            {"image_id": 1, "category_id": 1, "bbox": [5, 5, 10, 10]}],
            "categories": [{"id": 1, "name": "car"}]}"#,
    );
    let (dataset, diagnostics) = load(dir.path());
    let all = all_images(&dataset);
    let boxes: Vec<usize> = all.iter().map(|r| r.boxes.len()).collect();
    let all: Vec<_> = all.into_iter().cloned().collect();
    assert_eq!(names(&all), ["a.png", "c.png"]);
    assert_eq!(boxes, [2, 0]);
    let d = only(&diagnostics, DiagnosticKind::Duplicate);
    assert!(d.path.ends_with("annotations.json"));
    assert_eq!(
        d.message,
        "image id 1 is given twice (a.png, then b.png): b.png is left out and every annotation \
         of image id 1 goes to a.png"
    );
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
}

#[test]
fn coco_category_id_given_twice_keeps_its_first_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    coco_root(
        dir.path(),
        r#"{"images": [{"id": 1, "file_name": "a.png"}],
            "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
                            {"image_id": 1, "category_id": "2", "bbox": [1, 1, 10, 10]}],
            "categories": [{"id": 1, "name": "car"}, {"id": 1, "name": "truck"},
                           {"id": 2, "name": "bus"}, {"id": "2", "name": "bus"}]}"#,
    );
    let (dataset, diagnostics) = load(dir.path());
    assert_eq!(dataset.class_names, ["car", "bus"]);
    let classes: Vec<usize> = all_images(&dataset)[0]
        .boxes
        .iter()
        .map(|b| b.class_id)
        .collect();
    assert_eq!(classes, [0, 1]);
    assert_eq!(
        reported(&diagnostics, DiagnosticKind::Duplicate, dir.path()),
        [
            "annotations.json: category id 1 is declared twice (car, then truck): its boxes are \
             of class car",
            "annotations.json: category id 2 is declared twice (bus, then bus): its boxes are of \
             class bus",
        ]
    );
    assert_eq!(diagnostics.len(), 2, "{diagnostics:#?}");
}

#[test]
fn coco_categories_of_one_name_make_one_class() {
    let dir = tempfile::tempdir().expect("tempdir");
    coco_root(
        dir.path(),
        r#"{"images": [{"id": 1, "file_name": "a.png"}],
            "annotations": [{"image_id": 1, "category_id": 3, "bbox": [1, 1, 10, 10]},
                            {"image_id": 1, "category_id": 2, "bbox": [1, 1, 10, 10]},
                            {"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}],
            "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"},
                           {"id": 3, "name": "car"}]}"#,
    );
    let (dataset, diagnostics) = load(dir.path());
    assert_eq!(dataset.class_names, ["car", "person"]);
    let classes: Vec<usize> = all_images(&dataset)[0]
        .boxes
        .iter()
        .map(|b| b.class_id)
        .collect();
    assert_eq!(classes, [0, 1, 0]);
    assert_eq!(
        reported(&diagnostics, DiagnosticKind::Duplicate, dir.path()),
        ["annotations.json: categories 1 and 3 are both named car: their boxes make one class, car"]
    );
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
}

#[test]
fn coco_file_name_outside_the_dataset_is_not_read() {
    let outer = tempfile::tempdir().expect("tempdir");
    let secret = write_image(outer.path(), "secret.png", 40, 30);
    let root = outer.path().join("dataset");
    coco_root(
        &root,
        r#"{"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "../secret.png"},
                       {"id": 3, "file_name": "../../../../../../../../../../etc/passwd"}],
            "annotations": [], "categories": [{"id": 1, "name": "car"}]}"#,
    );
    let (dataset, diagnostics) = load(&root);
    assert_eq!(names(&dataset.train), ["a.png"]);
    let mut expected = vec![format!(
        "annotations.json: image id 2: file_name leads outside the dataset (../secret.png → {}); \
         skipped",
        secret.display()
    )];
    if Path::new("/etc/passwd").is_file() {
        expected.push(
            "annotations.json: image id 3: file_name leads outside the dataset \
             (../../../../../../../../../../etc/passwd → /etc/passwd); skipped"
                .to_string(),
        );
    }
    assert_eq!(
        reported(&diagnostics, DiagnosticKind::OutsideDataset, &root),
        expected
    );
}

#[test]
fn data_yaml_paths_outside_the_dataset_or_missing_are_reported() {
    let outer = tempfile::tempdir().expect("tempdir");
    write_image(outer.path(), "other/images/x.png", 20, 20);
    let stray = write_image(outer.path(), "stray.png", 20, 20);
    let root = outer.path().join("dataset");
    yolo_root(&root);
    let other = outer.path().join("other/images");
    write_text(
        &root,
        "data.yaml",
        &format!(
            "path: ..\ntrain: train.txt\nval: {}\nnames: [a, b]\n",
            other.display()
        ),
    );
    write_text(
        &root,
        "train.txt",
        "images/train/good1.png\n../stray.png\nimages/train/good2.png\n",
    );
    let (dataset, diagnostics) = load(&root);
    assert_eq!(names(&dataset.train), ["good1.png", "good2.png"]);
    assert!(dataset.val.is_empty());
    let outer_path = outer.path().display();
    assert_eq!(
        reported(&diagnostics, DiagnosticKind::OutsideDataset, &root),
        [
            format!(
                "data.yaml: `path: ..` leads outside the dataset folder (→ {outer_path}): the \
                 paths are read from the folder of data.yaml instead"
            ),
            format!(
                "data.yaml: `val: {}` leads outside the dataset folder (→ {}); skipped",
                other.display(),
                other.display()
            ),
            format!(
                "train.txt: the listed image ../stray.png leads outside the dataset (→ {}); \
                 skipped",
                stray.display()
            ),
        ]
    );
    let lines: Vec<Option<usize>> = diagnostics
        .iter()
        .filter(|d| d.kind == DiagnosticKind::OutsideDataset)
        .map(|d| d.line)
        .collect();
    assert_eq!(lines, [Some(1), Some(2), Some(3)]);
}

#[test]
fn data_yaml_path_that_does_not_exist_is_noted() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    write_text(
        dir.path(),
        "data.yaml",
        "path: /no/such/dataset\ntrain: images/train\nval: /no/such/val\nnames: [a, b]\n",
    );
    let (dataset, diagnostics) = load(dir.path());
    assert_eq!(dataset.train.len(), 2);
    let note = only(&diagnostics, DiagnosticKind::Note);
    assert_eq!(
        note.message,
        "`path: /no/such/dataset` names /no/such/dataset, which does not exist here: the paths \
         are read from the folder of data.yaml"
    );
    let missing = only(&diagnostics, DiagnosticKind::MissingFolder);
    assert_eq!(missing.line, Some(3));
    assert_eq!(
        missing.message,
        "`val: /no/such/val` names /no/such/val, which does not exist"
    );
}

#[test]
fn voc_image_set_ids_that_lead_outside_are_skipped() {
    let outer = tempfile::tempdir().expect("tempdir");
    let annotation = "<annotation><object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin>\
                      <xmax>20</xmax><ymax>20</ymax></bndbox></object></annotation>";
    let escaped_xml = write_text(outer.path(), "escaped.xml", annotation);
    write_image(outer.path(), "escaped.png", 40, 30);
    let root = outer.path().join("voc");
    write_image(&root, "JPEGImages/a.png", 40, 30);
    write_text(&root, "Annotations/a.xml", annotation);
    write_text(&root, "ImageSets/Main/train.txt", "a\n../../escaped\n");
    let (dataset, diagnostics) = load(&root);
    assert_eq!(names(&dataset.train), ["a.png"]);
    assert_eq!(
        reported(&diagnostics, DiagnosticKind::OutsideDataset, &root),
        [format!(
            "ImageSets/Main/train.txt: id ../../escaped leads outside the dataset (→ {}); skipped",
            escaped_xml.display()
        )]
    );
    assert_eq!(diagnostics[0].line, Some(2));
}

#[cfg(unix)]
#[test]
fn a_link_to_another_split_folder_does_not_take_its_images() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    yolo_folders_root(root);
    symlink("../val", &root.join("images/train/from_val"));
    let (dataset, diagnostics) = load(root);
    assert_eq!(names(&dataset.train), ["a.png", "b.png"]);
    assert_eq!(names(&dataset.val), ["c.png"]);
    assert_eq!(
        reported(&diagnostics, DiagnosticKind::Duplicate, root),
        [format!(
            "images/train/from_val/c.png: the same file as {}: it loads once, as that file",
            root.join("images/val/c.png").display()
        )]
    );
}

#[test]
fn a_byte_order_mark_keeps_the_first_box_of_a_label_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    write_image(dir.path(), "images/train/bom.png", 100, 50);
    write_text(
        dir.path(),
        "labels/train/bom.txt",
        "\u{feff}0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.1 0.1\n",
    );
    let (dataset, diagnostics) = load(dir.path());
    let bom = dataset
        .train
        .iter()
        .find(|r| r.path.ends_with("bom.png"))
        .expect("kept");
    assert_eq!(bom.boxes.len(), 2, "{diagnostics:#?}");
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
}

#[test]
fn absurd_coordinates_are_reported_not_clipped_silently() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    write_image(dir.path(), "images/train/huge.png", 100, 50);
    // A damaged number, and a box mostly outside the image.
    write_text(
        dir.path(),
        "labels/train/huge.txt",
        "0 0.5 0.5 1e30 1e30\n0 1.05 0.5 0.4 0.5\n",
    );
    let (dataset, diagnostics) = load(dir.path());
    let huge = dataset
        .train
        .iter()
        .find(|r| r.path.ends_with("huge.png"))
        .expect("kept");
    assert_eq!(huge.boxes.len(), 1, "the clipped box stays");
    let damaged = only(&diagnostics, DiagnosticKind::MalformedLabel);
    assert_eq!(damaged.line, Some(1));
    assert!(
        damaged.message.contains("not a fraction of the image size"),
        "{damaged}"
    );
    let clipped = only(&diagnostics, DiagnosticKind::BoxClipped);
    assert_eq!(clipped.line, Some(2));
    assert!(clipped.message.contains("mostly outside"), "{clipped}");
    assert!(clipped.is_warning());
}

#[test]
fn voc_corners_given_the_wrong_way_round_are_called_swapped() {
    let dir = tempfile::tempdir().expect("tempdir");
    write_image(dir.path(), "images/a.png", 40, 30);
    write_text(
        dir.path(),
        "annots/a.xml",
        "<annotation>\n<object><name>x</name><bndbox><xmin>20</xmin><ymin>1</ymin><xmax>5</xmax><ymax>20</ymax></bndbox></object>\n\
         <object><name>x</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>1e30</xmax><ymax>20</ymax></bndbox></object>\n\
         </annotation>\n",
    );
    let (_, diagnostics) = load(dir.path());
    let swapped = only(&diagnostics, DiagnosticKind::EmptyBox);
    assert!(swapped.message.contains("corners swapped"), "{swapped}");
    let beyond = only(&diagnostics, DiagnosticKind::MalformedLabel);
    assert!(beyond.message.contains("beyond any image"), "{beyond}");
}

#[test]
fn coco_numbers_too_large_for_a_box_are_not_called_not_a_number() {
    let dir = tempfile::tempdir().expect("tempdir");
    coco_root(
        dir.path(),
        r#"{"images": [{"id": 1, "file_name": "a.png"}],
            "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 1e308, 10]},
                            {"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]}],
            "categories": [{"id": 1, "name": "thing"}]}"#,
    );
    let (_, diagnostics) = load(dir.path());
    let large = only(&diagnostics, DiagnosticKind::MalformedLabel);
    assert!(large.message.contains("width 1e"), "{large}");
    assert!(large.message.contains("beyond any image"), "{large}");
    assert!(!large.message.contains("not a number"), "{large}");
}

#[test]
fn an_empty_image_file_is_called_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    write_bytes(dir.path(), "images/train/empty.jpg", b"");
    let (dataset, diagnostics) = load(dir.path());
    assert_eq!(dataset.train.len(), 2);
    let empty = only(&diagnostics, DiagnosticKind::UnreadableImage);
    assert!(empty.message.contains("empty (0 bytes)"), "{empty}");
}

#[cfg(unix)]
#[test]
fn a_pipe_in_place_of_a_label_file_is_reported_without_waiting_for_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    yolo_root(dir.path());
    write_image(dir.path(), "images/train/piped.png", 100, 50);
    let fifo = dir.path().join("labels/train/piped.txt");
    let c_path = std::ffi::CString::new(fifo.to_str().expect("utf-8")).expect("c path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0);
    // Loading on a thread of its own: a read of the pipe would never return.
    let root = dir.path().to_path_buf();
    let (done, finished) = crossbeam_channel::bounded(1);
    std::thread::Builder::new()
        .name("loader".into())
        .spawn(move || {
            let _ = done.send(load(&root));
        })
        .expect("thread");
    let (dataset, diagnostics) = finished
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("loading does not wait on the pipe");
    assert_eq!(dataset.train.len(), 2, "the image of the pipe is skipped");
    let piped = only(&diagnostics, DiagnosticKind::MalformedLabel);
    assert!(piped.path.ends_with("labels/train/piped.txt"));
    assert!(piped.message.contains("not a regular file"), "{piped}");
}

#[test]
fn coco_image_ids_that_share_a_file_are_counted_with_the_boxes_they_lose() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Ids 1 to 4 name two files: ids 3 and 4 repeat files of ids 1 and 2, with three boxes.
    coco_root(
        dir.path(),
        r#"{"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"},
                       {"id": 3, "file_name": "a.png"}, {"id": 4, "file_name": "b.png"}],
            "annotations": [{"image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10]},
                            {"image_id": 2, "category_id": 1, "bbox": [1, 1, 10, 10]},
                            {"image_id": 3, "category_id": 1, "bbox": [5, 5, 10, 10]},
                            {"image_id": 4, "category_id": 1, "bbox": [5, 5, 10, 10]},
                            {"image_id": 4, "category_id": 1, "bbox": [9, 9, 10, 10]}],
            "categories": [{"id": 1, "name": "car"}]}"#,
    );
    let (dataset, diagnostics) = load(dir.path());
    let all = all_images(&dataset);
    let boxes: Vec<usize> = all.iter().map(|r| r.boxes.len()).collect();
    assert_eq!(boxes, [1, 1]);
    let d = only(&diagnostics, DiagnosticKind::Duplicate);
    assert!(!d.is_warning(), "a problem, not a note: {d}");
    assert_eq!(
        d.message,
        "2 image ids name an image file that an earlier image id names (the first: id 3 → a.png, \
         named first by id 1): each file loads once, under its first id, and the 3 boxes of the \
         later ids are dropped"
    );
}
