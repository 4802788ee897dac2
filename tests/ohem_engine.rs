//! The engine's OHEM step, checked against independent computations.

mod common;

use std::sync::Arc;

use ohem_studio::ohem::select_hard;
use ohem_studio::train::batch::candidates;
use ohem_studio::train::examples::{fixed_examples, Example, ExampleSampler, Split};
use ohem_studio::train::Engine;
use ohem_studio::train::{DeviceChoice, Strategy, TrainConfig};
use tch::Tensor;

fn config(strategies: Vec<Strategy>, m: usize) -> TrainConfig {
    TrainConfig {
        batch_size: 48,
        hard_examples: m,
        strategies,
        device: DeviceChoice::Cpu,
        seed: 11,
        nms_by_loss: false,
        eval_every: 0,
        ..TrainConfig::default()
    }
}

fn batch(engine: &Engine, n: usize) -> Vec<Example> {
    fixed_examples(&engine.train_sampler(), 5, n)
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

/// OHEM's own selection on the engine's current weights, recomputed outside the engine.
fn selection(engine: &Engine, examples: &[Example]) -> Vec<usize> {
    let model = &engine.learners()[0];
    let t = engine.tensors(examples);
    let losses = tch::no_grad(|| {
        model
            .net()
            .window_losses(&t.pixels, &t.labels, &t.targets)
            .loss
    });
    let losses = Vec::<f32>::try_from(losses).expect("f32 losses");
    let candidates = candidates(examples);
    select_hard(&losses, &candidates, &engine.selection()).expect("selection")
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
fn one_ohem_step_equals_a_plain_step_on_the_selected_examples() {
    let dataset = Arc::new(common::cars::cars_dataset(12, 2, 1));
    let mut ohem = Engine::new(dataset.clone(), config(vec![Strategy::Ohem], 12)).expect("engine");
    let examples = batch(&ohem, 48);
    let selected = selection(&ohem, &examples);
    assert_eq!(selected.len(), 12);
    let before = parameters(&ohem, Strategy::Ohem);
    ohem.train_step(&examples).expect("step");

    // Same seed → same initial weights; full batch over exactly the selected examples.
    let mut oracle = Engine::new(dataset, config(vec![Strategy::FullBatch], 12)).expect("engine");
    assert_eq!(
        max_difference(&before, &parameters(&oracle, Strategy::FullBatch)),
        0.0
    );
    let chosen: Vec<Example> = selected.iter().map(|&i| examples[i].clone()).collect();
    oracle.train_step(&chosen).expect("step");

    let after = parameters(&ohem, Strategy::Ohem);
    assert!(
        max_difference(&before, &after) > 1e-6,
        "the step changed nothing"
    );
    let gap = max_difference(&after, &parameters(&oracle, Strategy::FullBatch));
    assert!(
        gap < 1e-6,
        "OHEM's update differs from the oracle's by {gap}"
    );
}

#[test]
fn changing_a_non_selected_example_does_not_change_the_update() {
    let dataset = Arc::new(common::cars::cars_dataset(12, 2, 2));
    let mut first = Engine::new(dataset.clone(), config(vec![Strategy::Ohem], 8)).expect("engine");
    let examples = batch(&first, 48);
    let selected = selection(&first, &examples);
    // Two non-selected examples of the same class: giving the higher-loss one the pixels of the
    // lower-loss one keeps it out of the selection but changes what the batch holds.
    let model = &first.learners()[0];
    let t = first.tensors(&examples);
    let losses = Vec::<f32>::try_from(tch::no_grad(|| {
        model
            .net()
            .window_losses(&t.pixels, &t.labels, &t.targets)
            .loss
    }))
    .expect("losses");
    let mut rest: Vec<usize> = (0..examples.len())
        .filter(|i| !selected.contains(i) && examples[*i].label == 0)
        .collect();
    rest.sort_by(|&a, &b| losses[a].total_cmp(&losses[b]));
    let (low, high) = (rest[0], rest[rest.len() - 1]);
    let mut changed = examples.clone();
    changed[high].pixels = examples[low].pixels.clone();
    assert_ne!(changed[high].pixels, examples[high].pixels);

    first.train_step(&examples).expect("step");
    let mut second = Engine::new(dataset, config(vec![Strategy::Ohem], 8)).expect("engine");
    assert_eq!(selection(&second, &changed), selected);
    second.train_step(&changed).expect("step");
    let gap = max_difference(
        &parameters(&first, Strategy::Ohem),
        &parameters(&second, Strategy::Ohem),
    );
    assert!(
        gap < 1e-7,
        "a non-selected example moved the update by {gap}"
    );
}

#[test]
fn all_six_strategies_train_on_one_batch() {
    let dataset = Arc::new(common::cars::cars_dataset(12, 2, 3));
    let mut engine = Engine::new(dataset, config(Strategy::ALL.to_vec(), 8)).expect("engine");
    let examples = batch(&engine, 48);
    let positives = examples.iter().filter(|e| e.label > 0).count();
    let outcome = engine.train_step(&examples).expect("step");
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
    // Focal starts every window at an object probability of 0.01 (RetinaNet's prior), the
    // others at the shared random start: before any update their whole-batch losses differ,
    // while OHEM's and full batch's agree.
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
    assert!(positives > 0 && positives < 48);
}

#[test]
fn strategies_start_from_the_same_weights_and_report_whole_batch_loss() {
    let dataset = Arc::new(common::cars::cars_dataset(12, 2, 3));
    let mut engine = Engine::new(dataset, config(Strategy::DEFAULT.to_vec(), 8)).expect("engine");
    let ohem = parameters(&engine, Strategy::Ohem);
    assert_eq!(
        max_difference(&ohem, &parameters(&engine, Strategy::FullBatch)),
        0.0
    );
    assert_eq!(
        max_difference(&ohem, &parameters(&engine, Strategy::RandomM)),
        0.0
    );
    let examples = batch(&engine, 48);
    let outcome = engine.train_step(&examples).expect("step");
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
    assert_eq!(hard.examples.len(), 8);
    assert!(hard.examples.windows(2).all(|w| w[0].loss >= w[1].loss));
    assert_eq!(
        hard.examples[0].thumbnail.rgba.len(),
        hard.examples[0].thumbnail.width * hard.examples[0].thumbnail.height * 4
    );
}

#[test]
fn sampler_is_deterministic_and_keeps_negatives_off_objects() {
    let dataset = Arc::new(common::cars::cars_dataset(8, 2, 4));
    let engine = Engine::new(dataset.clone(), config(vec![Strategy::Ohem], 8)).expect("engine");
    let sampler = ExampleSampler::new(
        dataset.clone(),
        Split::Train,
        engine.info().window,
        engine.info().scales.clone(),
        0.75,
        0.2,
    );
    let a = fixed_examples(&sampler, 9, 64);
    let b = fixed_examples(&sampler, 9, 64);
    assert!(a
        .iter()
        .zip(&b)
        .all(|(x, y)| x.pixels == y.pixels && x.label == y.label));
    let positives = a.iter().filter(|e| e.label > 0).count();
    assert!((5..40).contains(&positives), "{positives} positives of 64");
    for e in a.iter().filter(|e| e.label == 0) {
        let record = &dataset.train[e.source_image.expect("from an image")];
        for b in &record.boxes {
            assert!(b.rect.iou(&e.window) < 0.3);
        }
    }
}

#[test]
fn a_few_hundred_ohem_steps_find_the_sample_cars() {
    use ohem_studio::data::{load_dataset, LoadOptions};
    use ohem_studio::train::examples::ExampleStream;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sample_data");
    let (dataset, diagnostics) =
        load_dataset(&root, &LoadOptions::default()).expect("sample data loads");
    assert!(diagnostics.is_empty());
    let mut cfg = config(vec![Strategy::Ohem], 16);
    cfg.batch_size = 64;
    cfg.nms_by_loss = true;
    let mut engine = Engine::new(Arc::new(dataset), cfg).expect("engine");
    let before = engine.evaluate()[0].evaluation.map();
    let mut stream = ExampleStream::spawn(engine.train_sampler(), 1, 0).expect("loader");
    for _ in 0..250 {
        let examples = stream.next_batch(64).expect("batch");
        engine.train_step(&examples).expect("step");
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
    let negatives: Vec<Example> = batch(&engine, 96)
        .into_iter()
        .filter(|e| e.label == 0)
        .take(32)
        .collect();
    let before = parameters(&engine, Strategy::Ohem);
    let outcome = engine.train_step(&negatives).expect("step");
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
        config(Vec::new(), 8),
    ] {
        assert!(Engine::new(dataset.clone(), broken).is_err());
    }
}
