//! Choosing folders without freezing the window: a [`FolderPicker`] answers over a channel that
//! the app polls once per frame. The real picker runs the system dialog on its own thread; tests
//! use a fake that answers at once, so no test ever opens a real dialog.

use std::path::PathBuf;

use crossbeam_channel::{bounded, Receiver};

/// Asks the person for a folder. The answer (`None` when cancelled) arrives on the returned
/// channel, later: the caller must not wait for it on the UI thread.
pub trait FolderPicker {
    fn pick_folder(&mut self, title: &str, start_dir: Option<PathBuf>)
        -> Receiver<Option<PathBuf>>;
}

/// The system's folder dialog, shown from a named thread of its own.
#[derive(Default)]
pub struct SystemFolderPicker;

impl FolderPicker for SystemFolderPicker {
    fn pick_folder(
        &mut self,
        title: &str,
        start_dir: Option<PathBuf>,
    ) -> Receiver<Option<PathBuf>> {
        let (answer, answers) = bounded(1);
        let title = title.to_string();
        let spawned = std::thread::Builder::new()
            .name("folder-dialog".into())
            .spawn(move || {
                let mut dialog = rfd::FileDialog::new().set_title(title);
                if let Some(dir) = start_dir.filter(|d| d.is_dir()) {
                    dialog = dialog.set_directory(dir);
                }
                let _ = answer.send(dialog.pick_folder());
            });
        if let Err(error) = spawned {
            eprintln!("error: cannot open the folder dialog: {error}");
        }
        answers
    }
}

/// A picker that always answers with the same folder: for tests and scripted runs.
pub struct FixedFolderPicker(pub Option<PathBuf>);

impl FolderPicker for FixedFolderPicker {
    fn pick_folder(
        &mut self,
        _title: &str,
        _start_dir: Option<PathBuf>,
    ) -> Receiver<Option<PathBuf>> {
        let (answer, answers) = bounded(1);
        let _ = answer.send(self.0.clone());
        answers
    }
}
