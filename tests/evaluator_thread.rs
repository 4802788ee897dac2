//! The evaluator thread ends with the app, even while it is scoring. Alone in its own test
//! binary, so the threads counted are this app's.

// A test should stop at the first broken expectation, with its location.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use egui_kittest::kittest::Queryable;

mod common;

use common::app::{app_harness, small_batches, wait_for};
use common::sample_data;
use ohem_studio::ui::Status;

/// Threads of this process with this name. (libtorch's CPU worker threads take the name of the
/// thread that started them and outlive it, waiting for work: the trainer's cannot be counted
/// this way, the evaluator scores on one thread and starts none.)
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[test]
fn the_evaluator_thread_ends_with_the_app_even_mid_evaluation() {
    let mut harness = app_harness(Some(sample_data()), false, None);
    wait_for(&mut harness, "the dataset", |h| {
        h.state().status() == &Status::Ready
    });
    small_batches(&mut harness, 32, 8);
    harness.state_mut().start();
    wait_for(&mut harness, "a few steps", |h| h.state().step() >= 3);
    assert_eq!(threads_named("evaluator"), 1);
    harness.get_by_label("Evaluate now").click();
    harness.run_steps(2);

    let closing = Instant::now();
    assert!(harness.state_mut().shutdown(Duration::from_secs(10)));
    let took = closing.elapsed();
    assert!(took < Duration::from_secs(5), "closing took {took:?}");
    // The trainer thread has been joined (shutdown says so); it joins the evaluator first.
    assert!(harness.state().trainer_finished());
    assert_eq!(threads_named("evaluator"), 0);
}
