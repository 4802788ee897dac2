//! Choosing folders without freezing the window: a [`FolderPicker`] answers over a channel that
//! the app polls once per frame. The real picker runs the system dialog on its own thread; tests
//! use a fake that answers at once, so no test ever opens a real dialog.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver};

/// A dialog closed faster than this without a folder was never on screen: no person cancels a
/// dialog that quickly, while a desktop without a file-dialog service answers at once.
const UNSEEN_DIALOG: Duration = Duration::from_millis(250);

/// What a folder pick came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PickAnswer {
    Folder(PathBuf),
    Cancelled,
    /// No dialog could be shown; the text says why.
    NoDialog(String),
}

/// Asks the person for a folder. The answer arrives on the returned channel, later: the caller
/// must not wait for it on the UI thread.
pub trait FolderPicker {
    fn pick_folder(&mut self, title: &str, start_dir: Option<PathBuf>) -> Receiver<PickAnswer>;
}

/// The system's folder dialog, shown from a named thread of its own.
#[derive(Default)]
pub struct SystemFolderPicker;

impl FolderPicker for SystemFolderPicker {
    fn pick_folder(&mut self, title: &str, start_dir: Option<PathBuf>) -> Receiver<PickAnswer> {
        let (answer, answers) = bounded(1);
        let title = title.to_string();
        let dialog_answer = answer.clone();
        let spawned = std::thread::Builder::new()
            .name("folder-dialog".into())
            .spawn(move || {
                let mut dialog = rfd::FileDialog::new().set_title(title);
                if let Some(dir) = start_dir.filter(|d| d.is_dir()) {
                    dialog = dialog.set_directory(dir);
                }
                let shown = Instant::now();
                let picked = match dialog.pick_folder() {
                    Some(folder) => PickAnswer::Folder(folder),
                    None if shown.elapsed() < UNSEEN_DIALOG => PickAnswer::NoDialog(
                        "this desktop offers no file dialog (no desktop portal, zenity or kdialog)"
                            .into(),
                    ),
                    None => PickAnswer::Cancelled,
                };
                let _ = dialog_answer.send(picked);
            });
        if let Err(error) = spawned {
            let _ = answer.send(PickAnswer::NoDialog(format!(
                "the dialog's thread could not start: {error}"
            )));
        }
        answers
    }
}

/// A picker that always answers with the same folder: for tests and scripted runs.
pub struct FixedFolderPicker(pub Option<PathBuf>);

impl FolderPicker for FixedFolderPicker {
    fn pick_folder(&mut self, _title: &str, _start_dir: Option<PathBuf>) -> Receiver<PickAnswer> {
        let (answer, answers) = bounded(1);
        let _ = answer.send(match &self.0 {
            Some(folder) => PickAnswer::Folder(folder.clone()),
            None => PickAnswer::Cancelled,
        });
        answers
    }
}

/// A picker on a desktop without file dialogs: for tests.
pub struct NoDialogPicker;

impl FolderPicker for NoDialogPicker {
    fn pick_folder(&mut self, _title: &str, _start_dir: Option<PathBuf>) -> Receiver<PickAnswer> {
        let (answer, answers) = bounded(1);
        let _ = answer.send(PickAnswer::NoDialog("no file dialog here".into()));
        answers
    }
}
