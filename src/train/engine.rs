//! One run: a learner (model and optimizer) per strategy, all from the same initial weights,
//! trained on the same batches of images and RoIs. Synchronous; the trainer thread and the
//! tests drive it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use tch::Device;

use super::batch::Batch;
use super::bootstrap::HardNegativeCache;
use super::config::{LiveSettings, Strategy, TrainConfig};
use super::evaluator::{evaluate_net, EvalContext};
use super::images::{ImageSampler, Split, TrainImage};
use super::learner::{Learner, LearnerCheckpoint};
use super::messages::{EvalReport, HardExampleBatch, StepReport, StrategyStep};
use super::resume::TrainingState;
use crate::data::Dataset;
use crate::detector::model::{CUDA_INPUT_PX, INPUT_PX};
use crate::detector::pretrained::{available, missing_weights, weights_path};
use crate::detector::{self, BackboneKind, ModelInfo};
use crate::ohem::SelectionConfig;

/// libtorch's random generator is global: engines built at the same time (tests, a restart)
/// hold this from seeding to the last initialisation so each still gets its seed's weights.
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What one step produced.
pub struct StepOutcome {
    pub report: StepReport,
    /// OHEM's picks, when OHEM is one of the run's strategies.
    pub hard_examples: Option<HardExampleBatch>,
    /// Strategies whose loss was not finite this step (their update was skipped).
    pub non_finite: Vec<Strategy>,
    /// Strategies whose training diverged, with the step their weights were set back to.
    pub diverged: Vec<(Strategy, u64)>,
    /// Things worth telling the person watching (a bootstrapping scan).
    pub notes: Vec<String>,
}

/// The backbone a run trains and, when it is not the one asked for, why: said once.
pub fn choose_backbone(
    asked: Option<BackboneKind>,
    device: Device,
) -> anyhow::Result<(BackboneKind, Option<String>)> {
    if let Some(kind) = asked {
        if let Some(path) = weights_path(kind).filter(|p| !p.is_file()) {
            bail!(missing_weights(kind, &path));
        }
        return Ok((kind, None));
    }
    // On a GPU the deeper, wider Lite2 costs little more time than Lite0 on the CPU.
    let preferred = if device.is_cuda() && available(BackboneKind::Lite2) {
        BackboneKind::Lite2
    } else {
        BackboneKind::Lite0
    };
    if available(preferred) {
        return Ok((preferred, None));
    }
    let path = weights_path(preferred).unwrap_or_default();
    Ok((
        BackboneKind::Small,
        Some(format!(
            "{}; the small backbone trains from scratch instead, and detects far less well",
            missing_weights(preferred, &path)
        )),
    ))
}

pub struct Engine {
    dataset: Arc<Dataset>,
    info: ModelInfo,
    config: TrainConfig,
    device: Device,
    device_name: String,
    learners: Vec<Learner>,
    step: u64,
    /// Images taken from the batch stream: where the next batch starts.
    examples_drawn: u64,
    train_sampler: ImageSampler,
    /// Said once when the run starts (the backbone it fell back to).
    notes: Vec<String>,
    /// Bootstrapping's hard negatives, when it is one of the run's strategies.
    hard_negatives: HardNegativeCache,
    /// The cache must be filled before the next step (a resumed run starts with it empty).
    rescan_due: bool,
    /// Trained seconds over the time budget, for the learning-rate schedule of a timed run.
    trained_share: f64,
}

impl Engine {
    /// A new run: every strategy from the same initial weights, the backbone's from ImageNet.
    pub fn new(dataset: Arc<Dataset>, config: TrainConfig) -> anyhow::Result<Self> {
        Self::build(dataset, config, None)
    }

    /// The engine of `config` on `dataset`; with `saved`, the detector a checkpoint was saved
    /// with, whose weights replace the initial ones (so its backbone needs no weights on disk).
    fn build(
        dataset: Arc<Dataset>,
        config: TrainConfig,
        saved: Option<&ModelInfo>,
    ) -> anyhow::Result<Self> {
        config.validate()?;
        if config.cpu_threads > 0 {
            tch::set_num_threads(config.cpu_threads as i32);
        }
        let (device, device_name) = detector::resolve_device(config.device)?;
        let (info, fallback) = match saved {
            Some(saved) => {
                let info = ModelInfo::from_dataset(&dataset, saved.backbone, saved.input_px);
                if info.class_names != saved.class_names {
                    bail!(
                        "the run was trained on the classes {:?}, this dataset has {:?}",
                        saved.class_names,
                        info.class_names
                    );
                }
                if info != *saved {
                    bail!("this dataset gives the detector other RoI sizes than the run was trained with: open the run's own dataset");
                }
                (info, None)
            }
            None => {
                let (backbone, fallback) = choose_backbone(config.backbone, device)?;
                let input_px = config.input_px.unwrap_or(if device.is_cuda() {
                    CUDA_INPUT_PX
                } else {
                    INPUT_PX
                });
                (
                    ModelInfo::from_dataset(&dataset, backbone, input_px),
                    fallback,
                )
            }
        };
        let train_sampler =
            ImageSampler::new(dataset.clone(), Split::Train, &info, config.colour_jitter);
        if !train_sampler.has_positives() {
            bail!("the training split has no object boxes: nothing to learn to detect");
        }
        let learners = learners(&config, &info, device, saved.is_none())?;
        Ok(Self {
            dataset,
            info,
            config,
            device,
            device_name,
            learners,
            step: 0,
            examples_drawn: 0,
            train_sampler,
            notes: fallback.into_iter().collect(),
            hard_negatives: HardNegativeCache::default(),
            rescan_due: false,
            trained_share: 0.0,
        })
    }

    /// Continues a run from its checkpoint: `state`'s settings and counters, each learner's
    /// weights, moments and random stream. `info` is the detector the checkpoint was saved
    /// with; `dataset` must give the same one (same classes, same RoI sizes).
    pub fn resume(
        dataset: Arc<Dataset>,
        state: &TrainingState,
        info: &ModelInfo,
        saved: &[LearnerCheckpoint],
    ) -> anyhow::Result<Self> {
        let mut engine = Self::build(dataset, state.config.clone(), Some(info))?;
        for learner in &mut engine.learners {
            let Some(own) = saved.iter().find(|s| s.strategy == learner.strategy()) else {
                bail!("the checkpoint has no weights for {}", learner.strategy());
            };
            learner
                .restore(own)
                .map_err(|e| e.context(format!("{}", learner.strategy())))?;
        }
        engine.step = state.step;
        engine.examples_drawn = state.examples_drawn;
        engine.rescan_due = engine.step >= engine.config.bootstrap_every;
        engine.set_trained_share(state.config.trained_share(state.trained_secs));
        Ok(engine)
    }

    /// Images taken from the batch stream so far.
    pub fn examples_drawn(&self) -> u64 {
        self.examples_drawn
    }

    /// What to tell the person watching once the run starts (the backbone it fell back to).
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    /// Copies of what resuming each learner needs, for the evaluator to score and save.
    pub fn learner_checkpoints(&self) -> Vec<LearnerCheckpoint> {
        self.learners.iter().map(Learner::checkpoint).collect()
    }

    /// The run-wide part of a checkpoint at this step.
    pub fn training_state(&self, trained_secs: f64) -> TrainingState {
        TrainingState {
            step: self.step,
            examples_drawn: self.examples_drawn,
            trained_secs,
            config: self.config.clone(),
            learners: Vec::new(),
        }
    }

    /// What the evaluator thread needs to score this run's models.
    pub fn eval_context(&self) -> EvalContext {
        EvalContext {
            dataset: self.dataset.clone(),
            info: self.info.clone(),
            device: self.device,
        }
    }

    pub fn dataset(&self) -> &Arc<Dataset> {
        &self.dataset
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// "CPU" or the GPU's name.
    pub fn device_name(&self) -> &str {
        &self.device_name
    }

    /// Steps trained so far.
    pub fn step(&self) -> u64 {
        self.step
    }

    pub fn learners(&self) -> &[Learner] {
        &self.learners
    }

    pub fn train_sampler(&self) -> ImageSampler {
        self.train_sampler.clone()
    }

    /// Takes the settings that may change while a run goes on from `live`, from the next batch
    /// on.
    pub fn apply_live_settings(&mut self, live: &LiveSettings) {
        // The learning rate is used from the next step on, through the schedule.
        self.config = self.config.with_live(live);
    }

    pub fn selection(&self) -> SelectionConfig {
        self.config.live().selection()
    }

    /// The batch the next step trains on `images`: K RoIs among their candidates.
    pub fn batch(&self, images: &[TrainImage]) -> Batch {
        Batch::sampled(
            images,
            self.config.batch_size,
            self.config.seed,
            self.device,
        )
    }

    /// Trains every strategy on `images` (one batch) and reports what happened.
    pub fn train_step(&mut self, images: &[TrainImage]) -> anyhow::Result<StepOutcome> {
        let batch = self.batch(images);
        self.train_batch(images, &batch)
    }

    /// Trains every strategy on `batch`, made of `images`.
    pub fn train_batch(
        &mut self,
        images: &[TrainImage],
        batch: &Batch,
    ) -> anyhow::Result<StepOutcome> {
        let started = Instant::now();
        let selection = self.selection();
        let count = self.learners.len();
        let selecting = self.step >= self.config.selection_warmup_steps;
        let mut records: Vec<Option<StrategyStep>> = vec![None; count];
        let mut hard_examples = None;
        let mut non_finite = Vec::new();
        let mut diverged = Vec::new();
        let mut notes = Vec::new();
        let (scan_ms, own_batch) = self.bootstrap_batch(images, &mut notes);
        let progress = self.progress();
        // The strategy that runs first after a new batch shares the CPU with the loader
        // refilling its queue; taking turns keeps that cost out of the comparison.
        for turn in 0..count {
            let index = (turn + self.step as usize) % count;
            let learner = &mut self.learners[index];
            learner.set_lr(self.config.lr_at(self.step, progress));
            let batch = match (&own_batch, learner.strategy()) {
                (Some(own), Strategy::Bootstrap) => own,
                _ => batch,
            };
            let mut outcome = learner.step(batch, &selection, self.config.ohem_loss, selecting)?;
            if learner.strategy() == Strategy::Bootstrap {
                // The scan is part of what bootstrapping costs.
                outcome.record.forward_ms += scan_ms;
            }
            // Only a non-finite loss on the trained examples skips an update.
            if !outcome.selected.is_empty() && !outcome.record.trained_loss.is_finite() {
                non_finite.push(learner.strategy());
            }
            if let Some(step) = outcome.restored_to_step {
                diverged.push((learner.strategy(), step));
            }
            if learner.strategy() == Strategy::Ohem && selecting {
                hard_examples = Some(self.hard_example_batch(images, batch, &outcome));
            }
            records[index] = Some(outcome.record);
        }
        self.step += 1;
        self.examples_drawn += images.len() as u64;
        let secs = started.elapsed().as_secs_f32().max(1e-6);
        Ok(StepOutcome {
            report: StepReport {
                step: self.step,
                elapsed_secs: 0.0,
                // The setting: the RoIs a batch holds vary with its images when K covers all.
                batch_size: self.config.batch_size,
                // During the warm-up every strategy trains on the whole batch.
                hard_examples: if selecting {
                    self.config.hard_examples.min(batch.len())
                } else {
                    batch.len()
                },
                examples_per_sec: batch.len() as f32 / secs,
                strategies: records.into_iter().flatten().collect(),
            },
            hard_examples,
            non_finite,
            diverged,
            notes,
        })
    }

    /// Seconds trained so far as a share of a time budget (0 without one): set by the trainer
    /// before each step.
    fn progress(&self) -> f64 {
        self.trained_share
    }

    /// Tells the engine how far through its time budget the run is (trained seconds / budget).
    pub fn set_trained_share(&mut self, share: f64) {
        self.trained_share = share.clamp(0.0, 1.0);
    }

    /// Bootstrapping's batch: the images with part of their negatives from the
    /// hard-negative cache, rescanned first when it is due. Returns the scan's milliseconds (0
    /// without one) and the batch, `None` when bootstrapping is not in the run or its cache
    /// holds nothing of these images.
    fn bootstrap_batch(
        &mut self,
        images: &[TrainImage],
        notes: &mut Vec<String>,
    ) -> (f32, Option<Batch>) {
        let Some(learner) = self
            .learners
            .iter()
            .find(|l| l.strategy() == Strategy::Bootstrap)
        else {
            return (0.0, None);
        };
        let every = self.config.bootstrap_every;
        let mut scan_ms = 0.0;
        // Taken first: a resumed run at a multiple of the interval scans once, not twice.
        let resumed = std::mem::take(&mut self.rescan_due);
        if resumed || (self.step > 0 && self.step.is_multiple_of(every)) {
            let report = self.hard_negatives.scan(
                learner.net(),
                &self.dataset,
                self.device,
                (self.config.seed, self.step),
            );
            scan_ms = report.secs * 1000.0;
            let scores = report
                .scores
                .map(|(low, high)| format!(", scored {low:.2}–{high:.2}"))
                .unwrap_or_default();
            notes.push(format!(
                "bootstrapping at step {}: scanned {} training images in {:.1} s; {} hard negatives cached{scores}",
                self.step, report.images, report.secs, report.kept
            ));
        }
        let own = self.hard_negatives.batch_from(
            images,
            self.config.batch_size,
            (self.config.seed, self.step),
            self.device,
        );
        (scan_ms, own)
    }

    fn hard_example_batch(
        &self,
        images: &[TrainImage],
        batch: &Batch,
        outcome: &super::learner::Outcome,
    ) -> HardExampleBatch {
        let seen: Vec<_> = (0..batch.len())
            .map(|i| {
                batch.seen(
                    i,
                    outcome.losses[i],
                    outcome.classification[i],
                    outcome.scores[i],
                )
            })
            .collect();
        HardExampleBatch {
            step: self.step + 1,
            batch_size: batch.len(),
            examples: outcome
                .selected
                .iter()
                .map(|&i| seen[i].picked(batch.thumbnail(i, images)))
                .collect(),
            batch: seen,
        }
    }

    /// Evaluates every strategy on the validation split on this thread (tests, benchmarks; the
    /// trainer hands evaluations to its evaluator thread).
    pub fn evaluate(&self) -> Vec<EvalReport> {
        if self.dataset.val.is_empty() {
            return Vec::new();
        }
        let context = self.eval_context();
        self.learners
            .iter()
            .map(|l| evaluate_net(&context, l.net(), l.strategy(), self.step))
            .collect()
    }

    /// Writes `<dir>/<strategy>.safetensors` for every strategy, then `<dir>/model.json` listing
    /// them: a set that a reader can check.
    pub fn save(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let weights: Vec<(&str, &tch::nn::VarStore)> = self
            .learners
            .iter()
            .map(|l| (l.strategy().key(), l.var_store()))
            .collect();
        crate::detector::checkpoint::save_set(dir, &self.info, self.step(), &weights)
    }

    /// The device every learner's tensors live on.
    pub fn device(&self) -> Device {
        self.device
    }
}

/// A learner per strategy (sorted, once each), all holding the weights drawn for the run's seed.
fn learners(
    config: &TrainConfig,
    info: &ModelInfo,
    device: Device,
    pretrained: bool,
) -> anyhow::Result<Vec<Learner>> {
    let mut strategies = config.strategies.clone();
    strategies.sort();
    strategies.dedup();
    let _init = INIT_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    tch::manual_seed(config.seed as i64);
    let mut learners: Vec<Learner> = Vec::new();
    for (i, &strategy) in strategies.iter().enumerate() {
        let rng_seed = config.seed.wrapping_add(i as u64 + 1);
        let learner = Learner::new(
            strategy,
            info,
            device,
            config,
            rng_seed,
            learners.first(),
            pretrained,
        )?;
        learners.push(learner);
    }
    Ok(learners)
}
