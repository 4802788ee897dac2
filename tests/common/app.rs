//! The real app under egui_kittest, as every UI test and benchmark builds it.

use std::path::PathBuf;

use egui_kittest::Harness;
use ohem_studio::ui::{AppOptions, FixedFolderPicker, OhemApp};

/// The real app at 1400×900: opens `data_dir` (starting at once when `start` is set); the folder
/// picker answers `picked`.
pub fn app_harness(
    data_dir: Option<PathBuf>,
    start: bool,
    picked: Option<PathBuf>,
) -> Harness<'static, OhemApp> {
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_eframe(move |cc| {
            OhemApp::new(
                &cc.egui_ctx,
                AppOptions {
                    data_dir,
                    start,
                    picker: Box::new(FixedFolderPicker(picked)),
                },
            )
        })
}
