//! Run folders in the app: one shown in full or overlaid on the plots, read on a `run-follower`
//! thread that keeps reading while another process (a `train` on a server, a synced folder)
//! is still writing it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::files::file_name;
use crate::run::{RunReader, Validation};
use crate::train::messages::Event;
use crate::train::Waker;

/// How often a followed run folder is looked at for new records.
const FOLLOW_INTERVAL: Duration = Duration::from_millis(500);
/// Records read ahead of the app; a long run's history waits for the app to take it.
const READ_AHEAD: usize = 4096;

/// A run folder being read: what was recorded, then what is added.
pub struct RunFollower {
    dir: PathBuf,
    name: String,
    /// The dataset folder the run was trained on.
    data: PathBuf,
    /// The validation images and boxes its evaluations were scored on, when it wrote them.
    validation: Option<Validation>,
    /// Dropped with the follower, so a thread waiting to send gives up.
    events: Receiver<Event>,
    /// Dropped to stop the thread, which ends at its next look without being waited for.
    _stop: Sender<()>,
    /// When the last new record arrived.
    changed_at: Instant,
    /// Its curves have been drawn (so an overlay missing from the plots was taken off).
    drawn: bool,
}

impl RunFollower {
    /// Opens `dir` (an error names what is wrong with it) and starts following it, with its
    /// hard examples or (an overlay) without; `waker` is called when new records arrive.
    pub fn open(dir: &Path, hard_examples: bool, waker: Waker) -> anyhow::Result<Self> {
        let mut reader = RunReader::open(dir)?;
        if !hard_examples {
            reader = reader.without_hard_examples();
        }
        let data = reader.config().data.clone();
        let validation = reader.validation().cloned();
        let (sender, events) = bounded(READ_AHEAD);
        let (stop, stopping) = bounded::<()>(0);
        std::thread::Builder::new()
            .name("run-follower".into())
            .spawn(move || loop {
                let (batch, failed) = match reader.poll() {
                    Ok(batch) => (batch, false),
                    Err(error) => {
                        let message =
                            format!("stopped reading {}: {error:#}", reader.dir().display());
                        (vec![Event::Problem(message)], true)
                    }
                };
                let any = !batch.is_empty();
                for event in batch {
                    if sender.send(event).is_err() {
                        return;
                    }
                }
                if any {
                    waker();
                }
                if failed
                    || stopping.recv_timeout(FOLLOW_INTERVAL) != Err(RecvTimeoutError::Timeout)
                {
                    return;
                }
            })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            name: file_name(dir),
            data,
            validation,
            events,
            _stop: stop,
            changed_at: Instant::now(),
            drawn: false,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder's name, as the plots' legend shows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn data(&self) -> &Path {
        &self.data
    }

    pub fn validation(&self) -> Option<&Validation> {
        self.validation.as_ref()
    }

    /// The records read since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        let events: Vec<Event> = self.events.try_iter().collect();
        if !events.is_empty() {
            self.changed_at = Instant::now();
        }
        events
    }

    pub fn drawn(&self) -> bool {
        self.drawn
    }

    pub fn set_drawn(&mut self) {
        self.drawn = true;
    }

    /// How long nothing new has come in.
    pub fn quiet_for(&self) -> Duration {
        self.changed_at.elapsed()
    }
}

/// What `dir` recorded up to and including `step`: a continued run's past, read once. The
/// evaluations of `step` itself are left out when the run evaluates again there on continuing.
pub fn recorded_until(dir: &Path, step: u64) -> anyhow::Result<Vec<Event>> {
    let mut reader = RunReader::open(dir)?;
    let reevaluated = reader
        .config()
        .train
        .evaluates_again_when_continued_at(step);
    let mut events = reader.poll()?;
    events.retain(|event| match event {
        Event::Step(r) => r.step <= step,
        Event::HardExamples(b) => b.step <= step,
        Event::Evaluated(r) => r.step < step || (r.step == step && !reevaluated),
        _ => false,
    });
    Ok(events)
}

/// Seconds since 1970, for folder names that sort by time.
pub fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// A new folder for a live run under `root`, named after the dataset and the time.
pub fn new_run_dir(root: &Path, dataset: &Path) -> PathBuf {
    let base = format!("{}-{}", file_name(dataset), unix_secs());
    (0..)
        .map(|n| match n {
            0 => root.join(&base),
            n => root.join(format!("{base}-{n}")),
        })
        .find(|dir| !dir.exists())
        .unwrap_or_else(|| root.join(base))
}
