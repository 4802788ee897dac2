//! Run settings: what the CLI takes as flags, the app as controls, and `config.json` records.

use serde::{Deserialize, Serialize};

/// How a run picks the examples it backpropagates in each batch.
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
}

impl Strategy {
    pub const ALL: [Strategy; 3] = [Strategy::Ohem, Strategy::FullBatch, Strategy::RandomM];

    /// Short name used in files and on the command line.
    pub fn key(self) -> &'static str {
        match self {
            Strategy::Ohem => "ohem",
            Strategy::FullBatch => "full",
            Strategy::RandomM => "random",
        }
    }

    /// Name shown to people.
    pub fn label(self) -> &'static str {
        match self {
            Strategy::Ohem => "OHEM",
            Strategy::FullBatch => "full batch",
            Strategy::RandomM => "random-M",
        }
    }

    pub fn from_key(key: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|s| s.key() == key.trim())
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Where tensors live.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// CUDA when available, else the CPU.
    #[default]
    Auto,
    Cpu,
    Cuda,
}

/// Everything a run needs; recorded in `config.json` so a run can be reproduced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Steps to train; `None` trains until stopped (the app).
    pub steps: Option<u64>,
    /// K: examples (windows) per batch.
    pub batch_size: usize,
    /// M: hard examples kept per batch by OHEM (and drawn by random-M).
    pub hard_examples: usize,
    pub strategies: Vec<Strategy>,
    /// Adam learning rate.
    pub lr: f64,
    pub device: DeviceChoice,
    pub seed: u64,
    /// Evaluate on the validation split every this many steps (0: never).
    pub eval_every: u64,
    /// Share of negatives (background windows) in a batch.
    pub negative_fraction: f32,
    /// Suppress near-duplicate candidates by loss before taking the top M (Shrivastava et al.).
    pub nms_by_loss: bool,
    /// IoU above which a lower-loss candidate of the same image is suppressed; 0.7 in the paper.
    pub nms_iou: f32,
    /// Cap on negatives per positive among the hard examples (mmdetection's `neg_pos_ub`).
    pub max_negatives_per_positive: Option<f32>,
    /// Threads libtorch may use on the CPU (0: its default).
    pub cpu_threads: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            steps: None,
            batch_size: 128,
            hard_examples: 32,
            strategies: Strategy::ALL.to_vec(),
            lr: 1e-3,
            device: DeviceChoice::Auto,
            seed: 7,
            eval_every: 100,
            negative_fraction: 0.75,
            nms_by_loss: true,
            nms_iou: 0.7,
            max_negatives_per_positive: None,
            cpu_threads: 0,
        }
    }
}
