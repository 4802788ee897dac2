//! The dataset panel: the folder being opened, the loaded dataset's summary and its problems.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use egui::RichText;

use crate::data::{Dataset, Diagnostic};
use crate::files::file_name;

/// What the app knows of the dataset.
#[derive(Debug, Default)]
pub struct DatasetPanel {
    /// The folder field's text.
    pub path_text: String,
    /// The folder last asked for (the folder dialog starts there).
    pub path: Option<PathBuf>,
    pub dataset: Option<Arc<Dataset>>,
    pub summary: Option<String>,
    pub diagnostics: Vec<Diagnostic>,
}

impl DatasetPanel {
    /// A dataset opened, with what its loading found.
    pub fn loaded(&mut self, dataset: Arc<Dataset>, summary: String, diagnostics: Vec<Diagnostic>) {
        self.path_text = dataset.root.display().to_string();
        for d in &diagnostics {
            eprintln!("warning: {d}");
        }
        self.summary = Some(summary);
        self.diagnostics = diagnostics;
        self.dataset = Some(dataset);
    }

    /// No dataset shown any more (a viewed run's is elsewhere or has changed).
    pub fn forget(&mut self) {
        self.dataset = None;
        self.summary = None;
    }

    /// Whether the loaded dataset is the one in `folder`.
    pub fn holds(&self, folder: &Path) -> bool {
        self.dataset
            .as_ref()
            .is_some_and(|d| same_folder(&d.root, folder))
    }

    /// The summary and the list of problems and notes.
    pub fn ui(&self, ui: &mut egui::Ui) {
        ui.heading("Dataset");
        match &self.summary {
            Some(summary) => {
                // Small, so the report's lines fit the side panel without wrapping mid-count.
                ui.label(RichText::new(summary).size(12.0));
            }
            None => {
                ui.weak("none loaded");
            }
        }
        let notes = self.diagnostics.iter().filter(|d| d.is_note()).count();
        let title = match notes {
            0 => format!("Dataset problems ({})", self.diagnostics.len()),
            _ => format!(
                "Dataset problems ({}) and notes ({notes})",
                self.diagnostics.len() - notes
            ),
        };
        egui::CollapsingHeader::new(title)
            .id_salt("dataset_problems")
            .default_open(!self.diagnostics.is_empty())
            .show(ui, |ui| {
                if self.diagnostics.is_empty() {
                    ui.weak("none");
                }
                egui::ScrollArea::vertical()
                    .id_salt("diagnostics_scroll")
                    .max_height(220.0)
                    .show(ui, |ui| {
                        self.diagnostics.iter().for_each(|d| diagnostic_ui(ui, d))
                    });
            });
    }
}

/// One problem or note: its place, then what it says.
fn diagnostic_ui(ui: &mut egui::Ui, d: &Diagnostic) {
    let file = file_name(&d.path);
    let place = match d.line {
        Some(line) => format!("{file}:{line}"),
        None => file,
    };
    ui.label(RichText::new(place).monospace().small())
        .on_hover_text(d.to_string());
    let message = if d.is_note() {
        format!("note: {}", d.message)
    } else {
        d.message.clone()
    };
    ui.label(RichText::new(message).small());
    ui.add_space(2.0);
}

/// Whether two paths name the same folder.
pub fn same_folder(a: &Path, b: &Path) -> bool {
    crate::files::canonical(a) == crate::files::canonical(b)
}
