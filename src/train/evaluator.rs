//! Evaluation on its own named thread. The trainer hands over a copy of every strategy's weights
//! (and, when the run is recorded, what resuming needs) and carries on training; the evaluator
//! scores the validation split with the copy, reports each strategy, and writes the checkpoint.
//! Hand-overs wait in a short queue when evaluating is slower than training; only the newest
//! of them keeps its checkpoint, which supersedes the others'.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tch::nn::VarStore;
use tch::{Device, Kind};

use super::batch::BatchTensors;
use super::config::Strategy;
use super::examples::Example;
use super::learner::{load_weights, LearnerCheckpoint};
use super::messages::{EvalReport, Event};
use super::resume::{write_checkpoint, TrainingState};
use crate::data::Dataset;
use crate::detector::{self, DetectorNet, ModelInfo};
use crate::eval::{self, MATCH_IOU};

/// What the evaluator needs of a run, fixed for its length.
#[derive(Clone)]
pub struct EvalContext {
    pub dataset: Arc<Dataset>,
    pub info: ModelInfo,
    pub device: Device,
    /// Validation windows for the validation loss (empty: no validation loss).
    pub val_examples: Vec<Example>,
}

/// One hand-over: the weights to score, and the checkpoint to write after.
pub struct EvalJob {
    pub step: u64,
    pub learners: Vec<LearnerCheckpoint>,
    /// Score the validation split (`false`: only write the checkpoint).
    pub evaluate: bool,
    /// Where the checkpoint goes, with the rest of the training state; `None`: evaluate only.
    pub checkpoint: Option<(PathBuf, TrainingState)>,
}

/// Hand-overs that may wait; past this the oldest is dropped (and reported).
const MAX_WAITING: usize = 8;

/// Where the evaluator stands, shared with the trainer.
#[derive(Default)]
struct Slot {
    waiting: VecDeque<EvalJob>,
    busy: bool,
    /// Checkpoints only from now on: the run is ending and nobody waits for scores.
    scoring_cancelled: bool,
    stop: bool,
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

    /// Hands `job` over without waiting; returns the step of a waiting job it pushed out of
    /// a full queue, which will not be evaluated.
    pub fn submit(&self, job: EvalJob) -> Option<u64> {
        let (slot, wake) = &*self.shared;
        let mut state = lock(slot);
        if job.checkpoint.is_some() {
            for older in &mut state.waiting {
                older.checkpoint = None;
            }
        }
        state.waiting.push_back(job);
        let dropped = (state.waiting.len() > MAX_WAITING)
            .then(|| state.waiting.pop_front())
            .flatten()
            .map(|j| j.step);
        wake.notify_all();
        dropped
    }

    /// Stops scoring: the strategy being scored is finished, waiting scores are dropped, and
    /// only checkpoints are still written. For a run that ends without waiting for scores.
    pub fn cancel_scoring(&self) {
        let (slot, wake) = &*self.shared;
        let mut state = lock(slot);
        state.scoring_cancelled = true;
        state.waiting.retain(|j| j.checkpoint.is_some());
        for job in &mut state.waiting {
            job.evaluate = false;
        }
        wake.notify_all();
    }

    /// Waits until every job handed over is done (the end of a run, before its last save).
    pub fn wait_idle(&self) {
        let (slot, wake) = &*self.shared;
        let mut state = lock(slot);
        while state.busy || !state.waiting.is_empty() {
            state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl Drop for Evaluator {
    fn drop(&mut self) {
        let (slot, wake) = &*self.shared;
        {
            let mut state = lock(slot);
            state.stop = true;
            state.waiting.clear();
        }
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Lowers this thread's scheduling priority (Linux sets it per thread): the trainer's threads
/// get the cores first, the evaluator what they leave.
fn yield_to_training() {
    #[cfg(target_os = "linux")]
    // SAFETY: plain system calls on the calling thread's own id; no memory is shared.
    unsafe {
        let thread = libc::gettid() as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, thread, EVALUATOR_NICENESS);
    }
}

/// The evaluator's niceness on Linux (0 is the default, 19 the lowest priority).
#[cfg(target_os = "linux")]
const EVALUATOR_NICENESS: libc::c_int = 10;

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn evaluator_loop(context: &EvalContext, shared: &Shared, emit: &dyn Fn(Event) -> bool) {
    // One thread on the CPU, at a lower priority: the cores are training's, and an evaluation
    // may take longer.
    if context.device == Device::Cpu {
        tch::set_num_threads(1);
        yield_to_training();
    }
    let mut nets = Nets::new(context);
    let (slot, wake) = &**shared;
    loop {
        let job = {
            let mut state = lock(slot);
            loop {
                if state.stop {
                    return;
                }
                if let Some(job) = state.waiting.pop_front() {
                    state.busy = true;
                    break job;
                }
                state = wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
        };
        let stopping = || {
            let state = lock(slot);
            state.stop || state.scoring_cancelled
        };
        let listening = run_job(context, &mut nets, &job, stopping, emit);
        lock(slot).busy = false;
        wake.notify_all();
        if !listening {
            return;
        }
    }
}

/// Scores every strategy of `job`, then writes its checkpoint; `false` once nobody listens.
fn run_job(
    context: &EvalContext,
    nets: &mut Nets,
    job: &EvalJob,
    stopping: impl Fn() -> bool,
    emit: &dyn Fn(Event) -> bool,
) -> bool {
    for learner in job.learners.iter().filter(|_| job.evaluate) {
        if stopping() {
            break;
        }
        let report = match nets.load(learner) {
            Ok(net) => evaluate_net(context, net, learner.strategy, job.step),
            Err(error) => {
                let message = format!("cannot evaluate {}: {error:#}", learner.strategy);
                eprintln!("error: {message}");
                return emit(Event::Problem(message));
            }
        };
        if !emit(Event::Evaluated(Arc::new(report))) {
            return false;
        }
    }
    let Some((dir, state)) = &job.checkpoint else {
        return true;
    };
    for learner in &job.learners {
        if let Err(error) = nets.load(learner) {
            let message = format!(
                "the checkpoint at step {} was not written: {error:#}",
                job.step
            );
            eprintln!("error: {message}");
            return emit(Event::Problem(message));
        }
    }
    let stores: Vec<(&str, &VarStore)> = nets
        .stores
        .iter()
        .filter(|(s, _, _)| job.learners.iter().any(|l| l.strategy == *s))
        .map(|(s, vs, _)| (s.key(), vs))
        .collect();
    match write_checkpoint(dir, &context.info, &stores, &job.learners, state) {
        Ok(()) => true,
        Err(error) => {
            let message = format!(
                "the checkpoint at step {} was not written: {error:#}",
                job.step
            );
            eprintln!("error: {message}");
            emit(Event::Problem(message))
        }
    }
}

/// The evaluator's own network per strategy, loaded with each hand-over's weights.
struct Nets {
    info: ModelInfo,
    device: Device,
    stores: Vec<(Strategy, VarStore, DetectorNet)>,
}

impl Nets {
    fn new(context: &EvalContext) -> Self {
        Self {
            info: context.info.clone(),
            device: context.device,
            stores: Vec::new(),
        }
    }

    fn load(&mut self, learner: &LearnerCheckpoint) -> anyhow::Result<&DetectorNet> {
        let index = match self
            .stores
            .iter()
            .position(|(s, _, _)| *s == learner.strategy)
        {
            Some(i) => i,
            None => {
                let vs = VarStore::new(self.device);
                let info = &self.info;
                let net =
                    DetectorNet::new(&vs.root(), info.class_names.len(), info.window, info.size);
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
    net: &DetectorNet,
    strategy: Strategy,
    step: u64,
) -> EvalReport {
    let dataset = &context.dataset;
    let detections =
        detector::detect_images(net, &dataset.val, &context.info.scales, context.device);
    let evaluation = eval::evaluate(
        &detections,
        &eval::ground_truth(&dataset.val),
        dataset.class_names.len(),
        MATCH_IOU,
    );
    let val_loss = if context.val_examples.is_empty() {
        f32::NAN
    } else {
        let batch = BatchTensors::new(&context.val_examples, context.info.window, context.device);
        let _guard = tch::no_grad_guard();
        let losses = net.window_losses(&batch.pixels, &batch.labels, &batch.targets);
        losses.loss.mean(Kind::Float).double_value(&[]) as f32
    };
    EvalReport {
        step,
        strategy,
        detections,
        evaluation,
        val_loss,
    }
}
