//! Each dataset layout loads a small fixture with exactly the expected boxes, classes and splits.

mod common;

use common::*;
use ohem_studio::data::{
    decode_image, detect_layout, load_dataset, summary, Diagnostic, DiagnosticKind, ImageRecord,
    Layout, LoadOptions,
};

fn options() -> LoadOptions {
    LoadOptions::default()
}

#[test]
fn yolo_folders_load_normalised_boxes_in_original_pixels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_text(
        root,
        "data.yaml",
        "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n",
    );
    write_image(root, "images/train/a.png", 100, 50);
    write_text(
        root,
        "labels/train/a.txt",
        "1 0.5 0.5 0.2 0.4\n\n0 0.25 0.5 0.1 0.2\n",
    );
    write_image(root, "images/train/b.jpg", 80, 60);
    write_text(root, "labels/train/b.txt", "");
    write_image(root, "images/val/c.bmp", 40, 40);

    let (dataset, diagnostics) = load_dataset(root, &options()).expect("loads");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(dataset.layout, Layout::Yolo);
    assert_eq!(dataset.class_names, ["cat", "dog"]);
    assert_eq!(names(&dataset.train), ["a.png", "b.jpg"]);
    assert_eq!(names(&dataset.val), ["c.bmp"]);
    let a = dataset
        .train
        .iter()
        .find(|r| r.path.ends_with("a.png"))
        .expect("a");
    assert_eq!((a.width, a.height), (100, 50));
    assert_eq!(a.boxes.len(), 2);
    assert_eq!(a.boxes[0].class_id, 1);
    assert_rect(a.boxes[0].rect, [40.0, 15.0, 60.0, 35.0]);
    assert_eq!(a.boxes[1].class_id, 0);
    assert_rect(a.boxes[1].rect, [20.0, 20.0, 30.0, 30.0]);
    assert!(dataset.val[0].boxes.is_empty());
    let s = summary(&dataset);
    assert_eq!(
        (s.train.images, s.train.negative_images, s.train.boxes),
        (2, 1, 2)
    );
    assert_eq!(s.boxes_per_class, [1, 1]);
    assert!(s.to_string().contains("YOLO"));
}

#[test]
fn yolo_image_lists_and_downscaling_keep_boxes_in_original_pixels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_text(
        root,
        "data.yaml",
        "train: train.txt\nval: val.txt\nnames: [car]\n",
    );
    write_image(root, "images/big.png", 400, 200);
    write_text(root, "labels/big.txt", "0 0.5 0.5 0.5 0.5\n");
    write_image(root, "images/small.png", 50, 40);
    write_text(root, "train.txt", "images/big.png\n");
    write_text(root, "val.txt", "./images/small.png\n");
    let options = LoadOptions {
        max_side_px: 100,
        ..LoadOptions::default()
    };
    let (dataset, diagnostics) = load_dataset(root, &options).expect("loads");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let big = &dataset.train[0];
    assert_eq!((big.width, big.height), (400, 200));
    assert_eq!(big.pixels.dimensions(), (100, 50));
    assert!((big.scale - 0.25).abs() < 1e-6);
    assert_rect(big.boxes[0].rect, [100.0, 50.0, 300.0, 150.0]);
    assert_eq!(dataset.val[0].pixels.dimensions(), (50, 40));
    assert_eq!(dataset.val[0].scale, 1.0);
}

fn voc_xml(filename: &str, size: (u32, u32), objects: &[(&str, [f32; 4], bool)]) -> String {
    let mut xml = format!(
        "<annotation>\n  <filename>{filename}</filename>\n  <size><width>{}</width><height>{}</height><depth>3</depth></size>\n",
        size.0, size.1
    );
    for (name, [x0, y0, x1, y1], difficult) in objects {
        xml += &format!(
            "  <object>\n    <name>{name}</name>\n    <difficult>{}</difficult>\n    <bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>\n  </object>\n",
            u8::from(*difficult)
        );
    }
    xml + "</annotation>\n"
}

#[test]
fn standard_voc_uses_image_sets_and_one_based_corners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for id in ["0001", "0002", "0003"] {
        write_image(root, &format!("JPEGImages/{id}.jpg"), 64, 48);
    }
    write_text(
        root,
        "Annotations/0001.xml",
        &voc_xml(
            "0001.jpg",
            (64, 48),
            &[
                ("zebra", [11.0, 21.0, 50.0, 40.0], false),
                ("ant", [1.0, 1.0, 8.0, 8.0], true),
            ],
        ),
    );
    write_text(
        root,
        "Annotations/0002.xml",
        &voc_xml(
            "0002.jpg",
            (64, 48),
            &[("ant", [5.5, 6.5, 20.25, 30.0], false)],
        ),
    );
    write_text(
        root,
        "Annotations/0003.xml",
        &voc_xml("0003.jpg", (64, 48), &[]),
    );
    write_text(root, "ImageSets/Main/trainval.txt", "0001\n0002\n0003\n");
    write_text(root, "ImageSets/Main/val.txt", "0002\n");

    let (dataset, diagnostics) = load_dataset(root, &options()).expect("loads");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(dataset.layout, Layout::Voc);
    assert_eq!(dataset.class_names, ["ant", "zebra"]);
    assert_eq!(names(&dataset.train), ["0001.jpg", "0003.jpg"]);
    assert_eq!(names(&dataset.val), ["0002.jpg"]);
    let first = &dataset.train[0];
    assert_eq!(first.boxes.len(), 2);
    assert_eq!(
        (first.boxes[0].class_id, first.boxes[0].difficult),
        (1, false)
    );
    assert_rect(first.boxes[0].rect, [10.0, 20.0, 50.0, 40.0]);
    assert_eq!(
        (first.boxes[1].class_id, first.boxes[1].difficult),
        (0, true)
    );
    assert_rect(first.boxes[1].rect, [0.0, 0.0, 8.0, 8.0]);
    assert_rect(dataset.val[0].boxes[0].rect, [4.5, 5.5, 20.25, 30.0]);
    assert!(dataset.train[1].boxes.is_empty());
}

#[test]
fn voc_beside_images_uses_split_folders_and_trusts_decoded_size() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_image(root, "train/apple_1.jpg", 60, 40);
    write_text(
        root,
        "train/apple_1.xml",
        &voc_xml(
            "apple_1.jpg",
            (60, 40),
            &[("apple", [2.0, 3.0, 30.0, 20.0], false)],
        ),
    );
    // A PNG named .jpg whose XML gives size 0×0, as in a public fruit set.
    write_bytes(root, "train/banana_1.jpg", &png_bytes(50, 30));
    write_text(
        root,
        "train/banana_1.xml",
        &voc_xml(
            "banana_1.jpg",
            (0, 0),
            &[("banana", [1.0, 1.0, 50.0, 30.0], false)],
        ),
    );
    write_image(root, "test/mixed_1.jpg", 70, 50);
    write_text(
        root,
        "test/mixed_1.xml",
        &voc_xml(
            "mixed_1.jpg",
            (70, 50),
            &[
                ("apple", [1.0, 1.0, 10.0, 10.0], false),
                ("orange", [20.0, 20.0, 69.0, 49.0], false),
            ],
        ),
    );
    let (dataset, diagnostics) = load_dataset(root, &options()).expect("loads");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(dataset.layout, Layout::Voc);
    assert_eq!(dataset.class_names, ["apple", "banana", "orange"]);
    assert_eq!(names(&dataset.train), ["apple_1.jpg", "banana_1.jpg"]);
    assert_eq!(names(&dataset.val), ["mixed_1.jpg"]);
    let banana = dataset
        .train
        .iter()
        .find(|r| r.path.ends_with("banana_1.jpg"))
        .expect("banana");
    assert_eq!((banana.width, banana.height), (50, 30));
    assert_rect(banana.boxes[0].rect, [0.0, 0.0, 50.0, 30.0]);
    let mixed = &dataset.val[0];
    assert_eq!(
        mixed.boxes.iter().map(|b| b.class_id).collect::<Vec<_>>(),
        [0, 2]
    );
    assert_rect(mixed.boxes[1].rect, [19.0, 19.0, 69.0, 49.0]);
}

#[test]
fn voc_annots_folder_beside_images_gets_a_seeded_split() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    for i in 1..=10 {
        write_image(root, &format!("images/{i:05}.jpg"), 32, 32);
        write_text(
            root,
            &format!("annots/{i:05}.xml"),
            &voc_xml(
                &format!("{i:05}.jpg"),
                (32, 32),
                &[("kangaroo", [3.0, 4.0, 20.0, 30.0], false)],
            ),
        );
    }
    let options = LoadOptions {
        val_fraction: 0.3,
        split_seed: 11,
        ..LoadOptions::default()
    };
    let (dataset, diagnostics) = load_dataset(root, &options).expect("loads");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(dataset.class_names, ["kangaroo"]);
    assert_eq!((dataset.train.len(), dataset.val.len()), (7, 3));
    assert_rect(dataset.train[0].boxes[0].rect, [2.0, 3.0, 20.0, 30.0]);
    let (again, _) = load_dataset(root, &options).expect("loads");
    assert_eq!(
        names(&again.val),
        names(&dataset.val),
        "the split depends only on the seed"
    );
}

#[test]
fn coco_json_maps_category_ids_in_sorted_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_image(root, "images/one.jpg", 100, 80);
    write_image(root, "images/two.png", 60, 60);
    write_text(
        root,
        "annotations.json",
        r#"{
          "images": [
            {"id": 1, "file_name": "one.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "two.png", "width": 60, "height": 60}
          ],
          "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [0.5, 1.5, 9, 9], "iscrowd": 1}
          ],
          "categories": [{"id": 7, "name": "truck"}, {"id": 3, "name": "bike"}]
        }"#,
    );
    let options = LoadOptions {
        val_fraction: 0.5,
        ..LoadOptions::default()
    };
    let (dataset, diagnostics) = load_dataset(root, &options).expect("loads");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(dataset.layout, Layout::Coco);
    assert_eq!(dataset.class_names, ["bike", "truck"]);
    assert_eq!((dataset.train.len(), dataset.val.len()), (1, 1));
    let all: Vec<_> = dataset.train.iter().chain(&dataset.val).collect();
    let one = all
        .iter()
        .find(|r| r.path.ends_with("one.jpg"))
        .expect("one");
    assert_eq!(one.boxes.len(), 2);
    assert_eq!((one.boxes[0].class_id, one.boxes[0].difficult), (1, false));
    assert_rect(one.boxes[0].rect, [10.0, 20.0, 40.0, 60.0]);
    assert_eq!((one.boxes[1].class_id, one.boxes[1].difficult), (0, true));
    assert_rect(one.boxes[1].rect, [0.5, 1.5, 9.5, 10.5]);
    let two = all
        .iter()
        .find(|r| r.path.ends_with("two.png"))
        .expect("two");
    assert!(two.boxes.is_empty());
}

#[test]
fn coco_split_files_in_annotations_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_image(root, "images/a.jpg", 40, 40);
    write_image(root, "images/b.jpg", 40, 40);
    let file = |name: &str| {
        format!(
            r#"{{"images": [{{"id": "x", "file_name": "{name}"}}],
               "annotations": [{{"image_id": "x", "category_id": 1, "bbox": [1, 2, 3, 4]}}],
               "categories": [{{"id": 1, "name": "thing"}}]}}"#
        )
    };
    write_text(root, "annotations/instances_train.json", &file("a.jpg"));
    write_text(root, "annotations/instances_val.json", &file("b.jpg"));
    let (dataset, diagnostics) = load_dataset(root, &options()).expect("loads");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(names(&dataset.train), ["a.jpg"]);
    assert_eq!(names(&dataset.val), ["b.jpg"]);
    assert_rect(dataset.val[0].boxes[0].rect, [1.0, 2.0, 4.0, 6.0]);
}

#[test]
fn pos_neg_loads_crops_negatives_and_annotated_validation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_text(root, "names.txt", "person\n");
    write_image(root, "pos/p1.png", 24, 48);
    write_image(root, "pos/p2.png", 20, 40);
    write_image(root, "neg/n1.jpg", 100, 80);
    write_image(root, "neg/n2.jpg", 100, 80);
    write_image(root, "val/v1.png", 100, 100);
    write_text(root, "val/v1.txt", "0 0.5 0.5 0.2 0.4\n");
    write_image(root, "val/v2.png", 50, 50);
    write_text(
        root,
        "val/v2.xml",
        &voc_xml(
            "v2.png",
            (50, 50),
            &[("person", [1.0, 1.0, 10.0, 20.0], false)],
        ),
    );

    let (dataset, diagnostics) = load_dataset(root, &options()).expect("loads");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(dataset.layout, Layout::PosNeg);
    assert_eq!(dataset.class_names, ["person"]);
    assert_eq!(names(&dataset.positive_crops), ["p1.png", "p2.png"]);
    assert_rect(
        dataset.positive_crops[0].boxes[0].rect,
        [0.0, 0.0, 24.0, 48.0],
    );
    assert_eq!(names(&dataset.train), ["n1.jpg", "n2.jpg"]);
    assert!(dataset.train.iter().all(|r| r.boxes.is_empty()));
    assert_eq!(names(&dataset.val), ["v1.png", "v2.png"]);
    assert_rect(dataset.val[0].boxes[0].rect, [40.0, 30.0, 60.0, 70.0]);
    assert_rect(dataset.val[1].boxes[0].rect, [0.0, 0.0, 10.0, 20.0]);
    assert_eq!(summary(&dataset).positive_crops, 2);
}

#[test]
fn pos_neg_without_names_file_calls_the_class_object() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_image(root, "pos/p1.png", 24, 48);
    write_image(root, "neg/n1.jpg", 30, 30);
    let (dataset, diagnostics) = load_dataset(root, &options()).expect("loads");
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert_eq!(dataset.class_names, ["object"]);
}

#[test]
fn boxes_map_onto_downscaled_pixels_per_axis() {
    use ohem_studio::geometry::Rect;
    // 2000×57 shrinks to 800×23 (not 800×22.8): the two axes scale by different factors.
    let dir = tempfile::tempdir().unwrap();
    common::write_image(dir.path(), "images/train/wide.png", 2000, 57);
    common::write_text(dir.path(), "labels/train/wide.txt", "0 0.5 0.5 0.5 0.5\n");
    common::write_text(
        dir.path(),
        "data.yaml",
        "path: .\ntrain: images/train\nval: images/train\nnames: [bar]\n",
    );
    let options = ohem_studio::data::LoadOptions::default();
    let (dataset, _) = ohem_studio::data::load_dataset(dir.path(), &options).unwrap();
    let record = &dataset.train[0];
    let (w, h) = (record.pixels.width() as f32, record.pixels.height() as f32);
    let whole = record.to_decoded(&Rect::new(0.0, 0.0, 2000.0, 57.0));
    assert!(
        (whole.x1 - w).abs() < 1e-3 && (whole.y1 - h).abs() < 1e-3,
        "{whole:?} in {w}×{h}"
    );
    let back = record.to_original(&whole);
    assert!((back.x1 - 2000.0).abs() < 1e-2 && (back.y1 - 57.0).abs() < 1e-3);
}

/// Notes (choices the loader made) among `diagnostics`, as text.
fn notes(diagnostics: &[Diagnostic]) -> Vec<String> {
    diagnostics
        .iter()
        .filter(|d| d.kind == DiagnosticKind::Note)
        .map(|d| d.to_string())
        .collect()
}

#[track_caller]
fn assert_only_notes(diagnostics: &[Diagnostic]) {
    assert!(
        diagnostics.iter().all(|d| d.kind == DiagnosticKind::Note),
        "{diagnostics:#?}"
    );
}

#[test]
fn yolo_folders_without_data_yaml_name_classes_after_the_label_ids() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_image(root, "images/train/a.png", 100, 50);
    write_text(
        root,
        "labels/train/a.txt",
        "2 0.5 0.5 0.2 0.4\n0 0.25 0.5 0.1 0.2\n",
    );
    write_image(root, "images/train/b.jpg", 80, 60);
    write_text(root, "labels/train/b.txt", "");
    write_image(root, "images/val/c.png", 40, 40);
    write_text(root, "labels/val/c.txt", "0 0.5 0.5 0.5 0.5\n");

    assert_eq!(detect_layout(root), Some(Layout::Yolo));
    let (dataset, diagnostics) = load_dataset(root, &options()).expect("loads");
    assert_only_notes(&diagnostics);
    assert_eq!(dataset.layout, Layout::Yolo);
    assert_eq!(dataset.class_names, ["class0", "class1", "class2"]);
    assert_eq!(names(&dataset.train), ["a.png", "b.jpg"]);
    assert_eq!(names(&dataset.val), ["c.png"]);
    let a = dataset
        .train
        .iter()
        .find(|r| r.path.ends_with("a.png"))
        .expect("a");
    assert_eq!(a.boxes[0].class_id, 2);
    assert_rect(a.boxes[0].rect, [40.0, 15.0, 60.0, 35.0]);
    let s = summary(&dataset);
    assert_eq!((s.train.boxes, s.val.boxes), (2, 1));
    assert_eq!(s.boxes_per_class, [2, 0, 1]);
    let notes = notes(&diagnostics).join("\n");
    assert!(notes.contains("class0…class2"), "{notes}");
    assert!(notes.contains("train/ → train"), "{notes}");
    assert!(notes.contains("val/ → validation"), "{notes}");
}

#[test]
fn yolo_folders_without_data_yaml_take_class_names_from_classes_txt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_text(root, "classes.txt", "cat\ndog\n");
    for name in ["w", "x", "y", "z"] {
        write_image(root, &format!("images/{name}.png"), 40, 30);
        write_text(root, &format!("labels/{name}.txt"), "1 0.5 0.5 0.5 0.5\n");
    }
    // Class 5 on line 2: classes.txt names only two classes.
    write_text(
        root,
        "labels/x.txt",
        "0 0.5 0.5 0.5 0.5\n5 0.5 0.5 0.2 0.2\n",
    );

    let (dataset, diagnostics) = load_dataset(root, &options()).expect("loads");
    assert_eq!(dataset.class_names, ["cat", "dog"]);
    // No split folder: the seeded split shares out the four images.
    assert_eq!((dataset.train.len(), dataset.val.len()), (3, 1));
    assert_eq!(summary(&dataset).boxes_per_class, [1, 3]);
    let unknown: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.kind == DiagnosticKind::UnknownClass)
        .collect();
    assert_eq!(unknown.len(), 1, "{diagnostics:#?}");
    assert!(unknown[0].path.ends_with("labels/x.txt"));
    assert_eq!(unknown[0].line, Some(2));
    assert!(unknown[0].message.contains("classes.txt"), "{}", unknown[0]);
    let notes = notes(&diagnostics).join("\n");
    assert!(notes.contains("class names from classes.txt"), "{notes}");
    assert!(notes.contains("seeded split"), "{notes}");
}

#[test]
fn yolo_folders_without_data_yaml_read_a_darknet_names_file_in_labels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_text(root, "labels/obj.names", "kangaroo\nwallaby\n");
    write_image(root, "images/train/a.png", 40, 30);
    write_text(root, "labels/train/a.txt", "1 0.5 0.5 0.5 0.5\n");
    write_image(root, "images/test/b.png", 40, 30);

    let (dataset, diagnostics) = load_dataset(root, &options()).expect("loads");
    assert_only_notes(&diagnostics);
    assert_eq!(dataset.class_names, ["kangaroo", "wallaby"]);
    assert_eq!(names(&dataset.train), ["a.png"]);
    assert_eq!(names(&dataset.val), ["b.png"]);
    assert!(notes(&diagnostics)
        .iter()
        .any(|n| n.contains("class names from obj.names")));
}

#[test]
fn voc_and_coco_sets_with_images_and_labels_folders_keep_their_layout() {
    let voc = tempfile::tempdir().expect("tempdir");
    write_image(voc.path(), "images/a.jpg", 32, 32);
    write_text(
        voc.path(),
        "labels/a.xml",
        &voc_xml("a.jpg", (32, 32), &[("cat", [1.0, 1.0, 9.0, 9.0], false)]),
    );
    assert_eq!(detect_layout(voc.path()), Some(Layout::Voc));

    let coco = tempfile::tempdir().expect("tempdir");
    write_image(coco.path(), "images/train2017/a.jpg", 32, 32);
    write_text(coco.path(), "labels/train2017/a.txt", "0 0.5 0.5 0.5 0.5\n");
    write_text(
        coco.path(),
        "annotations/instances_train2017.json",
        r#"{"images": [{"id": 1, "file_name": "a.jpg", "width": 32, "height": 32}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 8, 8]}],
            "categories": [{"id": 1, "name": "cat"}]}"#,
    );
    assert_eq!(detect_layout(coco.path()), Some(Layout::Coco));
}

/// A stored 64×40 photo: dark, with a bright 16×12 patch at columns 40..56, rows 8..20, near the
/// top-right corner. Under EXIF orientation 6 (turn 90° clockwise) it stands 40×64 with the
/// patch at columns 20..32, rows 40..56.
const STORED_SIZE: (u32, u32) = (64, 40);
const STORED_PATCH: [u32; 4] = [40, 8, 56, 20];
const UPRIGHT_PATCH: [f32; 4] = [20.0, 40.0, 32.0, 56.0];

/// JPEG bytes of the stored photo, with EXIF orientation 6.
fn photo_turned_by_exif() -> Vec<u8> {
    let [x0, y0, x1, y1] = STORED_PATCH;
    let photo = image::RgbImage::from_fn(STORED_SIZE.0, STORED_SIZE.1, |x, y| {
        let inside = (x0..x1).contains(&x) && (y0..y1).contains(&y);
        image::Rgb(if inside { [235; 3] } else { [25; 3] })
    });
    let mut jpeg = std::io::Cursor::new(Vec::new());
    photo
        .write_to(&mut jpeg, image::ImageFormat::Jpeg)
        .expect("encode jpeg");
    with_exif_orientation(&jpeg.into_inner(), 6)
}

/// `jpeg` with an APP1 Exif segment right after its start marker that holds only the
/// orientation tag (0x0112): a little-endian TIFF header and an IFD of one entry.
fn with_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let mut tiff = b"II".to_vec();
    tiff.extend_from_slice(&42u16.to_le_bytes());
    tiff.extend_from_slice(&8u32.to_le_bytes()); // the IFD follows the 8-byte header
    tiff.extend_from_slice(&1u16.to_le_bytes()); // one entry
    tiff.extend_from_slice(&0x0112u16.to_le_bytes()); // Orientation
    tiff.extend_from_slice(&3u16.to_le_bytes()); // SHORT
    tiff.extend_from_slice(&1u32.to_le_bytes()); // one value
    tiff.extend_from_slice(&orientation.to_le_bytes());
    tiff.extend_from_slice(&[0, 0]); // the value field's unused half
    tiff.extend_from_slice(&0u32.to_le_bytes()); // no next IFD
    let mut payload = b"Exif\0\0".to_vec();
    payload.extend(tiff);
    // The segment length counts its own two bytes.
    let length = u16::try_from(payload.len() + 2).expect("a short segment");
    assert_eq!(jpeg[..2], [0xFF, 0xD8], "a JPEG starts with SOI");
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&length.to_be_bytes());
    out.extend(payload);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// Mean brightness of the decoded pixels inside `rect` (original pixels) and outside it.
fn brightness_inside_and_outside(
    record: &ImageRecord,
    rect: ohem_studio::geometry::Rect,
) -> (f64, f64) {
    let inside = record.to_decoded(&rect);
    let (mut sums, mut counts) = ([0.0f64; 2], [0usize; 2]);
    for (x, y, pixel) in record.pixels.enumerate_pixels() {
        let (cx, cy) = (x as f32 + 0.5, y as f32 + 0.5);
        let is_inside = cx > inside.x0 && cx < inside.x1 && cy > inside.y0 && cy < inside.y1;
        let slot = usize::from(!is_inside);
        sums[slot] += pixel.0.iter().map(|&v| f64::from(v)).sum::<f64>() / 3.0;
        counts[slot] += 1;
    }
    (sums[0] / counts[0] as f64, sums[1] / counts[1] as f64)
}

/// The record stands upright and its one box covers the bright patch.
#[track_caller]
fn assert_upright_with_box_on_patch(record: &ImageRecord) {
    assert_eq!((record.width, record.height), (40, 64), "{:?}", record.path);
    assert_eq!(record.pixels.dimensions(), (40, 64));
    assert_eq!(record.boxes.len(), 1);
    assert_rect(record.boxes[0].rect, UPRIGHT_PATCH);
    let (inside, outside) = brightness_inside_and_outside(record, record.boxes[0].rect);
    assert!(
        inside > 200.0 && outside < 50.0,
        "{:?}: brightness {inside:.0} inside the box, {outside:.0} outside",
        record.path
    );
}

#[test]
fn exif_orientation_6_turns_the_photo_and_its_voc_boxes_upright() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let photo = photo_turned_by_exif();
    // Drawn on the stored pixels: the annotation states the stored 64×40 size.
    write_bytes(root, "stored.jpg", &photo);
    let [x0, y0, x1, y1] = STORED_PATCH.map(|v| v as f32);
    write_text(
        root,
        "stored.xml",
        &voc_xml(
            "stored.jpg",
            STORED_SIZE,
            &[("patch", [x0 + 1.0, y0 + 1.0, x1, y1], false)],
        ),
    );
    // Drawn on the upright image: the annotation states the upright 40×64 size.
    write_bytes(root, "upright.jpg", &photo);
    let [x0, y0, x1, y1] = UPRIGHT_PATCH;
    write_text(
        root,
        "upright.xml",
        &voc_xml(
            "upright.jpg",
            (40, 64),
            &[("patch", [x0 + 1.0, y0 + 1.0, x1, y1], false)],
        ),
    );

    let (dataset, diagnostics) = load_dataset(root, &options()).expect("loads");
    assert_eq!(dataset.layout, Layout::Voc);
    assert_only_notes(&diagnostics);
    let records: Vec<&ImageRecord> = dataset.train.iter().chain(&dataset.val).collect();
    assert_eq!(records.len(), 2);
    for record in records {
        assert_upright_with_box_on_patch(record);
    }
    let notes = notes(&diagnostics).join("\n");
    assert!(
        notes.contains("2 images were turned upright by their EXIF orientation")
            && notes.contains("the boxes of 1 of them were drawn on the stored pixels"),
        "{notes}"
    );
    let report = summary(&dataset).to_string();
    assert!(report.contains("1 class: patch"), "{report}");
}

#[test]
fn exif_orientation_6_keeps_yolo_labels_in_the_upright_frame() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_bytes(root, "images/photo.jpg", &photo_turned_by_exif());
    // Normalised to the upright 40×64 image, as Ultralytics writes them.
    let [x0, y0, x1, y1] = UPRIGHT_PATCH;
    let (cx, cy) = ((x0 + x1) / 2.0 / 40.0, (y0 + y1) / 2.0 / 64.0);
    let (w, h) = ((x1 - x0) / 40.0, (y1 - y0) / 64.0);
    write_text(root, "labels/photo.txt", &format!("0 {cx} {cy} {w} {h}\n"));

    let (dataset, diagnostics) = load_dataset(root, &options()).expect("loads");
    assert_only_notes(&diagnostics);
    assert_eq!(dataset.train.len(), 1);
    assert_upright_with_box_on_patch(&dataset.train[0]);
    assert!(notes(&diagnostics)
        .iter()
        .any(|n| n.contains("1 image was turned upright") && n.contains("90° clockwise")));
    let (pixels, width, height) =
        decode_image(&root.join("images/photo.jpg"), &options()).expect("decodes");
    assert_eq!((pixels.dimensions(), width, height), ((40, 64), 40, 64));
}

#[cfg(unix)]
#[test]
fn symbolic_links_that_stay_inside_the_dataset_are_followed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    // The images are kept in a folder of their own and linked in where the layout wants them.
    write_image(root, "store/train/a.png", 60, 40);
    write_image(root, "store/b.png", 60, 40);
    write_text(root, "labels/train/a.txt", "0 0.5 0.5 0.2 0.2\n");
    write_text(
        root,
        "labels/val/b.txt",
        "0 0.5 0.5 0.2 0.2\n0 0.2 0.2 0.1 0.1\n",
    );
    std::fs::create_dir_all(root.join("images/val")).expect("folders");
    std::os::unix::fs::symlink("../store/train", root.join("images/train")).expect("symlink");
    std::os::unix::fs::symlink("../../store/b.png", root.join("images/val/b.png"))
        .expect("symlink");
    write_text(
        root,
        "data.yaml",
        "train: images/train\nval: images/val\nnames: [car]\n",
    );
    let (dataset, diagnostics) = load_dataset(root, &options()).expect("loads");
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    assert_eq!(names(&dataset.train), ["a.png"]);
    assert_eq!(names(&dataset.val), ["b.png"]);
    assert_eq!(dataset.train[0].boxes.len(), 1);
    assert_eq!(dataset.val[0].boxes.len(), 2);
}
