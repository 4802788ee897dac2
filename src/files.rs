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

/// A path as the bytes the operating system names it by: written into a CSV cell it stays the
/// path of the file, also when the name is not UTF-8 (where `display` would put U+FFFD).
pub fn path_bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_encoded_bytes()
}

/// [`path_bytes`] for a field serialized with serde (the `csv` crate writes bytes as they are).
pub struct PathCell<'a>(pub &'a Path);

impl serde::Serialize for PathCell<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(path_bytes(self.0))
    }
}

/// `path` with links and `..` resolved, or as given when it cannot be (it does not exist).
pub fn canonical(path: &Path) -> std::path::PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The temporary file [`write_atomically`] writes `path` through.
fn partial_path(path: &Path) -> std::path::PathBuf {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    dir.join(format!(".{}.partial", file_name(path)))
}

/// Whether [`write_atomically`] could write `path` now: checked before long work whose result
/// goes there, so that a folder that cannot be written is said at once, not at the end.
pub fn check_writable(path: &Path) -> anyhow::Result<()> {
    let partial = partial_path(path);
    std::fs::File::create(&partial).with_context(|| format!("cannot write {}", path.display()))?;
    let _ = std::fs::remove_file(&partial);
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into place. On failure (a
/// full disk) the temporary file is removed and `path` is left as it was.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let partial = partial_path(path);
    let written = std::fs::File::create(&partial)
        .and_then(|mut file| file.write_all(bytes).and_then(|_| file.sync_all()))
        .with_context(|| format!("cannot write {}", path.display()))
        .and_then(|_| {
            std::fs::rename(&partial, path)
                .with_context(|| format!("cannot write {}", path.display()))
        });
    if written.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    written
}
