//! One run: a model and an optimizer per strategy, all from the same initial weights, trained
//! on the same batches. Synchronous; the trainer thread and the tests drive it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use super::config::{Strategy, TrainConfig};
use super::examples::{fixed_examples, Example, ExampleSampler, Split};
use super::messages::{
    EvalReport, HardExample, HardExampleBatch, StepReport, StrategyStep, Thumbnail,
};
use crate::data::Dataset;
use crate::detector::{self, window, DetectorNet, ModelInfo, WindowShape};
use crate::eval::{self, Detection, GroundTruth};
use crate::ohem::{self, Candidate, SelectionConfig};

/// Validation windows drawn once per run for the validation loss.
const VAL_EXAMPLES: usize = 256;
/// Detections below this score are not kept for evaluation (the threshold slider starts here).
pub const SCORE_FLOOR: f32 = 0.05;
/// IoU at which a detection matches a ground-truth box (VOC's AP50).
pub const MATCH_IOU: f32 = 0.5;

static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// One strategy's model and optimizer.
pub struct StrategyModel {
    pub strategy: Strategy,
    pub vs: nn::VarStore,
    pub net: DetectorNet,
    optimizer: nn::Optimizer,
    rng: ChaCha8Rng,
}

/// A batch as tensors on the run's device.
pub struct BatchTensors {
    pub pixels: Tensor,
    pub labels: Tensor,
    pub targets: Tensor,
}

/// What one step produced.
pub struct StepOutcome {
    pub report: StepReport,
    pub hard_examples: Option<HardExampleBatch>,
    /// Strategies whose loss was not finite this step (their update was skipped).
    pub non_finite: Vec<Strategy>,
}

pub struct Engine {
    pub dataset: Arc<Dataset>,
    pub info: ModelInfo,
    pub config: TrainConfig,
    pub device: Device,
    pub device_name: String,
    pub models: Vec<StrategyModel>,
    pub step: u64,
    train_sampler: ExampleSampler,
    val_examples: Vec<Example>,
}

impl Engine {
    pub fn new(dataset: Arc<Dataset>, config: TrainConfig) -> anyhow::Result<Self> {
        if config.strategies.is_empty() {
            bail!("no strategy chosen: pick at least one of ohem, full, random");
        }
        if config.batch_size == 0 {
            bail!("K (examples per batch) must be at least 1");
        }
        if config.hard_examples == 0 {
            bail!("M (hard examples per batch) must be at least 1");
        }
        if !(config.lr.is_finite() && config.lr > 0.0) {
            bail!(
                "the learning rate must be a positive number, not {}",
                config.lr
            );
        }
        if config.steps == Some(0) {
            bail!("the step budget must be at least 1");
        }
        if !(0.0..=1.0).contains(&config.nms_iou)
            || !(0.0..=1.0).contains(&config.negative_fraction)
        {
            bail!("the NMS IoU and the negative fraction must lie between 0 and 1");
        }
        if config
            .max_negatives_per_positive
            .is_some_and(|r| !(r.is_finite() && r >= 0.0))
        {
            bail!("negatives per positive must be a number ≥ 0");
        }
        if config.cpu_threads > 0 {
            tch::set_num_threads(config.cpu_threads as i32);
        }
        let (device, device_name) = detector::resolve_device(config.device)?;
        let info = model_info(&dataset);
        let train_sampler = ExampleSampler::new(
            dataset.clone(),
            Split::Train,
            info.window,
            info.scales.clone(),
            config.negative_fraction,
        );
        if !train_sampler.has_positives() {
            bail!("the training split has no object boxes: nothing to learn to detect");
        }
        let val_sampler = ExampleSampler::new(
            dataset.clone(),
            Split::Val,
            info.window,
            info.scales.clone(),
            config.negative_fraction,
        );
        let val_examples = if val_sampler.has_images() {
            fixed_examples(&val_sampler, config.seed ^ 0xA11CE, VAL_EXAMPLES)
        } else {
            Vec::new()
        };

        // libtorch's generator is global: hold the lock from seeding to the last initialisation
        // so engines built at the same time (tests, a restart) still get their seed's weights.
        let _init = INIT_LOCK
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        tch::manual_seed(config.seed as i64);
        let mut models: Vec<StrategyModel> = Vec::new();
        let mut strategies = config.strategies.clone();
        strategies.sort();
        strategies.dedup();
        for (i, &strategy) in strategies.iter().enumerate() {
            let mut vs = nn::VarStore::new(device);
            let net = DetectorNet::new(&vs.root(), dataset.class_names.len(), info.window);
            if let Some(first) = models.first() {
                vs.copy(&first.vs)
                    .context("copying the shared initial weights")?;
            }
            let optimizer = nn::Adam::default().build(&vs, config.lr)?;
            models.push(StrategyModel {
                strategy,
                vs,
                net,
                optimizer,
                rng: ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(i as u64 + 1)),
            });
        }
        Ok(Self {
            dataset,
            info,
            config,
            device,
            device_name,
            models,
            step: 0,
            train_sampler,
            val_examples,
        })
    }

    pub fn train_sampler(&self) -> ExampleSampler {
        self.train_sampler.clone()
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
        for model in &mut self.models {
            model.optimizer.set_lr(lr);
        }
    }

    pub fn selection(&self) -> SelectionConfig {
        SelectionConfig {
            hard_examples: self.config.hard_examples,
            nms_by_loss: self.config.nms_by_loss,
            nms_iou: self.config.nms_iou,
            max_negatives_per_positive: self.config.max_negatives_per_positive,
        }
    }

    pub fn tensors(&self, examples: &[Example]) -> BatchTensors {
        to_tensors(examples, self.info.window, self.device)
    }

    /// Trains every strategy on `examples` (one batch) and reports what happened.
    pub fn train_step(
        &mut self,
        examples: &[Example],
        elapsed_secs: f64,
    ) -> anyhow::Result<StepOutcome> {
        let started = Instant::now();
        let batch = self.tensors(examples);
        let candidates = candidates(examples);
        let selection = self.selection();
        let device = self.device;
        let mut strategies: Vec<Option<StrategyStep>> = vec![None; self.models.len()];
        let mut hard_examples = None;
        let mut non_finite = Vec::new();
        // The strategy that runs first after a new batch shares the CPU with the loader
        // refilling its queue; taking turns keeps that cost out of the comparison.
        let count = self.models.len();
        for turn in 0..count {
            let index = (turn + self.step as usize) % count;
            let model = &mut self.models[index];
            let outcome = step_one(model, &batch, &candidates, &selection, device)?;
            // Only a non-finite loss on the trained examples skips an update.
            if !outcome.selected.is_empty() && !outcome.step.trained_loss.is_finite() {
                non_finite.push(model.strategy);
            }
            if model.strategy == Strategy::Ohem {
                hard_examples = Some(HardExampleBatch {
                    step: self.step + 1,
                    batch_size: examples.len(),
                    examples: outcome
                        .selected
                        .iter()
                        .map(|&i| HardExample {
                            thumbnail: thumbnail(&examples[i], self.info.window),
                            source_image: examples[i].source_image,
                            window: examples[i].window,
                            label: examples[i].label,
                            loss: outcome.losses[i],
                            score: outcome.scores[i],
                        })
                        .collect(),
                });
            }
            strategies[index] = Some(outcome.step);
        }
        let strategies: Vec<StrategyStep> = strategies.into_iter().flatten().collect();
        self.step += 1;
        let secs = started.elapsed().as_secs_f32().max(1e-6);
        Ok(StepOutcome {
            report: StepReport {
                step: self.step,
                elapsed_secs,
                batch_size: examples.len(),
                hard_examples: self.config.hard_examples,
                positives: examples.iter().filter(|e| e.label > 0).count(),
                examples_per_sec: examples.len() as f32 / secs,
                strategies,
            },
            hard_examples,
            non_finite,
        })
    }

    /// Evaluates every strategy on the validation split.
    pub fn evaluate(&self) -> Vec<EvalReport> {
        if self.dataset.val.is_empty() {
            return Vec::new();
        }
        let ground_truth: Vec<GroundTruth> = validation_ground_truth(&self.dataset);
        let val_batch = (!self.val_examples.is_empty()).then(|| self.tensors(&self.val_examples));
        self.models
            .iter()
            .map(|model| {
                let detections = detect_split(
                    &model.net,
                    &self.dataset.val,
                    &self.info.scales,
                    self.device,
                );
                let evaluation = eval::evaluate(
                    &detections,
                    &ground_truth,
                    self.dataset.class_names.len(),
                    MATCH_IOU,
                );
                let val_loss = val_batch.as_ref().map_or(f32::NAN, |b| {
                    let _guard = tch::no_grad_guard();
                    let losses = model.net.window_losses(&b.pixels, &b.labels, &b.targets);
                    losses.loss.mean(Kind::Float).double_value(&[]) as f32
                });
                EvalReport {
                    step: self.step,
                    strategy: model.strategy,
                    detections,
                    evaluation,
                    val_loss,
                }
            })
            .collect()
    }

    /// Writes `<dir>/<strategy>.safetensors` for every strategy and `<dir>/model.json`.
    pub fn save(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut written = Vec::new();
        for model in &self.models {
            let path = dir.join(format!("{}.safetensors", model.strategy.key()));
            // Saved under a temporary name and renamed, so a crash never leaves half a file.
            let partial = dir.join(format!(".{}.partial.safetensors", model.strategy.key()));
            model
                .vs
                .save(&partial)
                .with_context(|| format!("cannot write {}", partial.display()))?;
            std::fs::rename(&partial, &path)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push(path);
        }
        let info_path = dir.join("model.json");
        self.info.save(&info_path)?;
        written.push(info_path);
        Ok(written)
    }
}

/// What one strategy did with one batch.
struct OneStep {
    step: StrategyStep,
    /// Read-only-pass losses and object scores of every example (for the hard-example grid).
    losses: Vec<f32>,
    scores: Vec<f32>,
    selected: Vec<usize>,
}

fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

fn ms_since(t: Instant) -> f32 {
    t.elapsed().as_secs_f32() * 1000.0
}

fn step_one(
    model: &mut StrategyModel,
    batch: &BatchTensors,
    candidates: &[Candidate],
    selection: &SelectionConfig,
    device: Device,
) -> anyhow::Result<OneStep> {
    let k = candidates.len();
    if model.strategy == Strategy::FullBatch {
        // Plain training: its forward pass already is the whole-batch loss.
        let t = Instant::now();
        let out = model
            .net
            .window_losses(&batch.pixels, &batch.labels, &batch.targets);
        let loss = out.loss.mean(Kind::Float);
        let value = loss.double_value(&[]) as f32;
        if value.is_finite() {
            model.optimizer.backward_step(&loss);
        }
        sync(device);
        let losses = to_vec(&out.loss.detach());
        return Ok(OneStep {
            step: StrategyStep {
                strategy: model.strategy,
                trained_loss: value,
                batch_loss: value,
                forward_ms: 0.0,
                select_ms: 0.0,
                train_ms: ms_since(t),
            },
            scores: to_vec(&out.object_score.detach()),
            losses,
            selected: (0..k).collect(),
        });
    }

    // 1. The read-only pass: every example, no gradient, same weights as the trained network.
    let t = Instant::now();
    let read_only = {
        let _guard = tch::no_grad_guard();
        model
            .net
            .window_losses(&batch.pixels, &batch.labels, &batch.targets)
    };
    let losses = to_vec(&read_only.loss);
    let scores = to_vec(&read_only.object_score);
    let forward_ms = ms_since(t);
    let batch_loss = mean(&losses);

    // 2. Selection, in f32 on the CPU: K numbers.
    let t = Instant::now();
    let selected = match model.strategy {
        Strategy::Ohem => ohem::select_hard(&losses, candidates, selection)?,
        _ => ohem::select_random(k, selection.hard_examples, &mut model.rng),
    };
    let select_ms = ms_since(t);
    if selected.is_empty() {
        // The negatives cap can leave nothing when a batch holds no positive: no update.
        return Ok(OneStep {
            step: StrategyStep {
                strategy: model.strategy,
                trained_loss: f32::NAN,
                batch_loss,
                forward_ms,
                select_ms,
                train_ms: 0.0,
            },
            losses,
            scores,
            selected,
        });
    }

    // 3. Forward and backward the selected examples only.
    let t = Instant::now();
    let index = Tensor::from_slice(&selected.iter().map(|&i| i as i64).collect::<Vec<_>>())
        .to_device(device);
    let trained = model.net.window_losses(
        &batch.pixels.index_select(0, &index),
        &batch.labels.index_select(0, &index),
        &batch.targets.index_select(0, &index),
    );
    let loss = trained.loss.mean(Kind::Float);
    let trained_loss = loss.double_value(&[]) as f32;
    if trained_loss.is_finite() {
        model.optimizer.backward_step(&loss);
    }
    sync(device);
    Ok(OneStep {
        step: StrategyStep {
            strategy: model.strategy,
            trained_loss,
            batch_loss,
            forward_ms,
            select_ms,
            train_ms: ms_since(t),
        },
        losses,
        scores,
        selected,
    })
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))
        .unwrap_or_default()
}

fn mean(values: &[f32]) -> f32 {
    values.iter().sum::<f32>() / values.len().max(1) as f32
}

/// What OHEM's selection needs to know about each example of a batch.
pub fn candidates(examples: &[Example]) -> Vec<Candidate> {
    examples
        .iter()
        .map(|e| Candidate {
            image: e.source_image,
            window: e.window,
            positive: e.label > 0,
        })
        .collect()
}

pub fn to_tensors(examples: &[Example], window: WindowShape, device: Device) -> BatchTensors {
    let pixels: Vec<u8> = examples
        .iter()
        .flat_map(|e| e.pixels.iter().copied())
        .collect();
    let labels: Vec<i64> = examples.iter().map(|e| e.label as i64).collect();
    let targets: Vec<f32> = examples.iter().flat_map(|e| e.target).collect();
    BatchTensors {
        pixels: detector::pixels_to_tensor(
            &pixels,
            examples.len(),
            window.height_px,
            window.width_px,
            device,
        ),
        labels: Tensor::from_slice(&labels).to_device(device),
        targets: Tensor::from_slice(&targets)
            .view([examples.len() as i64, 4])
            .to_device(device),
    }
}

fn thumbnail(example: &Example, window: WindowShape) -> Thumbnail {
    Thumbnail {
        width: window.width_px,
        height: window.height_px,
        rgba: example
            .pixels
            .chunks(3)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
    }
}

/// Window shape and pyramid from the training boxes (in the decoded pixels the detector sees).
pub fn model_info(dataset: &Dataset) -> ModelInfo {
    let mut sizes: Vec<(f32, f32)> = dataset
        .train
        .iter()
        .flat_map(|r| {
            r.boxes.iter().map(move |b| {
                let decoded = r.to_decoded(&b.rect);
                (decoded.width(), decoded.height())
            })
        })
        .collect();
    sizes.extend(
        dataset
            .positive_crops
            .iter()
            .map(|r| (r.pixels.width() as f32, r.pixels.height() as f32)),
    );
    let window = WindowShape::from_box_sizes(&sizes);
    let mut scales = window::pyramid_scales(&sizes, window);
    if !dataset.positive_crops.is_empty() && dataset.train.iter().all(|r| r.boxes.is_empty()) {
        // Crops say nothing about object sizes in full images: slide over a wide range.
        scales = vec![1.0, 1.41, 2.0, 2.83, 4.0];
    }
    ModelInfo {
        class_names: dataset.class_names.clone(),
        window,
        scales,
    }
}

pub fn validation_ground_truth(dataset: &Dataset) -> Vec<GroundTruth> {
    dataset
        .val
        .iter()
        .enumerate()
        .flat_map(|(image, record)| {
            record.boxes.iter().map(move |b| GroundTruth {
                image,
                class_id: b.class_id,
                rect: b.rect,
                difficult: b.difficult,
            })
        })
        .collect()
}

/// Detections on every image of a split, in original pixels.
pub fn detect_split(
    net: &DetectorNet,
    images: &[crate::data::ImageRecord],
    scales: &[f32],
    device: Device,
) -> Vec<Detection> {
    images
        .iter()
        .enumerate()
        .flat_map(|(image, record)| {
            detector::detect(net, &record.pixels, scales, SCORE_FLOOR, device)
                .into_iter()
                .map(move |d| Detection {
                    image,
                    class_id: d.class_id,
                    rect: record.to_original(&d.rect),
                    score: d.score,
                })
        })
        .collect()
}
