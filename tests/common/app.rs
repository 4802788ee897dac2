//! The real app under egui_kittest, as every UI test and benchmark builds it.

// A test helper should stop at the first broken expectation, with its location.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use ohem_studio::ui::{AppOptions, FixedFolderPicker, FolderPicker, OhemApp};

/// The real app at 1400×900: opens `data_dir` (starting at once when `start` is set); the folder
/// picker answers `picked`.
pub fn app_harness(
    data_dir: Option<PathBuf>,
    start: bool,
    picked: Option<PathBuf>,
) -> Harness<'static, OhemApp> {
    app_harness_with_picker(data_dir, start, Box::new(FixedFolderPicker(picked)))
}

/// The real app at 1400×900 with a folder picker of the test's choosing.
pub fn app_harness_with_picker(
    data_dir: Option<PathBuf>,
    start: bool,
    picker: Box<dyn FolderPicker>,
) -> Harness<'static, OhemApp> {
    app_harness_from(AppOptions {
        data_dir,
        start,
        picker,
        runs: Vec::new(),
        record_into: None,
    })
}

/// The real app at 1400×900, built with `options`.
pub fn app_harness_from(options: AppOptions) -> Harness<'static, OhemApp> {
    let mut options = Some(options);
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_eframe(move |cc| {
            OhemApp::new(&cc.egui_ctx, options.take().expect("the app is built once"))
        })
}

/// Long enough for a slow shared machine; each wait normally ends in well under a second.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A few 96×96 images with one bright "car" each, in the YOLO layout.
pub fn write_fixture(root: &Path) {
    std::fs::write(
        root.join("data.yaml"),
        "path: .\ntrain: images/train\nval: images/val\nnames: [car]\n",
    )
    .unwrap();
    for (split, count) in [("train", 8), ("val", 3)] {
        let images = root.join("images").join(split);
        let labels = root.join("labels").join(split);
        std::fs::create_dir_all(&images).unwrap();
        std::fs::create_dir_all(&labels).unwrap();
        for i in 0..count {
            let (x0, y0) = (8 + 6 * i, 12 + 5 * i);
            let (w, h) = (40u32, 24u32);
            let image = image::RgbImage::from_fn(96, 96, |x, y| {
                let inside = x >= x0 && x < x0 + w && y >= y0 && y < y0 + h;
                if inside {
                    image::Rgb([220, 40 + (x % 7) as u8 * 10, 40])
                } else {
                    let v = ((x * 31 + y * 17 + i * 13) % 90) as u8;
                    image::Rgb([v, v + 20, v + 40])
                }
            });
            image.save(images.join(format!("{i}.png"))).unwrap();
            let (cx, cy) = (
                (x0 as f32 + w as f32 / 2.0) / 96.0,
                (y0 as f32 + h as f32 / 2.0) / 96.0,
            );
            std::fs::write(
                labels.join(format!("{i}.txt")),
                format!("0 {cx} {cy} {} {}\n", w as f32 / 96.0, h as f32 / 96.0),
            )
            .unwrap();
        }
    }
}

pub fn fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(dir.path());
    dir
}

/// Steps frames until `done` holds, failing the test with `what` after [`DEADLINE`].
pub fn wait_for(
    harness: &mut Harness<'_, OhemApp>,
    what: &str,
    done: impl Fn(&Harness<'_, OhemApp>) -> bool,
) {
    wait_for_within(harness, what, DEADLINE, done);
}

/// Steps frames until `done` holds, failing the test with `what` after `deadline`.
pub fn wait_for_within(
    harness: &mut Harness<'_, OhemApp>,
    what: &str,
    deadline: Duration,
    done: impl Fn(&Harness<'_, OhemApp>) -> bool,
) {
    let started = Instant::now();
    loop {
        harness.step();
        if done(harness) {
            return;
        }
        assert!(
            started.elapsed() < deadline,
            "timed out waiting for {what}; status: {:?}, step {}",
            harness.state().status(),
            harness.state().step()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn has_label(harness: &Harness<'_, OhemApp>, label: &str) -> bool {
    harness.query_by_label(label).is_some()
}

pub fn count_labels_containing(harness: &Harness<'_, OhemApp>, part: &str) -> usize {
    harness.query_all_by_label_contains(part).count()
}

/// The text a node shows: labels carry it as their value.
pub fn text_of(node: &egui_kittest::Node<'_>) -> String {
    let node = node.accesskit_node();
    node.label().or_else(|| node.value()).unwrap_or_default()
}

/// The step number the top bar shows.
pub fn shown_step(harness: &Harness<'_, OhemApp>) -> u64 {
    harness
        .query_all_by_label_contains("step ")
        .find_map(|node| text_of(&node).strip_prefix("step ")?.parse().ok())
        .unwrap_or(0)
}

/// Sets K and M with their sliders, as a person would before pressing Start.
pub fn small_batches(harness: &mut Harness<'_, OhemApp>, k: usize, m: usize) {
    harness
        .get_by_role_and_label(Role::Slider, "K")
        .set_value_accesskit(k as f64);
    harness.run_steps(2);
    harness
        .get_by_role_and_label(Role::Slider, "M")
        .set_value_accesskit(m as f64);
    harness.run_steps(2);
}
