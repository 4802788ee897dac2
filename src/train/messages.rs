//! The two message types between the app and the trainer thread. Only plain values cross:
//! numbers, boxes, RGBA thumbnails and shared decoded images; tensors stay on the trainer thread.

use std::path::PathBuf;
use std::sync::Arc;

use crate::data::{Dataset, DatasetSummary, Diagnostic};
use crate::eval::{Detection, Evaluation};
use crate::geometry::Rect;
use crate::train::config::{LiveSettings, Strategy, TrainConfig};

/// UI → trainer.
#[derive(Clone, Debug)]
pub enum Command {
    /// Load the dataset in this folder, ending any run in progress. Answered by
    /// [`Event::DatasetLoaded`] or [`Event::DatasetFailed`].
    OpenDataset(PathBuf),
    /// Start a run on the loaded dataset from fresh initial weights, shared by every strategy.
    /// With `record`, a checkpoint goes into that run folder at every evaluation and at the end.
    Start {
        config: TrainConfig,
        record: Option<PathBuf>,
    },
    /// Continue the run recorded in this folder from its last checkpoint, on the loaded
    /// dataset, recording on into the same folder.
    Continue(PathBuf),
    /// Hold training after the current batch; answered by [`Event::Paused`].
    Pause,
    /// Go on after a pause; answered by [`Event::Resumed`].
    Resume,
    /// End the current run; the trainer stays up for another run. Answered by [`Event::RunEnded`].
    StopRun,
    /// The live settings (K, M, learning rate, NMS by loss, the negatives cap, evaluate-every),
    /// from the next batch on and for the next run. Answered by [`Event::SettingsAdopted`] with
    /// what the trainer took (clamped), or [`Event::Problem`] when they break a rule.
    SetLive(LiveSettings),
    /// Which strategies the next run trains (a run in progress keeps its own).
    SetStrategies(Vec<Strategy>),
    /// Evaluate every strategy on the validation split now.
    EvaluateNow,
    /// Save each strategy's weights as `<dir>/<strategy>.safetensors`.
    SaveCheckpoint(PathBuf),
    /// Map the OHEM model's object score over training image `image` with RoIs the size of
    /// `window` (original pixels): one read-only pass, between two steps. Answered by
    /// [`Event::ScoreMap`].
    ScoreMap { image: usize, window: Rect },
    /// Leave: the trainer ends the run, answers [`Event::Stopped`] and its thread ends.
    Shutdown,
}

/// Trainer → UI. The stream always ends with [`Event::Stopped`] or [`Event::Failed`].
#[derive(Clone, Debug)]
pub enum Event {
    /// A dataset opened (possibly with problems listed in `diagnostics`).
    DatasetLoaded {
        dataset: Arc<Dataset>,
        summary: DatasetSummary,
        diagnostics: Vec<Diagnostic>,
    },
    /// A dataset could not be opened at all; the previous one, if any, stays loaded.
    DatasetFailed { path: PathBuf, message: String },
    /// A run began.
    RunStarted(RunInfo),
    /// The live settings the trainer now uses: sent when a run starts or continues (a continued
    /// run brings its own) and after every [`Command::SetLive`], clamped. What the controls show.
    SettingsAdopted(LiveSettings),
    /// One batch trained by every strategy of the run.
    Step(StepReport),
    /// The hard examples OHEM selected in one batch, highest loss first. A preview: dropped
    /// when the UI is behind, so that training never waits for it.
    HardExamples(HardExampleBatch),
    /// How many [`Event::HardExamples`] were dropped since the last such event (sent before
    /// the next step): what was built from the previews (the label suspects) did not see them.
    PreviewsDropped(u64),
    /// An evaluation of one strategy on the validation split.
    Evaluated(Arc<EvalReport>),
    /// Training holds after the last batch.
    Paused,
    /// Training goes on.
    Resumed,
    /// A run ended (its step budget reached, or stopped); the trainer waits for commands.
    RunEnded { steps: u64, reason: String },
    /// Training diverged: a strategy's loss stayed non-finite or exploded for several steps. Its
    /// weights were set back to the last good ones and the run is paused; `message` says why.
    Diverged { message: String },
    /// Weights written.
    CheckpointSaved(Vec<PathBuf>),
    /// The answer to a [`Command::ScoreMap`].
    ScoreMap(ScoreMapReport),
    /// Something went wrong that did not end the trainer (a failed save, a NaN loss...).
    Problem(String),
    /// A checkpoint could not be written (a full disk): training goes on, but a run that
    /// cannot keep its checkpoints has not done what it was asked to.
    WriteFailed(String),
    /// Worth telling the person watching, not a problem (a bootstrapping scan).
    Info(String),
    /// The trainer thread ended cleanly. Always the last event unless [`Event::Failed`] is.
    Stopped,
    /// The trainer thread ended on an error or a panic.
    Failed { message: String },
}

/// What a run is doing, sent once when it starts.
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// "CPU" or the GPU's name.
    pub device: String,
    /// The detector in a few words: backbone, head, input size.
    pub detector: String,
    pub config: TrainConfig,
    /// The checkpoint's step when the run continues an earlier one (`None`: a fresh run).
    pub resumed_at_step: Option<u64>,
}

/// Per-strategy numbers of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct StrategyStep {
    pub strategy: Strategy,
    /// Mean loss over the examples this strategy backpropagated.
    pub trained_loss: f32,
    /// Mean loss over the whole batch from the read-only pass (comparable across strategies).
    pub batch_loss: f32,
    pub forward_ms: f32,
    pub select_ms: f32,
    pub train_ms: f32,
}

/// One step of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct StepReport {
    pub step: u64,
    /// Seconds since the run started, pauses excluded.
    pub elapsed_secs: f64,
    /// K set for this batch: it scored at most that many RoIs (its hard-example batch says how
    /// many it held).
    pub batch_size: usize,
    /// M used in this batch.
    pub hard_examples: usize,
    pub examples_per_sec: f32,
    pub strategies: Vec<StrategyStep>,
}

/// An RGBA image small enough to send every batch (empty by default: no pixels).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Thumbnail {
    pub width: usize,
    pub height: usize,
    /// `width * height * 4` bytes, row-major RGBA.
    pub rgba: Vec<u8>,
}

/// One selected example (RoI): what the read-only pass saw of it, and its pixels.
#[derive(Clone, Debug, PartialEq)]
pub struct HardExample {
    pub thumbnail: Thumbnail,
    pub seen: SeenExample,
}

/// What the read-only pass saw of one example of the batch, selected or not: enough to re-run
/// the selection in the app (what M, NMS by loss or the negatives cap would have picked).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeenExample {
    /// Index of the source image among the training images, `None` for a `pos/` crop.
    pub source_image: Option<usize>,
    /// Which image of its batch it lies on.
    pub batch_image: usize,
    /// The RoI in the source image's original pixels.
    pub window: Rect,
    /// 0 is background, `c + 1` is class `c`.
    pub label: usize,
    pub loss: f32,
    pub classification_loss: f32,
    pub score: f32,
}

impl SeenExample {
    /// This example as a pick shown with `thumbnail`.
    pub fn picked(self, thumbnail: Thumbnail) -> HardExample {
        HardExample {
            thumbnail,
            seen: self,
        }
    }
}

/// The hard examples of one batch.
#[derive(Clone, Debug, PartialEq)]
pub struct HardExampleBatch {
    pub step: u64,
    pub batch_size: usize,
    /// The selected examples, highest loss first.
    pub examples: Vec<HardExample>,
    /// Every example of the batch in batch order, as the read-only pass saw it.
    pub batch: Vec<SeenExample>,
}

/// The object score over one training image at one RoI size, as a grid of RoI positions.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreMapReport {
    /// The training image and the RoI asked about (original pixels).
    pub image: usize,
    pub window: Rect,
    /// The steps the scored weights had trained.
    pub step: u64,
    /// The RoI's size in the decoded image's pixels (width × height).
    pub roi_px: (f32, f32),
    /// The grid, or why there is none (no model yet, the image too small at this scale).
    pub map: Result<ScoreGrid, String>,
}

/// Object scores of a grid of RoI positions.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreGrid {
    pub cols: usize,
    pub rows: usize,
    /// `rows × cols`, row-major: the highest object-class probability of the RoI there.
    pub scores: Vec<f32>,
    /// The extent of the cells in the image's original pixels; each cell is centred on the
    /// centre of its RoI.
    pub area: Rect,
}

/// One strategy's evaluation on the validation split.
#[derive(Clone, Debug)]
pub struct EvalReport {
    pub step: u64,
    pub strategy: Strategy,
    /// Every detection above a low floor, so a score threshold can be applied later.
    pub detections: Vec<Detection>,
    pub evaluation: Evaluation,
    /// Mean RoI loss over the validation images' RoIs.
    pub val_loss: f32,
}

/// What a caught panic said, as one line: a libtorch error's C++ trace left out.
pub(crate) fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string());
    text.lines().next().unwrap_or_default().trim().to_string()
}
