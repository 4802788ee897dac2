//! The app's plots saved as PNG files and a sweep's heat map opened, through the real app with
//! a folder picker that answers at once.

// A test should stop at the first broken expectation, with its location.
#![allow(clippy::unwrap_used)]

mod common;

use common::app::app_harness;
use egui_kittest::kittest::Queryable;
use ohem_studio::train::config::Strategy;
use ohem_studio::train::messages::{Event, StepReport, StrategyStep};

fn step(step: u64, strategy: Strategy, loss: f32) -> Event {
    Event::Step(StepReport {
        step,
        elapsed_secs: step as f64 * 0.05,
        batch_size: 64,
        hard_examples: 16,
        examples_per_sec: 1000.0,
        strategies: vec![StrategyStep {
            strategy,
            trained_loss: loss,
            batch_loss: loss,
            forward_ms: 1.0,
            select_ms: 0.1,
            train_ms: 1.0,
        }],
    })
}

#[test]
fn the_plots_are_saved_as_png_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut harness = app_harness(None, false, Some(dir.path().to_path_buf()));
    for i in 1..=50 {
        harness
            .state_mut()
            .apply_event(step(i, Strategy::Focal, 1.0 / i as f32));
    }
    harness.run_steps(2);
    harness.get_by_label("Save plots as PNG…").click();
    harness.run_steps(3);
    let loss = image::open(dir.path().join("loss.png")).expect("loss.png written");
    assert!(loss.width() >= 640);
    // No evaluation yet: no mAP or PR curve to draw.
    assert!(!dir.path().join("pr.png").exists());
}

#[test]
fn a_sweep_folder_opens_as_its_heat_map() {
    let dir = tempfile::tempdir().unwrap();
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    ohem_studio::charts::heat_map(
        &dir.path().join("sweep.png"),
        "OHEM final mAP",
        ("M", &names(&["16", "32"])),
        ("NMS", &names(&["0.7", "none"])),
        &[vec![Some(0.9), Some(0.8)], vec![Some(0.7), None]],
    )
    .unwrap();
    std::fs::write(
        dir.path().join("sweep.csv"),
        "hard_examples,nms,seed,map50\n16,0.7,7,0.9\n",
    )
    .unwrap();
    let mut harness = app_harness(None, false, Some(dir.path().to_path_buf()));
    harness.get_by_label("Open sweep…").click();
    harness.run_steps(3);
    assert!(harness.query_by_label_contains("Sweep ·").is_some());
    assert!(harness
        .query_by_label_contains("sweep.csv (1 rows)")
        .is_some());
}
