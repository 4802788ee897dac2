//! Run settings: what the CLI takes as flags, the app as controls, and `config.json` records.

use std::str::FromStr;

use anyhow::bail;
use serde::{Deserialize, Serialize};

use crate::ohem::SelectionConfig;

pub use crate::detector::{BackboneKind, DeviceChoice};

/// How a run picks the examples it backpropagates in each batch, or how it weighs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Online hard example mining: the M highest-loss examples of the read-only pass.
    Ohem,
    /// Plain training: the mean loss over all K examples.
    #[serde(rename = "full")]
    FullBatch,
    /// M examples drawn uniformly: OHEM's compute without the hardness.
    #[serde(rename = "random")]
    RandomM,
    /// All K examples under the focal loss (Lin et al. 2017), which shrinks the loss of the
    /// examples the model already gets right.
    Focal,
    /// SSD's hard negative mining: every positive and the highest-loss negatives, three per
    /// positive.
    #[serde(rename = "ohem-3to1")]
    Ohem3To1,
    /// The offline loop OHEM replaced (Dalal–Triggs, Felzenszwalb): train on the batch while
    /// every few hundred steps a frozen scan of the training images collects the background
    /// RoIs the model scores highest into a cache that later batches draw negatives from.
    Bootstrap,
}

impl Strategy {
    /// What a run trains unless told otherwise: OHEM and its two baselines.
    pub const DEFAULT: [Strategy; 3] = [Strategy::Ohem, Strategy::FullBatch, Strategy::RandomM];

    pub const ALL: [Strategy; 6] = [
        Strategy::Ohem,
        Strategy::FullBatch,
        Strategy::RandomM,
        Strategy::Focal,
        Strategy::Ohem3To1,
        Strategy::Bootstrap,
    ];

    /// Short name used in files and on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Strategy::Ohem => "ohem",
            Strategy::FullBatch => "full",
            Strategy::RandomM => "random",
            Strategy::Focal => "focal",
            Strategy::Ohem3To1 => "ohem-3to1",
            Strategy::Bootstrap => "bootstrap",
        }
    }

    /// Name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Strategy::Ohem => "OHEM",
            Strategy::FullBatch => "full batch",
            Strategy::RandomM => "random-M",
            Strategy::Focal => "focal loss",
            Strategy::Ohem3To1 => "OHEM 3:1",
            Strategy::Bootstrap => "bootstrapping",
        }
    }

    /// Its colour in every plot, the app's and the saved images alike.
    pub fn colour(self) -> [u8; 3] {
        match self {
            Strategy::Ohem => [240, 130, 40],
            Strategy::FullBatch => [80, 140, 240],
            Strategy::RandomM => [170, 110, 220],
            Strategy::Focal => [70, 185, 110],
            Strategy::Ohem3To1 => [230, 80, 125],
            Strategy::Bootstrap => [205, 190, 70],
        }
    }

    /// Whether the strategy ranks or filters the batch after a read-only pass, so the selection
    /// warm-up applies to it.
    pub fn selects(self) -> bool {
        matches!(
            self,
            Strategy::Ohem | Strategy::RandomM | Strategy::Ohem3To1
        )
    }

    /// Every strategy's key, comma-separated, for the messages that list them.
    pub fn keys() -> String {
        let keys: Vec<&str> = Strategy::ALL.iter().map(|s| s.key()).collect();
        keys.join(", ")
    }

    /// The strategies named in a comma-separated list such as `ohem,full,random`.
    pub fn parse_list(list: &str) -> anyhow::Result<Vec<Strategy>> {
        list.split(',')
            .filter(|s| !s.trim().is_empty())
            .map(str::parse)
            .collect()
    }
}

impl FromStr for Strategy {
    type Err = anyhow::Error;

    fn from_str(key: &str) -> anyhow::Result<Self> {
        let key = key.trim();
        Strategy::ALL
            .into_iter()
            .find(|s| s.key() == key)
            .ok_or_else(|| anyhow::anyhow!("unknown strategy '{key}': use {}", Strategy::keys()))
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What OHEM ranks the examples of a batch by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum OhemLoss {
    /// Classification loss alone: a confidently right positive is easy even when its box is
    /// a little off.
    #[serde(rename = "cls")]
    #[value(name = "cls")]
    Classification,
    /// Classification plus box regression, as in the paper.
    #[serde(rename = "cls+box")]
    #[value(name = "cls+box")]
    ClassificationAndBox,
}

impl std::fmt::Display for OhemLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OhemLoss::Classification => "cls",
            OhemLoss::ClassificationAndBox => "cls+box",
        })
    }
}

/// Everything a run needs; recorded in `config.json` so a run can be reproduced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Steps to train; `None` trains until stopped (the app) or for `minutes`.
    pub steps: Option<u64>,
    /// Minutes of training (evaluations not counted) for every strategy alike: a budget in time
    /// rather than steps, so that a cheaper step trains more often.
    pub minutes: Option<f64>,
    /// N: images per batch (the paper's 2).
    pub images_per_batch: usize,
    /// K: RoIs scored per batch, drawn from the images' candidates (every positive first). The
    /// default scores every candidate of two photos at 384 px, as the paper does: OHEM then
    /// ranks all of them.
    pub batch_size: usize,
    /// M: hard examples (RoIs) trained per batch by OHEM (and drawn by random-M).
    pub hard_examples: usize,
    pub strategies: Vec<Strategy>,
    /// The backbone; `None` picks EfficientNet-Lite0 (Lite2 on CUDA) when its ImageNet weights
    /// are on disk, else the small one from scratch.
    pub backbone: Option<BackboneKind>,
    /// The longer image side the detector sees, in pixels; `None` picks by device.
    pub input_px: Option<u32>,
    /// Peak learning rate of AdamW for the neck and the head: reached after the warm-up, then
    /// decayed along a cosine to the end of the run when it has a budget.
    pub lr: f64,
    /// The backbone's learning rate as a share of `lr`: ImageNet features need only nudging.
    pub backbone_lr_scale: f64,
    /// Steps over which the learning rate rises linearly from almost 0 to `lr`.
    pub warmup_steps: u64,
    /// Decay the learning rate along a cosine to the budget (when the run has one).
    pub lr_decay: bool,
    /// Steps at the start of a run in which OHEM and random-M train on the whole batch, like
    /// full batch: selection by loss needs a model whose losses tell examples apart, which an
    /// ImageNet backbone gives from the start (0 by default) and random weights do not.
    pub selection_warmup_steps: u64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Strength of the random brightness, contrast and saturation changes of training images
    /// (0: none; 0.2 changes each by up to ±20 %).
    pub colour_jitter: f32,
    /// What OHEM ranks examples by.
    pub ohem_loss: OhemLoss,
    pub device: DeviceChoice,
    pub seed: u64,
    /// Evaluate on the validation split every this many steps (0: never on the way); the end of
    /// a step or time budget is always evaluated.
    pub eval_every: u64,
    /// Suppress near-duplicate RoIs by loss before taking the top M (Shrivastava et al.).
    pub nms_by_loss: bool,
    /// IoU above which a lower-loss RoI of the same image is suppressed; 0.7 in the paper.
    pub nms_iou: f32,
    /// Cap on negatives per positive among the hard examples (mmdetection's `neg_pos_ub`).
    pub max_negatives_per_positive: Option<f32>,
    /// Threads libtorch may use on the CPU (0: its default).
    pub cpu_threads: usize,
    /// The focal loss's focusing parameter γ (0: α-weighted cross-entropy).
    pub focal_gamma: f32,
    /// The focal loss's weight α of the object classes (background gets 1 − α).
    pub focal_alpha: f32,
    /// Bootstrapping rescans the training images for hard negatives every this many steps.
    pub bootstrap_every: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: None,
            minutes: None,
            images_per_batch: 2,
            batch_size: 8192,
            hard_examples: 128,
            strategies: Strategy::DEFAULT.to_vec(),
            backbone: None,
            input_px: None,
            lr: 1e-3,
            backbone_lr_scale: 0.3,
            warmup_steps: 30,
            lr_decay: true,
            selection_warmup_steps: 0,
            weight_decay: 1e-4,
            colour_jitter: 0.1,
            ohem_loss: OhemLoss::ClassificationAndBox,
            device: DeviceChoice::Auto,
            seed: 7,
            eval_every: 100,
            nms_by_loss: true,
            nms_iou: 0.7,
            max_negatives_per_positive: None,
            cpu_threads: 0,
            focal_gamma: 2.0,
            focal_alpha: 0.25,
            bootstrap_every: 500,
        }
    }
}

/// The settings a run takes while it trains, from its next batch on. The app's controls send
/// them in one [`Command`](super::messages::Command) and show what the trainer answers: the
/// settings it adopted (on start, on continuing a run, on every change), after its clamping.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LiveSettings {
    /// K: RoIs scored per batch.
    pub batch_size: usize,
    /// M: RoIs trained per batch (at most K).
    pub hard_examples: usize,
    /// The peak learning rate; warm-up and decay follow the run's schedule.
    pub lr: f64,
    pub nms_by_loss: bool,
    pub nms_iou: f32,
    pub max_negatives_per_positive: Option<f32>,
    /// Evaluate every this many steps (0: only at the end or on request).
    pub eval_every: u64,
}

impl LiveSettings {
    /// OHEM's selection with these settings.
    pub fn selection(&self) -> SelectionConfig {
        SelectionConfig {
            hard_examples: self.hard_examples,
            nms_by_loss: self.nms_by_loss,
            nms_iou: self.nms_iou,
            max_negatives_per_positive: self.max_negatives_per_positive,
        }
    }

    /// M within 1..=K, K within what a batch may hold: the one place the sliders' values are
    /// brought into range.
    pub fn clamped(self) -> Self {
        let batch_size = self.batch_size.clamp(1, MAX_ROIS_PER_BATCH);
        Self {
            batch_size,
            hard_examples: self.hard_examples.clamp(1, batch_size),
            ..self
        }
    }
}

impl TrainConfig {
    /// The settings of this configuration a run in progress can change.
    pub fn live(&self) -> LiveSettings {
        LiveSettings {
            batch_size: self.batch_size,
            hard_examples: self.hard_examples,
            lr: self.lr,
            nms_by_loss: self.nms_by_loss,
            nms_iou: self.nms_iou,
            max_negatives_per_positive: self.max_negatives_per_positive,
            eval_every: self.eval_every,
        }
    }

    /// This configuration with `live` in place of its live settings.
    pub fn with_live(&self, live: &LiveSettings) -> Self {
        Self {
            batch_size: live.batch_size,
            hard_examples: live.hard_examples,
            lr: live.lr,
            nms_by_loss: live.nms_by_loss,
            nms_iou: live.nms_iou,
            max_negatives_per_positive: live.max_negatives_per_positive,
            eval_every: live.eval_every,
            ..self.clone()
        }
    }
}

/// The highest learning rate accepted: far above any that trains, low enough to refuse a typo.
pub const MAX_LR: f64 = 10.0;
/// Most images in one batch.
pub const MAX_IMAGES_PER_BATCH: usize = 16;
/// Most RoIs scored in one batch.
pub const MAX_ROIS_PER_BATCH: usize = 65_536;
/// Input sizes accepted, in pixels.
pub const INPUT_PX: std::ops::RangeInclusive<u32> = 64..=2048;

/// Threads this machine runs at once.
pub fn machine_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl TrainConfig {
    /// Whether the run evaluates after step `step` by its schedule (the last step of a budget
    /// aside). A run continued from such a step evaluates again first: the evaluation written
    /// before it stopped may be incomplete.
    pub fn evaluates_at(&self, step: u64) -> bool {
        self.eval_every > 0 && step > 0 && step.is_multiple_of(self.eval_every)
    }

    /// Whether a run continued from its checkpoint at `step` evaluates there first: the
    /// evaluation written before it stopped may be incomplete, or, at the end of its step
    /// budget, missing.
    pub fn evaluates_again_when_continued_at(&self, step: u64) -> bool {
        self.evaluates_at(step) || self.steps == Some(step)
    }

    /// The learning rate for step `step` (0-based) of a run `trained_share` through its time
    /// budget: linear warm-up, then constant, or a cosine decay to 1 % of the peak at the end
    /// of the budget (of steps, or of minutes) when there is one.
    pub fn lr_at(&self, step: u64, trained_share: f64) -> f64 {
        let warm = ((step + 1) as f64 / self.warmup_steps.max(1) as f64).min(1.0);
        let progress = match (self.steps, self.minutes) {
            (Some(total), _) if total > self.warmup_steps => Some(
                (step.saturating_sub(self.warmup_steps) as f64
                    / (total - self.warmup_steps) as f64)
                    .min(1.0),
            ),
            (None, Some(_)) => Some(trained_share.clamp(0.0, 1.0)),
            _ => None,
        };
        let decay = match progress {
            Some(progress) if self.lr_decay => {
                0.01 + 0.99 * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
            _ => 1.0,
        };
        self.lr * warm * decay
    }

    /// How far `trained_secs` is through the time budget (0 without one).
    pub fn trained_share(&self, trained_secs: f64) -> f64 {
        self.minutes
            .map_or(0.0, |m| (trained_secs / (m * 60.0)).clamp(0.0, 1.0))
    }

    /// Whether a run at `step` after `trained_secs` of training has spent its budget.
    pub fn budget_reached(&self, step: u64, trained_secs: f64) -> bool {
        self.steps.is_some_and(|n| step >= n)
            || self.minutes.is_some_and(|m| trained_secs >= m * 60.0)
    }

    /// Every rule a run's settings must follow, in one place: the CLI, the app and the engine
    /// all ask here, so a setting is refused with the same words wherever it comes from.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.strategies.is_empty() {
            bail!(
                "no strategy chosen: pick at least one of {}",
                Strategy::keys()
            );
        }
        // Before the warm-up's rule, which would blame the warm-up for an empty budget.
        if self.steps == Some(0) {
            bail!("the step budget must be at least 1");
        }
        let selects = self.strategies.iter().any(|s| s.selects());
        if let Some(steps) = self
            .steps
            .filter(|&n| selects && self.selection_warmup_steps >= n)
        {
            bail!(
                "the selection warm-up ({} steps) covers the whole run ({steps} steps): OHEM would never select; lower --select-after",
                self.selection_warmup_steps
            );
        }
        self.validate_settings()
    }

    /// The batch's shape: N images, K RoIs scored, M trained, the input size.
    fn validate_batch(&self) -> anyhow::Result<()> {
        if self.batch_size == 0 {
            bail!("K (examples per batch) must be at least 1");
        }
        if self.hard_examples == 0 {
            bail!("M (hard examples per batch) must be at least 1");
        }
        if self.hard_examples > self.batch_size {
            bail!(
                "M ({}) cannot exceed K ({}): OHEM keeps M of the K RoIs in each batch",
                self.hard_examples,
                self.batch_size
            );
        }
        if !(1..=MAX_IMAGES_PER_BATCH).contains(&self.images_per_batch) {
            bail!(
                "a batch holds 1 to {MAX_IMAGES_PER_BATCH} images, not {}",
                self.images_per_batch
            );
        }
        if self.batch_size > MAX_ROIS_PER_BATCH {
            bail!(
                "K (RoIs per batch) must be at most {MAX_ROIS_PER_BATCH}, not {}",
                self.batch_size
            );
        }
        if let Some(px) = self.input_px.filter(|px| !INPUT_PX.contains(px)) {
            bail!(
                "the input size must lie between {} and {} pixels, not {px}",
                INPUT_PX.start(),
                INPUT_PX.end()
            );
        }
        Ok(())
    }

    /// The rules for the numbers alone: what a setting changed during a run must follow (the
    /// strategies of a run in progress cannot change, so they are not asked about).
    pub fn validate_settings(&self) -> anyhow::Result<()> {
        self.validate_batch()?;
        if !(self.backbone_lr_scale.is_finite() && (0.0..=10.0).contains(&self.backbone_lr_scale)) {
            bail!(
                "the backbone's share of the learning rate must lie between 0 and 10, not {}",
                self.backbone_lr_scale
            );
        }
        if let Some(m) = self.minutes.filter(|m| !(m.is_finite() && *m > 0.0)) {
            bail!("the time budget must be a number of minutes above 0, not {m}");
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= MAX_LR) {
            bail!(
                "the learning rate must be a number above 0 and at most {MAX_LR}, not {}",
                self.lr
            );
        }
        if !(self.focal_gamma.is_finite() && (0.0..=10.0).contains(&self.focal_gamma)) {
            bail!(
                "the focal loss's γ must lie between 0 and 10, not {}",
                self.focal_gamma
            );
        }
        if !(0.0..=1.0).contains(&self.focal_alpha) {
            bail!(
                "the focal loss's α must lie between 0 and 1, not {}",
                self.focal_alpha
            );
        }
        if self.bootstrap_every == 0 {
            bail!("bootstrapping must rescan every 1 step or more");
        }
        let machine = machine_threads();
        if self.cpu_threads > machine {
            bail!(
                "{} CPU threads asked for, but this machine runs {machine} at once (0: libtorch's default)",
                self.cpu_threads
            );
        }
        if self.steps == Some(0) {
            bail!("the step budget must be at least 1");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            bail!(
                "the weight decay must be a number ≥ 0, not {}",
                self.weight_decay
            );
        }
        if !(0.0..=1.0).contains(&self.colour_jitter) {
            bail!(
                "the colour jitter must lie between 0 and 1, not {}",
                self.colour_jitter
            );
        }
        if !(0.0..=1.0).contains(&self.nms_iou) {
            bail!("the NMS IoU must lie between 0 and 1, not {}", self.nms_iou);
        }
        if self
            .max_negatives_per_positive
            .is_some_and(|r| !(r.is_finite() && r >= 0.0))
        {
            bail!("negatives per positive must be a number ≥ 0");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strategies_parse_from_their_keys() {
        assert_eq!(
            Strategy::parse_list("ohem, full,random").unwrap(),
            Strategy::DEFAULT.to_vec()
        );
        let every: Vec<&str> = Strategy::ALL.iter().map(|s| s.key()).collect();
        assert_eq!(
            Strategy::parse_list(&every.join(",")).unwrap(),
            Strategy::ALL.to_vec()
        );
        let error = Strategy::parse_list("ohem,fast").unwrap_err().to_string();
        assert!(error.contains("unknown strategy 'fast'"), "{error}");
    }

    #[test]
    fn learning_rate_warms_up_then_decays_to_the_budget() {
        let config = TrainConfig {
            lr: 1.0,
            warmup_steps: 10,
            steps: Some(110),
            ..TrainConfig::default()
        };
        assert!((config.lr_at(0, 0.0) - 0.1).abs() < 1e-9);
        assert!((config.lr_at(9, 0.0) - 1.0).abs() < 1e-9);
        assert!((config.lr_at(60, 0.0) - 0.505).abs() < 1e-9);
        assert!((config.lr_at(109, 0.0) - 0.01).abs() < 1e-3);
        let open_ended = TrainConfig {
            steps: None,
            ..config.clone()
        };
        assert_eq!(open_ended.lr_at(5000, 0.0), 1.0);
        // A timed run decays along its seconds: halfway through, half the peak.
        let timed = TrainConfig {
            steps: None,
            minutes: Some(10.0),
            ..config
        };
        assert!((timed.lr_at(5000, timed.trained_share(300.0)) - 0.505).abs() < 1e-9);
        assert!(timed.budget_reached(1, 600.0) && !timed.budget_reached(10_000, 599.0));
    }

    #[test]
    fn validation_names_the_setting() {
        assert!(TrainConfig::default().validate().is_ok());
        let bad = TrainConfig {
            hard_examples: 0,
            ..TrainConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("M (hard"));
        let bad = TrainConfig {
            lr: f64::NAN,
            ..TrainConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("learning rate"));
        let never_selects = TrainConfig {
            steps: Some(100),
            selection_warmup_steps: 100,
            ..TrainConfig::default()
        };
        let error = never_selects.validate().unwrap_err().to_string();
        assert!(error.contains("never select"), "{error}");
        let full_only = TrainConfig {
            strategies: vec![Strategy::FullBatch],
            ..never_selects
        };
        assert!(full_only.validate().is_ok());
    }
}
