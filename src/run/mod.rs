//! A run folder: the record of one training run, written as it goes by `train` and by the app,
//! read back by `--run` (a finished run, or one another process is still writing) and continued
//! by `--resume`. Every file is appended and flushed step by step, so a crash or a kill loses
//! at most the step being written; a reader takes complete lines and records only.
//!
//! | file | what | when |
//! |---|---|---|
//! | `config.json` | dataset folder, device, window, every setting | at the start |
//! | `validation.json` | class names, validation images and their boxes | at the start |
//! | `metrics.csv` | per step and strategy: losses, K, M, timings | every step |
//! | `hard_examples.csv` | OHEM's picks: image, window, label, losses, score | every step |
//! | `hard_examples.thumbs` | the picks' pixels: one JPEG grid per step | every step |
//! | `detections.csv` | every detection above the score floor | every evaluation |
//! | `eval.csv` | mAP, AP per class, validation loss, errors at best F1 | every evaluation |
//! | `checkpoint/` | weights, optimizer moments, counters (`train::resume`) | every evaluation, at least every minute |
//! | `model.json`, `<strategy>.safetensors` | the final weights | at the end |
//! | `label_suspects.csv`, `loss.png`, `map.png`, `pr.png` | summaries (`train`) | at the end |
//! | `.run.lock` | pid and host of the one process writing the folder (`RunLock`) | while it trains |

mod lock;
mod read;
mod record;
mod thumbs;

pub use lock::{RunLock, LOCK_FILE};
pub use read::RunReader;
pub use record::{Recorder, RecorderThread};

pub const CONFIG: &str = "config.json";
pub const VALIDATION: &str = "validation.json";
pub const METRICS: &str = "metrics.csv";
pub const HARD_EXAMPLES: &str = "hard_examples.csv";
pub const THUMBNAILS: &str = "hard_examples.thumbs";
pub const DETECTIONS: &str = "detections.csv";
pub const EVALUATIONS: &str = "eval.csv";

/// The columns of `metrics.csv`, as written and read.
pub(super) const METRICS_HEADER: [&str; 11] = [
    "step",
    "strategy",
    "elapsed_secs",
    "batch_size",
    "hard_examples",
    "trained_loss",
    "batch_loss",
    "forward_ms",
    "select_ms",
    "train_ms",
    "examples_per_sec",
];
/// The columns of `hard_examples.csv`.
pub(super) const HARD_HEADER: [&str; 13] = [
    "step",
    "rank",
    "image",
    "image_index",
    "x0",
    "y0",
    "x1",
    "y1",
    "label",
    "loss",
    "classification_loss",
    "score",
    "batch_size",
];
/// The columns of `detections.csv`.
pub(super) const DETECTIONS_HEADER: [&str; 9] = [
    "step", "strategy", "image", "class_id", "score", "x0", "y0", "x1", "y1",
];

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::eval::GroundTruth;
use crate::train::TrainConfig;

/// `config.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    /// The dataset folder, absolute when it could be resolved.
    pub data: PathBuf,
    /// "CPU" or the GPU's name (`device` is the setting: auto, cpu or cuda).
    pub device_name: String,
    /// The detector in a few words (backbone, head, input size).
    #[serde(default)]
    pub detector: String,
    #[serde(flatten)]
    pub train: TrainConfig,
}

/// `validation.json`: what scoring the recorded detections needs, without the dataset.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Validation {
    pub class_names: Vec<String>,
    /// Validation image files, by index.
    pub images: Vec<String>,
    pub boxes: Vec<GroundTruth>,
}

/// Whether `dir` looks like a run folder (it has `config.json` and `metrics.csv`).
pub fn is_run_folder(dir: &Path) -> bool {
    dir.join(CONFIG).is_file() && dir.join(METRICS).is_file()
}
