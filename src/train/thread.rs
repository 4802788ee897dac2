//! The trainer thread: owns the dataset, the run and every tensor; talks to the app (or the
//! CLI) through [`Command`] and [`Event`] over bounded channels.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TryRecvError};

use super::config::{LiveSettings, Strategy, TrainConfig};
use super::engine::Engine;
use super::evaluator::{EvalJob, Evaluator};
use super::images::ImageStream;
use super::learner::{DIVERGED_AFTER, EXPLODED_LOSS};
use super::messages::{panic_message, Command, Event, RunInfo, ScoreGrid, ScoreMapReport};
use super::resume::{read_checkpoint, remove_checkpoints};
use crate::data::{self, Dataset, LoadOptions};
use crate::detector::score_map::score_map;
use crate::geometry::Rect;

/// Called after the trainer sends events, so the app repaints (or a test wakes up).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Commands waiting for the trainer; a full queue makes the UI's send fail, not block.
const COMMAND_CAPACITY: usize = 256;
/// Events waiting for the UI. Hard-example previews are dropped past this; metrics are not.
const EVENT_CAPACITY: usize = 4096;

/// The app's side of the trainer thread.
pub struct TrainerHandle {
    commands: Sender<Command>,
    events: Receiver<Event>,
    thread: Option<JoinHandle<()>>,
    /// Set to stop a dataset load in progress (the trainer reads no commands while it loads).
    cancel_load: Arc<AtomicBool>,
}

impl TrainerHandle {
    /// Starts the trainer thread, idle until it gets a command.
    pub fn spawn(waker: Waker) -> std::io::Result<Self> {
        let (commands, command_rx) = bounded(COMMAND_CAPACITY);
        let (event_tx, events) = bounded(EVENT_CAPACITY);
        let cancel_load = Arc::new(AtomicBool::new(false));
        let trainer_cancel = cancel_load.clone();
        let thread = std::thread::Builder::new()
            .name("trainer".into())
            .spawn(move || {
                let outbox = Outbox {
                    events: event_tx,
                    waker,
                };
                let result = catch_unwind(AssertUnwindSafe(|| {
                    Trainer::new(command_rx, outbox.clone(), trainer_cancel).run()
                }));
                let last = match result {
                    Ok(Ok(())) => Event::Stopped,
                    Ok(Err(Gone)) => return,
                    Err(panic) => Event::Failed {
                        message: format!("the trainer crashed: {}", panic_message(&panic)),
                    },
                };
                let _ = outbox.send(last);
            })?;
        Ok(Self {
            commands,
            events,
            thread: Some(thread),
            cancel_load,
        })
    }

    /// Stops the dataset load in progress, if any: it ends with [`Event::DatasetFailed`] whose
    /// message is [`data::LOADING_CANCELLED`], and the dataset loaded before stays.
    pub fn cancel_loading(&self) {
        self.cancel_load.store(true, Ordering::SeqCst);
    }

    /// Sends a command; `false` when the trainer is gone or swamped.
    pub fn send(&self, command: Command) -> bool {
        self.commands.try_send(command).is_ok()
    }

    /// Events received so far, without waiting.
    pub fn try_events(&self) -> impl Iterator<Item = Event> + '_ {
        self.events.try_iter()
    }

    /// Waits up to `timeout` for the next event.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<Event> {
        self.events.recv_timeout(timeout).ok()
    }

    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Asks the trainer to leave and waits up to `timeout` for its thread to end; `true` when
    /// it ended (a trainer stuck in a long batch is left to finish on its own).
    pub fn shutdown(&mut self, timeout: Duration) -> bool {
        self.shutdown_with(timeout, |_| {})
    }

    /// [`TrainerHandle::shutdown`], handing every event still sent (the run's last steps and
    /// its end) to `last_events`.
    pub fn shutdown_with(&mut self, timeout: Duration, mut last_events: impl FnMut(Event)) -> bool {
        let _ = self.commands.try_send(Command::Shutdown);
        let deadline = Instant::now() + timeout;
        while !self.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            // Keep draining so a trainer blocked on a full event queue can reach the command.
            if let Ok(event) = self.events.recv_timeout(Duration::from_millis(5)) {
                last_events(event);
            }
        }
        self.events.try_iter().for_each(last_events);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        true
    }
}

impl Drop for TrainerHandle {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(1));
    }
}

/// The receiving side went away: nobody is listening, so the trainer just ends.
struct Gone;

#[derive(Clone)]
struct Outbox {
    events: Sender<Event>,
    waker: Waker,
}

impl Outbox {
    fn send(&self, event: Event) -> Result<(), Gone> {
        self.events.send(event).map_err(|_| Gone)?;
        (self.waker)();
        Ok(())
    }

    /// For previews that may be dropped when the UI is behind: training never waits for them.
    /// Whether it was taken.
    fn offer(&self, event: Event) -> Result<bool, Gone> {
        let taken = match self.events.try_send(event) {
            Err(crossbeam_channel::TrySendError::Disconnected(_)) => return Err(Gone),
            Err(crossbeam_channel::TrySendError::Full(_)) => false,
            Ok(()) => true,
        };
        (self.waker)();
        Ok(taken)
    }
}

struct Run {
    engine: Engine,
    stream: ImageStream,
    trained_secs: f64,
    paused: bool,
    /// The run folder its checkpoints go into, when it is recorded.
    record: Option<PathBuf>,
    /// The step of the last checkpoint handed to the evaluator.
    checkpointed_at: Option<u64>,
    /// When that was (or when the run started).
    checkpointed_when: Instant,
    /// Hard-example previews dropped since the UI was last told.
    previews_dropped: u64,
}

/// A recorded run writes its first checkpoint this soon, and then one at least every
/// [`CHECKPOINT_INTERVAL`], evaluations or not: what a kill can lose.
const FIRST_CHECKPOINT_AFTER: Duration = Duration::from_secs(10);
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

impl Run {
    /// Whether a recorded run is due for a checkpoint by time alone.
    fn checkpoint_overdue(&self) -> bool {
        let interval = match self.checkpointed_at {
            None => FIRST_CHECKPOINT_AFTER,
            Some(_) => CHECKPOINT_INTERVAL,
        };
        self.record.is_some() && self.checkpointed_when.elapsed() >= interval
    }
}

struct Trainer {
    commands: Receiver<Command>,
    outbox: Outbox,
    dataset: Option<Arc<Dataset>>,
    /// Settings for the next run, kept up to date by the live commands.
    settings: TrainConfig,
    run: Option<Run>,
    /// The last run's models, kept after it ends so they can still be saved or evaluated.
    finished: Option<Engine>,
    /// Scores the run's models (the last run's, once it ended) on its own thread.
    evaluator: Option<Evaluator>,
    cancel_load: Arc<AtomicBool>,
}

impl Trainer {
    fn new(commands: Receiver<Command>, outbox: Outbox, cancel_load: Arc<AtomicBool>) -> Self {
        Self {
            commands,
            outbox,
            dataset: None,
            settings: TrainConfig::default(),
            run: None,
            finished: None,
            evaluator: None,
            cancel_load,
        }
    }

    fn run(mut self) -> Result<(), Gone> {
        loop {
            let training = self.run.as_ref().is_some_and(|r| !r.paused);
            let next = if training {
                match self.commands.try_recv() {
                    Ok(c) => Some(c),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => return Err(Gone),
                }
            } else {
                match self.commands.recv_timeout(Duration::from_millis(200)) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return Err(Gone),
                }
            };
            match next {
                Some(Command::Shutdown) => {
                    // Scores are not waited for; the last checkpoint is.
                    self.end_run("the app closed")?;
                    return Ok(());
                }
                Some(command) => self.handle(command)?,
                None => self.train_one_batch()?,
            }
        }
    }

    fn handle(&mut self, command: Command) -> Result<(), Gone> {
        match command {
            Command::OpenDataset(path) => self.open_dataset(path)?,
            Command::Start { config, record } => self.start(config, record)?,
            Command::Continue(run_dir) => self.resume(run_dir)?,
            Command::Pause => {
                if let Some(run) = &mut self.run {
                    run.paused = true;
                    self.outbox.send(Event::Paused)?;
                }
            }
            Command::Resume => {
                if let Some(run) = &mut self.run {
                    run.paused = false;
                    self.outbox.send(Event::Resumed)?;
                }
            }
            Command::StopRun => self.end_run("stopped")?,
            Command::SetLive(live) => self.change_settings(live)?,
            Command::SetStrategies(strategies) => {
                let next = TrainConfig {
                    strategies,
                    ..self.settings.clone()
                };
                match next.validate() {
                    Ok(()) => self.settings = next,
                    Err(error) => self.outbox.send(Event::Problem(error.to_string()))?,
                }
            }
            Command::EvaluateNow => self.evaluate()?,
            Command::SaveCheckpoint(dir) => self.save(dir)?,
            Command::ScoreMap { image, window } => self.score_map(image, window)?,
            Command::Shutdown => {}
        }
        Ok(())
    }

    /// Settings changed while the trainer runs: clamped, checked by the same rules as a new
    /// run's settings, then kept for the next run and used by the run in progress from its next
    /// batch. Whatever the outcome, the settings in force are said again.
    fn change_settings(&mut self, live: LiveSettings) -> Result<(), Gone> {
        let next = self.settings.with_live(&live.clamped());
        match next.validate_settings() {
            Ok(()) => {
                self.settings = next;
                if let Some(run) = &mut self.run {
                    run.engine.apply_live_settings(&self.settings.live());
                }
            }
            Err(error) => self.outbox.send(Event::Problem(error.to_string()))?,
        }
        self.adopted()
    }

    /// Tells the app which live settings are in force.
    fn adopted(&self) -> Result<(), Gone> {
        let live = match &self.run {
            Some(run) => run.engine.config().live(),
            None => self.settings.live(),
        };
        self.outbox.send(Event::SettingsAdopted(live))
    }

    fn open_dataset(&mut self, path: PathBuf) -> Result<(), Gone> {
        self.end_run("another dataset was opened")?;
        self.finished = None;
        self.evaluator = None;
        self.cancel_load.store(false, Ordering::SeqCst);
        let options = LoadOptions {
            cancel: Some(self.cancel_load.clone()),
            ..LoadOptions::default()
        };
        match data::load_dataset(&path, &options) {
            Ok((dataset, diagnostics)) => {
                let dataset = Arc::new(dataset);
                self.dataset = Some(dataset.clone());
                self.outbox.send(Event::DatasetLoaded {
                    summary: data::summary(&dataset),
                    dataset,
                    diagnostics,
                })
            }
            Err(error) => self.outbox.send(Event::DatasetFailed {
                path,
                message: error.to_string(),
            }),
        }
    }

    fn start(&mut self, config: TrainConfig, record: Option<PathBuf>) -> Result<(), Gone> {
        self.end_run("a new run started")?;
        // Settings that fail validation would make every later live change fail with them.
        if config.validate().is_ok() {
            self.settings = config.clone();
        }
        let Some(dataset) = self.dataset.clone() else {
            return self
                .outbox
                .send(Event::Problem("open a dataset before starting".into()));
        };
        let engine = Engine::new(dataset, config);
        self.begin(engine, 0.0, record, None)
    }

    /// Continues the run recorded in `run_dir` from its checkpoint.
    fn resume(&mut self, run_dir: PathBuf) -> Result<(), Gone> {
        self.end_run("another run was continued")?;
        let Some(dataset) = self.dataset.clone() else {
            return self.outbox.send(Event::Problem(
                "open the run's dataset before continuing it".into(),
            ));
        };
        let engine = read_checkpoint(&run_dir).and_then(|(state, info, learners)| {
            if let Some(why) = state.nothing_to_continue(&run_dir) {
                anyhow::bail!(why);
            }
            let engine = Engine::resume(dataset, &state, &info, &learners)?;
            Ok((engine, state.trained_secs))
        });
        match engine {
            Ok((engine, secs)) => {
                self.settings = engine.config().clone();
                let step = engine.step();
                let evaluate = engine.config().evaluates_again_when_continued_at(step);
                // Stopped after its last step's checkpoint: only the end is left to do.
                let finishing = engine.config().budget_reached(step, secs);
                self.begin(Ok(engine), secs, Some(run_dir), Some(step))?;
                if evaluate {
                    self.evaluate()?;
                }
                if finishing {
                    self.close_run("the step budget was reached")?;
                }
                Ok(())
            }
            Err(error) => self.begin(
                Err(error.context(format!("{}", run_dir.display()))),
                0.0,
                None,
                None,
            ),
        }
    }

    /// Starts training `engine` (or reports why it could not be built): its batch stream from
    /// where the engine stands, its evaluator, and [`Event::RunStarted`].
    fn begin(
        &mut self,
        engine: anyhow::Result<Engine>,
        trained_secs: f64,
        record: Option<PathBuf>,
        resumed_at_step: Option<u64>,
    ) -> Result<(), Gone> {
        let started = engine.and_then(|engine| {
            if let (Some(dir), None) = (&record, resumed_at_step) {
                remove_checkpoints(dir)?;
            }
            let stream = ImageStream::spawn(
                engine.train_sampler(),
                engine.config().seed,
                engine.examples_drawn(),
            )?;
            let outbox = self.outbox.clone();
            let evaluator =
                Evaluator::spawn(engine.eval_context(), move |e| outbox.send(e).is_ok())?;
            Ok((engine, stream, evaluator))
        });
        match started {
            Ok((mut engine, stream, evaluator)) => {
                let info = RunInfo {
                    device: engine.device_name().to_string(),
                    detector: engine.info().describe(),
                    config: engine.config().clone(),
                    resumed_at_step,
                };
                let notes = engine.take_notes();
                self.evaluator = Some(evaluator);
                self.run = Some(Run {
                    checkpointed_at: resumed_at_step,
                    checkpointed_when: Instant::now(),
                    previews_dropped: 0,
                    engine,
                    stream,
                    trained_secs,
                    paused: false,
                    record,
                });
                self.outbox.send(Event::RunStarted(info))?;
                self.adopted()?;
                for note in notes {
                    self.outbox.send(Event::Info(note))?;
                }
                Ok(())
            }
            Err(error) => {
                let message = format!("cannot start training: {error:#}");
                self.outbox.send(Event::Problem(message))
            }
        }
    }

    /// Reports a divergence; the run is already paused with its last good weights.
    fn diverged(&mut self, strategies: &[(Strategy, u64)], step: u64, lr: f64) -> Result<(), Gone> {
        let parts: Vec<String> = strategies
            .iter()
            .map(|(s, good)| format!("{s} (weights set back to those of step {good})"))
            .collect();
        let message = format!(
            "training diverged at step {step}: the loss of {} was not finite or above {EXPLODED_LOSS} for {DIVERGED_AFTER} steps in a row at learning rate {lr:.1e}; the run is paused — lower the learning rate",
            parts.join(", ")
        );
        self.outbox.send(Event::Diverged { message })?;
        self.outbox.send(Event::Paused)
    }

    /// Ends the run in progress without waiting for its scores (the person stopped it, or
    /// moved on): scorings in progress or waiting are dropped, the last checkpoint is written.
    fn end_run(&mut self, reason: &str) -> Result<(), Gone> {
        if let (Some(_), Some(evaluator)) = (&self.run, &self.evaluator) {
            evaluator.cancel_scoring();
        }
        self.close_run(reason)
    }

    /// Ends the run in progress once its last checkpoint is written (when it is recorded) and
    /// its evaluations are done, then sends [`Event::RunEnded`].
    fn close_run(&mut self, reason: &str) -> Result<(), Gone> {
        let checkpoint_due = self
            .run
            .as_ref()
            .is_some_and(|r| r.record.is_some() && r.checkpointed_at != Some(r.engine.step()));
        if checkpoint_due {
            self.hand_over(false);
        }
        if let (Some(_), Some(evaluator)) = (&self.run, &self.evaluator) {
            evaluator.wait_idle();
        }
        if let Some(run) = self.run.take() {
            let steps = run.engine.step();
            self.finished = Some(run.engine);
            self.outbox.send(Event::RunEnded {
                steps,
                reason: reason.to_string(),
            })?;
        }
        Ok(())
    }

    fn train_one_batch(&mut self) -> Result<(), Gone> {
        let Some(run) = &mut self.run else {
            return Ok(());
        };
        let n = run.engine.config().images_per_batch;
        let Some(images) = run.stream.next_batch(n) else {
            self.outbox
                .send(Event::Problem("the batch loader stopped".into()))?;
            return self.end_run("the batch loader stopped");
        };
        let started = Instant::now();
        let share = run.engine.config().trained_share(run.trained_secs);
        run.engine.set_trained_share(share);
        let outcome = run.engine.train_step(&images);
        run.trained_secs += started.elapsed().as_secs_f64();
        let mut outcome = match outcome {
            Ok(o) => o,
            Err(error) => {
                let message = format!(
                    "training stopped at step {}: {error:#}",
                    run.engine.step() + 1
                );
                self.outbox.send(Event::Problem(message))?;
                // The weights trained so far stay available to save and evaluate.
                return self.end_run("training failed");
            }
        };
        outcome.report.elapsed_secs = run.trained_secs;
        let step = outcome.report.step;
        for strategy in &outcome.non_finite {
            let message = format!(
                "{strategy}: the loss is not finite at step {step} (learning rate {} too high?); the update was skipped",
                run.engine.config().lr
            );
            self.outbox.send(Event::Problem(message))?;
        }
        for note in std::mem::take(&mut outcome.notes) {
            self.outbox.send(Event::Info(note))?;
        }
        if run.previews_dropped > 0 {
            let dropped = std::mem::take(&mut run.previews_dropped);
            self.outbox.send(Event::PreviewsDropped(dropped))?;
        }
        self.outbox.send(Event::Step(outcome.report))?;
        if !outcome.diverged.is_empty() {
            let lr = run.engine.config().lr;
            run.paused = true;
            return self.diverged(&outcome.diverged, step, lr);
        }
        if let Some(hard) = outcome.hard_examples {
            if !self.outbox.offer(Event::HardExamples(hard))? {
                run.previews_dropped += 1;
            }
        }
        self.evaluate_or_close_after(step)
    }

    /// After step `step`: the evaluation its schedule or the end of its budget asks for (or a
    /// checkpoint that is due), then the end of the run when the budget is spent.
    fn evaluate_or_close_after(&mut self, step: u64) -> Result<(), Gone> {
        let Some(run) = &self.run else {
            return Ok(());
        };
        let config = run.engine.config();
        let budget_reached = config.budget_reached(step, run.trained_secs);
        let timed = config.minutes.is_some();
        // The end of a budget is always evaluated, also with no evaluations on the way.
        let handed_over = if config.evaluates_at(step) || budget_reached {
            self.evaluate()?;
            true
        } else if self.run.as_ref().is_some_and(Run::checkpoint_overdue) {
            // Between evaluations far apart, a kill loses at most this interval of training.
            self.hand_over(false);
            true
        } else {
            false
        };
        // A timed run gives every strategy the same seconds of training: the evaluator's work,
        // which would share the cores with it, is waited for and not counted.
        if let (true, true, Some(evaluator)) = (handed_over, timed, &self.evaluator) {
            evaluator.wait_idle();
        }
        if budget_reached {
            self.close_run(if timed {
                "the time budget was reached"
            } else {
                "the step budget was reached"
            })?;
        }
        Ok(())
    }

    /// The running engine, else the last finished one.
    fn engine(&self) -> Option<&Engine> {
        self.run
            .as_ref()
            .map(|r| &r.engine)
            .or(self.finished.as_ref())
    }

    fn evaluate(&mut self) -> Result<(), Gone> {
        let Some(engine) = self.engine() else {
            return self
                .outbox
                .send(Event::Problem("no run to evaluate".into()));
        };
        if engine.dataset().val.is_empty() {
            return self.outbox.send(Event::Problem(
                "the dataset has no validation images to evaluate on".into(),
            ));
        }
        match self.hand_over(true) {
            Some(skipped) => self.outbox.send(Event::Info(format!(
                "the evaluation of step {skipped} was skipped: evaluating is far slower than training (evaluate less often)"
            ))),
            None => Ok(()),
        }
    }

    /// Hands a copy of the models to the evaluator, to score (`evaluate`) and, when the run is
    /// recorded, to checkpoint. Returns the step of a hand-over this one replaced.
    fn hand_over(&mut self, evaluate: bool) -> Option<u64> {
        let evaluator = self.evaluator.as_ref()?;
        let (engine, checkpoint) = match &mut self.run {
            Some(run) => {
                let checkpoint = run.record.clone().map(|dir| {
                    run.checkpointed_at = Some(run.engine.step());
                    run.checkpointed_when = Instant::now();
                    (dir, run.engine.training_state(run.trained_secs))
                });
                (&run.engine, checkpoint)
            }
            None => (self.finished.as_ref()?, None),
        };
        evaluator.submit(EvalJob {
            step: engine.step(),
            learners: engine.learner_checkpoints(),
            evaluate,
            checkpoint,
        })
    }

    /// Answers a [`Command::ScoreMap`]: between two steps, so training waits at most one.
    fn score_map(&mut self, image: usize, window: Rect) -> Result<(), Gone> {
        let report = match self.engine() {
            Some(engine) => score_map_report(engine, image, window),
            None => ScoreMapReport {
                image,
                window,
                step: 0,
                roi_px: (window.width(), window.height()),
                map: Err("no model yet: start a run".into()),
            },
        };
        self.outbox.send(Event::ScoreMap(report))
    }

    fn save(&mut self, dir: PathBuf) -> Result<(), Gone> {
        let Some(engine) = self.engine() else {
            return self.outbox.send(Event::Problem("no run to save".into()));
        };
        match engine.save(&dir) {
            Ok(paths) => self.outbox.send(Event::CheckpointSaved(paths)),
            Err(error) => {
                let message = format!("saving weights failed: {error:#}");
                self.outbox.send(Event::Problem(message))
            }
        }
    }
}

/// The OHEM model's object score (the run's first model's without OHEM) over training image
/// `image`, with RoIs of `window`'s size.
fn score_map_report(engine: &Engine, image: usize, window: Rect) -> ScoreMapReport {
    let record = engine.dataset().train.get(image);
    let roi_px = record.map_or((f32::NAN, f32::NAN), |r| {
        let decoded = r.to_decoded(&window);
        (decoded.width(), decoded.height())
    });
    let learners = engine.learners();
    let net = learners
        .iter()
        .find(|l| l.strategy() == Strategy::Ohem)
        .or(learners.first())
        .map(|l| l.net());
    let map = match (record, net) {
        (None, _) => Err(format!("there is no training image {image}")),
        (_, None) => Err("the run has no model".into()),
        (Some(record), Some(net)) => score_map(net, &record.pixels, roi_px, engine.device())
            .map(|m| ScoreGrid {
                cols: m.cols,
                rows: m.rows,
                scores: m.scores,
                area: record.to_original(&m.area),
            })
            .ok_or_else(|| {
                format!(
                    "a RoI of {:.0}×{:.0} px does not fit in this image",
                    window.width(),
                    window.height()
                )
            }),
    };
    ScoreMapReport {
        image,
        window,
        step: engine.step(),
        roi_px,
        map,
    }
}
