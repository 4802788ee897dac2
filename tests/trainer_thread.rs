//! The trainer thread on its own: commands in, events out, clean shutdown. Real data on disk.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::sample_data;

use ohem_studio::train::messages::StepReport;
use ohem_studio::train::{
    Command, DeviceChoice, Event, LiveSettings, Strategy, TrainConfig, TrainerHandle,
};

fn small_run() -> TrainConfig {
    TrainConfig {
        batch_size: 32,
        hard_examples: 8,
        device: DeviceChoice::Cpu,
        eval_every: 0,
        ..TrainConfig::default()
    }
}

/// Waits for the first event that `want` accepts, failing after `secs`.
fn wait_for<T>(trainer: &TrainerHandle, secs: u64, mut want: impl FnMut(&Event) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(event) = trainer.recv_timeout(Duration::from_millis(50)) {
            if let Event::Failed { message } = &event {
                panic!("trainer failed: {message}");
            }
            if let Some(found) = want(&event) {
                return found;
            }
        }
    }
    panic!("no such event within {secs} s");
}

fn step(event: &Event) -> Option<StepReport> {
    match event {
        Event::Step(report) => Some(report.clone()),
        _ => None,
    }
}

fn spawn() -> TrainerHandle {
    TrainerHandle::spawn(Arc::new(|| {})).expect("trainer thread starts")
}

fn open_sample(trainer: &TrainerHandle) {
    assert!(trainer.send(Command::OpenDataset(sample_data())));
    let images = wait_for(trainer, 60, |e| match e {
        Event::DatasetLoaded {
            dataset,
            diagnostics,
            ..
        } => Some((dataset.train.len(), diagnostics.len())),
        _ => None,
    });
    assert_eq!(images, (160, 0));
}

#[test]
fn a_missing_folder_is_reported_and_the_trainer_stays_usable() {
    let mut trainer = spawn();
    trainer.send(Command::OpenDataset(PathBuf::from("/nonexistent/cars")));
    let message = wait_for(&trainer, 10, |e| match e {
        Event::DatasetFailed { message, .. } => Some(message.clone()),
        _ => None,
    });
    assert!(message.contains("/nonexistent/cars"), "{message}");
    trainer.send(Command::Start {
        config: small_run(),
        record: None,
    });
    let problem = wait_for(&trainer, 10, |e| match e {
        Event::Problem(m) => Some(m.clone()),
        _ => None,
    });
    assert!(problem.contains("open a dataset"), "{problem}");
    open_sample(&trainer);
    assert!(trainer.shutdown(Duration::from_secs(2)));
}

#[test]
fn live_settings_pause_resume_and_shutdown() {
    let mut trainer = spawn();
    open_sample(&trainer);
    trainer.send(Command::Start {
        config: small_run(),
        record: None,
    });
    let info = wait_for(&trainer, 30, |e| match e {
        Event::RunStarted(info) => Some(info.clone()),
        _ => None,
    });
    assert_eq!(info.device, "CPU");
    let first = wait_for(&trainer, 30, step);
    assert_eq!((first.batch_size, first.hard_examples), (32, 8));
    assert_eq!(first.strategies.len(), 3);

    // M and K change from a following batch on, and OHEM's picks follow M.
    trainer.send(Command::SetLive(LiveSettings {
        hard_examples: 5,
        batch_size: 48,
        ..small_run().live()
    }));
    let adopted = wait_for(&trainer, 30, |e| match e {
        Event::SettingsAdopted(live) => Some(*live),
        _ => None,
    });
    assert_eq!((adopted.batch_size, adopted.hard_examples), (48, 5));
    let changed = wait_for(&trainer, 30, |e| step(e).filter(|s| s.hard_examples == 5));
    assert_eq!(changed.batch_size, 48);
    let picks = wait_for(&trainer, 30, |e| match e {
        Event::HardExamples(batch) if batch.step > changed.step => Some(batch.examples.len()),
        _ => None,
    });
    assert_eq!(picks, 5);

    trainer.send(Command::Pause);
    wait_for(&trainer, 30, |e| matches!(e, Event::Paused).then_some(()));
    // Nothing trains while paused.
    std::thread::sleep(Duration::from_millis(300));
    let during_pause: Vec<Event> = trainer.try_events().collect();
    assert!(
        during_pause.iter().all(|e| !matches!(e, Event::Step(_))),
        "trained while paused"
    );

    trainer.send(Command::Resume);
    wait_for(&trainer, 30, |e| matches!(e, Event::Resumed).then_some(()));
    let after = wait_for(&trainer, 30, step);
    assert!(after.step > changed.step);

    trainer.send(Command::EvaluateNow);
    let strategies: Vec<Strategy> = (0..3)
        .map(|_| {
            wait_for(&trainer, 60, |e| match e {
                Event::Evaluated(report) => Some(report.strategy),
                _ => None,
            })
        })
        .collect();
    assert_eq!(
        strategies,
        vec![Strategy::Ohem, Strategy::FullBatch, Strategy::RandomM]
    );

    let started = Instant::now();
    trainer.send(Command::Shutdown);
    let mut last = None;
    while let Some(event) = trainer.recv_timeout(Duration::from_secs(2)) {
        last = Some(event);
    }
    assert!(
        matches!(last, Some(Event::Stopped)),
        "the stream ends with Stopped, got {last:?}"
    );
    assert!(trainer.shutdown(Duration::from_secs(1)));
    assert!(trainer.is_finished());
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_step_budget_ends_the_run_and_the_weights_can_still_be_saved() {
    let mut trainer = spawn();
    open_sample(&trainer);
    let dir = tempfile::tempdir().expect("temp dir");
    trainer.send(Command::Start {
        config: TrainConfig {
            steps: Some(3),
            strategies: vec![Strategy::Ohem],
            ..small_run()
        },
        record: None,
    });
    let steps = wait_for(&trainer, 60, |e| match e {
        Event::RunEnded { steps, .. } => Some(*steps),
        _ => None,
    });
    assert_eq!(steps, 3);
    trainer.send(Command::SaveCheckpoint(dir.path().to_path_buf()));
    let written = wait_for(&trainer, 30, |e| match e {
        Event::CheckpointSaved(paths) => Some(paths.clone()),
        _ => None,
    });
    assert!(written.contains(&dir.path().join("ohem.safetensors")));
    assert!(dir.path().join("model.json").is_file());
    // No temporary files left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("listing")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
    assert!(trainer.shutdown(Duration::from_secs(2)));
}

#[test]
fn dropping_the_handle_ends_the_thread() {
    let trainer = spawn();
    open_sample(&trainer);
    trainer.send(Command::Start {
        config: small_run(),
        record: None,
    });
    wait_for(&trainer, 30, step);
    let started = Instant::now();
    drop(trainer);
    assert!(started.elapsed() < Duration::from_secs(2));
}
