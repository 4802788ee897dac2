//! The desktop app: an eframe window that draws the plain values the trainer thread sends
//! (numbers, boxes, RGBA thumbnails) and turns user actions into commands.
//!
//! Never imports tch or `detector`: tensors stay on the trainer thread. From `ohem` it takes only
//! the selection itself (plain Rust), to replay it on a recorded batch in the what-if view.

mod app;
mod controls;
mod curves;
mod dataset_panel;
mod detections;
mod hard_examples;
mod images;
mod live_run;
mod message_log;
mod picker;
mod plot_files;
mod plots;
mod run_views;
mod runs;
mod source_view;
mod suspects;
pub mod theme;
mod tiles;
mod what_if;

use std::path::PathBuf;

pub use app::{AppOptions, OhemApp, Status};
pub use controls::Controls;
pub use curves::debiased_ema;
pub use message_log::Message;
pub use picker::{FixedFolderPicker, FolderPicker, NoDialogPicker, PickAnswer, SystemFolderPicker};
pub use tiles::ExampleKind;

/// Opens the app window: on `data_dir` (starting training at once when `start` is set), or on
/// the run folders `runs` (the first shown, the others overlaid). Live runs are recorded in
/// new folders inside `record_into`.
pub fn run_app(
    data_dir: Option<PathBuf>,
    start: bool,
    runs: Vec<PathBuf>,
    record_into: PathBuf,
) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_inner_size([1400.0, 900.0])
            .with_min_inner_size([900.0, 600.0])
            .with_title("ohem-studio"),
        ..Default::default()
    };
    eframe::run_native(
        "ohem-studio",
        options,
        Box::new(move |cc| {
            let app = OhemApp::new(
                &cc.egui_ctx,
                AppOptions {
                    data_dir,
                    start,
                    picker: Box::new(SystemFolderPicker),
                    runs,
                    record_into: Some(record_into),
                },
            );
            Ok(Box::new(app))
        }),
    )
    .map_err(|error| anyhow::anyhow!("cannot open the window: {error}"))
}
