//! [`OhemApp`]: owns the trainer thread, turns its events into view state in `logic`, and draws
//! the window in `ui`. Commands go to the trainer only from user actions.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, TryRecvError};
use egui::RichText;

use super::controls::{controls_ui, ControlAction, Controls};
use super::curves::{PlotsState, REFRESH_INTERVAL};
use super::dataset_panel::DatasetPanel;
use super::detections::{detections_ui, shown_report, DetectionsState};
use super::hard_examples::{examples_panel_ui, ExamplesAction, GalleryContext, HardExamplesState};
use super::images::ImageTextures;
use super::live_run::LiveRun;
use super::message_log::MessageLog;
use super::picker::{FolderPicker, PickAnswer};
use super::plot_files::{save_plots, SweepView};
use super::plots::{error_breakdown_ui, loss_plot_ui, map_plot_ui, plot_settings_ui, pr_plot_ui};
use super::run_views::RunViews;
use super::runs::{new_run_dir, recorded_until, unix_secs, RunFollower};
use super::theme;
use super::what_if::WhatIfSettings;
use crate::data::{Dataset, Diagnostic};
use crate::run::{Recorder, RecorderThread, RunLock};
use crate::train::config::Strategy;
use crate::train::messages::{
    Command, EvalReport, Event, HardExampleBatch, RunInfo, ScoreMapReport,
};
use crate::train::suspects::Suspect;
use crate::train::thread::TrainerHandle;

/// How long closing the window waits for the trainer to end its run and write its checkpoint.
const CLOSING_WAIT: Duration = Duration::from_secs(5);

/// How the app starts.
pub struct AppOptions {
    /// Dataset folder opened at launch (`None`: wait for the person to pick one).
    pub data_dir: Option<PathBuf>,
    /// Start training as soon as that dataset is loaded.
    pub start: bool,
    /// Asks for folders (the system dialog in the app, a fake in tests).
    pub picker: Box<dyn FolderPicker>,
    /// Run folders opened at launch: the first shown in full, the others overlaid on its plots.
    pub runs: Vec<PathBuf>,
    /// Live runs are recorded in a new run folder inside this one (`None`: not recorded).
    pub record_into: Option<PathBuf>,
}

/// What the trainer is doing, as far as the app knows.
#[derive(Clone, Debug, PartialEq)]
pub enum Status {
    NoDataset,
    Loading(PathBuf),
    Ready,
    Starting,
    Running,
    Paused,
    RunEnded(String),
    /// The trainer thread ended; the next action starts a new one.
    TrainerEnded(String),
    /// Showing a recorded run, and what is added to it.
    Viewing(PathBuf),
}

impl Status {
    fn text(&self) -> String {
        match self {
            Status::NoDataset => "no dataset: open a folder".into(),
            Status::Loading(path) => format!("loading {}…", path.display()),
            Status::Ready => "ready: press Start".into(),
            Status::Starting => "starting…".into(),
            Status::Running => "running".into(),
            Status::Paused => "paused".into(),
            Status::RunEnded(reason) => format!("run ended ({reason})"),
            Status::TrainerEnded(why) => format!("trainer ended ({why})"),
            Status::Viewing(dir) => format!("run {}", dir.display()),
        }
    }
}

/// An action that would end a run with unsaved progress, waiting for the person to confirm.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Confirm {
    OpenDataset(PathBuf),
    CloseWindow,
}

/// What a pending folder pick is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PickPurpose {
    OpenDataset,
    SaveWeights,
    ExportCsv,
    ExportSuspects,
    SavePlots,
    OpenSweep,
    OpenRun,
    OverlayRun,
}

/// The ohem-studio window.
pub struct OhemApp {
    ctx: egui::Context,
    trainer: Option<TrainerHandle>,
    picker: Box<dyn FolderPicker>,
    pending_pick: Option<(PickPurpose, Receiver<PickAnswer>)>,
    /// Asked before ending a run whose progress is not saved.
    confirm: Option<Confirm>,
    /// The person agreed to close the window although the run was not saved.
    close_confirmed: bool,
    status: Status,
    start_when_loaded: bool,
    /// The dataset: its folder, summary and problems.
    data: DatasetPanel,
    /// The run in progress: its settings, step, saved weights and record.
    live: LiveRun,
    /// Recorded runs: viewed, waiting for their dataset, overlaid; a sweep.
    views: RunViews,
    log: MessageLog,
    controls: Controls,
    plots: PlotsState,
    hard_examples: HardExamplesState,
    detections: DetectionsState,
    latest_evaluations: BTreeMap<Strategy, Arc<EvalReport>>,
    textures: ImageTextures,
}

impl OhemApp {
    /// Builds the app and starts its trainer thread; opens `options.data_dir` if given.
    pub fn new(ctx: &egui::Context, options: AppOptions) -> Self {
        let mut app = Self {
            ctx: ctx.clone(),
            trainer: None,
            picker: options.picker,
            pending_pick: None,
            confirm: None,
            close_confirmed: false,
            status: Status::NoDataset,
            start_when_loaded: false,
            data: DatasetPanel::default(),
            live: LiveRun::new(options.record_into),
            views: RunViews::default(),
            log: MessageLog::default(),
            controls: Controls::default(),
            plots: PlotsState::default(),
            hard_examples: HardExamplesState::default(),
            detections: DetectionsState::default(),
            latest_evaluations: BTreeMap::new(),
            textures: ImageTextures::default(),
        };
        app.trainer = app.spawn_trainer();
        if let Some(dir) = options.data_dir {
            app.open_dataset(dir);
            app.start_when_loaded = options.start;
        }
        for (i, dir) in options.runs.into_iter().enumerate() {
            match i {
                0 => app.open_run(dir),
                _ => app.overlay_run(dir),
            }
        }
        app
    }

    fn waker(&self) -> crate::train::Waker {
        let ctx = self.ctx.clone();
        Arc::new(move || ctx.request_repaint_after(Duration::from_millis(10)))
    }

    fn spawn_trainer(&mut self) -> Option<TrainerHandle> {
        match TrainerHandle::spawn(self.waker()) {
            Ok(handle) => Some(handle),
            Err(error) => {
                self.problem(format!("cannot start the trainer thread: {error}"));
                None
            }
        }
    }

    /// Sends a command, first starting a new trainer (and reopening the dataset) if the last
    /// one ended.
    fn send(&mut self, command: Command) -> bool {
        let alive = self.trainer.as_ref().is_some_and(|t| !t.is_finished());
        if !alive {
            self.trainer = self.spawn_trainer();
            let reopen = self
                .data
                .dataset
                .as_ref()
                .map(|d| d.root.clone())
                .filter(|_| !matches!(command, Command::OpenDataset(_)));
            if let (Some(root), Some(trainer)) = (reopen, &self.trainer) {
                trainer.send(Command::OpenDataset(root));
            }
        }
        let sent = self.trainer.as_ref().is_some_and(|t| t.send(command));
        if !sent {
            self.problem("the trainer is not answering; try again".into());
        }
        sent
    }

    /// A problem, in the banner, the message log and on stderr.
    fn problem(&mut self, text: String) {
        self.log.problem(text);
    }

    /// Asks the trainer to load the dataset in `dir`. A path that is no folder is refused here,
    /// and a run with unsaved progress is ended only once the person confirms.
    pub fn open_dataset(&mut self, dir: PathBuf) {
        if !dir.is_dir() {
            self.problem(format!(
                "cannot open {}: no such folder (the current dataset and run are unchanged)",
                dir.display()
            ));
            return;
        }
        if self.unsaved_steps() > 0 {
            self.confirm = Some(Confirm::OpenDataset(dir));
            return;
        }
        self.load_dataset(dir);
    }

    fn load_dataset(&mut self, dir: PathBuf) {
        self.views.viewing = None;
        self.data.path_text = dir.display().to_string();
        self.data.path = Some(dir.clone());
        self.start_when_loaded = false;
        if self.send(Command::OpenDataset(dir.clone())) {
            self.status = Status::Loading(dir);
        }
    }

    /// Steps of the run in progress trained since its weights were last saved (0 when no run
    /// is in progress).
    pub fn unsaved_steps(&self) -> u64 {
        let active = matches!(self.status, Status::Running | Status::Paused);
        self.live.unsaved_steps(active)
    }

    /// Starts a run with the current controls.
    pub fn start(&mut self) {
        if self.controls.strategies.is_empty() {
            self.problem("choose at least one strategy before starting".into());
            return;
        }
        if self.data.dataset.is_none() {
            self.problem("open a dataset before starting".into());
            return;
        }
        let lock = self.new_record_dir();
        let record = lock.as_ref().map(|l| l.dir().to_path_buf());
        let command = Command::Start {
            config: self.controls.train_config(),
            record: record.clone(),
        };
        if self.send(command) {
            self.live.record_dir = record;
            self.live.lock = lock;
            self.views.viewing = None;
            self.status = Status::Starting;
        }
    }

    /// A new folder for the next live run's record, created and locked; `None` (said why) when
    /// the app does not record or the folder cannot be made: the run then trains unrecorded.
    fn new_record_dir(&mut self) -> Option<RunLock> {
        let root = self.live.record_root.as_ref()?;
        let dir = new_run_dir(root, &self.data.dataset.as_ref()?.root);
        match RunLock::take(&dir) {
            Ok(lock) => Some(lock),
            Err(error) => {
                self.problem(format!("the run is not recorded: {error:#}"));
                None
            }
        }
    }

    /// Shows the run recorded in `dir` (opening its dataset first when it is on this machine);
    /// while a run trains, overlays it on the plots instead.
    pub fn open_run(&mut self, dir: PathBuf) {
        if matches!(
            self.status,
            Status::Running | Status::Paused | Status::Starting
        ) {
            return self.overlay_run(dir);
        }
        let follower = match RunFollower::open(&dir, true, self.waker()) {
            Ok(follower) => follower,
            Err(error) => return self.problem(format!("cannot open the run: {error:#}")),
        };
        let data = follower.data().to_path_buf();
        let loaded = self.data.holds(&data);
        if !loaded && data.is_dir() {
            self.views.pending = Some(follower);
            self.load_dataset(data);
            return;
        }
        if !loaded {
            self.log.push(
                format!(
                    "the run's dataset {} is not on this machine: its curves, hard examples and scores are shown, without images",
                    data.display()
                ),
                false,
            );
            self.data.forget();
        }
        self.view(follower);
    }

    fn view(&mut self, follower: RunFollower) {
        let changed = match (&self.data.dataset, follower.validation()) {
            (Some(d), Some(v)) => {
                v.images.len() != d.val.len() || v.boxes != crate::eval::ground_truth(&d.val)
            }
            _ => false,
        };
        if changed {
            self.log.push(
                format!(
                    "the dataset at {} has changed since the run: its images are not shown",
                    follower.data().display()
                ),
                false,
            );
            self.data.forget();
        }
        self.forget_run();
        self.detections = DetectionsState::default();
        self.live.has_weights = false;
        self.status = Status::Viewing(follower.dir().to_path_buf());
        self.views.viewing = Some(follower);
    }

    /// Draws the run recorded in `dir` over the plots, following it as it grows.
    pub fn overlay_run(&mut self, dir: PathBuf) {
        match RunFollower::open(&dir, false, self.waker()) {
            Ok(follower)
                if self
                    .views
                    .overlays
                    .iter()
                    .any(|o| o.name() == follower.name()) =>
            {
                self.problem(format!(
                    "a run named {} is overlaid already",
                    follower.name()
                ))
            }
            Ok(follower) => self.views.overlays.push(follower),
            Err(error) => self.problem(format!("cannot overlay the run: {error:#}")),
        }
    }

    /// Continues the viewed run from its last checkpoint, recording on into its folder.
    fn continue_run(&mut self) {
        let Some(dir) = self.views.viewing.as_ref().map(|v| v.dir().to_path_buf()) else {
            return;
        };
        // Refused while another process trains into the folder.
        let lock = match RunLock::take(&dir) {
            Ok(lock) => lock,
            Err(error) => return self.problem(format!("{error:#}")),
        };
        if self.send(Command::Continue(dir.clone())) {
            self.live.record_dir = Some(dir);
            self.live.lock = Some(lock);
            self.views.viewing = None;
            self.status = Status::Starting;
        }
    }

    /// Takes what the followed runs recorded since the last frame.
    fn drain_runs(&mut self) {
        let viewed = self.views.viewing.as_mut().map(RunFollower::take_events);
        for event in viewed.into_iter().flatten() {
            self.apply_recorded(event);
        }
        let mut problems = self.views.draw_overlays(&mut self.plots);
        while let Ok(message) = self.live.record_errors.1.try_recv() {
            problems.push(message);
        }
        for message in problems {
            self.problem(message);
        }
    }

    /// One record of a viewed run: shown as the live run's would be, without its status.
    fn apply_recorded(&mut self, event: Event) {
        match event {
            Event::RunStarted(info) => {
                self.controls.adopt(info.config.live());
                self.live.info = Some(info);
            }
            Event::Step(report) => {
                self.live.record_step(&report);
                self.plots.record_step(&report);
            }
            other => self.apply_event(other),
        }
    }

    /// Starts recording the run that just started into its folder; a continued run's past is
    /// read back first, so its curves go on from where they were.
    fn start_recording(&mut self, info: &RunInfo) {
        let (Some(dir), Some(dataset)) = (self.live.record_dir.clone(), self.data.dataset.clone())
        else {
            return;
        };
        if let Some(step) = info.resumed_at_step {
            match recorded_until(&dir, step) {
                Ok(past) => past.into_iter().for_each(|e| self.apply_recorded(e)),
                Err(error) => self.problem(format!("cannot read the run's past: {error:#}")),
            }
        }
        let errors = self.live.record_errors.0.clone();
        let recorder = Recorder::start(&dir, dataset.clone(), &dataset.root, info).and_then(|r| {
            let on_error = move |message: String| {
                let _ = errors.try_send(message);
            };
            Ok(RecorderThread::spawn(r, on_error)?)
        });
        match recorder {
            Ok(recorder) => {
                self.log
                    .push(format!("recording into {}", dir.display()), false);
                self.live.recorder = Some(recorder);
            }
            Err(error) => self.problem(format!(
                "the run is not recorded: cannot write {}: {error:#}",
                dir.display()
            )),
        }
    }

    /// Applies one trainer event to the app's state: what `logic` does with each event it
    /// drains, public so that tests and benchmarks can feed the app directly.
    pub fn apply_event(&mut self, event: Event) {
        if let Some(recorder) = &mut self.live.recorder {
            recorder.record(&event);
        }
        match event {
            Event::DatasetLoaded {
                dataset,
                summary,
                diagnostics,
            } => self.dataset_loaded(dataset, summary.to_string(), diagnostics),
            Event::DatasetFailed { path, message } => self.dataset_failed(&path, &message),
            Event::RunStarted(info) => {
                self.forget_run();
                self.live.saved_at_step = None;
                self.live.recorder = None;
                self.start_recording(&info);
                self.live.info = Some(info);
                self.live.has_weights = true;
                self.status = Status::Running;
            }
            Event::Step(report) => {
                self.live.record_step(&report);
                self.plots.record_step(&report);
                if matches!(self.status, Status::Starting) {
                    self.status = Status::Running;
                }
            }
            Event::HardExamples(batch) => self
                .hard_examples
                .record(batch, self.data.dataset.as_deref()),
            Event::ScoreMap(report) => self.hard_examples.take_score_map(report),
            Event::Evaluated(report) => {
                self.plots.record_evaluation(&report);
                self.latest_evaluations.insert(report.strategy, report);
                if self.controls.threshold_follows_best_f1 {
                    if let Some(score) = self.best_f1_score() {
                        self.controls.set_threshold_to_best_f1(score);
                    }
                }
            }
            Event::SettingsAdopted(live) => self.controls.adopt(live),
            Event::PreviewsDropped(count) => self.hard_examples.previews_dropped(count),
            Event::Paused => self.status = Status::Paused,
            Event::Resumed => self.status = Status::Running,
            Event::RunEnded { steps, reason } => {
                // Dropping the recorder writes out what it still holds; then the folder is
                // free, unless this is the end of the run that a new one replaces.
                self.live.recorder = None;
                if self.status != Status::Starting {
                    self.live.lock = None;
                }
                self.log
                    .push(format!("run ended after {steps} steps: {reason}"), false);
                self.status = Status::RunEnded(reason);
            }
            Event::CheckpointSaved(paths) => {
                self.live.saved_at_step = Some(self.live.step);
                let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                self.log
                    .push(format!("weights saved: {}", names.join(", ")), false);
            }
            Event::Problem(message) | Event::Diverged { message } | Event::WriteFailed(message) => {
                // A run that could not start leaves the app ready for another try.
                if self.status == Status::Starting {
                    self.status = Status::Ready;
                    self.live.lock = None;
                }
                self.problem(message)
            }
            Event::Info(text) => self.log.push(text, false),
            Event::Stopped => self.status = Status::TrainerEnded("stopped".into()),
            Event::Failed { message } => {
                self.live.recorder = None;
                self.live.lock = None;
                self.problem(message.clone());
                self.status = Status::TrainerEnded(message);
            }
        }
    }

    fn dataset_loaded(
        &mut self,
        dataset: Arc<Dataset>,
        summary: String,
        diagnostics: Vec<Diagnostic>,
    ) {
        self.data.loaded(dataset, summary, diagnostics);
        self.textures.clear();
        if self.views.viewing.is_some() {
            // The same dataset again, for a restarted trainer: the viewed run stays.
            return;
        }
        self.forget_run();
        self.detections = DetectionsState::default();
        self.live.has_weights = false;
        self.status = Status::Ready;
        if let Some(run) = self.views.pending.take() {
            self.view(run);
        }
        if std::mem::take(&mut self.start_when_loaded) {
            self.start();
        }
    }

    /// The dataset in `path` did not open: the one before (if any) stays; a run waiting for
    /// it is shown without images.
    fn dataset_failed(&mut self, path: &std::path::Path, message: &str) {
        self.start_when_loaded = false;
        if message == crate::data::LOADING_CANCELLED {
            self.log
                .push(format!("loading {} cancelled", path.display()), false);
        } else {
            self.problem(format!("cannot open {}: {message}", path.display()));
        }
        self.status = if self.data.dataset.is_some() {
            Status::Ready
        } else {
            Status::NoDataset
        };
        if let Some(run) = self.views.pending.take() {
            self.data.dataset = None;
            self.view(run);
        }
    }

    fn forget_run(&mut self) {
        self.live.forget();
        self.plots.clear();
        self.hard_examples.clear();
        self.latest_evaluations.clear();
    }

    /// The step of the last batch trained.
    pub fn step(&self) -> u64 {
        self.live.step
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The step of the oldest of the strategies' latest evaluations (they arrive from the
    /// evaluator thread a while after their step).
    pub fn evaluated_step(&self) -> Option<u64> {
        self.latest_evaluations.values().map(|r| r.step).min()
    }

    /// The dataset open in the app.
    pub fn dataset(&self) -> Option<&Arc<Dataset>> {
        self.data.dataset.as_ref()
    }

    /// The names of the runs overlaid on the plots.
    pub fn overlaid_runs(&self) -> Vec<String> {
        self.plots.overlay_names()
    }

    /// The hard-example batch on screen.
    pub fn shown_hard_examples(&self) -> Option<&HardExampleBatch> {
        self.hard_examples.shown_batch()
    }

    /// The label suspects of the run so far, most picked first.
    pub fn label_suspects(&self) -> &[Suspect] {
        self.hard_examples.suspects().suspects()
    }

    /// The object-score map of the opened source image, once the trainer has sent it.
    pub fn shown_score_map(&self) -> Option<&ScoreMapReport> {
        self.hard_examples.source()?.score_map()
    }

    /// The selection the controls would make, for the what-if view (once a run has started).
    fn what_if_settings(&self) -> Option<WhatIfSettings> {
        let run = self.live.info.as_ref()?;
        Some(WhatIfSettings {
            selection: self.controls.selection(),
            ranked_by: run.config.ohem_loss,
        })
    }

    /// The hard examples or the label suspects, and what they ask for.
    fn examples_panel_ui(&mut self, ui: &mut egui::Ui) {
        let context = GalleryContext {
            threshold: self.controls.score_threshold,
            what_if: self.what_if_settings(),
            running: matches!(self.status, Status::Running | Status::Starting),
            empty_hint: match self.status {
                Status::Loading(_) => "No batch yet: the dataset is still loading.",
                Status::Starting | Status::Running => "No batch yet: the first one is on its way.",
                _ if self.data.dataset.is_none() => {
                    "No batch yet: open a dataset, then press Start."
                }
                _ => "No batch yet: press Start.",
            },
        };
        let action = examples_panel_ui(
            ui,
            &mut self.hard_examples,
            self.data.dataset.as_deref(),
            &mut self.textures,
            context,
        );
        match action {
            Some(ExamplesAction::ScoreMap { .. }) if self.views.viewing.is_some() => {
                self.problem(
                    "the heat map needs the run's model: continue training the run to map its scores"
                        .into(),
                );
            }
            Some(ExamplesAction::ScoreMap { image, window }) => {
                self.send(Command::ScoreMap { image, window });
            }
            Some(ExamplesAction::ExportSuspects) => {
                self.pick(PickPurpose::ExportSuspects, "Folder for label_suspects.csv");
            }
            None => {}
        }
    }

    /// The y range (low, high) the loss plot was last drawn with.
    pub fn loss_plot_y_range(&self) -> Option<(f64, f64)> {
        self.plots.drawn_loss_y_range
    }

    /// The score of the best-F1 point of the evaluation the detections viewer shows.
    pub fn best_f1_score(&self) -> Option<f32> {
        shown_report(&self.detections, &self.latest_evaluations)
            .map(|r| r.evaluation.best_f1_point().score)
    }

    /// The score threshold every view applies.
    pub fn score_threshold(&self) -> f32 {
        self.controls.score_threshold
    }

    /// Whether the trainer thread has ended (or was never started).
    pub fn trainer_finished(&self) -> bool {
        self.trainer.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Ends the trainer thread, waiting up to `timeout`; `true` when it ended.
    /// The run's last steps still go into its record, which is then written out.
    pub fn shutdown(&mut self, timeout: Duration) -> bool {
        let mut recorder = self.live.recorder.take();
        let record = |event: Event| {
            if let Some(recorder) = &mut recorder {
                recorder.record(&event);
            }
        };
        self.trainer
            .as_mut()
            .is_none_or(|t| t.shutdown_with(timeout, record))
    }

    fn poll_picker(&mut self) {
        let Some((purpose, answers)) = &self.pending_pick else {
            return;
        };
        let purpose = *purpose;
        let answer = match answers.try_recv() {
            Ok(answer) => answer,
            Err(TryRecvError::Empty) => {
                // The dialog's thread cannot wake the UI: look again shortly.
                self.ctx.request_repaint_after(Duration::from_millis(100));
                return;
            }
            Err(TryRecvError::Disconnected) => PickAnswer::Cancelled,
        };
        self.pending_pick = None;
        let folder = match answer {
            PickAnswer::Folder(folder) => folder,
            PickAnswer::Cancelled => return,
            PickAnswer::NoDialog(why) => return self.no_dialog(purpose, &why),
        };
        match purpose {
            PickPurpose::OpenDataset => self.open_dataset(folder),
            PickPurpose::SaveWeights => self.save_weights_in(&folder),
            PickPurpose::ExportCsv => self.export_csv_in(&folder),
            PickPurpose::ExportSuspects => self.export_suspects_in(&folder),
            PickPurpose::SavePlots => self.save_plots_in(&folder),
            PickPurpose::OpenRun => self.open_run(folder),
            PickPurpose::OverlayRun => self.overlay_run(folder),
            PickPurpose::OpenSweep => match SweepView::open(&self.ctx, &folder) {
                Ok(view) => self.views.sweep = Some(view),
                Err(error) => self.problem(format!("{error:#}")),
            },
        }
    }

    fn save_plots_in(&mut self, folder: &std::path::Path) {
        match save_plots(folder, &self.plots, &self.latest_evaluations) {
            Ok(paths) => {
                let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                self.log
                    .push(format!("plots written: {}", names.join(", ")), false)
            }
            Err(error) => self.problem(format!("cannot write the plots: {error:#}")),
        }
    }

    fn export_suspects_in(&mut self, folder: &std::path::Path) {
        let path = folder.join("label_suspects.csv");
        let images = self.data.dataset.as_ref().map_or(&[][..], |d| &d.train[..]);
        let written = self
            .hard_examples
            .suspects()
            .csv(images)
            .and_then(|bytes| crate::files::write_atomically(&path, &bytes));
        match written {
            Ok(()) => self.log.push(
                format!("label suspects written to {}", path.display()),
                false,
            ),
            Err(error) => self.problem(format!("cannot write {}: {error:#}", path.display())),
        }
    }

    fn export_csv_in(&mut self, folder: &std::path::Path) {
        let path = folder.join("loss_curves.csv");
        match self.plots.write_csv(&path) {
            Ok(()) => self
                .log
                .push(format!("curves written to {}", path.display()), false),
            Err(error) => self.problem(format!("cannot write {}: {error:#}", path.display())),
        }
    }

    /// Saves every strategy's weights into a new `runs/<seconds>/` folder inside `folder`.
    fn save_weights_in(&mut self, folder: &std::path::Path) {
        self.send(Command::SaveCheckpoint(
            folder.join("runs").join(unix_secs().to_string()),
        ));
    }

    /// No dialog could be shown: say so, and do what can be done without one.
    fn no_dialog(&mut self, purpose: PickPurpose, why: &str) {
        match purpose {
            PickPurpose::OpenDataset => self.problem(format!(
                "no folder dialog could be shown ({why}): type the dataset's path into the Folder field and press Enter"
            )),
            PickPurpose::OpenSweep => self.problem(format!(
                "no folder dialog could be shown ({why}): a sweep's heat map is sweep.png in its folder"
            )),
            PickPurpose::OpenRun | PickPurpose::OverlayRun => self.problem(format!(
                "no folder dialog could be shown ({why}): open runs with ohem-studio --run RUN_DIR (repeat --run to overlay)"
            )),
            PickPurpose::SaveWeights
            | PickPurpose::ExportCsv
            | PickPurpose::ExportSuspects
            | PickPurpose::SavePlots => {
                let here = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
                self.problem(format!(
                    "no folder dialog could be shown ({why}): writing into {} instead",
                    here.display()
                ));
                match purpose {
                    PickPurpose::SaveWeights => self.save_weights_in(&here),
                    PickPurpose::ExportSuspects => self.export_suspects_in(&here),
                    PickPurpose::SavePlots => self.save_plots_in(&here),
                    _ => self.export_csv_in(&here),
                }
            }
        }
    }

    fn pick(&mut self, purpose: PickPurpose, title: &str) {
        if self.pending_pick.is_some() {
            return;
        }
        let start_dir = self.data.path.clone();
        self.pending_pick = Some((purpose, self.picker.pick_folder(title, start_dir)));
    }

    fn top_bar_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            if ui
                .add_enabled(
                    self.pending_pick.is_none(),
                    egui::Button::new("Open dataset…"),
                )
                .clicked()
            {
                self.pick(PickPurpose::OpenDataset, "Open a dataset folder");
            }
            let label = ui.label("Folder:");
            let field = ui
                .add(
                    egui::TextEdit::singleline(&mut self.data.path_text)
                        .hint_text("dataset folder, Enter opens it")
                        .desired_width(260.0),
                )
                .labelled_by(label.id);
            if field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)) {
                let path = PathBuf::from(self.data.path_text.trim());
                self.open_dataset(path);
            }
            if ui
                .add_enabled(self.pending_pick.is_none(), egui::Button::new("Open run…"))
                .on_hover_text("Shows a run folder (train --out, or the app's recording) and follows it while it grows")
                .clicked()
            {
                self.pick(PickPurpose::OpenRun, "Open a run folder");
            }
            if matches!(self.status, Status::Loading(_)) && ui.button("Cancel loading").clicked() {
                if let Some(trainer) = &self.trainer {
                    trainer.cancel_loading();
                }
            }
            ui.separator();
            self.run_buttons_ui(ui);
            ui.separator();
            self.live.readout_ui(ui);
            ui.separator();
            ui.label(RichText::new(self.status.text()).strong());
        });
        self.log.banner_ui(ui);
    }

    /// Start, Pause, Resume, Stop, and Continue for a viewed run.
    fn run_buttons_ui(&mut self, ui: &mut egui::Ui) {
        let can_start = self.data.dataset.is_some()
            && !matches!(self.status, Status::Loading(_) | Status::Starting);
        if ui
            .add_enabled(can_start, egui::Button::new("Start"))
            .clicked()
        {
            self.start();
        }
        let running = self.status == Status::Running;
        let paused = self.status == Status::Paused;
        if ui
            .add_enabled(running, egui::Button::new("Pause"))
            .clicked()
        {
            self.send(Command::Pause);
        }
        if ui
            .add_enabled(paused, egui::Button::new("Resume"))
            .clicked()
        {
            self.send(Command::Resume);
        }
        if ui
            .add_enabled(running || paused, egui::Button::new("Stop"))
            .clicked()
        {
            self.send(Command::StopRun);
        }
        if self.views.viewing.is_some() {
            let why_not = self.views.cannot_continue_now(&self.data);
            let button = ui
                .add_enabled(why_not.is_none(), egui::Button::new("Continue training"))
                .on_hover_text(
                    "Trains on from the run's last checkpoint, recording into its folder",
                );
            if let Some(why) = why_not {
                button.on_disabled_hover_text(why);
            } else if button.clicked() {
                self.continue_run();
            }
        }
    }

    fn controls_panel_ui(&mut self, ui: &mut egui::Ui) {
        let best_f1 = self.best_f1_score();
        egui::ScrollArea::vertical()
            .id_salt("controls_scroll")
            .auto_shrink([false, false])
            .show(ui, |ui| {
                let (commands, action) =
                    controls_ui(ui, &mut self.controls, self.live.has_weights, best_f1);
                for command in commands {
                    // Settings for the next run are kept by the trainer too, so send them even
                    // when no run is active.
                    self.send(command);
                }
                match action {
                    Some(ControlAction::EvaluateNow) => {
                        self.send(Command::EvaluateNow);
                    }
                    Some(ControlAction::SaveWeights) => {
                        self.pick(PickPurpose::SaveWeights, "Folder for the weights");
                    }
                    None => {}
                }
                ui.separator();
                self.data.ui(ui);
                ui.separator();
                self.log.ui(ui);
            });
    }

    fn plots_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal_wrapped(|ui| {
            plot_settings_ui(ui, &mut self.plots);
            self.plot_buttons_ui(ui);
        });
        let spacing = ui.spacing().item_spacing.y;
        // A line per strategy, and the OHEM-versus-full verdict.
        let metrics_h = 18.0 * (self.latest_evaluations.len() + 1) as f32;
        let plots_h = (ui.available_height() - metrics_h - 4.0 * spacing).max(240.0);
        // Once per frame, for both plots that share the history.
        if self.plots.refresh_views() {
            ui.ctx().request_repaint_after(REFRESH_INTERVAL);
        }
        loss_plot_ui(ui, &mut self.plots, plots_h * 0.45);
        map_plot_ui(ui, &mut self.plots, plots_h * 0.22);
        let threshold = self.controls.score_threshold;
        let pr_h = plots_h * 0.33;
        ui.horizontal(|ui| {
            let width = ui.available_width();
            ui.allocate_ui(egui::vec2(width * 0.58, pr_h), |ui| {
                pr_plot_ui(ui, &self.latest_evaluations, threshold, pr_h);
            });
            ui.allocate_ui(egui::vec2(ui.available_width(), pr_h), |ui| {
                error_breakdown_ui(ui, &self.latest_evaluations, threshold, pr_h);
            });
        });
        self.threshold_metrics_ui(ui);
    }

    /// Export, save, overlay and sweep buttons above the plots; each asks for a folder.
    fn plot_buttons_ui(&mut self, ui: &mut egui::Ui) {
        let has_curves = self.plots.steps_recorded() > 0;
        let buttons = [
            (
                "Export CSV…",
                "Writes loss_curves.csv: every loss and mAP point",
                true,
                PickPurpose::ExportCsv,
                "Folder for loss_curves.csv",
            ),
            (
                "Save plots as PNG…",
                "Writes loss.png, map.png and pr.png",
                true,
                PickPurpose::SavePlots,
                "Folder for the plots",
            ),
            (
                "Overlay run…",
                "Draws another run folder's curves over these, TensorBoard style",
                false,
                PickPurpose::OverlayRun,
                "A run folder to overlay",
            ),
            (
                "Open sweep…",
                "Shows the heat map a sweep wrote (ohem-studio sweep)",
                false,
                PickPurpose::OpenSweep,
                "A sweep's folder",
            ),
        ];
        for (label, hover, needs_curves, purpose, title) in buttons {
            let enabled = self.pending_pick.is_none() && (has_curves || !needs_curves);
            if ui
                .add_enabled(enabled, egui::Button::new(label))
                .on_hover_text(hover)
                .clicked()
            {
                self.pick(purpose, title);
            }
        }
    }

    /// Precision, recall and F1 of each strategy's latest evaluation at the score threshold.
    fn threshold_metrics_ui(&self, ui: &mut egui::Ui) {
        let threshold = self.controls.score_threshold;
        if self.latest_evaluations.is_empty() {
            ui.weak("Precision / recall / F1 appear after the first evaluation.");
        }
        for (strategy, report) in &self.latest_evaluations {
            let c = report.evaluation.counts_at(threshold);
            // Nothing detected has no precision to speak of.
            let precision = if c.tp + c.fp == 0 {
                "—".to_string()
            } else {
                format!("{:.3}", c.precision)
            };
            ui.label(
                RichText::new(format!(
                    "{} @ {threshold:.2}: P {precision}  R {:.3}  F1 {:.3}  (TP {} FP {} FN {})  mAP {:.3}",
                    strategy.label(),
                    c.recall,
                    c.f1,
                    c.tp,
                    c.fp,
                    c.fn_,
                    report.evaluation.map()
                ))
                .color(theme::strategy(*strategy)),
            );
        }
        if let Some(verdict) = self.plots.ohem_versus_full() {
            ui.label(RichText::new(verdict).strong());
        }
    }
}

impl OhemApp {
    /// Closing the window would throw away unsaved training: hold the close and ask first.
    fn hold_close_for_unsaved_run(&mut self, ctx: &egui::Context) {
        let asked = ctx.input(|i| i.viewport().close_requested());
        if asked && !self.close_confirmed && self.unsaved_steps() > 0 {
            ctx.send_viewport_cmd(egui::ViewportCommand::CancelClose);
            self.confirm = Some(Confirm::CloseWindow);
        }
    }

    /// The question before ending a run with unsaved progress.
    fn confirm_ui(&mut self, ctx: &egui::Context) {
        let Some(confirm) = self.confirm.clone() else {
            return;
        };
        let (question, proceed) = match &confirm {
            Confirm::OpenDataset(dir) => (
                format!("Open {}? The run in progress ends.", dir.display()),
                "End the run and open",
            ),
            Confirm::CloseWindow => (
                "Close ohem-studio? The run in progress ends.".to_string(),
                "End the run and close",
            ),
        };
        let steps = self.unsaved_steps();
        let mut choice = None;
        egui::Modal::new(egui::Id::unique("confirm_end_run")).show(ctx, |ui| {
            ui.heading("End the run?");
            ui.label(question);
            ui.label(format!(
                "{steps} steps of training since the last save would be lost."
            ));
            ui.horizontal(|ui| {
                if ui.button("Save weights…").clicked() {
                    choice = Some(0);
                }
                if ui.button(proceed).clicked() {
                    choice = Some(1);
                }
                if ui.button("Keep training").clicked() {
                    choice = Some(2);
                }
            });
        });
        match choice {
            Some(0) => {
                self.confirm = None;
                self.pick(PickPurpose::SaveWeights, "Folder for the weights");
            }
            Some(1) => {
                self.confirm = None;
                match confirm {
                    Confirm::OpenDataset(dir) => self.load_dataset(dir),
                    Confirm::CloseWindow => {
                        self.close_confirmed = true;
                        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                }
            }
            Some(_) => self.confirm = None,
            None => {}
        }
    }
}

impl eframe::App for OhemApp {
    fn logic(&mut self, _ctx: &egui::Context, _frame: &mut eframe::Frame) {
        let events: Vec<Event> = match &self.trainer {
            Some(trainer) => trainer.try_events().collect(),
            None => Vec::new(),
        };
        for event in events {
            self.apply_event(event);
        }
        self.drain_runs();
        self.poll_picker();
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.hold_close_for_unsaved_run(ui.ctx());
        self.confirm_ui(ui.ctx());
        self.views.sweep_ui(ui.ctx());
        egui::Panel::top("top_bar").show(ui, |ui| {
            ui.add_space(2.0);
            self.top_bar_ui(ui);
            ui.add_space(2.0);
        });
        egui::Panel::left("controls")
            .resizable(true)
            .default_size(270.0)
            .min_size(200.0)
            .show(ui, |ui| self.controls_panel_ui(ui));
        let side_w = (ui.available_width() * 0.45).max(260.0);
        egui::Panel::right("examples_and_detections")
            .resizable(true)
            .default_size(side_w)
            .min_size(240.0)
            .show(ui, |ui| {
                // A fixed split keeps the grid from pushing the detections viewer off screen
                // as M grows (the grid scrolls instead); the two shelves get a little more.
                let width = ui.available_width();
                let half = (ui.available_height() * 0.55).max(160.0);
                ui.allocate_ui_with_layout(
                    egui::vec2(width, half),
                    egui::Layout::top_down(egui::Align::Min),
                    |ui| {
                        ui.set_min_size(egui::vec2(width, half));
                        ui.set_max_height(half);
                        self.examples_panel_ui(ui);
                    },
                );
                ui.separator();
                ui.heading("Detections on validation images");
                detections_ui(
                    ui,
                    &mut self.detections,
                    self.data.dataset.as_deref(),
                    &self.latest_evaluations,
                    &mut self.textures,
                    self.controls.score_threshold,
                );
            });
        egui::CentralPanel::default().show(ui, |ui| self.plots_ui(ui));
    }

    fn on_exit(&mut self, _gl: Option<&eframe::glow::Context>) {
        if !self.shutdown(CLOSING_WAIT) {
            eprintln!(
                "warning: the trainer did not stop within {} s",
                CLOSING_WAIT.as_secs()
            );
        }
    }
}
