//! `ohem-studio train`: one run on the trainer thread, written to a run folder as it goes, with
//! a progress bar; Ctrl-C stops it and still saves the weights.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::run_charts::RunCharts;
use super::DeviceArg;
use crate::data::Dataset;
use crate::detector::BackboneKind;
use crate::files::write_atomically;
use crate::run::{Recorder, RunLock, RunReader, LOCK_FILE};
use crate::train::messages::{EvalReport, RunInfo};
use crate::train::resume::read_state;
use crate::train::suspects::{suspects_csv, OffenderLog};
use crate::train::{Command, Event, OhemLoss, Strategy, TrainConfig, TrainerHandle};

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The dataset folder.
    #[arg(long, required_unless_present = "resume")]
    pub data: Option<PathBuf>,
    /// Continue the run recorded in this folder from its last checkpoint (written at every
    /// evaluation and when a run stops): same dataset, settings and batch sequence, so its
    /// curves go on where they left off. Other flags are taken from the run.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["data", "out", "overwrite"])]
    pub resume: Option<PathBuf>,
    /// Steps (batches) to train [default: 1000, or as many as --minutes allows].
    #[arg(long)]
    pub steps: Option<u64>,
    /// Train for this many minutes instead (evaluations not counted): every strategy gets the
    /// same time, so a cheaper step trains more often. Alone in a run, a strategy has the
    /// machine to itself; `compare --minutes` trains each strategy that way.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// N: images per batch.
    #[arg(long = "images", default_value_t = TrainConfig::default().images_per_batch)]
    pub images_per_batch: usize,
    /// K: RoIs scored per batch.
    #[arg(long = "batch", default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// M: hard examples (RoIs) trained per batch.
    #[arg(long = "hard", default_value_t = TrainConfig::default().hard_examples)]
    pub hard_examples: usize,
    /// Comma-separated: ohem, full, random, focal, ohem-3to1, bootstrap.
    #[arg(long, default_value = "ohem,full,random")]
    pub strategies: String,
    /// The focal loss's focusing parameter γ (0: α-weighted cross-entropy).
    #[arg(long, default_value_t = TrainConfig::default().focal_gamma)]
    pub focal_gamma: f32,
    /// The focal loss's weight α of the object classes (background gets 1 − α).
    #[arg(long, default_value_t = TrainConfig::default().focal_alpha)]
    pub focal_alpha: f32,
    /// Bootstrapping rescans the training images for hard negatives every this many steps.
    #[arg(long, default_value_t = TrainConfig::default().bootstrap_every)]
    pub bootstrap_every: u64,
    /// Peak learning rate (after the warm-up; it then decays along a cosine to the last step).
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f64,
    /// Steps of linear learning-rate warm-up.
    #[arg(long, default_value_t = TrainConfig::default().warmup_steps)]
    pub warmup: u64,
    /// Keep the learning rate constant after the warm-up instead of decaying it.
    #[arg(long)]
    pub no_lr_decay: bool,
    /// Steps in which OHEM and random-M train on the whole batch before selecting.
    #[arg(long, default_value_t = 0)]
    pub select_after: u64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = TrainConfig::default().weight_decay)]
    pub weight_decay: f64,
    /// The backbone's share of the learning rate.
    #[arg(long, default_value_t = TrainConfig::default().backbone_lr_scale)]
    pub backbone_lr: f64,
    /// Random brightness, contrast and saturation of training images, up to ± this share.
    #[arg(long, default_value_t = TrainConfig::default().colour_jitter)]
    pub colour_jitter: f32,
    /// The backbone [default: efficientnet-lite0 with its ImageNet weights (efficientnet-lite2
    /// on CUDA); small, from scratch, when the weights are missing].
    #[arg(long, value_enum)]
    pub backbone: Option<BackboneKind>,
    /// The longer image side the detector sees [default: 384 on the CPU, 512 on CUDA].
    #[arg(long)]
    pub input_px: Option<u32>,
    /// What OHEM ranks examples by: the classification loss alone, or with the box term.
    #[arg(long, value_enum, default_value_t = TrainConfig::default().ohem_loss)]
    pub ohem_loss: OhemLoss,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Evaluate on the validation split every N steps, and always at the end (0: only at the end).
    #[arg(long, default_value_t = TrainConfig::default().eval_every)]
    pub eval_every: u64,
    /// Turn off NMS by loss among the hard-example candidates.
    #[arg(long)]
    pub no_nms_by_loss: bool,
    /// At most this many negatives per positive among the hard examples.
    #[arg(long)]
    pub max_neg_per_pos: Option<f32>,
    /// CPU threads for libtorch (0: its default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Run folder: metrics.csv, eval.csv, hard_examples.csv, label_suspects.csv, config.json,
    /// weights. A folder that already holds files is refused, so an earlier run is never
    /// overwritten by accident.
    #[arg(long, required_unless_present = "resume")]
    pub out: Option<PathBuf>,
    /// Replace the run in a non-empty --out folder. Its files are replaced only once the new run
    /// has started, so a run that fails to start leaves them as they were.
    #[arg(long)]
    pub overwrite: bool,
}

impl TrainArgs {
    /// `--data`, which clap requires unless `--resume` is given.
    pub fn data(&self) -> anyhow::Result<&Path> {
        self.data.as_deref().context("--data is required")
    }

    /// `--out`, which clap requires unless `--resume` is given.
    pub fn out(&self) -> anyhow::Result<&Path> {
        self.out.as_deref().context("--out is required")
    }

    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        let config = TrainConfig {
            steps: match (self.steps, self.minutes) {
                (None, Some(_)) => None,
                (steps, _) => Some(steps.unwrap_or(DEFAULT_STEPS)),
            },
            minutes: self.minutes,
            images_per_batch: self.images_per_batch,
            batch_size: self.batch_size,
            hard_examples: self.hard_examples,
            strategies: Strategy::parse_list(&self.strategies)?,
            backbone: self.backbone,
            input_px: self.input_px,
            lr: self.lr,
            backbone_lr_scale: self.backbone_lr,
            warmup_steps: self.warmup,
            lr_decay: !self.no_lr_decay,
            selection_warmup_steps: self.select_after,
            weight_decay: self.weight_decay,
            colour_jitter: self.colour_jitter,
            ohem_loss: self.ohem_loss,
            device: self.device.into(),
            seed: self.seed,
            eval_every: self.eval_every,
            nms_by_loss: !self.no_nms_by_loss,
            max_negatives_per_positive: self.max_neg_per_pos,
            cpu_threads: capped_threads(self.threads),
            focal_gamma: self.focal_gamma,
            focal_alpha: self.focal_alpha,
            bootstrap_every: self.bootstrap_every,
            ..TrainConfig::default()
        };
        config.validate()?;
        Ok(config)
    }
}

/// Steps of a run given neither `--steps` nor `--minutes`.
const DEFAULT_STEPS: u64 = 1000;

/// `--threads`, at most the machine's: more only adds switching between them.
fn capped_threads(asked: usize) -> usize {
    let machine = crate::train::config::machine_threads();
    if asked > machine {
        eprintln!("note: --threads {asked} capped to the {machine} this machine runs at once");
    }
    asked.min(machine)
}

/// `train`: one run into `--out`, or the run of `--resume` continued.
pub fn train(args: &TrainArgs) -> anyhow::Result<()> {
    if let Some(run_dir) = &args.resume {
        return resume(run_dir);
    }
    let config = args.config()?;
    let target = RunFolder::claim(args.out()?, args.overwrite)?;
    run(args.data()?, &target, config, &interrupt_flag()).map(|_| ())
}

/// `train --resume`: the run in `run_dir` continued from its checkpoint to its step budget.
fn resume(run_dir: &Path) -> anyhow::Result<()> {
    let interrupted = interrupt_flag();
    let target = RunFolder::existing(run_dir)?;
    let state = read_state(run_dir)?;
    let recorded = RunReader::open(run_dir)?.config().clone();
    if let Some(why) = state.nothing_to_continue(run_dir) {
        bail!("{}: {why}", run_dir.display());
    }
    let what = if state.budget_spent() {
        format!(
            "finishing {}: its {} steps were trained, but it stopped before its final evaluation and weights were written",
            run_dir.display(),
            state.step
        )
    } else {
        format!("continuing {} from step {}", run_dir.display(), state.step)
    };
    eprintln!("{what} (dataset {})", recorded.data.display());
    let plan = Plan::Continue {
        config: state.config,
        at_step: state.step,
    };
    run_plan(&recorded.data, &target, plan, &interrupted).map(|_| ())
}

/// What a run starts from.
enum Plan {
    Fresh(TrainConfig),
    /// The checkpoint in the run folder, taken at `at_step` with `config` in force.
    Continue {
        config: TrainConfig,
        at_step: u64,
    },
}

impl Plan {
    /// The settings, the command that starts the run recording into `run_dir`, and the step
    /// it starts from.
    fn into_command(self, run_dir: &Path) -> (TrainConfig, Command, u64) {
        match self {
            Plan::Fresh(config) => {
                let command = Command::Start {
                    config: config.clone(),
                    record: Some(run_dir.to_path_buf()),
                };
                (config, command, 0)
            }
            Plan::Continue { config, at_step } => {
                (config, Command::Continue(run_dir.to_path_buf()), at_step)
            }
        }
    }
}

/// A run's output folder, checked and locked before anything is loaded or written.
#[derive(Clone, Debug)]
pub struct RunFolder {
    pub path: PathBuf,
    /// Whether the folder held files the user agreed to replace.
    pub replaces: bool,
    /// This process is the folder's one writer while any clone of this lives.
    _lock: Arc<RunLock>,
}

impl RunFolder {
    /// `path` as a run folder: new, empty, or holding files that `overwrite` allows replacing;
    /// never one that another process is writing.
    pub fn claim(path: &Path, overwrite: bool) -> anyhow::Result<Self> {
        if path.exists() && !path.is_dir() {
            bail!("--out {} is a file, not a folder", path.display());
        }
        let lock = RunLock::take(path)?;
        let held: Vec<String> = std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|name| name != LOCK_FILE)
                    .collect()
            })
            .unwrap_or_default();
        if !held.is_empty() && !overwrite {
            let mut shown: Vec<&str> = held.iter().map(String::as_str).take(4).collect();
            shown.sort_unstable();
            bail!(
                "{} already holds files ({}{}): choose a new --out folder, or pass --overwrite to replace the run in it",
                path.display(),
                shown.join(", "),
                if held.len() > shown.len() { ", …" } else { "" }
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            replaces: !held.is_empty(),
            _lock: Arc::new(lock),
        })
    }

    /// The run folder `path` that `--resume` continues, locked like a new one.
    pub fn existing(path: &Path) -> anyhow::Result<Self> {
        if !path.is_dir() {
            bail!(
                "{} is not a folder: there is no run to continue",
                path.display()
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            replaces: false,
            _lock: Arc::new(RunLock::take(path)?),
        })
    }

    /// The same claim on a folder inside this one (`compare`'s per-seed runs).
    pub fn child(&self, name: &str) -> anyhow::Result<Self> {
        Self::claim(&self.path.join(name), self.replaces)
    }

    /// Moves the run being replaced into `.previous/` inside the folder, so that the new run
    /// starts in an empty folder and none of the old files can be taken for the new run's,
    /// while the old run is only deleted once the new one has saved its weights.
    fn set_aside(&self) -> anyhow::Result<()> {
        if !self.replaces {
            return Ok(());
        }
        let aside = self.path.join(PREVIOUS_RUN);
        // One left by an earlier replacement that failed: the user chose to replace it twice.
        if aside.exists() {
            std::fs::remove_dir_all(&aside)
                .with_context(|| format!("cannot remove {}", aside.display()))?;
        }
        std::fs::create_dir(&aside)
            .with_context(|| format!("cannot create {}", aside.display()))?;
        for entry in std::fs::read_dir(&self.path)?.flatten() {
            let name = entry.file_name();
            if name == LOCK_FILE || name == PREVIOUS_RUN {
                continue;
            }
            std::fs::rename(entry.path(), aside.join(&name))
                .with_context(|| format!("cannot move {} aside", entry.path().display()))?;
        }
        Ok(())
    }

    /// Puts the run set aside back: the new run never started, nothing of it was written.
    fn restore(&self) {
        let aside = self.path.join(PREVIOUS_RUN);
        let Ok(entries) = std::fs::read_dir(&aside) else {
            return;
        };
        for entry in entries.flatten() {
            let _ = std::fs::rename(entry.path(), self.path.join(entry.file_name()));
        }
        let _ = std::fs::remove_dir(&aside);
    }

    /// Deletes the run set aside: the new run has saved its weights.
    fn drop_previous(&self) {
        let _ = std::fs::remove_dir_all(self.path.join(PREVIOUS_RUN));
    }

    /// Where the run being replaced waits, when the new one stopped before replacing it.
    fn previous_kept(&self) -> Option<PathBuf> {
        let aside = self.path.join(PREVIOUS_RUN);
        aside.is_dir().then_some(aside)
    }
}

/// The folder inside a run folder where the run it replaces waits (`--overwrite`).
const PREVIOUS_RUN: &str = ".previous";

/// Set by Ctrl-C or SIGTERM. One handler per process (the `ctrlc` crate allows no second one),
/// installed on the first call: a command calls this before it says anything a script might wait
/// for, so a signal sent from then on saves instead of killing.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let interrupted = Arc::new(AtomicBool::new(false));
        let flag = interrupted.clone();
        if let Err(error) = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)) {
            eprintln!("warning: Ctrl-C will end the process without saving: {error}");
        }
        interrupted
    })
    .clone()
}

/// Trains `config` on the dataset in `data_dir`, writing the run folder `out`; returns the last
/// evaluation of each strategy. When `interrupted` is set, the run stops at the next step and
/// still saves its weights.
pub fn run(
    data_dir: &Path,
    out: &RunFolder,
    config: TrainConfig,
    interrupted: &AtomicBool,
) -> anyhow::Result<Vec<EvalReport>> {
    run_plan(data_dir, out, Plan::Fresh(config), interrupted)
}

fn run_plan(
    data_dir: &Path,
    out: &RunFolder,
    plan: Plan,
    interrupted: &AtomicBool,
) -> anyhow::Result<Vec<EvalReport>> {
    eprintln!("loading {} …", data_dir.display());
    let mut trainer = TrainerHandle::spawn(Arc::new(|| {}))?;
    trainer.send(Command::OpenDataset(data_dir.to_path_buf()));
    let Some(dataset) = wait_for_dataset(&trainer, interrupted)? else {
        eprintln!("stopped while loading the dataset: nothing was trained or written");
        trainer.shutdown(Duration::from_secs(1));
        return Ok(Vec::new());
    };
    let fresh = matches!(plan, Plan::Fresh(_));
    let (config, command, at_step) = plan.into_command(&out.path);
    let mut session = Session {
        bar: progress_bar(&config, at_step),
        outputs: None,
        dataset,
        data_dir,
        out,
        phase: Phase::Starting,
        last_evaluations: Vec::new(),
        failure: None,
        charts: RunCharts::default(),
        config,
        offenders: OffenderLog::default(),
    };
    if fresh {
        out.set_aside()?;
    }
    trainer.send(command);
    let outcome = drive(&mut trainer, &mut session, interrupted);
    match session.phase {
        Phase::Starting => out.restore(),
        Phase::Done => out.drop_previous(),
        Phase::Training | Phase::Saving => {
            if let Some(kept) = out.previous_kept() {
                eprintln!(
                    "the run this one was to replace is kept in {}",
                    kept.display()
                );
            }
        }
    }
    outcome
}

/// Passes the trainer's events to `session` until the run is saved (or fails); Ctrl-C stops
/// the run, which is then saved.
fn drive(
    trainer: &mut TrainerHandle,
    session: &mut Session,
    interrupted: &AtomicBool,
) -> anyhow::Result<Vec<EvalReport>> {
    let mut stop_sent = false;
    loop {
        if interrupted.load(Ordering::SeqCst) && !stop_sent && session.phase == Phase::Training {
            say(
                &session.bar,
                "stopping: the weights trained so far will be saved",
            );
            trainer.send(Command::StopRun);
            stop_sent = true;
        }
        let Some(event) = trainer.recv_timeout(Duration::from_millis(200)) else {
            if trainer.is_finished() {
                bail!("the trainer ended unexpectedly");
            }
            continue;
        };
        if let Some(next) = session.handle(event)? {
            trainer.send(next);
        }
        if session.phase == Phase::Done {
            trainer.shutdown(Duration::from_secs(5));
            return Ok(std::mem::take(&mut session.last_evaluations));
        }
    }
}

/// Where the run is: a problem before it starts, or while saving, ends the command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Starting,
    Training,
    Saving,
    Done,
}

/// One run's bookkeeping on the command's side of the channel.
struct Session<'a> {
    config: TrainConfig,
    dataset: Arc<Dataset>,
    data_dir: &'a Path,
    out: &'a RunFolder,
    /// Created when the run has started: a run that fails to start writes nothing.
    outputs: Option<Recorder>,
    bar: ProgressBar,
    phase: Phase,
    last_evaluations: Vec<EvalReport>,
    /// Why the run must end as a failure once its weights are saved (already on stderr).
    failure: Option<String>,
    /// The curves `loss.png`, `map.png` and `pr.png` are drawn from at the end.
    charts: RunCharts,
    /// OHEM's picks across batches, for `label_suspects.csv`.
    offenders: OffenderLog,
}

impl Session<'_> {
    /// Takes one event; returns the command to send back, if any.
    fn handle(&mut self, event: Event) -> anyhow::Result<Option<Command>> {
        match event {
            Event::RunStarted(info) => {
                say(&self.bar, self.started_line(&info));
                std::fs::create_dir_all(&self.out.path)
                    .with_context(|| format!("cannot create {}", self.out.path.display()))?;
                let outputs =
                    Recorder::start(&self.out.path, self.dataset.clone(), self.data_dir, &info)?;
                self.outputs = Some(outputs);
                self.phase = Phase::Training;
            }
            Event::Step(report) => {
                self.bar.set_position(if self.config.minutes.is_some() {
                    report.elapsed_secs as u64
                } else {
                    report.step
                });
                let losses: Vec<String> = report
                    .strategies
                    .iter()
                    .map(|s| format!("{} {:.3}", s.strategy.key(), s.batch_loss))
                    .collect();
                self.bar
                    .set_message(format!("batch loss: {}", losses.join("  ")));
                self.charts.record_step(&report);
                return self.record(&Event::Step(report));
            }
            Event::HardExamples(batch) => {
                self.offenders.record(&batch, &self.dataset.train);
                return self.record(&Event::HardExamples(batch));
            }
            Event::Evaluated(report) => return self.evaluated(report),
            Event::Problem(message) if self.phase != Phase::Training => {
                self.bar.finish_and_clear();
                bail!("{message}");
            }
            // The run goes on (a skipped update or evaluation), or ends and is saved.
            Event::Problem(message) => say(&self.bar, format!("warning: {message}")),
            Event::Info(text) => say(&self.bar, text),
            Event::Diverged { message } => {
                say(&self.bar, format!("error: {message}"));
                self.fail("training diverged (see above); the last good weights were saved");
                return Ok(Some(Command::StopRun));
            }
            Event::WriteFailed(message) => {
                say(&self.bar, format!("error: {message}"));
                self.fail(
                    "a checkpoint could not be written (see above); the final weights were saved",
                );
            }
            Event::RunEnded { .. } => return Ok(Some(self.run_ended())),
            Event::CheckpointSaved(paths) => self.saved(&paths)?,
            Event::Failed { message } => bail!("{message}"),
            Event::Stopped => bail!("the trainer stopped before saving"),
            _ => {}
        }
        Ok(None)
    }

    /// The run ended: the files are completed and the weights asked for.
    fn run_ended(&mut self) -> Command {
        self.bar.finish_and_clear();
        if let Some(Err(error)) = self.outputs.as_mut().map(Recorder::flush) {
            self.write_failed(error);
        }
        let suspects = suspects_csv(&self.offenders.suspects(), &self.dataset.train)
            .and_then(|bytes| write_atomically(&self.out.path.join("label_suspects.csv"), &bytes));
        if let Err(error) = suspects {
            self.write_failed(error);
        }
        self.phase = Phase::Saving;
        Command::SaveCheckpoint(self.out.path.clone())
    }

    /// The weights are saved: the charts last, then the run is done, or ends as a failure.
    fn saved(&mut self, paths: &[PathBuf]) -> anyhow::Result<()> {
        for p in paths {
            eprintln!("wrote {}", p.display());
        }
        eprintln!("wrote {}", self.out.path.join("metrics.csv").display());
        match self.charts.write(&self.out.path) {
            Ok(paths) => paths
                .iter()
                .for_each(|p| eprintln!("wrote {}", p.display())),
            Err(error) => self.write_failed(error),
        }
        self.phase = Phase::Done;
        match self.failure.take() {
            Some(failure) => bail!("{failure}"),
            None => Ok(()),
        }
    }

    /// Records `event` in the run folder. A failed write (a full disk) stops the run: its
    /// weights are still saved if they fit, and the command ends as a failure.
    fn record(&mut self, event: &Event) -> anyhow::Result<Option<Command>> {
        if self.phase == Phase::Starting {
            bail!("the trainer reported a step before the run started");
        }
        // Recording already stopped (and said why).
        let Some(outputs) = self.outputs.as_mut() else {
            return Ok(None);
        };
        match outputs.record(event) {
            Ok(()) => Ok(None),
            Err(error) => {
                self.outputs = None;
                self.write_failed(error);
                say(
                    &self.bar,
                    "stopping: the weights trained so far will be saved if they fit",
                );
                Ok(Some(Command::StopRun))
            }
        }
    }

    /// A file of the run could not be written: said now, and the command fails at the end.
    fn write_failed(&mut self, error: anyhow::Error) {
        say(&self.bar, format!("error: {error:#}"));
        self.fail("the run folder could not be written completely (see above)");
    }

    /// The first reason the command will end as a failure, once the weights are saved.
    fn fail(&mut self, why: &str) {
        self.failure.get_or_insert_with(|| why.to_string());
    }

    /// One strategy's evaluation: a line, a row of `eval.csv`, a point of `map.png`.
    fn evaluated(&mut self, report: Arc<EvalReport>) -> anyhow::Result<Option<Command>> {
        say(
            &self.bar,
            format!(
                "step {:>5}  {:<10} mAP@0.5 {:.3}  val loss {:.4}",
                report.step,
                report.strategy.label(),
                report.evaluation.map(),
                report.val_loss
            ),
        );
        self.charts.record_evaluation(&report);
        self.last_evaluations
            .retain(|e| e.strategy != report.strategy);
        self.last_evaluations.push((*report).clone());
        self.record(&Event::Evaluated(report))
    }

    fn started_line(&self, info: &RunInfo) -> String {
        let keys: Vec<&str> = self.config.strategies.iter().map(|s| s.key()).collect();
        format!(
            "training {} on {} — {}",
            keys.join(", "),
            info.device,
            info.detector
        )
    }
}

/// The loaded dataset, or `None` when `interrupted` was set while it loaded.
fn wait_for_dataset(
    trainer: &TrainerHandle,
    interrupted: &AtomicBool,
) -> anyhow::Result<Option<Arc<Dataset>>> {
    loop {
        if interrupted.load(Ordering::SeqCst) {
            trainer.cancel_loading();
            return Ok(None);
        }
        let Some(event) = trainer.recv_timeout(Duration::from_millis(100)) else {
            if trainer.is_finished() {
                bail!("the trainer ended unexpectedly");
            }
            continue;
        };
        match event {
            Event::DatasetLoaded {
                dataset,
                summary,
                diagnostics,
            } => {
                for d in &diagnostics {
                    eprintln!("warning: {d}");
                }
                eprintln!("{summary}");
                if !diagnostics.is_empty() {
                    eprintln!(
                        "{} problem(s) in the dataset, listed above; training on the good items",
                        diagnostics.len()
                    );
                }
                return Ok(Some(dataset));
            }
            Event::DatasetFailed { path, message } => {
                bail!("cannot open dataset {}: {message}", path.display())
            }
            _ => {}
        }
    }
}

/// Steps of a step budget, or seconds of a time budget.
fn progress_bar(config: &TrainConfig, at_step: u64) -> ProgressBar {
    let (length, position, template) = match config.minutes {
        Some(minutes) => (
            (minutes * 60.0).round() as u64,
            0,
            "{bar:30} {pos}/{len} s trained  eta {eta}  {msg}",
        ),
        None => (
            config.steps.unwrap_or(0),
            at_step,
            "{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}",
        ),
    };
    let bar = ProgressBar::new(length);
    bar.set_position(position);
    bar.set_style(
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// A line above the progress bar, or plainly on stderr when there is no terminal to draw it on.
pub(super) fn say(bar: &ProgressBar, line: impl AsRef<str>) {
    if bar.is_hidden() || bar.is_finished() {
        eprintln!("{}", line.as_ref());
    } else {
        bar.println(line);
    }
}
