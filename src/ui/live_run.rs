//! The live run: what the trainer said of the run in progress (its settings, device, step and
//! speed), whether its weights are saved, and the folder it is recorded in.

use std::path::PathBuf;

use crossbeam_channel::{bounded, Receiver, Sender};

use crate::run::{RecorderThread, RunLock};
use crate::train::messages::{RunInfo, StepReport};

/// Recording failures waiting to be shown (a recording stops at its first).
const RECORD_ERRORS_KEPT: usize = 16;

/// The run the trainer is training, as far as the app knows.
pub struct LiveRun {
    /// As the trainer announced it (`None` before a run, or after a viewed run was left).
    pub info: Option<RunInfo>,
    /// The step of the last batch trained.
    pub step: u64,
    pub examples_per_sec: f32,
    /// The step at which the weights were last written.
    pub saved_at_step: Option<u64>,
    /// Whether a model exists to evaluate or save (a run started since the dataset opened).
    pub has_weights: bool,
    /// Live runs are recorded in a new folder inside this one (`None`: not recorded).
    pub record_root: Option<PathBuf>,
    /// The folder the run in progress is recorded in.
    pub record_dir: Option<PathBuf>,
    /// Held while this app writes into `record_dir`.
    pub lock: Option<RunLock>,
    pub recorder: Option<RecorderThread>,
    /// Failures the recorder's thread reports, shown by the app.
    pub record_errors: (Sender<String>, Receiver<String>),
}

impl LiveRun {
    pub fn new(record_root: Option<PathBuf>) -> Self {
        Self {
            info: None,
            step: 0,
            examples_per_sec: 0.0,
            saved_at_step: None,
            has_weights: false,
            record_root,
            record_dir: None,
            lock: None,
            recorder: None,
            record_errors: bounded(RECORD_ERRORS_KEPT),
        }
    }

    /// No run shown any more.
    pub fn forget(&mut self) {
        self.info = None;
        self.step = 0;
        self.examples_per_sec = 0.0;
    }

    /// One step trained.
    pub fn record_step(&mut self, report: &StepReport) {
        self.step = report.step;
        self.examples_per_sec = report.examples_per_sec;
    }

    /// Steps trained since the weights were last saved, when a run is `active` and not
    /// recorded (a recorded run writes its checkpoint as it ends: closing loses nothing).
    pub fn unsaved_steps(&self, active: bool) -> u64 {
        if !active || self.recorder.is_some() {
            return 0;
        }
        self.step - self.saved_at_step.unwrap_or(0).min(self.step)
    }

    /// Device, step and speed, for the top bar.
    pub fn readout_ui(&self, ui: &mut egui::Ui) {
        let device = self.info.as_ref().map_or("–", |r| r.device.as_str());
        ui.label(format!("device: {device}"));
        ui.label(format!("step {}", self.step));
        ui.label(format!("{:.0} examples/s", self.examples_per_sec));
    }
}
