//! What can go wrong while loading a dataset: per-item [`Diagnostic`]s that never stop a load,
//! and the few [`DatasetError`]s that leave nothing to load.

use std::fmt;
use std::path::{Path, PathBuf};

/// The kind of problem a [`Diagnostic`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum DiagnosticKind {
    /// The image is corrupt, truncated, missing or in an unknown format; it is skipped.
    UnreadableImage,
    /// The image header states more pixels than [`super::LoadOptions::max_pixels`]; it is skipped
    /// without being decoded.
    ImageTooLarge,
    /// A label line, XML or JSON document (or one of its fields) cannot be understood.
    MalformedLabel,
    /// A box lies entirely outside its image; it is dropped.
    BoxOutsideImage,
    /// A box lies mostly outside its image (a warning: it is clipped to the image and kept).
    BoxClipped,
    /// A box has zero or negative width or height; it is dropped.
    EmptyBox,
    /// A box names a class the dataset does not declare; it is dropped.
    UnknownClass,
    /// An annotation refers to an image that does not exist.
    LabelWithoutImage,
    /// A folder the dataset names (e.g. in `data.yaml`) does not exist.
    MissingFolder,
    /// An annotation states an image size that differs from the decoded one (a warning: the
    /// decoded size is used).
    SizeMismatch,
    /// A symbolic link that leads outside the dataset folder, or back into a folder the walk is
    /// already in (a cycle); it is not followed.
    Symlink,
    /// A path that data.yaml, a list file or an annotation names leads outside the dataset
    /// folder; it is not read.
    OutsideDataset,
    /// An image, image id or category given twice, or one file reached by two paths; the
    /// first is kept and the message says what becomes of the other.
    Duplicate,
    /// The walk stopped after reading [`super::LoadOptions::max_files_scanned`] entries; what it
    /// found by then loads.
    ScanLimit,
    /// Not a problem: a choice the loader made where the dataset left it open (class names it
    /// made up, how it read the split folders, images it turned upright), said so that it can
    /// be checked.
    Note,
}

/// One problem found while loading, tied to the file (and line, when known) it comes from.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based line in `path`, when the problem sits on one line.
    pub line: Option<usize>,
    pub kind: DiagnosticKind,
    /// Plain-English reason, e.g. "box 3 lies outside the 640×480 image".
    pub message: String,
}

impl Diagnostic {
    pub fn new(path: &Path, kind: DiagnosticKind, message: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            line: None,
            kind,
            message: message.into(),
        }
    }

    pub fn at_line(
        path: &Path,
        line: usize,
        kind: DiagnosticKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            line: Some(line),
            ..Self::new(path, kind, message)
        }
    }

    /// A [`DiagnosticKind::Note`] about `path`.
    pub fn note(path: &Path, message: impl Into<String>) -> Self {
        Self::new(path, DiagnosticKind::Note, message)
    }

    /// Whether this is a note on a choice the loader made rather than a problem.
    pub fn is_note(&self) -> bool {
        self.kind == DiagnosticKind::Note
    }

    /// Whether the problem is only a warning or a note: the item it concerns still loads.
    pub fn is_warning(&self) -> bool {
        matches!(
            self.kind,
            DiagnosticKind::SizeMismatch | DiagnosticKind::BoxClipped | DiagnosticKind::Note
        )
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if self.kind == DiagnosticKind::Note {
            f.write_str(": note")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Reads the whole of `path` with `read`. When it cannot be read, notes why (as "cannot read
/// {what}: …") and returns `None`, so that the caller skips only this file.
pub(crate) fn read_or_note<'p, T>(
    path: &'p Path,
    what: &str,
    read: impl FnOnce(&'p Path) -> std::io::Result<T>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<T> {
    match read(path) {
        Ok(contents) => Some(contents),
        Err(e) => {
            diagnostics.push(Diagnostic::new(
                path,
                DiagnosticKind::MalformedLabel,
                format!("cannot read {what}: {e}"),
            ));
            None
        }
    }
}

/// The largest coordinate in pixels an annotation may give: far beyond any image this program
/// decodes, so a larger one is a damaged number, not a box.
pub(crate) const MAX_COORDINATE_PX: f64 = 1e6;

/// `value` as a pixel coordinate, or why it cannot be one (`what` names it in the message).
pub(crate) fn pixel_coordinate(value: f64, what: &str) -> Result<f32, String> {
    if !value.is_finite() {
        return Err(format!("{what} is not a number"));
    }
    if value.abs() > MAX_COORDINATE_PX {
        return Err(format!(
            "{what} lies beyond any image (at most {MAX_COORDINATE_PX:e} px)"
        ));
    }
    Ok(value as f32)
}

/// Why a path that names a pipe, socket or device is not read: reading a pipe would wait
/// for a writer forever.
pub(crate) const NOT_A_REGULAR_FILE: &str =
    "not a regular file (a pipe, socket or device): it is not read";

/// The bytes of the regular file `path`; anything else is refused before it is opened.
pub(crate) fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    if !std::fs::metadata(path)?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            NOT_A_REGULAR_FILE,
        ));
    }
    std::fs::read(path)
}

/// [`read_file`] as UTF-8 text.
pub(crate) fn read_text(path: &Path) -> std::io::Result<String> {
    String::from_utf8(read_file(path)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The message of [`DatasetError::Cancelled`], for callers that only see the error as text.
pub const LOADING_CANCELLED: &str = "loading cancelled";

/// A problem that leaves nothing to load.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// [`super::LoadOptions::cancel`] was set while loading.
    #[error("{}", LOADING_CANCELLED)]
    Cancelled,
    #[error("dataset folder {} does not exist", .0.display())]
    MissingFolder(PathBuf),
    #[error("{} is not a folder", .0.display())]
    NotAFolder(PathBuf),
    #[error(
        "no known dataset layout in {}: looked for data.yaml or images/ + labels/ (YOLO), \
         Annotations/ or annots/ or XML beside images (Pascal VOC), a COCO JSON at the top or in \
         annotations/, and pos/ + neg/ folders",
        .root.display()
    )]
    UnknownLayout { root: PathBuf },
    #[error(
        "no usable image in {} ({}{})",
        .root.display(),
        problem_count(.diagnostics.len()),
        first_problem(.diagnostics)
    )]
    Empty {
        root: PathBuf,
        /// Every problem found, so that the caller can show why nothing loaded.
        diagnostics: Vec<Diagnostic>,
    },
}

fn problem_count(count: usize) -> String {
    match count {
        1 => "1 problem found".to_string(),
        n => format!("{n} problems found"),
    }
}

fn first_problem(diagnostics: &[Diagnostic]) -> String {
    match diagnostics.first() {
        Some(first) => format!("; the first: {first}"),
        None => String::new(),
    }
}
