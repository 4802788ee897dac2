//! How long the app takes to build a frame when full: 10,000-step curves for the three default
//! strategies, a grid of the default M = 128 hard examples picked from K = 2,048 RoIs and an
//! evaluation per strategy; then paused with the
//! what-if view, the source image's heat map and the label suspects open; and a long run of
//! 100,000 steps while new steps keep arriving, alone and with a recorded run of the same length
//! overlaid. Ignored by `cargo test`; run by `make bench` (`--ignored --nocapture`).

// A test should stop at the first broken expectation, with its location.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::app::{app_harness, wait_for};
use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use ohem_studio::data::{self, Dataset, GtBox, ImageRecord, Layout};
use ohem_studio::eval::{self, Detection};
use ohem_studio::geometry::Rect;
use ohem_studio::run::Recorder;
use ohem_studio::train::config::{Strategy, TrainConfig};
use ohem_studio::train::messages::{
    EvalReport, Event, HardExampleBatch, RunInfo, ScoreGrid, ScoreMapReport, SeenExample,
    StepReport, StrategyStep, Thumbnail,
};
use ohem_studio::ui::OhemApp;

const STEPS: u64 = 10_000;
/// A long run: where the cost of a frame must not have grown with the history.
const LONG_RUN_STEPS: u64 = 100_000;
const HARD_EXAMPLES: usize = 128;
const BATCH_SIZE: usize = 2048;
const TILE_PX: usize = 64;
const FRAMES: usize = 60;
/// Frames of the long run, each after a new step: a couple of seconds, so the curves' refreshes
/// (at most four a second) are among them.
const LIVE_FRAMES: usize = 500;
/// Hard-example batches fed before measuring: what the label suspects need.
const SUSPECT_BATCHES: u64 = 20;

fn image_record(i: usize) -> ImageRecord {
    let pixels = image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, (i * 40 % 256) as u8])
    });
    ImageRecord {
        path: format!("image_{i}.png").into(),
        width: 640,
        height: 480,
        boxes: vec![GtBox {
            class_id: 0,
            rect: Rect::new(100.0, 100.0, 260.0, 180.0),
            difficult: false,
        }],
        pixels: Arc::new(pixels),
        scale: 0.5,
    }
}

fn dataset() -> Arc<Dataset> {
    Arc::new(Dataset {
        root: "bench".into(),
        layout: Layout::Yolo,
        class_names: vec!["car".into()],
        train: (0..20).map(image_record).collect(),
        val: (0..10).map(image_record).collect(),
        positive_crops: Vec::new(),
    })
}

fn step_report(step: u64) -> StepReport {
    let t = step as f32;
    StepReport {
        step,
        elapsed_secs: step as f64 * 0.05,
        batch_size: BATCH_SIZE,
        hard_examples: HARD_EXAMPLES,
        examples_per_sec: 2500.0,
        strategies: Strategy::DEFAULT
            .iter()
            .enumerate()
            .map(|(i, &strategy)| StrategyStep {
                strategy,
                trained_loss: 1.0 / (1.0 + t / 500.0) + 0.1 * (t * 0.37 + i as f32).sin().abs(),
                batch_loss: 0.8 / (1.0 + t / 400.0) + 0.05 * (t * 0.11).cos().abs(),
                forward_ms: 1.0,
                select_ms: 0.1,
                train_ms: 2.0,
            })
            .collect(),
    }
}

/// Example `i` of every synthetic batch: a quarter positives on the image's box (every other
/// one scored low), negatives beside it (every third one scored high), loss falling with `i`.
fn seen_example(i: usize) -> SeenExample {
    let positive = i.is_multiple_of(4);
    let (window, score) = if positive {
        let x = 96.0 + (i % 5) as f32 * 4.0;
        let score = if i.is_multiple_of(8) { 0.1 } else { 0.9 };
        (Rect::new(x, 100.0, x + 160.0, 180.0), score)
    } else {
        // Apart enough on each of the 16 images that NMS by loss keeps them all.
        let j = i / 16;
        let (x, y) = ((j % 5) as f32 * 60.0 + 300.0, (j / 5 % 7) as f32 * 60.0);
        let score = if i.is_multiple_of(3) { 0.9 } else { 0.02 };
        (Rect::new(x, y, x + 96.0, y + 64.0), score)
    };
    let loss = 2.0 / (1.0 + i as f32 * 0.01);
    SeenExample {
        // Spread over 16 images, so that NMS by loss (per image) leaves the what-if replay
        // more distinct RoIs than M.
        source_image: Some(i % 16),
        batch_image: i % 16,
        window,
        label: usize::from(positive),
        loss,
        classification_loss: loss * 0.6,
        score,
    }
}

/// A batch of K RoIs whose M highest-loss ones are the picks.
fn hard_examples(step: u64) -> HardExampleBatch {
    let batch: Vec<SeenExample> = (0..BATCH_SIZE).map(seen_example).collect();
    HardExampleBatch {
        step,
        batch_size: BATCH_SIZE,
        examples: batch[..HARD_EXAMPLES]
            .iter()
            .enumerate()
            .map(|(i, e)| {
                e.picked(Thumbnail {
                    width: TILE_PX,
                    height: TILE_PX,
                    rgba: vec![(i * 7) as u8; TILE_PX * TILE_PX * 4],
                })
            })
            .collect(),
        batch,
    }
}

fn evaluation(step: u64, strategy: Strategy, dataset: &Dataset) -> Arc<EvalReport> {
    let detections: Vec<Detection> = (0..dataset.val.len() * 20)
        .map(|i| Detection {
            image: i % dataset.val.len(),
            class_id: 0,
            rect: Rect::from_xywh((i % 13) as f32 * 30.0, 100.0, 160.0, 80.0),
            score: (i as f32 * 0.173) % 1.0,
        })
        .collect();
    let ground_truth = eval::ground_truth(&dataset.val);
    Arc::new(EvalReport {
        step,
        strategy,
        evaluation: eval::evaluate(&detections, &ground_truth, 1, 0.5),
        detections,
        val_loss: 0.3,
    })
}

fn run_info() -> RunInfo {
    RunInfo {
        device: "bench".into(),
        detector: "small backbone (from scratch) + RoI head, 192 px".into(),
        config: TrainConfig::default(),
        resumed_at_step: None,
    }
}

/// The app after `steps` steps of every default strategy, with a hard-example grid, the label
/// suspects and an evaluation per strategy, its first frames drawn.
fn full_app(steps: u64) -> Harness<'static, OhemApp> {
    let mut harness = app_harness(None, false, None);
    let dataset = dataset();
    let app = harness.state_mut();
    app.apply_event(Event::DatasetLoaded {
        summary: data::summary(&dataset),
        dataset: dataset.clone(),
        diagnostics: Vec::new(),
    });
    app.apply_event(Event::RunStarted(run_info()));
    for step in 1..=steps {
        app.apply_event(Event::Step(step_report(step)));
    }
    // Batches enough for the label suspects to have persistent offenders.
    for step in steps - SUSPECT_BATCHES + 1..=steps {
        app.apply_event(Event::HardExamples(hard_examples(step)));
    }
    for strategy in Strategy::DEFAULT {
        app.apply_event(Event::Evaluated(evaluation(steps, strategy, &dataset)));
    }
    // The first frames upload textures and fill the plot caches.
    harness.run_steps(5);
    harness
}

/// How long each of `frames` frames takes; with `live_step`, the next step arrives before each
/// one, as the trainer's events do in a live run, and taking it in counts in the frame.
fn frame_times(
    harness: &mut Harness<'_, OhemApp>,
    frames: usize,
    mut live_step: Option<&mut u64>,
) -> Vec<Duration> {
    (0..frames)
        .map(|_| {
            let started = Instant::now();
            if let Some(step) = live_step.as_deref_mut() {
                *step += 1;
                harness
                    .state_mut()
                    .apply_event(Event::Step(step_report(*step)));
            }
            harness.step();
            started.elapsed()
        })
        .collect()
}

fn mean_ms(times: &[Duration]) -> f64 {
    times.iter().sum::<Duration>().as_secs_f64() * 1e3 / times.len() as f64
}

/// "median X ms, worst Y ms" of `times`.
fn median_and_worst(times: &[Duration]) -> String {
    let mut sorted = times.to_vec();
    sorted.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    format!(
        "median {:.2} ms, worst {:.2} ms ({} frames)",
        ms(sorted[sorted.len() / 2]),
        ms(sorted[sorted.len() - 1]),
        sorted.len()
    )
}

#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn frame_time_with_full_curves_and_grid() {
    let mut harness = full_app(STEPS);
    let steady = frame_times(&mut harness, FRAMES, None);
    let mut step = STEPS;
    let live = frame_times(&mut harness, FRAMES, Some(&mut step));
    println!(
        "frame build, {STEPS} steps x 3 strategies, {HARD_EXAMPLES} thumbnails, 1400x900: \
         {:.2} ms steady, {:.2} ms with a new step every frame (mean of {FRAMES})",
        mean_ms(&steady),
        mean_ms(&live)
    );

    let (what_if, suspects) = frames_with_the_new_panels(&mut harness);
    println!(
        "paused with M moved (what-if tiles) and a source image with its heat map open: \
         {:.2} ms; the label suspects instead of the gallery: {:.2} ms (mean of {FRAMES})",
        mean_ms(&what_if),
        mean_ms(&suspects)
    );
}

#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn frame_time_of_a_long_live_run() {
    let mut harness = full_app(LONG_RUN_STEPS);
    let mut step = LONG_RUN_STEPS;
    let live = frame_times(&mut harness, LIVE_FRAMES, Some(&mut step));
    println!(
        "frame at 100,000 steps × 3 strategies, live: {}",
        median_and_worst(&live)
    );

    let folder = tempfile::tempdir().unwrap();
    let recorded = folder.path().join("earlier-run");
    record_run(&recorded, LONG_RUN_STEPS);
    harness.state_mut().overlay_run(recorded);
    wait_for(&mut harness, "the overlaid run", |h| {
        !h.state().overlaid_runs().is_empty()
    });
    // The run is read on another thread; by its next look at the folder, all of it is in.
    std::thread::sleep(Duration::from_secs(1));
    harness.run_steps(3);
    let overlaid = frame_times(&mut harness, LIVE_FRAMES, Some(&mut step));
    println!(
        "the same with a recorded 100,000-step run overlaid: {}",
        median_and_worst(&overlaid)
    );
}

/// A run folder in `dir` holding `steps` steps and an evaluation per strategy.
fn record_run(dir: &Path, steps: u64) {
    let dataset = dataset();
    let mut recorder = Recorder::start(dir, dataset.clone(), &dataset.root, &run_info()).unwrap();
    for step in 1..=steps {
        recorder.record(&Event::Step(step_report(step))).unwrap();
    }
    for strategy in Strategy::DEFAULT {
        let report = evaluation(steps, strategy, &dataset);
        recorder.record(&Event::Evaluated(report)).unwrap();
    }
    recorder.flush().unwrap();
}

/// Frame times with the what-if view and the heat map open, then with the label suspects.
fn frames_with_the_new_panels(
    harness: &mut Harness<'_, OhemApp>,
) -> (Vec<Duration>, Vec<Duration>) {
    harness.state_mut().apply_event(Event::Paused);
    harness
        .get_by_role_and_label(Role::Slider, "M")
        .set_value_accesskit(192.0);
    harness.run_steps(3);
    assert!(
        harness
            .query_all_by_label_contains("would be picked")
            .count()
            > 0,
        "the what-if view shows the picks of M = 192"
    );
    harness
        .query_all_by_label_contains("hard example ")
        .next()
        .expect("a tile")
        .click();
    // The idle trainer answers that there is no model; a map of the image replaces it.
    wait_for(harness, "the answer to the score-map request", |h| {
        h.state().shown_score_map().is_some()
    });
    let asked = harness.state().shown_score_map().expect("a report").clone();
    harness
        .state_mut()
        .apply_event(Event::ScoreMap(ScoreMapReport {
            map: Ok(ScoreGrid {
                cols: 75,
                rows: 55,
                scores: (0..75 * 55).map(|i| (i % 97) as f32 / 96.0).collect(),
                area: Rect::new(24.0, 16.0, 624.0, 456.0),
            }),
            ..asked
        }));
    harness.run_steps(5);
    let what_if = frame_times(harness, FRAMES, None);
    harness.get_by_label_contains("Label suspects (").click();
    harness.run_steps(5);
    assert!(
        harness
            .query_all_by_label_contains("missing label? ")
            .count()
            > 0,
        "the suspects are listed"
    );
    (what_if, frame_times(harness, FRAMES, None))
}

#[test]
#[ignore = "a benchmark: run with --ignored --nocapture"]
fn launch_to_first_hard_example_grid_on_the_sample_data() {
    let started = Instant::now();
    let sample = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sample_data");
    let mut harness = app_harness(Some(sample), true, None);
    let deadline = started + Duration::from_secs(120);
    while harness.state().shown_hard_examples().is_none() {
        assert!(
            Instant::now() < deadline,
            "no hard examples within two minutes"
        );
        harness.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    harness.step();
    println!(
        "launch to the first hard-example grid on sample_data: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    harness.state_mut().shutdown(Duration::from_secs(2));
}
