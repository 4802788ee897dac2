//! The engine's OHEM step over RoIs, checked against independent computations.

mod common;

use std::sync::Arc;

use ohem_studio::detector::{BackboneKind, ClassLoss};
use ohem_studio::ohem::select_hard;
use ohem_studio::train::batch::{Batch, ImageRois};
use ohem_studio::train::images::{stream_images, TrainImage};
use ohem_studio::train::Engine;
use ohem_studio::train::{DeviceChoice, Strategy, TrainConfig};
use tch::{Device, Tensor};

/// A quick detector on the 160×120 synthetic cars: the small backbone at 160 px, and K
/// large enough to hold every candidate of two images.
fn config(strategies: Vec<Strategy>, m: usize) -> TrainConfig {
    TrainConfig {
        batch_size: 4096,
        hard_examples: m,
        strategies,
        backbone: Some(BackboneKind::Small),
        input_px: Some(160),
        device: DeviceChoice::Cpu,
        seed: 11,
        nms_by_loss: false,
        eval_every: 0,
        ..TrainConfig::default()
    }
}

fn images(engine: &Engine, first: u64) -> Vec<TrainImage> {
    stream_images(&engine.train_sampler(), 5, first, 2)
}

fn parameters(engine: &Engine, strategy: Strategy) -> Vec<(String, Tensor)> {
    let learner = engine
        .learners()
        .iter()
        .find(|m| m.strategy() == strategy)
        .expect("strategy trained");
    let mut vars: Vec<(String, Tensor)> = learner
        .var_store()
        .variables()
        .into_iter()
        .map(|(n, t)| (n, t.copy()))
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

/// Every RoI's loss under the first learner's current weights, computed outside the engine.
fn losses(engine: &Engine, batch: &Batch) -> Vec<f32> {
    let net = engine.learners()[0].net();
    tch::no_grad(|| {
        let parts: Vec<Tensor> = batch
            .images
            .iter()
            .map(|image| {
                let map = net.feature_map(&image.pixels);
                net.roi_losses(&map, &image.rois, ClassLoss::CrossEntropy)
                    .loss
            })
            .collect();
        Vec::<f32>::try_from(Tensor::cat(&parts, 0)).expect("f32 losses")
    })
}

/// OHEM's own selection on the engine's current weights, recomputed outside the engine.
fn selection(engine: &Engine, batch: &Batch) -> Vec<usize> {
    select_hard(
        &losses(engine, batch),
        &batch.candidates,
        &engine.selection(),
    )
    .expect("selection")
}

fn max_difference(a: &[(String, Tensor)], b: &[(String, Tensor)]) -> f64 {
    a.iter()
        .zip(b)
        .map(|((na, ta), (nb, tb))| {
            assert_eq!(na, nb);
            (ta - tb).abs().max().double_value(&[])
        })
        .fold(0.0, f64::max)
}

#[test]
fn one_ohem_step_equals_a_plain_step_on_the_selected_rois() {
    let dataset = Arc::new(common::cars::cars_dataset(12, 2, 1));
    let mut ohem = Engine::new(dataset.clone(), config(vec![Strategy::Ohem], 24)).expect("engine");
    let images = images(&ohem, 0);
    let batch = ohem.batch(&images);
    assert!(batch.len() > 200, "{} RoIs", batch.len());
    let selected = selection(&ohem, &batch);
    assert_eq!(selected.len(), 24);
    let before = parameters(&ohem, Strategy::Ohem);
    ohem.train_batch(&images, &batch).expect("step");

    // Same seed → same initial weights; full batch over exactly the selected RoIs of the same
    // images: the backbone runs on the same pixels, the head on the same RoIs.
    let mut oracle = Engine::new(dataset, config(vec![Strategy::FullBatch], 24)).expect("engine");
    assert_eq!(
        max_difference(&before, &parameters(&oracle, Strategy::FullBatch)),
        0.0
    );
    let chosen = batch.subset(&images, &selected, Device::Cpu);
    assert_eq!(chosen.len(), 24);
    oracle.train_batch(&images, &chosen).expect("step");

    let after = parameters(&ohem, Strategy::Ohem);
    assert!(
        max_difference(&before, &after) > 1e-6,
        "the step changed nothing"
    );
    // The backbone moved too: the picks' gradient reaches it through the shared features.
    let backbone_moved = before
        .iter()
        .zip(&after)
        .filter(|((name, _), _)| name.starts_with("backbone."))
        .any(|((_, a), (_, b))| (a - b).abs().max().double_value(&[]) > 1e-7);
    assert!(backbone_moved, "no gradient reached the backbone");
    let gap = max_difference(&after, &parameters(&oracle, Strategy::FullBatch));
    assert!(
        gap < 1e-6,
        "OHEM's update differs from the oracle's by {gap}"
    );
}

#[test]
fn changing_a_non_selected_roi_does_not_change_the_update() {
    let dataset = Arc::new(common::cars::cars_dataset(12, 2, 2));
    let mut first = Engine::new(dataset.clone(), config(vec![Strategy::Ohem], 16)).expect("engine");
    let images = images(&first, 0);
    let batch = first.batch(&images);
    let selected = selection(&first, &batch);
    let losses = losses(&first, &batch);
    // The highest-loss negative left out becomes a copy of the lowest-loss one: it stays out
    // of the selection, but what the batch holds changes.
    let mut rest: Vec<usize> = (0..batch.len())
        .filter(|i| !selected.contains(i) && !batch.candidates[*i].positive)
        .filter(|&i| batch.candidates[i].image == 0)
        .collect();
    rest.sort_by(|&a, &b| losses[a].total_cmp(&losses[b]));
    let (low, high) = (rest[0], rest[rest.len() - 1]);
    assert!(losses[high] > losses[low]);
    let mut rois: Vec<ImageRois> = (0..images.len()).map(|j| batch.rois_of(j)).collect();
    rois[0].rects[high] = rois[0].rects[low];
    let changed = Batch::new(&images, rois, Device::Cpu);

    first.train_batch(&images, &batch).expect("step");
    let mut second = Engine::new(dataset, config(vec![Strategy::Ohem], 16)).expect("engine");
    assert_eq!(selection(&second, &changed), selected);
    second.train_batch(&images, &changed).expect("step");
    let gap = max_difference(
        &parameters(&first, Strategy::Ohem),
        &parameters(&second, Strategy::Ohem),
    );
    assert!(gap < 1e-7, "a non-selected RoI moved the update by {gap}");
}

#[test]
fn all_six_strategies_train_on_one_batch() {
    let dataset = Arc::new(common::cars::cars_dataset(12, 2, 3));
    let mut engine = Engine::new(dataset, config(Strategy::ALL.to_vec(), 16)).expect("engine");
    let images = images(&engine, 0);
    let outcome = engine.train_step(&images).expect("step");
    let keys: Vec<&str> = outcome
        .report
        .strategies
        .iter()
        .map(|s| s.strategy.key())
        .collect();
    assert_eq!(
        keys,
        ["ohem", "full", "random", "focal", "ohem-3to1", "bootstrap"]
    );
    for s in &outcome.report.strategies {
        assert!(
            s.trained_loss.is_finite() && s.batch_loss.is_finite(),
            "{s:?}"
        );
    }
    // Focal starts every RoI at an object probability of 0.01 (RetinaNet's prior), the others
    // at the shared random start: before any update their whole-batch losses differ, while
    // OHEM's and full batch's agree.
    let loss = |key: &str| {
        outcome
            .report
            .strategies
            .iter()
            .find(|s| s.strategy.key() == key)
            .map(|s| s.batch_loss)
            .expect("strategy")
    };
    assert!((loss("ohem") - loss("full")).abs() < 1e-5);
    assert!(
        (loss("focal") - loss("full")).abs() > 0.1,
        "{} vs {}",
        loss("focal"),
        loss("full")
    );
    // The report says the K set; the batch held every candidate, fewer than that.
    assert_eq!(outcome.report.batch_size, 4096);
    assert!(engine.batch(&images).len() < 4096);
}

#[test]
fn strategies_start_from_the_same_weights_and_report_whole_batch_loss() {
    let dataset = Arc::new(common::cars::cars_dataset(12, 2, 3));
    let mut engine = Engine::new(dataset, config(Strategy::DEFAULT.to_vec(), 16)).expect("engine");
    let ohem = parameters(&engine, Strategy::Ohem);
    assert_eq!(
        max_difference(&ohem, &parameters(&engine, Strategy::FullBatch)),
        0.0
    );
    assert_eq!(
        max_difference(&ohem, &parameters(&engine, Strategy::RandomM)),
        0.0
    );
    let images = images(&engine, 0);
    let outcome = engine.train_step(&images).expect("step");
    let report = outcome.report;
    assert_eq!(report.strategies.len(), 3);
    // Before any update all three see the same weights: the whole-batch losses agree.
    let losses: Vec<f32> = report.strategies.iter().map(|s| s.batch_loss).collect();
    assert!(
        losses.windows(2).all(|w| (w[0] - w[1]).abs() < 1e-5),
        "{losses:?}"
    );
    // OHEM's trained loss is over the hard subset, so it is the highest.
    let trained = |s: Strategy| {
        report
            .strategies
            .iter()
            .find(|x| x.strategy == s)
            .map(|x| x.trained_loss)
            .expect("strategy")
    };
    assert!(trained(Strategy::Ohem) > trained(Strategy::FullBatch));
    let hard = outcome.hard_examples.expect("OHEM reports its picks");
    assert_eq!(hard.examples.len(), 16);
    assert_eq!(hard.batch.len(), hard.batch_size);
    assert!(hard.batch_size <= report.batch_size);
    assert!(hard
        .examples
        .windows(2)
        .all(|w| w[0].seen.loss >= w[1].seen.loss));
    let thumbnail = &hard.examples[0].thumbnail;
    assert_eq!(thumbnail.rgba.len(), thumbnail.width * thumbnail.height * 4);
    // Every pick lies in its training image, in the image's original pixels.
    for pick in &hard.examples {
        let w = pick.seen.window;
        assert!(
            w.x0 >= -0.5 && w.y0 >= -0.5 && w.x1 <= 160.5 && w.y1 <= 120.5,
            "{w:?}"
        );
        assert!(pick.seen.source_image.is_some());
    }
}

#[test]
fn the_pretrained_backbone_starts_from_its_imagenet_weights() {
    use ohem_studio::detector::pretrained::weights_path;
    let path = weights_path(BackboneKind::Lite0).expect("a pretrained backbone");
    assert!(
        path.is_file(),
        "the ImageNet weights are not at {}: `make test` (or `make weights`) fetches them",
        path.display()
    );
    let dataset = Arc::new(common::cars::cars_dataset(4, 1, 4));
    let cfg = TrainConfig {
        backbone: Some(BackboneKind::Lite0),
        ..config(vec![Strategy::Ohem, Strategy::FullBatch], 16)
    };
    let engine = Engine::new(dataset, cfg).expect("engine");
    let file = Tensor::read_safetensors(&path).expect("weights");
    let stem = file
        .iter()
        .find(|(n, _)| n == "_blocks.7._depthwise_conv.weight")
        .map(|(_, t)| t.shallow_clone())
        .expect("a backbone tensor");
    for strategy in [Strategy::Ohem, Strategy::FullBatch] {
        let ours = parameters(&engine, strategy)
            .into_iter()
            .find(|(n, _)| n == "backbone._blocks.7._depthwise_conv.weight")
            .map(|(_, t)| t)
            .expect("the same tensor in the detector");
        assert_eq!((ours - &stem).abs().max().double_value(&[]), 0.0);
    }
}

#[test]
fn a_few_hundred_ohem_steps_find_the_sample_cars() {
    use ohem_studio::data::{load_dataset, LoadOptions};
    use ohem_studio::train::images::ImageStream;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data");
    let (dataset, diagnostics) =
        load_dataset(&root, &LoadOptions::default()).expect("sample data loads");
    assert!(diagnostics.is_empty());
    let mut cfg = config(vec![Strategy::Ohem], 64);
    cfg.batch_size = 512;
    cfg.input_px = Some(256);
    cfg.nms_by_loss = true;
    let mut engine = Engine::new(Arc::new(dataset), cfg).expect("engine");
    let before = engine.evaluate()[0].evaluation.map();
    let mut stream = ImageStream::spawn(engine.train_sampler(), 1, 0).expect("loader");
    for _ in 0..200 {
        let images = stream.next_batch(2).expect("batch");
        engine.train_step(&images).expect("step");
    }
    let after = engine.evaluate()[0].evaluation.map();
    eprintln!("OHEM validation mAP@0.5 {before:.3} → {after:.3}");
    assert!(
        after > before + 0.4,
        "mAP went from {before:.3} to {after:.3}"
    );
}

#[test]
fn a_cap_that_leaves_nothing_skips_the_update_without_calling_it_divergence() {
    let dataset = Arc::new(common::cars::cars_dataset(12, 2, 6));
    let mut cfg = config(vec![Strategy::Ohem], 8);
    cfg.max_negatives_per_positive = Some(0.0);
    let mut engine = Engine::new(dataset, cfg).expect("engine");
    let images = images(&engine, 0);
    let batch = engine.batch(&images);
    let negatives: Vec<usize> = (0..batch.len())
        .filter(|&i| !batch.candidates[i].positive)
        .collect();
    let only_negatives = batch.subset(&images, &negatives, Device::Cpu);
    let before = parameters(&engine, Strategy::Ohem);
    let outcome = engine.train_batch(&images, &only_negatives).expect("step");
    assert!(outcome.non_finite.is_empty());
    assert!(outcome
        .hard_examples
        .expect("OHEM reports")
        .examples
        .is_empty());
    assert_eq!(
        max_difference(&before, &parameters(&engine, Strategy::Ohem)),
        0.0
    );
}

#[test]
fn settings_that_cannot_train_are_refused_up_front() {
    let dataset = Arc::new(common::cars::cars_dataset(4, 1, 7));
    for broken in [
        TrainConfig {
            lr: f64::NAN,
            ..config(vec![Strategy::Ohem], 8)
        },
        TrainConfig {
            hard_examples: 0,
            ..config(vec![Strategy::Ohem], 8)
        },
        TrainConfig {
            steps: Some(0),
            ..config(vec![Strategy::Ohem], 8)
        },
        TrainConfig {
            max_negatives_per_positive: Some(-1.0),
            ..config(vec![Strategy::Ohem], 8)
        },
        TrainConfig {
            images_per_batch: 0,
            ..config(vec![Strategy::Ohem], 8)
        },
        TrainConfig {
            minutes: Some(-1.0),
            ..config(vec![Strategy::Ohem], 8)
        },
        config(Vec::new(), 8),
    ] {
        assert!(Engine::new(dataset.clone(), broken).is_err());
    }
}
