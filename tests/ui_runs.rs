//! Run folders in the real app: a run another thread is training is followed as it grows, and a
//! run the app trains is recorded, reopens and can be overlaid.

// A test should stop at the first broken expectation, with its location.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use egui::accesskit::Role;
use egui_kittest::kittest::{NodeT, Queryable};

mod common;

use common::app::{app_harness_from, small_batches, wait_for, wait_for_within};
use common::cli::small_sample_run;
use common::sample_data;
use ohem_studio::cli::Cli;
use ohem_studio::run::RunReader;
use ohem_studio::train::resume::read_state;
use ohem_studio::ui::{AppOptions, FixedFolderPicker, Status};

fn options(
    data_dir: Option<PathBuf>,
    runs: Vec<PathBuf>,
    record_into: Option<PathBuf>,
) -> AppOptions {
    AppOptions {
        data_dir,
        start: false,
        picker: Box::new(FixedFolderPicker(None)),
        runs,
        record_into,
    }
}

/// `ohem-studio train` on sample_data into `out`, in this process.
fn train_in_process(out: &Path, steps: u64) -> anyhow::Result<()> {
    let args = small_sample_run(out, steps, 60);
    let cli = Cli::parse_from(std::iter::once("ohem-studio".to_string()).chain(args));
    ohem_studio::cli::run(cli.command.unwrap())
}

/// Trains on sample_data in the app (K 32 and `m`) for at least `steps` steps, recorded into a
/// new folder inside `runs`, then closes the app; returns the steps trained.
fn train_in_app(runs: &Path, m: usize, steps: u64) -> u64 {
    let mut harness = app_harness_from(options(
        Some(sample_data()),
        Vec::new(),
        Some(runs.to_path_buf()),
    ));
    wait_for(&mut harness, "the dataset", |h| {
        h.state().status() == &Status::Ready
    });
    small_batches(&mut harness, 32, m);
    harness.state_mut().start();
    wait_for_within(&mut harness, "the steps", Duration::from_secs(120), |h| {
        h.state().step() >= steps
    });
    // Closing the app ends the run; its last checkpoint is written first.
    assert!(harness.state_mut().shutdown(Duration::from_secs(20)));
    harness.state().step()
}

#[test]
fn the_app_follows_a_run_that_another_thread_is_training() {
    let run = tempfile::tempdir().unwrap();
    let dir = run.path().to_path_buf();
    let trainer = std::thread::Builder::new()
        .name("second-trainer".into())
        .spawn(move || train_in_process(&dir, 240))
        .unwrap();
    let started = std::time::Instant::now();
    while RunReader::open(run.path()).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let mut harness = app_harness_from(options(None, vec![run.path().to_path_buf()], None));
    wait_for(&mut harness, "the first recorded steps", |h| {
        h.state().step() > 0
    });
    assert_eq!(
        harness.state().status(),
        &Status::Viewing(run.path().to_path_buf())
    );
    // While the other thread trains, the app's curves keep growing.
    let mut seen = vec![harness.state().step()];
    while !trainer.is_finished() && seen.len() < 4 {
        let last = *seen.last().unwrap();
        wait_for(&mut harness, "more steps", |h| {
            h.state().step() > last || trainer.is_finished()
        });
        seen.push(harness.state().step());
    }
    assert!(seen.len() >= 3, "the curves grew only through {seen:?}");
    trainer.join().unwrap().unwrap();
    wait_for(&mut harness, "the last step and evaluation", |h| {
        h.state().step() == 240 && h.state().best_f1_score().is_some()
    });
    assert!(harness.state().shown_hard_examples().is_some());
    // The run's own dataset was opened for it, so its images are there too.
    assert!(harness.state().dataset().is_some());
}

#[test]
fn a_run_trained_in_the_app_is_recorded_reopens_and_overlays() {
    let runs = tempfile::tempdir().unwrap();
    let trained = train_in_app(runs.path(), 8, 30);

    let recorded: Vec<PathBuf> = std::fs::read_dir(runs.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let folder = &recorded[0];
    assert!(folder
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("sample_data-"));
    let state = read_state(folder).unwrap();
    assert!(
        state.step >= trained,
        "checkpoint at {} of {trained}",
        state.step
    );
    let mut reader = RunReader::open(folder).unwrap();
    reader.poll().unwrap();
    assert_eq!(reader.last_step(), state.step);

    // Reopened: the same curves; and a second run overlaid on them.
    let copy = runs.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for name in ["config.json", "validation.json", "metrics.csv", "eval.csv"] {
        std::fs::copy(folder.join(name), copy.join(name)).unwrap();
    }
    let mut harness = app_harness_from(options(None, vec![folder.clone(), copy], None));
    wait_for(&mut harness, "the recorded steps and the overlay", |h| {
        h.state().step() == state.step && h.state().overlaid_runs() == ["copy"]
    });
}

/// The value a slider of the app shows.
fn slider(harness: &egui_kittest::Harness<'_, ohem_studio::ui::OhemApp>, label: &str) -> f64 {
    harness
        .get_by_role_and_label(Role::Slider, label)
        .accesskit_node()
        .numeric_value()
        .unwrap()
}

/// The M of every row of `folder`'s metrics.csv after step `after`.
fn trained_m_after(folder: &Path, after: u64) -> Vec<u64> {
    let mut reader = csv::Reader::from_path(folder.join("metrics.csv")).unwrap();
    let header = reader.headers().unwrap().clone();
    let at = |name: &str| header.iter().position(|h| h == name).unwrap();
    let (step, m) = (at("step"), at("hard_examples"));
    reader
        .records()
        .map(|r| r.unwrap())
        .filter(|r| r[step].parse::<u64>().unwrap() > after)
        .map(|r| r[m].parse().unwrap())
        .collect()
}

#[test]
fn continuing_a_run_shows_and_trains_with_its_own_settings() {
    let runs = tempfile::tempdir().unwrap();
    train_in_app(runs.path(), 16, 10);
    let folder = std::fs::read_dir(runs.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let saved = read_state(&folder).unwrap().step;

    // Reopened, with the sliders moved elsewhere before continuing.
    let mut harness = app_harness_from(options(None, vec![folder.clone()], None));
    wait_for(&mut harness, "the recorded run and its dataset", |h| {
        h.state().step() == saved && h.state().dataset().is_some()
    });
    small_batches(&mut harness, 64, 48);
    assert_eq!((slider(&harness, "K"), slider(&harness, "M")), (64.0, 48.0));
    // The button opens once the folder has been quiet for a moment.
    wait_for(&mut harness, "Continue training to be enabled", |h| {
        !h.get_by_label("Continue training")
            .accesskit_node()
            .is_disabled()
    });
    harness.get_by_label("Continue training").click();
    wait_for_within(
        &mut harness,
        "steps after the continued one",
        Duration::from_secs(120),
        |h| h.state().step() >= saved + 3,
    );
    // The controls say what the run uses, and the run trains with it.
    assert_eq!((slider(&harness, "K"), slider(&harness, "M")), (32.0, 16.0));
    assert!(harness.state_mut().shutdown(Duration::from_secs(20)));
    let trained = trained_m_after(&folder, saved);
    assert!(!trained.is_empty());
    assert!(trained.iter().all(|&m| m == 16), "{trained:?}");
}

#[test]
fn a_live_change_that_is_clamped_shows_the_clamped_value() {
    let mut harness = app_harness_from(options(Some(sample_data()), Vec::new(), None));
    wait_for(&mut harness, "the dataset", |h| {
        h.state().status() == &Status::Ready
    });
    small_batches(&mut harness, 64, 48);
    harness.state_mut().start();
    wait_for_within(&mut harness, "a step", Duration::from_secs(120), |h| {
        h.state().step() >= 1
    });
    // K lowered under M: M follows it down, and the trainer's answer agrees.
    harness
        .get_by_role_and_label(Role::Slider, "K")
        .set_value_accesskit(20.0);
    harness.run_steps(2);
    let from = harness.state().step();
    wait_for(&mut harness, "hard examples of a batch of 20", |h| {
        h.state()
            .shown_hard_examples()
            .is_some_and(|b| b.step > from && b.batch_size == 20)
    });
    assert_eq!((slider(&harness, "K"), slider(&harness, "M")), (20.0, 20.0));
    assert!(harness.state_mut().shutdown(Duration::from_secs(20)));
}
