//! Weights on disk as a set: every strategy's `<strategy>.safetensors` and the `model.json` that
//! describes them, written last with the name, size and SHA-256 of each weight file. A reader
//! checks a weight file against that list and against the network `model.json` describes before
//! libtorch sees it, so weights from another run, an interrupted save or a hand-edited
//! `model.json` give a sentence, never a C++ trace or an abort. [`LoadedModel`] is such a set's
//! one weight file loaded back as a detector.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tch::Device;

use super::model::{resolve_device, DeviceChoice, ModelInfo, ARCHITECTURE};
use super::Detector;
use crate::files::{file_name, write_atomically};

/// The input sizes `model.json` may ask for, in pixels.
const INPUT_PX: std::ops::RangeInclusive<u32> = 64..=2048;
/// Most window sizes or aspects `model.json` may list.
const MAX_WINDOW_KINDS: usize = 16;
/// Most classes `model.json` may name.
const MAX_CLASSES: usize = 10_000;

/// `model.json`: the model description and the weight files saved with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelFile {
    #[serde(flatten)]
    pub info: ModelInfo,
    /// Strategy key → its weight file. Empty in files written before the list existed.
    #[serde(default)]
    pub weights: BTreeMap<String, WeightFile>,
    /// The training step the weights are from. Absent in files written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
}

/// One weight file as it was saved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightFile {
    pub file: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Writes each `(strategy key, weights)` as `<dir>/<key>.safetensors`, then `<dir>/model.json`
/// listing them. Every file goes in under a temporary name first; leftovers of an earlier
/// interrupted save are removed, and so are this save's own when it fails (a full disk).
pub fn save_set(
    dir: &Path,
    info: &ModelInfo,
    step: u64,
    weights: &[(&str, &tch::nn::VarStore)],
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    remove_leftovers(dir);
    let mut staged = Vec::new();
    let result = stage_weights(dir, weights, &mut staged);
    let listed = match result {
        Ok(listed) => listed,
        Err(error) => {
            for (partial, _) in &staged {
                let _ = std::fs::remove_file(partial);
            }
            return Err(error);
        }
    };
    let mut written = Vec::new();
    for (partial, path) in staged {
        std::fs::rename(&partial, &path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    let model_path = dir.join("model.json");
    let model = ModelFile {
        info: info.clone(),
        weights: listed,
        step: Some(step),
    };
    write_atomically(
        &model_path,
        serde_json::to_string_pretty(&model)?.as_bytes(),
    )?;
    written.push(model_path);
    Ok(written)
}

/// Saves every weight file under its temporary name (recorded in `staged` as it goes, so the
/// caller can clean up) and returns the list `model.json` will hold.
fn stage_weights(
    dir: &Path,
    weights: &[(&str, &tch::nn::VarStore)],
    staged: &mut Vec<(PathBuf, PathBuf)>,
) -> anyhow::Result<BTreeMap<String, WeightFile>> {
    let mut listed = BTreeMap::new();
    for (key, vs) in weights {
        let file = format!("{key}.safetensors");
        let partial = dir.join(format!(".{key}.partial.safetensors"));
        staged.push((partial.clone(), dir.join(&file)));
        vs.save(&partial)
            .map_err(|e| anyhow::anyhow!(first_line(&e)))
            .with_context(|| format!("cannot write {}", partial.display()))?;
        let bytes = std::fs::read(&partial)
            .with_context(|| format!("cannot read back {}", partial.display()))?;
        let entry = WeightFile {
            file,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        listed.insert(key.to_string(), entry);
    }
    Ok(listed)
}

/// The sentence of a libtorch error without the C++ trace that follows it.
pub fn first_line(error: &tch::TchError) -> String {
    let text = error.to_string();
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// Removes the temporary files an interrupted save left in `dir`.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".partial") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ModelFile {
    /// Reads and checks `model.json`: every number within what this program can build.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a model.json written by ohem-studio",
                path.display()
            )
        })?;
        if value.get("architecture").is_none() && value.get("window").is_some() {
            bail!(
                "{} describes the window classifier of an earlier ohem-studio, which this version does not run: train the run again",
                path.display()
            );
        }
        let model: ModelFile = serde_json::from_value(value).with_context(|| {
            format!(
                "{} is not a model.json written by ohem-studio",
                path.display()
            )
        })?;
        model.info.check().with_context(|| {
            format!(
                "{} describes no detector this program can build",
                path.display()
            )
        })?;
        Ok(model)
    }

    /// Checks that `checkpoint` is one of the weight files this `model.json` lists, byte for
    /// byte. A `model.json` without a list (an older run) accepts any file.
    pub fn check_listed(&self, checkpoint: &Path) -> anyhow::Result<()> {
        if self.weights.is_empty() {
            return Ok(());
        }
        let name = file_name(checkpoint);
        let Some(entry) = self.weights.values().find(|w| w.file == name) else {
            let listed: Vec<&str> = self.weights.values().map(|w| w.file.as_str()).collect();
            bail!(
                "{name} is not among the weights the model.json beside it lists ({}): it is left from another run or an interrupted save",
                listed.join(", ")
            );
        };
        let bytes = std::fs::read(checkpoint)
            .with_context(|| format!("cannot read {}", checkpoint.display()))?;
        if bytes.len() as u64 != entry.bytes || sha256_hex(&bytes) != entry.sha256 {
            bail!(
                "{name} is not the file the model.json beside it was saved with: it was written by another run, or the save was interrupted"
            );
        }
        Ok(())
    }
}

impl ModelInfo {
    /// Whether this description is one the program can build without absurd allocations.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.architecture != ARCHITECTURE {
            bail!(
                "a '{}' detector ({ARCHITECTURE} expected)",
                self.architecture
            );
        }
        if self.class_names.is_empty() || self.class_names.len() > MAX_CLASSES {
            bail!(
                "{} classes (1 to {MAX_CLASSES} expected)",
                self.class_names.len()
            );
        }
        if !INPUT_PX.contains(&self.input_px) {
            bail!(
                "a {} px input ({} to {} expected)",
                self.input_px,
                INPUT_PX.start(),
                INPUT_PX.end()
            );
        }
        let listed = |values: &[f32], range: std::ops::RangeInclusive<f32>| {
            !values.is_empty()
                && values.len() <= MAX_WINDOW_KINDS
                && values.iter().all(|v| v.is_finite() && range.contains(v))
        };
        if !listed(&self.windows.sizes_px, 4.0..=8192.0) {
            bail!(
                "window sizes {:?} (1 to {MAX_WINDOW_KINDS} numbers between 4 and 8192 expected)",
                self.windows.sizes_px
            );
        }
        if !listed(&self.windows.aspects, 0.05..=20.0) {
            bail!(
                "window aspects {:?} (1 to {MAX_WINDOW_KINDS} numbers between 0.05 and 20 expected)",
                self.windows.aspects
            );
        }
        Ok(())
    }
}

/// Checks that the tensors in `checkpoint` are exactly those of `expected` (name → shape), by
/// reading the file's header only.
pub fn check_shapes(
    checkpoint: &Path,
    expected: &BTreeMap<String, Vec<i64>>,
) -> anyhow::Result<()> {
    let name = file_name(checkpoint);
    let bytes = std::fs::read(checkpoint)
        .with_context(|| format!("cannot read {}", checkpoint.display()))?;
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes)
        .map_err(|e| anyhow::anyhow!("{name} is not a safetensors weight file ({e:?})"))?;
    let found: BTreeMap<String, Vec<i64>> = metadata
        .tensors()
        .into_iter()
        .map(|(k, info)| (k, info.shape.iter().map(|&d| d as i64).collect()))
        .collect();
    for (tensor, shape) in expected {
        match found.get(tensor) {
            None => bail!("{name} lacks the tensor {tensor} that the model.json beside it needs"),
            Some(have) if have != shape => bail!(
                "{name} does not fit the model.json beside it: {tensor} is {have:?} in the file, {shape:?} expected"
            ),
            Some(_) => {}
        }
    }
    if let Some(extra) = found.keys().find(|k| !expected.contains_key(*k)) {
        bail!("{name} holds a tensor {extra} that the model.json beside it does not describe");
    }
    Ok(())
}

/// A trained detector loaded from `<strategy>.safetensors` and the `model.json` beside it.
pub struct LoadedModel {
    pub net: Detector,
    pub device: Device,
    /// Owns the weights `net` points at.
    _vs: tch::nn::VarStore,
}

impl LoadedModel {
    /// Loads `checkpoint` after checking it against the `model.json` beside it: listed there
    /// byte for byte, and holding exactly the tensors of the network it describes.
    pub fn load(checkpoint: &Path, device: DeviceChoice) -> anyhow::Result<Self> {
        Self::load_on(checkpoint, device)
    }

    /// The model description it was saved with.
    pub fn info(&self) -> &ModelInfo {
        &self.net.info
    }

    fn load_on(checkpoint: &Path, device: DeviceChoice) -> anyhow::Result<Self> {
        if !checkpoint.is_file() {
            bail!("{}: no such checkpoint file", checkpoint.display());
        }
        let model_path = checkpoint.with_file_name("model.json");
        if !model_path.is_file() {
            bail!(
                "{} needs the model.json that `train` writes beside it, and there is none (was the save interrupted?)",
                checkpoint.display()
            );
        }
        let model = ModelFile::load(&model_path)?;
        model.check_listed(checkpoint)?;
        let (device, _) = resolve_device(device)?;
        let mut vs = tch::nn::VarStore::new(device);
        let net = Detector::new(&vs.root(), &model.info);
        let expected: BTreeMap<String, Vec<i64>> = vs
            .variables()
            .into_iter()
            .map(|(name, tensor)| (name, tensor.size()))
            .collect();
        check_shapes(checkpoint, &expected)?;
        vs.load(checkpoint)
            .with_context(|| format!("{}: not weights of this detector", checkpoint.display()))?;
        Ok(Self {
            net,
            device,
            _vs: vs,
        })
    }
}
