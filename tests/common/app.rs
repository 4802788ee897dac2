//! The real app under egui_kittest, as every UI test and benchmark builds it.

use std::path::PathBuf;

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
    let mut picker = Some(picker);
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_eframe(move |cc| {
            OhemApp::new(
                &cc.egui_ctx,
                AppOptions {
                    data_dir,
                    start,
                    picker: picker.take().expect("the app is built once"),
                },
            )
        })
}
