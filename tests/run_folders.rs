//! Run folders through the real binary: a run killed with SIGKILL opens and continues, and the
//! continued run's curves are those of the same run trained straight through.

// A test should stop at the first broken expectation, with its location.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

mod common;

use common::cli::{bin, path, run, small_sample_run, text};
use std::sync::Arc;

use ohem_studio::data::{load_dataset, LoadOptions};
use ohem_studio::eval::{self, Detection, MATCH_IOU};
use ohem_studio::run::{Recorder, RunReader};
use ohem_studio::train::config::{Strategy, TrainConfig};
use ohem_studio::train::messages::{
    EvalReport, Event, HardExample, HardExampleBatch, RunInfo, SeenExample, StepReport,
    StrategyStep, Thumbnail,
};
use ohem_studio::train::resume::{checkpoint_dir, read_state};

const STEPS: u64 = 400;

fn train_args(out: &Path) -> Vec<String> {
    small_sample_run(out, STEPS, 100)
}

/// `metrics.csv` as (step, strategy) → (trained loss, whole-batch loss).
fn losses(run_dir: &Path) -> BTreeMap<(u64, String), (f64, f64)> {
    let mut reader = csv::Reader::from_path(run_dir.join("metrics.csv")).unwrap();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            let number = |i: usize| r[i].parse::<f64>().unwrap();
            (
                (r[0].parse().unwrap(), r[1].to_string()),
                (number(5), number(6)),
            )
        })
        .collect()
}

/// The steps of the `metrics.csv` rows written so far (a half-written last line left out).
fn steps_written(run_dir: &Path) -> u64 {
    let text = std::fs::read_to_string(run_dir.join("metrics.csv")).unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| l.split(',').next()?.parse().ok())
        .max()
        .unwrap_or(0)
}

/// `name` in `run_dir`, as text.
fn read(run_dir: &Path, name: &str) -> String {
    std::fs::read_to_string(run_dir.join(name)).unwrap()
}

/// Whether `eval.csv` has a row.
fn evaluated(run_dir: &Path) -> bool {
    std::fs::read_to_string(run_dir.join("eval.csv")).is_ok_and(|t| t.lines().count() > 1)
}

/// Starts the run and kills it (SIGKILL) once a checkpoint and an evaluation exist and it has
/// trained further.
fn train_and_kill(out: &Path) -> u64 {
    let mut child = bin().args(train_args(out)).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        assert!(Instant::now() < deadline, "no checkpoint within 300 s");
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        let checkpoint = checkpoint_dir(out).and_then(|_| read_state(out).ok());
        if let Some(state) = checkpoint {
            if steps_written(out) > state.step + 2 && evaluated(out) {
                child.kill().unwrap();
                child.wait().unwrap();
                return state.step;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_killed_run_opens_and_continues_into_the_curves_of_a_straight_run() {
    let straight = tempfile::tempdir().unwrap();
    let output = run(&train_args(straight.path())
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>());
    assert!(output.status.success(), "{}", text(&output));

    let killed = tempfile::tempdir().unwrap();
    let checkpoint_step = train_and_kill(killed.path());
    assert!(checkpoint_step > 0 && checkpoint_step < STEPS);

    // What the kill left opens: steps up to the kill, an evaluation, the hard examples.
    let mut reader = RunReader::open(killed.path()).unwrap();
    let events = reader.poll().unwrap();
    assert!(
        reader.last_step() > checkpoint_step,
        "{}",
        reader.last_step()
    );
    assert!(events.iter().any(|e| matches!(e, Event::Evaluated(_))));
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::HardExamples(b) if !b.examples.is_empty())));

    let output = run(&["train", "--resume", path(killed.path())]);
    let said = text(&output);
    assert!(output.status.success(), "{said}");
    assert!(
        said.contains(&format!("from step {checkpoint_step}")),
        "{said}"
    );

    let (expected, continued) = (losses(straight.path()), losses(killed.path()));
    assert_eq!(
        expected.len(),
        STEPS as usize * 3,
        "three strategies a step"
    );
    assert_eq!(
        continued.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "every step once, none twice"
    );
    for (key, (trained, batch)) in &expected {
        let (t, b) = continued[key];
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-5 * a.abs().max(1.0);
        assert!(
            close(*trained, t) && close(*batch, b),
            "{key:?}: {trained} {batch} vs {t} {b}"
        );
    }
    // The evaluations too, the one the kill may have cut short included.
    assert_eq!(
        read(straight.path(), "eval.csv"),
        read(killed.path(), "eval.csv")
    );
    // A damaged line is named, not skipped.
    let damaged = tempfile::tempdir().unwrap();
    std::fs::copy(
        straight.path().join("config.json"),
        damaged.path().join("config.json"),
    )
    .unwrap();
    let metrics = read(straight.path(), "metrics.csv").replacen(",ohem,", ",ohem,x", 1);
    std::fs::write(damaged.path().join("metrics.csv"), metrics).unwrap();
    let error = RunReader::open(damaged.path()).unwrap().poll().unwrap_err();
    assert!(
        format!("{error:#}").contains("metrics.csv:2: 'x"),
        "{error:#}"
    );
    // Damaged thumbnails are said once, and the curves are still read.
    std::fs::copy(
        straight.path().join("metrics.csv"),
        damaged.path().join("metrics.csv"),
    )
    .unwrap();
    std::fs::copy(
        straight.path().join("hard_examples.csv"),
        damaged.path().join("hard_examples.csv"),
    )
    .unwrap();
    std::fs::write(damaged.path().join("hard_examples.thumbs"), [7u8; 4096]).unwrap();
    let events = RunReader::open(damaged.path()).unwrap().poll().unwrap();
    let steps = events
        .iter()
        .filter(|e| matches!(e, Event::Step(_)))
        .count();
    assert_eq!(steps, STEPS as usize);
    let said: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Problem(m) => Some(m),
            _ => None,
        })
        .collect();
    assert_eq!(said.len(), 1);
    assert!(said[0].contains("hard examples"), "{}", said[0]);
    // Finished: the final weights are there, and there is nothing left to continue.
    assert!(killed.path().join("model.json").is_file());
    let again = run(&["train", "--resume", path(killed.path())]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("already trained its 400 steps"),
        "{}",
        text(&again)
    );
}

#[test]
fn a_folder_without_a_checkpoint_is_refused_with_the_reason() {
    let empty = tempfile::tempdir().unwrap();
    let output = run(&["train", "--resume", path(empty.path())]);
    assert!(!output.status.success());
    assert!(text(&output).contains("no checkpoint"), "{}", text(&output));
    let both = run(&["train", "--resume", path(empty.path()), "--out", "x"]);
    assert!(!both.status.success());
}

/// The events of a made-up run of `steps` steps on `dataset`: two strategies, four picks a
/// step, an evaluation every fifth step.
fn recorded_events(dataset: &ohem_studio::data::Dataset, steps: u64) -> Vec<Event> {
    let strategies = [Strategy::Ohem, Strategy::FullBatch];
    let mut events = Vec::new();
    for step in 1..=steps {
        events.push(Event::Step(StepReport {
            step,
            elapsed_secs: step as f64 * 0.1,
            batch_size: 16,
            hard_examples: 4,
            examples_per_sec: 160.0,
            strategies: strategies
                .map(|strategy| StrategyStep {
                    strategy,
                    trained_loss: 1.0 / step as f32,
                    batch_loss: 0.5 / step as f32,
                    forward_ms: 1.0,
                    select_ms: 0.1,
                    train_ms: 2.0,
                })
                .to_vec(),
        }));
        let pick = |rank: usize| HardExample {
            thumbnail: Thumbnail {
                width: 8,
                height: 4,
                rgba: [(step % 200) as u8 + 20, 0, 0, 255].repeat(32),
            },
            seen: SeenExample {
                source_image: Some(rank),
                batch_image: 0,
                window: ohem_studio::geometry::Rect::new(0.0, 0.0, 10.0, 10.0),
                label: rank % 2,
                loss: 1.0 - rank as f32 * 0.1,
                classification_loss: 0.5,
                score: 0.3,
            },
        };
        events.push(Event::HardExamples(HardExampleBatch {
            step,
            batch_size: 16,
            examples: (0..4).map(pick).collect(),
            batch: Vec::new(),
        }));
        if step % 5 == 0 {
            for strategy in strategies {
                let detections: Vec<Detection> = (0..dataset.val.len())
                    .map(|image| {
                        let rect = dataset.val[image].boxes[0].rect;
                        Detection::new(image, 0, rect, 0.9 - step as f32 * 0.01)
                    })
                    .collect();
                let truth = eval::ground_truth(&dataset.val);
                let evaluation = eval::evaluate(&detections, &truth, 1, MATCH_IOU);
                events.push(Event::Evaluated(Arc::new(EvalReport {
                    step,
                    strategy,
                    detections,
                    evaluation,
                    val_loss: 0.25,
                })));
            }
        }
    }
    events
}

#[test]
fn a_run_read_while_it_is_written_gives_every_record_once() {
    let data = tempfile::tempdir().unwrap();
    common::app::write_fixture(data.path());
    let (dataset, _) = load_dataset(data.path(), &LoadOptions::default()).unwrap();
    let dataset = Arc::new(dataset);
    let run_dir = tempfile::tempdir().unwrap();
    let info = RunInfo {
        device: "test".into(),
        detector: "small backbone (from scratch) + RoI head, 192 px".into(),
        config: TrainConfig {
            strategies: vec![Strategy::Ohem, Strategy::FullBatch],
            ..TrainConfig::default()
        },
        resumed_at_step: None,
    };
    let mut recorder =
        Recorder::start(run_dir.path(), dataset.clone(), data.path(), &info).unwrap();
    let mut reader = RunReader::open(run_dir.path()).unwrap();
    let written = recorded_events(&dataset, 120);
    let mut read = Vec::new();
    for event in &written {
        recorder.record(event).unwrap();
        read.extend(reader.poll().unwrap());
    }
    // Half a line of a next step, as a reader may find it mid-write: left for later.
    let metrics = run_dir.path().join("metrics.csv");
    let mut half = std::fs::OpenOptions::new()
        .append(true)
        .open(&metrics)
        .unwrap();
    std::io::Write::write_all(&mut half, b"121,ohem,12.1,16").unwrap();
    read.extend(reader.poll().unwrap());

    let steps: Vec<u64> = read
        .iter()
        .filter_map(|e| match e {
            Event::Step(r) => Some(r.step),
            _ => None,
        })
        .collect();
    assert_eq!(steps, (1..=120).collect::<Vec<_>>());
    let batches: Vec<&HardExampleBatch> = read
        .iter()
        .filter_map(|e| match e {
            Event::HardExamples(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(batches.len(), 120);
    assert!(batches.iter().all(|b| b.examples.len() == 4));
    let last = batches.last().unwrap();
    assert_eq!(last.examples[0].thumbnail.width, 8);
    assert!((i32::from(last.examples[0].thumbnail.rgba[0]) - 140).abs() < 10);
    let scores: Vec<(u64, f32)> = read
        .iter()
        .filter_map(|e| match e {
            Event::Evaluated(r) => Some((r.step, r.evaluation.map())),
            _ => None,
        })
        .collect();
    let expected: Vec<(u64, f32)> = written
        .iter()
        .filter_map(|e| match e {
            Event::Evaluated(r) => Some((r.step, r.evaluation.map())),
            _ => None,
        })
        .collect();
    assert_eq!(scores, expected);
}
