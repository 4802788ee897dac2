//! Stand-ins until the loader lands.
use super::*;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiagnosticKind {
    UnreadableImage,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub kind: DiagnosticKind,
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

#[derive(Clone, Debug)]
pub struct DatasetSummary {
    pub text: String,
}

impl std::fmt::Display for DatasetSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

pub fn summary(d: &Dataset) -> DatasetSummary {
    DatasetSummary {
        text: format!("{} train, {} val", d.train.len(), d.val.len()),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DatasetError(String);

pub fn load_dataset(
    root: &Path,
    _o: &LoadOptions,
) -> Result<(Dataset, Vec<Diagnostic>), DatasetError> {
    Err(DatasetError(format!("cannot load {}", root.display())))
}

pub fn list_images(_dir: &Path) -> Vec<PathBuf> {
    Vec::new()
}

pub fn decode_image(
    path: &Path,
    _o: &LoadOptions,
) -> Result<(image::RgbImage, u32, u32), Diagnostic> {
    Err(Diagnostic {
        path: path.to_path_buf(),
        line: None,
        kind: DiagnosticKind::UnreadableImage,
        message: String::new(),
    })
}
