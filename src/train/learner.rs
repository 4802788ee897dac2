//! One strategy's model, optimizer and step. A step reads like the method: the backbone once
//! per image, a read-only pass of the head over every RoI of the batch, a selection, a trained
//! pass over the selected RoIs only (backpropagated through the head and the unfrozen backbone),
//! and one record of what happened.

use std::time::Instant;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tch::nn;
use tch::{Device, Kind, Tensor};

use super::adam::{AdamState, AdamW};
use super::batch::Batch;
use super::config::{OhemLoss, Strategy, TrainConfig};
use super::messages::StrategyStep;
use crate::detector::{ClassLoss, Detector, ModelInfo, RoiLosses};
use crate::ohem::{self, SelectionConfig};

/// The focal loss's initial probability of "object" for every RoI (RetinaNet's π).
const FOCAL_OBJECT_PRIOR: f64 = 0.01;
/// Negatives per positive in SSD's hard negative mining.
pub const SSD_NEGATIVES_PER_POSITIVE: f32 = 3.0;

/// A trained-examples loss above this, or not finite, counts as a diverging step.
pub const EXPLODED_LOSS: f32 = 100.0;
/// This many diverging steps in a row and the weights are set back to the last good copy.
pub const DIVERGED_AFTER: u32 = 10;
/// A copy of the weights is taken before every this many steps, kept once that step's loss
/// (measured on exactly those weights) shows they were good.
const SNAPSHOT_EVERY: u64 = 25;

/// One strategy's model and optimizer.
pub struct Learner {
    strategy: Strategy,
    vs: nn::VarStore,
    net: Detector,
    /// What the trained pass backpropagates: cross-entropy, or the focal loss.
    class_loss: ClassLoss,
    optimizer: AdamW,
    weight_decay: f64,
    /// The backbone's share of the learning rate.
    backbone_lr_scale: f64,
    /// The learning rate last set.
    lr: f64,
    /// Draws random-M's picks; seeded per strategy so a run can be reproduced.
    rng: ChaCha8Rng,
    /// Steps this learner has trained.
    steps: u64,
    health: Health,
}

/// Whether training is diverging, and the weights to go back to if it is.
#[derive(Default)]
struct Health {
    diverging_steps: u32,
    /// Weights taken before this step's update, not yet known to be good.
    pending: Option<Snapshot>,
    last_good: Option<Snapshot>,
}

/// A copy of every weight, and the number of steps trained when it was taken.
struct Snapshot {
    steps: u64,
    weights: Vec<(String, Tensor)>,
}

/// What one strategy did with one batch: its numbers, and per RoI what the read-only pass saw
/// (the hard-example grid shows these).
pub struct Outcome {
    pub record: StrategyStep,
    /// Per-RoI loss before the update, for every RoI of the batch.
    pub losses: Vec<f32>,
    /// The classification term of each of `losses`.
    pub classification: Vec<f32>,
    /// Per-RoI highest object-class probability before the update.
    pub scores: Vec<f32>,
    /// Batch indices that were backpropagated, highest loss first for OHEM.
    pub selected: Vec<usize>,
    /// Set when training diverged and the weights were set back: to the steps trained then.
    pub restored_to_step: Option<u64>,
}

impl Learner {
    /// A fresh model; `initial`, when given, supplies the weights so that every strategy of a run
    /// starts from the same point, else the backbone starts from its ImageNet weights (when it
    /// has some and `pretrained` asks for them) and the rest from random ones.
    pub fn new(
        strategy: Strategy,
        info: &ModelInfo,
        device: Device,
        config: &TrainConfig,
        seed: u64,
        initial: Option<&Learner>,
        pretrained: bool,
    ) -> anyhow::Result<Self> {
        let mut vs = nn::VarStore::new(device);
        let mut net = Detector::new(&vs.root(), info);
        match initial {
            Some(first) => vs
                .copy(&first.vs)
                .map_err(|e| anyhow::anyhow!("copying the shared initial weights: {e}"))?,
            None if pretrained && info.backbone.pretrained() => net.load_pretrained(&vs)?,
            None => {}
        }
        let class_loss = match strategy {
            Strategy::Focal => {
                // The paper's start: every RoI an object with probability 0.01.
                net.set_object_prior(FOCAL_OBJECT_PRIOR);
                ClassLoss::Focal {
                    gamma: config.focal_gamma,
                    alpha: config.focal_alpha,
                }
            }
            _ => ClassLoss::CrossEntropy,
        };
        let backbone_lr_scale = config.backbone_lr_scale;
        let optimizer = AdamW::new(&vs, config.weight_decay, config.lr_at(0, 0.0), |name| {
            lr_scale(name, backbone_lr_scale)
        });
        Ok(Self {
            strategy,
            vs,
            net,
            class_loss,
            optimizer,
            weight_decay: config.weight_decay,
            backbone_lr_scale,
            lr: config.lr_at(0, 0.0),
            rng: ChaCha8Rng::seed_from_u64(seed),
            steps: 0,
            health: Health::default(),
        })
    }

    pub fn strategy(&self) -> Strategy {
        self.strategy
    }

    pub fn net(&self) -> &Detector {
        &self.net
    }

    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
        self.optimizer.set_lr(lr);
    }

    /// Trains on one batch the way this learner's strategy says.
    pub fn step(
        &mut self,
        batch: &Batch,
        selection: &SelectionConfig,
        ranked_by: OhemLoss,
        selecting: bool,
    ) -> anyhow::Result<Outcome> {
        // 1. The backbone once per image (its graph kept for the trained pass), then the
        //    read-only pass of the head: every RoI, no gradient, the weights the trained pass
        //    uses. Full batch trains on every RoI, so its trained pass doubles as this one.
        let clock = Instant::now();
        let maps: Vec<Tensor> = batch
            .images
            .iter()
            .map(|image| self.net.feature_map(&image.pixels))
            .collect();
        let read_only =
            (selecting && self.strategy.selects()).then(|| self.read_only_pass(batch, &maps));
        sync(self.vs.device());
        let forward_ms = ms_since(clock);

        // 2. The selection, in f32 on the CPU: K numbers.
        let clock = Instant::now();
        let k = batch.len();
        let selected = match &read_only {
            Some(seen) => self.select(seen, batch, selection, ranked_by)?,
            None => (0..k).collect(),
        };
        let select_ms = ms_since(clock);

        // 3. The trained pass: forward and backward the selected RoIs only. The negatives cap
        //    can leave nothing when a batch holds no positive: then there is no update.
        if self.steps.is_multiple_of(SNAPSHOT_EVERY) {
            self.health.pending = Some(self.snapshot());
        }
        let clock = Instant::now();
        let trained = (!selected.is_empty()).then(|| self.train_on(batch, &maps, &selected));
        let train_ms = if trained.is_some() {
            ms_since(clock)
        } else {
            0.0
        };
        drop(maps);

        // 4. One record.
        let (trained_loss, trained_seen) = trained.unwrap_or((f32::NAN, None));
        self.steps += 1;
        let restored_to_step = if selected.is_empty() {
            None
        } else {
            self.check_health(trained_loss)?
        };
        let seen = read_only.or(trained_seen).unwrap_or_default();
        Ok(Outcome {
            record: StrategyStep {
                strategy: self.strategy,
                trained_loss,
                batch_loss: mean(&seen.losses),
                forward_ms,
                select_ms,
                train_ms,
            },
            losses: seen.losses,
            classification: seen.classification,
            scores: seen.scores,
            selected,
            restored_to_step,
        })
    }

    /// Every RoI of the batch through the head without gradient, on the detached feature maps.
    fn read_only_pass(&self, batch: &Batch, maps: &[Tensor]) -> PerExample {
        let _guard = tch::no_grad_guard();
        let per_image: Vec<PerExample> = batch
            .images
            .iter()
            .zip(maps)
            .map(|(image, map)| {
                PerExample::of(&self.net.roi_losses(
                    &map.detach(),
                    &image.rois,
                    ClassLoss::CrossEntropy,
                ))
            })
            .collect();
        PerExample::concat(per_image)
    }

    /// The batch indices this strategy backpropagates, from what the read-only pass saw.
    fn select(
        &mut self,
        seen: &PerExample,
        batch: &Batch,
        selection: &SelectionConfig,
        ranked_by: OhemLoss,
    ) -> anyhow::Result<Vec<usize>> {
        let candidates = &batch.candidates;
        let k = candidates.len();
        Ok(match self.strategy {
            Strategy::Ohem => {
                let ranking = match ranked_by {
                    OhemLoss::Classification => &seen.classification,
                    OhemLoss::ClassificationAndBox => &seen.losses,
                };
                ohem::select_hard(ranking, candidates, selection)?
            }
            Strategy::Ohem3To1 => ohem::select_positives_and_hardest_negatives(
                &seen.losses,
                candidates,
                SSD_NEGATIVES_PER_POSITIVE,
            )?,
            Strategy::RandomM => ohem::select_random(k, selection.hard_examples, &mut self.rng),
            Strategy::FullBatch | Strategy::Focal | Strategy::Bootstrap => (0..k).collect(),
        })
    }

    /// Keeps the pending copy of the weights once a healthy loss vouches for it; after
    /// [`DIVERGED_AFTER`] diverging steps in a row, sets the weights back to the last good copy
    /// (with fresh optimizer moments) and returns the steps trained when it was taken.
    fn check_health(&mut self, trained_loss: f32) -> anyhow::Result<Option<u64>> {
        let healthy = trained_loss.is_finite() && trained_loss <= EXPLODED_LOSS;
        if healthy {
            self.health.diverging_steps = 0;
            if let Some(pending) = self.health.pending.take() {
                self.health.last_good = Some(pending);
            }
            return Ok(None);
        }
        self.health.pending = None;
        self.health.diverging_steps += 1;
        if self.health.diverging_steps < DIVERGED_AFTER {
            return Ok(None);
        }
        self.health.diverging_steps = 0;
        let Some(good) = &self.health.last_good else {
            return Ok(Some(0));
        };
        load_weights(&mut self.vs, &good.weights)?;
        let scale = self.backbone_lr_scale;
        self.optimizer = AdamW::new(&self.vs, self.weight_decay, self.lr, |name| {
            lr_scale(name, scale)
        });
        Ok(Some(good.steps))
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            steps: self.steps,
            weights: self.weights(),
        }
    }

    /// A copy of every weight, by name.
    pub fn weights(&self) -> Vec<(String, Tensor)> {
        copy_of(&self.vs)
    }

    /// What resuming this learner needs: its weights, its optimizer's moments, its step count
    /// and where its random stream stands. Copies, so training goes on while they are written.
    pub fn checkpoint(&self) -> LearnerCheckpoint {
        LearnerCheckpoint {
            strategy: self.strategy,
            weights: self.weights(),
            adam: self.optimizer.state(),
            steps: self.steps,
            rng_word_pos: self.rng.get_word_pos(),
        }
    }

    /// Continues from `saved`, taken from a learner of the same strategy and network.
    pub fn restore(&mut self, saved: &LearnerCheckpoint) -> anyhow::Result<()> {
        load_weights(&mut self.vs, &saved.weights)?;
        self.optimizer.load_state(&saved.adam)?;
        self.steps = saved.steps;
        self.rng.set_word_pos(saved.rng_word_pos);
        self.health = Health::default();
        Ok(())
    }

    /// Forward and backward the RoIs at `selected` on the images' feature maps `maps`. Returns
    /// the mean trained loss and, when the whole batch was trained in order, what the pass saw
    /// of each RoI.
    fn train_on(
        &mut self,
        batch: &Batch,
        maps: &[Tensor],
        selected: &[usize],
    ) -> (f32, Option<PerExample>) {
        let whole_batch =
            selected.len() == batch.len() && selected.iter().enumerate().all(|(i, &s)| i == s);
        let outputs: Vec<RoiLosses> = if whole_batch {
            batch
                .images
                .iter()
                .zip(maps)
                .filter(|(image, _)| !image.rois.is_empty())
                .map(|(image, map)| self.net.roi_losses(map, &image.rois, self.class_loss))
                .collect()
        } else {
            batch
                .restricted_to(selected)
                .into_iter()
                .map(|(image, rows)| {
                    let rois = batch.images[image].rois.select(&rows);
                    self.net.roi_losses(&maps[image], &rois, self.class_loss)
                })
                .collect()
        };
        let objectives: Vec<&Tensor> = outputs.iter().map(|o| &o.objective).collect();
        let loss = Tensor::cat(&objectives, 0).mean(Kind::Float);
        let value = loss.double_value(&[]) as f32;
        // A non-finite loss would poison every weight: skip the update, the caller reports it.
        if value.is_finite() {
            self.optimizer.backward_step(&loss);
        }
        sync(self.vs.device());
        let seen =
            whole_batch.then(|| PerExample::concat(outputs.iter().map(PerExample::of).collect()));
        (value, seen)
    }
}

/// A variable's share of the learning rate: `backbone` for the backbone's, 1 for the rest.
fn lr_scale(name: &str, backbone: f64) -> f64 {
    if name.starts_with("backbone.") {
        backbone
    } else {
        1.0
    }
}

/// A learner's state at one step, enough to continue it exactly.
pub struct LearnerCheckpoint {
    pub strategy: Strategy,
    pub weights: Vec<(String, Tensor)>,
    pub adam: AdamState,
    pub steps: u64,
    /// Position in random-M's stream (ChaCha's 32-bit words drawn so far).
    pub rng_word_pos: u128,
}

impl LearnerCheckpoint {
    /// The same weights (shared, not copied) without the optimizer state: what scoring needs.
    pub fn weights_only(&self) -> Self {
        Self {
            strategy: self.strategy,
            weights: self
                .weights
                .iter()
                .map(|(name, t)| (name.clone(), t.shallow_clone()))
                .collect(),
            adam: AdamState {
                updates: self.adam.updates,
                moments: Vec::new(),
            },
            steps: self.steps,
            rng_word_pos: self.rng_word_pos,
        }
    }
}

/// A copy of every variable of `vs`, detached from training.
pub fn copy_of(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut weights: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(name, t)| (name, t.detach().copy()))
        .collect();
    weights.sort_by(|a, b| a.0.cmp(&b.0));
    weights
}

/// Copies `weights` into the variables of `vs` of the same names; every variable must be given,
/// with its shape.
pub fn load_weights(vs: &mut nn::VarStore, weights: &[(String, Tensor)]) -> anyhow::Result<()> {
    let given: std::collections::BTreeMap<&str, &Tensor> =
        weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut variables = vs.variables();
    for (name, variable) in variables.iter_mut() {
        let Some(value) = given.get(name.as_str()) else {
            anyhow::bail!("the saved weights have no {name}");
        };
        if value.size() != variable.size() {
            anyhow::bail!(
                "the saved {name} has shape {:?}, the network needs {:?}",
                value.size(),
                variable.size()
            );
        }
        tch::no_grad(|| variable.copy_(value));
    }
    Ok(())
}

/// What a pass saw of each example, on the host.
#[derive(Default)]
struct PerExample {
    losses: Vec<f32>,
    classification: Vec<f32>,
    scores: Vec<f32>,
}

impl PerExample {
    fn of(out: &RoiLosses) -> Self {
        Self {
            losses: to_vec(&out.loss.detach()),
            classification: to_vec(&out.classification.detach()),
            scores: to_vec(&out.object_score.detach()),
        }
    }

    /// The images' RoIs one after the other, as the batch orders them.
    fn concat(parts: Vec<PerExample>) -> Self {
        let mut all = Self::default();
        for part in parts {
            all.losses.extend(part.losses);
            all.classification.extend(part.classification);
            all.scores.extend(part.scores);
        }
        all
    }
}

/// Waits for queued GPU work so the timings measure it.
fn sync(device: Device) {
    if let Device::Cuda(index) = device {
        tch::Cuda::synchronize(index as i64);
    }
}

fn ms_since(t: Instant) -> f32 {
    t.elapsed().as_secs_f32() * 1000.0
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1))
        .unwrap_or_default()
}

fn mean(values: &[f32]) -> f32 {
    values.iter().sum::<f32>() / values.len().max(1) as f32
}
