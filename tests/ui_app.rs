//! The real app, driven like a person would: with the real trainer thread on a tiny YOLO
//! dataset written to a temporary folder. No GPU and no real dialog needed.

// A test should stop at the first broken expectation, with its location.
#![allow(clippy::unwrap_used)]

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
mod common;

use common::app::{
    app_harness, app_harness_with_picker, count_labels_containing, fixture, has_label, shown_step,
    small_batches, text_of, wait_for,
};
use egui_kittest::Harness;
use ohem_studio::ui::{NoDialogPicker, OhemApp, Status};

fn open_and_start(harness: &mut Harness<'_, OhemApp>) {
    wait_for(harness, "the dataset to load", |h| {
        has_label(h, "ready: press Start")
    });
    small_batches(harness, 32, 16);
    harness.get_by_label("Start").click();
    wait_for(harness, "the first steps", |h| shown_step(h) > 0);
}

/// Starts a run that evaluates every second step, so the views have an evaluation to show.
fn start_evaluating_every_two_steps(harness: &mut Harness<'_, OhemApp>) {
    wait_for(harness, "the dataset to load", |h| {
        has_label(h, "ready: press Start")
    });
    harness
        .get_by_role_and_label(Role::Slider, "evaluate every")
        .set_value_accesskit(2.0);
    harness.run_steps(2);
    open_and_start(harness);
}

/// Pauses the run and waits for the evaluations still being scored (every two steps), so the
/// views stay as they are.
fn pause_with_evaluations_done(harness: &mut Harness<'_, OhemApp>) {
    harness.get_by_label("Pause").click();
    wait_for(harness, "the pause", |h| has_label(h, "paused"));
    wait_for(harness, "the last evaluation", |h| {
        h.state()
            .evaluated_step()
            .is_some_and(|s| s + 2 > h.state().step())
    });
    harness.run_steps(3);
}

#[test]
fn typing_a_path_and_enter_opens_the_dataset() {
    let data = fixture();
    let mut harness = app_harness(None, false, None);
    assert!(has_label(&harness, "no dataset: open a folder"));
    let field = harness.get_by_label("Folder:");
    field.focus();
    field.type_text(&data.path().display().to_string());
    harness.run_steps(2);
    harness.key_press(egui::Key::Enter);
    wait_for(&mut harness, "the dataset to load", |h| {
        has_label(h, "ready: press Start")
    });
    // The summary and the problem list are on screen.
    assert!(harness
        .query_by_label_contains("Dataset problems")
        .is_some());
    assert!(harness.query_by_label("none loaded").is_none());
}

#[test]
fn a_bad_folder_shows_a_problem_and_the_app_stays_usable() {
    let data = fixture();
    let missing = data.path().join("no-such-folder");
    // The fake picker answers with the good folder after the bad one failed.
    let mut harness = app_harness(Some(missing), false, Some(data.path().to_path_buf()));
    wait_for(&mut harness, "the failure to show", |h| {
        count_labels_containing(h, "cannot open") > 0
    });
    assert!(has_label(&harness, "no dataset: open a folder"));
    harness.get_by_label("Open dataset…").click();
    wait_for(&mut harness, "the picked dataset to load", |h| {
        has_label(h, "ready: press Start")
    });
}

#[test]
fn training_shows_hard_examples_and_a_new_m_applies_to_later_batches() {
    let data = fixture();
    let mut harness = app_harness(Some(data.path().to_path_buf()), false, None);
    open_and_start(&mut harness);
    wait_for(&mut harness, "a grid of 16 hard examples", |h| {
        count_labels_containing(h, "hard example ") == 16
    });
    assert!(
        !has_label(&harness, "device: –"),
        "the device in use is shown"
    );

    harness
        .get_by_role_and_label(Role::Slider, "M")
        .set_value_accesskit(5.0);
    wait_for(&mut harness, "a batch trained with M = 5", |h| {
        h.state().shown_hard_examples().map(|b| b.examples.len()) == Some(5)
            && count_labels_containing(h, "hard example ") == 5
    });

    eframe::App::on_exit(harness.state_mut(), None);
    assert!(
        harness.state().trainer_finished(),
        "closing ends the trainer thread"
    );
}

#[test]
fn the_threshold_recolours_examples_and_metrics_without_a_new_batch() {
    let data = fixture();
    let mut harness = app_harness(Some(data.path().to_path_buf()), false, None);
    start_evaluating_every_two_steps(&mut harness);
    wait_for(&mut harness, "an evaluation", |h| {
        count_labels_containing(h, "OHEM @ ") > 0 && count_labels_containing(h, "hard example ") > 0
    });
    pause_with_evaluations_done(&mut harness);
    let step = shown_step(&harness);

    let metrics = |h: &Harness<'_, OhemApp>| -> String {
        let label = text_of(&h.get_by_label_contains("OHEM @ "));
        // Drop the threshold itself: only the numbers should be compared.
        label
            .split_once(':')
            .map(|(_, rest)| rest.to_string())
            .unwrap_or_default()
    };
    let threshold = |h: &mut Harness<'_, OhemApp>, value: f64| {
        h.get_by_role_and_label(Role::Slider, "score threshold")
            .set_value_accesskit(value);
        h.run_steps(3);
    };

    threshold(&mut harness, 0.05);
    let red_low = count_labels_containing(&harness, "false positive");
    let metrics_low = metrics(&harness);
    threshold(&mut harness, 0.99);
    let red_high = count_labels_containing(&harness, "false positive");
    let metrics_high = metrics(&harness);

    assert!(
        red_low > red_high,
        "fewer negatives count as false positives at a higher threshold ({red_low} vs {red_high})"
    );
    assert_ne!(metrics_low, metrics_high, "P/R/F1 follow the threshold");
    assert_eq!(
        shown_step(&harness),
        step,
        "no batch was trained while paused"
    );

    harness.get_by_label("Resume").click();
    wait_for(&mut harness, "training to go on", |h| shown_step(h) > step);
}

/// One step of a single-strategy run with M = `m` whose losses are `loss`.
fn step_event(step: u64, m: usize, loss: f32) -> ohem_studio::train::messages::Event {
    use ohem_studio::train::config::Strategy;
    use ohem_studio::train::messages::{Event, StepReport, StrategyStep};
    Event::Step(StepReport {
        step,
        elapsed_secs: step as f64 * 0.05,
        batch_size: 128,
        hard_examples: m,
        examples_per_sec: 1000.0,
        strategies: vec![StrategyStep {
            strategy: Strategy::Ohem,
            trained_loss: loss,
            batch_loss: loss * 0.8,
            forward_ms: 1.0,
            select_ms: 0.1,
            train_ms: 1.0,
        }],
    })
}

#[test]
fn a_loss_spike_is_clipped_until_outliers_are_asked_for() {
    let mut harness = app_harness(None, false, None);
    // Losses around 0.5 with one step near 30, as when M drops from 32 to 3 mid-run.
    for step in 1..=300u64 {
        let (m, loss) = match step {
            ..200 => (32, 0.5 + 0.05 * ((step % 7) as f32 / 7.0)),
            200 => (3, 29.0),
            _ => (3, 0.6 + 0.05 * ((step % 5) as f32 / 5.0)),
        };
        harness.state_mut().apply_event(step_event(step, m, loss));
    }
    harness.run_steps(3);
    let (low, high) = harness.state().loss_plot_y_range().unwrap();
    assert!(
        high < 2.0 && low > 0.0,
        "the y range fits the bulk of the losses, not the spike: {low}..{high}"
    );
    harness.run_steps(30);
    assert_eq!(
        harness.state().loss_plot_y_range().unwrap().1,
        high,
        "the range holds still from frame to frame (the M-change label does not widen it)"
    );

    harness.get_by_label("ignore outliers").click();
    harness.run_steps(3);
    let (_, high) = harness.state().loss_plot_y_range().unwrap();
    assert!(
        high >= 29.0,
        "with outliers shown the spike is in range: ..{high}"
    );
}

/// The numbers of the viewer's "showing N of M detections" line.
fn shown_detections(harness: &Harness<'_, OhemApp>) -> (usize, usize) {
    let text = text_of(&harness.get_by_label_contains("detections at ≥"));
    let numbers: Vec<usize> = text
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    (numbers[0], numbers[1])
}

#[test]
fn the_viewer_shows_top_n_false_positives_or_misses_and_best_f1_sets_the_threshold() {
    let data = fixture();
    let mut harness = app_harness(Some(data.path().to_path_buf()), false, None);
    start_evaluating_every_two_steps(&mut harness);
    wait_for(&mut harness, "an evaluation", |h| {
        count_labels_containing(h, "detections at ≥") > 0
    });
    pause_with_evaluations_done(&mut harness);

    // Until the slider is moved, the threshold follows the evaluation's best F1.
    let best = harness.state().best_f1_score().unwrap().clamp(0.05, 0.99);
    assert_eq!(harness.state().score_threshold(), best);

    harness
        .get_by_role_and_label(Role::Slider, "score threshold")
        .set_value_accesskit(0.05);
    harness.get_by_label("sort by false positives").click();
    harness.run_steps(3);
    let (all, total) = shown_detections(&harness);
    assert!(
        total >= 2,
        "an early model finds several boxes at 0.05 ({total})"
    );
    assert_eq!(all, total.min(20), "top 20 by default");

    harness
        .get_by_role_and_label(Role::Slider, "top N")
        .set_value_accesskit(1.0);
    harness.run_steps(3);
    assert_eq!(shown_detections(&harness), (1, total), "top 1");

    harness
        .get_by_role_and_label(Role::Slider, "top N")
        .set_value_accesskit(100.0);
    harness.get_by_label("false positives only").click();
    harness.run_steps(3);
    // The viewer's own "FP n" for this image.
    let false_positives: usize = harness
        .query_all_by_label_contains("FP ")
        .find_map(|node| text_of(&node).strip_prefix("FP ")?.parse().ok())
        .unwrap();
    assert_eq!(shown_detections(&harness), (false_positives, total));

    harness.get_by_label("misses only").click();
    harness.run_steps(3);
    assert_eq!(
        shown_detections(&harness),
        (0, total),
        "misses only: no detections"
    );

    harness.get_by_label("best F1").click();
    harness.run_steps(2);
    assert_eq!(harness.state().score_threshold(), best);
}

/// Asks the app's window to close, as the window manager's close button does.
fn request_close(harness: &mut Harness<'_, OhemApp>) {
    harness
        .input_mut()
        .viewports
        .entry(egui::ViewportId::ROOT)
        .or_default()
        .events
        .push(egui::ViewportEvent::Close);
    harness.run_steps(2);
}

#[test]
fn a_run_with_unsaved_progress_is_never_ended_without_asking() {
    let data = fixture();
    let other = fixture();
    let mut harness = app_harness(Some(data.path().to_path_buf()), false, None);
    open_and_start(&mut harness);
    wait_for(&mut harness, "a few steps", |h| shown_step(h) > 3);

    // A path that is no folder: said so, and the run goes on.
    let field = harness.get_by_label("Folder:");
    field.focus();
    field.type_text("/nonexistent/zzz");
    harness.run_steps(2);
    harness.key_press(egui::Key::Enter);
    harness.run_steps(2);
    assert!(count_labels_containing(&harness, "no such folder") > 0);
    assert_eq!(harness.state().status(), &Status::Running);

    // Another dataset: asked first; keeping the run keeps it.
    harness.state_mut().open_dataset(other.path().to_path_buf());
    harness.run_steps(2);
    assert!(has_label(&harness, "End the run?"));
    harness.get_by_label("Keep training").click();
    harness.run_steps(2);
    assert!(!has_label(&harness, "End the run?"));
    assert_eq!(harness.state().status(), &Status::Running);

    // Closing the window: held and asked; agreeing lets it close.
    request_close(&mut harness);
    assert!(has_label(&harness, "End the run?"), "the close was held");
    assert!(has_label(&harness, "End the run and close"));
    harness.get_by_label("Keep training").click();
    harness.run_steps(2);
    assert_eq!(harness.state().status(), &Status::Running);

    // Agreeing to open the other dataset ends the run and opens it.
    harness.state_mut().open_dataset(other.path().to_path_buf());
    harness.run_steps(2);
    harness.get_by_label("End the run and open").click();
    wait_for(&mut harness, "the other dataset", |h| {
        has_label(h, "ready: press Start")
    });
    eframe::App::on_exit(harness.state_mut(), None);
}

#[test]
fn a_run_that_cannot_start_leaves_the_app_ready() {
    // Images without any object: the dataset opens, but no run can train on it.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("images/train")).unwrap();
    std::fs::create_dir_all(root.join("labels/train")).unwrap();
    std::fs::write(
        root.join("data.yaml"),
        "path: .\ntrain: images/train\nval: images/train\nnames: [car]\n",
    )
    .unwrap();
    for i in 0..3 {
        image::RgbImage::from_pixel(64, 48, image::Rgb([90, 90, 90]))
            .save(root.join(format!("images/train/{i}.png")))
            .unwrap();
    }
    let mut harness = app_harness(Some(root.to_path_buf()), true, None);
    wait_for(&mut harness, "the start to fail", |h| {
        count_labels_containing(h, "cannot start training") > 0
    });
    assert_eq!(harness.state().status(), &Status::Ready);
    assert!(has_label(&harness, "ready: press Start"));
}

#[test]
fn without_a_file_dialog_the_app_says_so_and_points_to_the_folder_field() {
    let mut harness = app_harness_with_picker(None, false, Box::new(NoDialogPicker));
    harness.get_by_label("Open dataset…").click();
    harness.run_steps(3);
    assert!(count_labels_containing(&harness, "type the dataset's path into the Folder field") > 0);
}

#[test]
fn loading_a_large_folder_can_be_cancelled() {
    // A pos/neg folder of 600 large photos: seconds to decode.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("pos")).unwrap();
    std::fs::create_dir_all(root.join("neg")).unwrap();
    image::RgbImage::from_pixel(40, 40, image::Rgb([200, 30, 30]))
        .save(root.join("pos/0.png"))
        .unwrap();
    let photo = root.join("neg/0.jpg");
    image::RgbImage::from_fn(1600, 1200, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 7])
    })
    .save(&photo)
    .unwrap();
    for i in 1..600 {
        std::fs::copy(&photo, root.join(format!("neg/{i}.jpg"))).unwrap();
    }
    let mut harness = app_harness(Some(root.to_path_buf()), false, None);
    harness.run_steps(2);
    assert!(matches!(harness.state().status(), Status::Loading(_)));
    harness.get_by_label("Cancel loading").click();
    wait_for(&mut harness, "the load to stop", |h| {
        h.state().status() == &Status::NoDataset
    });
}
