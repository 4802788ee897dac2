//! Writing files so that a crash never leaves half a file behind. Used by every floor that
//! writes (model descriptions, run outputs, detections); depends on nothing in the crate.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

/// The last component of `path` for people (the whole path when it has none).
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// `path` with links and `..` resolved, or as given when it cannot be (it does not exist).
pub fn canonical(path: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place. On failure (a
/// full disk) the temporary file is removed and `path` is left as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let partial = dir.join(format!(".{}.partial", file_name(path)));
    let written = std::fs::File::create(&partial)
        .and_then(|mut file| file.write_all(bytes).and_then(|_| file.sync_all()))
        .with_context(|| format!("cannot write {}", partial.display()))
        .and_then(|_| {
            std::fs::rename(&partial, path)
                .with_context(|| format!("cannot write {}", path.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}
