//! Evaluation on its own named thread. The trainer hands over a copy of every strategy's weights
//! (and, when the run is recorded, what resuming needs) and carries on training; the evaluator
//! scores the validation split with the copy, reports each strategy, and writes the checkpoint.
//! Hand-overs wait in a short queue when evaluating is slower than training; only the newest
//! of them keeps its checkpoint, which supersedes the others'.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tch::nn::VarStore;
use tch::Device;

use super::config::Strategy;
use super::learner::{load_weights, LearnerCheckpoint};
use super::messages::{panic_message, EvalReport, Event};
use super::resume::{write_checkpoint, TrainingState};
use crate::data::Dataset;
use crate::detector::{self, Detector, ModelInfo};
use crate::eval::{self, MATCH_IOU};

/// What the evaluator needs of a run, fixed for its length.
#[derive(Clone)]
pub struct EvalContext {
    pub dataset: Arc<Dataset>,
    pub info: ModelInfo,
    pub device: Device,
}

/// One hand-over: a copy of every learner at `step`, to score and/or to checkpoint.
pub struct EvalJob {
    pub step: u64,
    pub learners: Vec<LearnerCheckpoint>,
    /// Score the validation split (`false`: only write the checkpoint).
    pub evaluate: bool,
    /// Where the checkpoint goes, with the rest of the training state; `None`: evaluate only.
    pub checkpoint: Option<(PathBuf, TrainingState)>,
}

/// A checkpoint waiting to be written.
struct CheckpointJob {
    step: u64,
    learners: Vec<LearnerCheckpoint>,
    dir: PathBuf,
    state: TrainingState,
}

/// Weights waiting to be scored.
struct ScoreJob {
    step: u64,
    learners: Vec<LearnerCheckpoint>,
}

/// Scorings that may wait; past this the oldest is dropped (and reported).
const MAX_WAITING: usize = 8;

/// Where the evaluator stands, shared with the trainer. A checkpoint goes before any scoring
/// (and between two strategies of one), and only the newest is kept: it supersedes the others.
#[derive(Default)]
struct Slot {
    checkpoint: Option<CheckpointJob>,
    scores: VecDeque<ScoreJob>,
    busy: bool,
    /// Checkpoints only from now on: the run is ending and nobody waits for scores.
    scoring_cancelled: bool,
    stop: bool,
}

impl Slot {
    fn idle(&self) -> bool {
        !self.busy && self.checkpoint.is_none() && self.scores.is_empty()
    }

    /// Scoring should stop: the evaluator is going away, or the run ended without its scores.
    fn scoring_stopped(&self) -> bool {
        self.stop || self.scoring_cancelled
    }
}

type Shared = Arc<(Mutex<Slot>, Condvar)>;

/// The trainer's side of the evaluator thread; dropping it stops the thread after the strategy
/// it is scoring.
pub struct Evaluator {
    shared: Shared,
    thread: Option<JoinHandle<()>>,
}

impl Evaluator {
    /// Starts the thread; `emit` sends an event and returns `false` once nobody listens.
    pub fn spawn(
        context: EvalContext,
        emit: impl Fn(Event) -> bool + Send + 'static,
    ) -> std::io::Result<Self> {
        let shared: Shared = Arc::default();
        let theirs = shared.clone();
        let thread = std::thread::Builder::new()
            .name("evaluator".into())
            .spawn(move || evaluator_loop(&context, &theirs, &emit))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// Hands `job` over without waiting; returns the step of a scoring it pushed out of a full
    /// queue, which will not be done.
    pub fn submit(&self, job: EvalJob) -> Option<u64> {
        let (slot, wake) = &*self.shared;
        let mut state = lock(slot);
        let mut dropped = None;
        if job.evaluate {
            // Asked for after a cancellation: wanted again.
            state.scoring_cancelled = false;
            state.scores.push_back(ScoreJob {
                step: job.step,
                learners: job.learners.iter().map(|l| l.weights_only()).collect(),
            });
            if state.scores.len() > MAX_WAITING {
                dropped = state.scores.pop_front().map(|j| j.step);
            }
        }
        if let Some((dir, training)) = job.checkpoint {
            state.checkpoint = Some(CheckpointJob {
                step: job.step,
                learners: job.learners,
                dir,
                state: training,
            });
        }
        wake.notify_all();
        dropped
    }

    /// Stops scoring between two validation images and drops the scorings waiting; checkpoints
    /// are still written. For a run that ends without waiting for its scores.
    pub fn cancel_scoring(&self) {
        let (slot, wake) = &*self.shared;
        let mut state = lock(slot);
        state.scoring_cancelled = true;
        state.scores.clear();
        wake.notify_all();
    }

    /// Waits until every job handed over is done (the end of a run, before its last save), or
    /// the thread has ended.
    pub fn wait_idle(&self) {
        let (slot, wake) = &*self.shared;
        let mut state = lock(slot);
        let ended = || self.thread.as_ref().is_none_or(|t| t.is_finished());
        while !state.idle() && !ended() {
            state = wake
                .wait_timeout(state, Duration::from_millis(100))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Evaluator {
    fn drop(&mut self) {
        let (slot, wake) = &*self.shared;
        {
            let mut state = lock(slot);
            state.stop = true;
            state.scores.clear();
        }
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the evaluator does next.
enum Work {
    Checkpoint(Box<CheckpointJob>),
    Score(ScoreJob),
}

fn evaluator_loop(context: &EvalContext, shared: &Shared, emit: &dyn Fn(Event) -> bool) {
    // One thread on the CPU: the other cores stay training's, and an evaluation may take longer.
    // (At a lower priority it fell hundreds of steps behind on two cores, so it has none.)
    if context.device == Device::Cpu {
        tch::set_num_threads(1);
    }
    let mut nets = Nets::new(context);
    let (slot, wake) = &**shared;
    loop {
        let work = {
            let mut state = lock(slot);
            loop {
                if let Some(job) = state.checkpoint.take() {
                    break Work::Checkpoint(Box::new(job));
                }
                if state.stop {
                    return;
                }
                if let Some(job) = state.scores.pop_front() {
                    break Work::Score(job);
                }
                state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        lock(slot).busy = true;
        // A failure in libtorch (out of memory on the GPU) is told, and the evaluator goes on.
        // Nobody listening is no reason to stop: checkpoints are still worth writing.
        let done = catch_unwind(AssertUnwindSafe(|| match work {
            Work::Checkpoint(job) => checkpoint(context, &mut nets, &job, emit),
            Work::Score(job) => score(context, &mut nets, &job, shared, emit),
        }));
        if let Err(panic) = done {
            let message = format!("the evaluator failed: {}", panic_message(&panic));
            emit(Event::Problem(message));
        }
        lock(slot).busy = false;
        wake.notify_all();
    }
}

/// Scores every strategy of `job`, writing a checkpoint handed over meanwhile between two of
/// them; `false` once nobody listens.
fn score(
    context: &EvalContext,
    nets: &mut Nets,
    job: &ScoreJob,
    shared: &Shared,
    emit: &dyn Fn(Event) -> bool,
) -> bool {
    let (slot, _) = &**shared;
    let stop = || lock(slot).scoring_stopped();
    for learner in job.learners.iter() {
        let waiting = lock(slot).checkpoint.take();
        if let Some(waiting) = waiting {
            if !checkpoint(context, nets, &waiting, emit) {
                return false;
            }
        }
        if stop() {
            return true;
        }
        let report = match nets.load(learner) {
            Ok(net) => evaluate_net_unless(context, net, learner.strategy, job.step, &stop),
            Err(error) => {
                let message = format!("cannot evaluate {}: {error:#}", learner.strategy);
                return emit(Event::Problem(message));
            }
        };
        let Some(report) = report else {
            return true;
        };
        if !emit(Event::Evaluated(Arc::new(report))) {
            return false;
        }
    }
    true
}

/// Writes `job`'s checkpoint; `false` once nobody listens.
fn checkpoint(
    context: &EvalContext,
    nets: &mut Nets,
    job: &CheckpointJob,
    emit: &dyn Fn(Event) -> bool,
) -> bool {
    let written = job
        .learners
        .iter()
        .try_for_each(|learner| nets.load(learner).map(|_| ()))
        .and_then(|()| {
            let stores: Vec<(&str, &VarStore)> = nets
                .stores
                .iter()
                .filter(|(s, _, _)| job.learners.iter().any(|l| l.strategy == *s))
                .map(|(s, vs, _)| (s.key(), vs))
                .collect();
            write_checkpoint(&job.dir, &context.info, &stores, &job.learners, &job.state)
        });
    match written {
        Ok(()) => true,
        Err(error) => {
            let message = format!(
                "the checkpoint at step {} was not written: {error:#}",
                job.step
            );
            emit(Event::WriteFailed(message))
        }
    }
}

/// The evaluator's own network per strategy, loaded with each hand-over's weights.
struct Nets {
    info: ModelInfo,
    device: Device,
    stores: Vec<(Strategy, VarStore, Detector)>,
}

impl Nets {
    fn new(context: &EvalContext) -> Self {
        Self {
            info: context.info.clone(),
            device: context.device,
            stores: Vec::new(),
        }
    }

    fn load(&mut self, learner: &LearnerCheckpoint) -> anyhow::Result<&Detector> {
        let index = match self
            .stores
            .iter()
            .position(|(s, _, _)| *s == learner.strategy)
        {
            Some(i) => i,
            None => {
                let vs = VarStore::new(self.device);
                let net = Detector::new(&vs.root(), &self.info);
                self.stores.push((learner.strategy, vs, net));
                self.stores.len() - 1
            }
        };
        let (_, vs, net) = &mut self.stores[index];
        load_weights(vs, &learner.weights)?;
        Ok(net)
    }
}

/// One strategy's evaluation on the validation split with `net`.
pub fn evaluate_net(
    context: &EvalContext,
    net: &Detector,
    strategy: Strategy,
    step: u64,
) -> EvalReport {
    let found = detector::detect_images(net, &context.dataset.val, context.device);
    report(context, strategy, step, found)
}

/// [`evaluate_net`], given up (`None`) when `stop` says so between two validation images.
fn evaluate_net_unless(
    context: &EvalContext,
    net: &Detector,
    strategy: Strategy,
    step: u64,
    stop: &dyn Fn() -> bool,
) -> Option<EvalReport> {
    let found = detector::detect_images_unless(net, &context.dataset.val, context.device, stop)?;
    Some(report(context, strategy, step, found))
}

/// The evaluation of `detections`, with the validation loss they came with.
fn report(
    context: &EvalContext,
    strategy: Strategy,
    step: u64,
    (detections, val_loss): (Vec<crate::eval::Detection>, f32),
) -> EvalReport {
    let dataset = &context.dataset;
    let evaluation = eval::evaluate(
        &detections,
        &eval::ground_truth(&dataset.val),
        dataset.class_names.len(),
        MATCH_IOU,
    );
    EvalReport {
        step,
        strategy,
        detections,
        evaluation,
        val_loss,
    }
}
