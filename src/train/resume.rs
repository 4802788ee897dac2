//! A run's checkpoint: everything that continuing it needs, in `<run>/checkpoint/`.
//!
//! - `model.json` and `<strategy>.safetensors`: the weights as a checked set (the same files
//!   `detect` reads), written by `detector::checkpoint::save_set`;
//! - `<strategy>.adam.safetensors`: AdamW's two moments per variable;
//! - `state.json`: the step, the examples drawn from the batch stream, the seconds trained, the
//!   settings in force (live changes included) and each learner's counters.
//!
//! The folder is written whole as `checkpoint.partial/` and renamed into place, the previous
//! one moved aside first and removed after, so a kill at any moment leaves a complete
//! checkpoint under `checkpoint/` or, for the instant between the two renames, `checkpoint.old/`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use super::adam::AdamState;
use super::config::{Strategy, TrainConfig};
use super::learner::LearnerCheckpoint;
use crate::detector::checkpoint::{save_set, ModelFile};
use crate::detector::ModelInfo;
use crate::files::write_atomically;

/// The checkpoint folder inside a run folder.
pub const CHECKPOINT_DIR: &str = "checkpoint";
/// The previous checkpoint while the new one is renamed into place.
const OLD_DIR: &str = "checkpoint.old";
/// A checkpoint being written.
const PARTIAL_DIR: &str = "checkpoint.partial";
const STATE_FILE: &str = "state.json";

/// The run-wide part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingState {
    /// Steps trained.
    pub step: u64,
    /// Examples taken from the batch stream so far: where the next batch starts.
    pub examples_drawn: u64,
    /// Seconds trained, pauses excluded.
    pub trained_secs: f64,
    /// The settings in force at this step.
    pub config: TrainConfig,
    #[serde(default)]
    pub learners: Vec<LearnerState>,
}

/// A learner's counters in `state.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearnerState {
    pub strategy: Strategy,
    pub steps: u64,
    pub adam_updates: u64,
    /// random-M's stream position, a 128-bit number written out in decimal.
    pub rng_word_pos: String,
}

/// Writes the checkpoint of `learners` (whose weights are also loaded in `stores`, one per
/// strategy key) and `state` into `<run_dir>/checkpoint/`, replacing the previous one whole.
pub fn write_checkpoint(
    run_dir: &Path,
    info: &ModelInfo,
    stores: &[(&str, &VarStore)],
    learners: &[LearnerCheckpoint],
    state: &TrainingState,
) -> anyhow::Result<()> {
    let partial = run_dir.join(PARTIAL_DIR);
    let result = stage(&partial, info, stores, learners, state);
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
        return result;
    }
    let target = run_dir.join(CHECKPOINT_DIR);
    let old = run_dir.join(OLD_DIR);
    if target.exists() {
        let _ = std::fs::remove_dir_all(&old);
        std::fs::rename(&target, &old)
            .with_context(|| format!("cannot move {} aside", target.display()))?;
    }
    std::fs::rename(&partial, &target)
        .with_context(|| format!("cannot write {}", target.display()))?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

fn stage(
    dir: &Path,
    info: &ModelInfo,
    stores: &[(&str, &VarStore)],
    learners: &[LearnerCheckpoint],
    state: &TrainingState,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    save_set(dir, info, state.step, stores)?;
    for learner in learners {
        let path = dir.join(adam_file(learner.strategy));
        Tensor::write_safetensors(&learner.adam.moments, &path)
            .map_err(|e| anyhow::anyhow!(crate::detector::checkpoint::first_line(&e)))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let state = TrainingState {
        learners: learners
            .iter()
            .map(|l| LearnerState {
                strategy: l.strategy,
                steps: l.steps,
                adam_updates: l.adam.updates,
                rng_word_pos: l.rng_word_pos.to_string(),
            })
            .collect(),
        ..state.clone()
    };
    write_atomically(
        &dir.join(STATE_FILE),
        serde_json::to_string_pretty(&state)?.as_bytes(),
    )
}

fn adam_file(strategy: Strategy) -> String {
    format!("{}.adam.safetensors", strategy.key())
}

/// Removes the checkpoints of an earlier run from `run_dir`, which a new run records into: none
/// of them may be taken for the new run's.
pub fn remove_checkpoints(run_dir: &Path) -> anyhow::Result<()> {
    for name in [CHECKPOINT_DIR, OLD_DIR, PARTIAL_DIR] {
        let dir = run_dir.join(name);
        if dir.is_dir() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot remove the earlier run's {}", dir.display()))?;
        }
    }
    Ok(())
}

/// The complete checkpoint folder of `run_dir`, if it has one.
pub fn checkpoint_dir(run_dir: &Path) -> Option<PathBuf> {
    [CHECKPOINT_DIR, OLD_DIR]
        .into_iter()
        .map(|name| run_dir.join(name))
        .find(|dir| dir.join(STATE_FILE).is_file() && dir.join("model.json").is_file())
}

impl TrainingState {
    /// Whether the step budget is spent: the run can at most be finished (evaluated and saved).
    pub fn budget_spent(&self) -> bool {
        self.config.steps.is_some_and(|budget| self.step >= budget)
    }

    /// Why the run in `run_dir` at this state cannot go on, if it cannot: its step budget is
    /// spent and its final weights were saved. A run stopped between its last checkpoint and
    /// that save (a kill) can still be finished.
    pub fn nothing_to_continue(&self, run_dir: &Path) -> Option<String> {
        let saved = ModelFile::load(&run_dir.join("model.json"))
            .ok()
            .and_then(|m| m.step);
        self.finished().filter(|_| saved == Some(self.step))
    }

    /// Why a run at this state cannot train on, if it cannot: its step budget is spent.
    pub fn finished(&self) -> Option<String> {
        self.config
            .steps
            .filter(|&budget| self.step >= budget)
            .map(|budget| {
                format!("the run already trained its {budget} steps: there is nothing to continue")
            })
    }
}

/// Reads just the run-wide state of `run_dir`'s checkpoint.
pub fn read_state(run_dir: &Path) -> anyhow::Result<TrainingState> {
    let Some(dir) = checkpoint_dir(run_dir) else {
        bail!(
            "{} has no checkpoint to continue from (one is written at every evaluation)",
            run_dir.display()
        );
    };
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not a checkpoint state", path.display()))
}

/// Reads `run_dir`'s checkpoint: its state and every learner's weights, moments and counters.
/// The weights are checked against `model.json`'s list before libtorch reads them.
pub fn read_checkpoint(
    run_dir: &Path,
) -> anyhow::Result<(TrainingState, ModelInfo, Vec<LearnerCheckpoint>)> {
    let state = read_state(run_dir)?;
    let dir = checkpoint_dir(run_dir).context("the checkpoint went away while being read")?;
    let model = ModelFile::load(&dir.join("model.json"))?;
    let learners = state
        .learners
        .iter()
        .map(|l| read_learner(&dir, &model, l))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((state, model.info, learners))
}

fn read_learner(
    dir: &Path,
    model: &ModelFile,
    saved: &LearnerState,
) -> anyhow::Result<LearnerCheckpoint> {
    let weights_path = dir.join(format!("{}.safetensors", saved.strategy.key()));
    model.check_listed(&weights_path)?;
    let weights = Tensor::read_safetensors(&weights_path)
        .with_context(|| format!("cannot read {}", weights_path.display()))?;
    let adam_path = dir.join(adam_file(saved.strategy));
    let moments = Tensor::read_safetensors(&adam_path)
        .with_context(|| format!("cannot read {}", adam_path.display()))?;
    let rng_word_pos = saved.rng_word_pos.parse().with_context(|| {
        format!(
            "{}: {} is not a stream position",
            dir.join(STATE_FILE).display(),
            saved.rng_word_pos
        )
    })?;
    Ok(LearnerCheckpoint {
        strategy: saved.strategy,
        weights,
        adam: AdamState {
            updates: saved.adam_updates,
            moments,
        },
        steps: saved.steps,
        rng_word_pos,
    })
}
