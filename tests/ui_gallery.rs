//! The hard-example gallery of the real app: the shelves and their filters, the what-if view, the
//! source image's heat map and the label suspects — with the real trainer thread where training
//! matters, with synthetic events where exact numbers do.

// A test should stop at the first broken expectation, with its location.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use egui::accesskit::Role;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
mod common;

use common::app::{
    app_harness, count_labels_containing, fixture, has_label, shown_step, small_batches, text_of,
    wait_for, wait_for_within,
};
use common::mislabelled::{write_mislabelled, EMPTY_BOX, UNLABELLED_CAR};
use ohem_studio::data::{self, Dataset, GtBox, ImageRecord, Layout};
use ohem_studio::geometry::Rect;
use ohem_studio::train::config::TrainConfig;
use ohem_studio::train::messages::{Event, HardExampleBatch, RunInfo, SeenExample, Thumbnail};
use ohem_studio::train::suspects::{Suspect, SuspectKind};
use ohem_studio::ui::OhemApp;

/// Real training on a CPU shared with other work: the suspects need about 150 steps.
const TRAINING_DEADLINE: Duration = Duration::from_secs(240);

/// Four 120×90 images with a car and a truck each.
fn two_class_dataset() -> Arc<Dataset> {
    let record = |i: usize| ImageRecord {
        path: format!("street_{i}.png").into(),
        width: 120,
        height: 90,
        boxes: vec![
            GtBox {
                class_id: 0,
                rect: Rect::new(10.0, 10.0, 50.0, 34.0),
                difficult: false,
            },
            GtBox {
                class_id: 1,
                rect: Rect::new(60.0, 50.0, 100.0, 74.0),
                difficult: false,
            },
        ],
        pixels: Arc::new(image::RgbImage::from_pixel(
            120,
            90,
            image::Rgb([90, 90, 90]),
        )),
        scale: 1.0,
    };
    Arc::new(Dataset {
        root: "streets".into(),
        layout: Layout::Yolo,
        class_names: vec!["car".into(), "truck".into()],
        train: (0..4).map(record).collect(),
        val: Vec::new(),
        positive_crops: Vec::new(),
    })
}

fn seen(image: usize, x: f32, label: usize, loss: f32, cls: f32, score: f32) -> SeenExample {
    SeenExample {
        source_image: Some(image),
        batch_image: 0,
        window: Rect::new(x, 10.0, x + 40.0, 34.0),
        label,
        loss,
        classification_loss: cls,
        score,
    }
}

/// Sixteen examples, ten negatives; OHEM picked six, by loss:
/// 1 negative scored 0.9, 2 car scored 0.3, 3 negative 0.2, 4 car 0.95, 5 truck 0.6, 6 car 0.99.
fn batch() -> HardExampleBatch {
    let picks = vec![
        seen(0, 70.0, 0, 2.0, 2.0, 0.9),
        seen(0, 10.0, 1, 1.8, 1.2, 0.3),
        seen(1, 70.0, 0, 1.5, 1.5, 0.2),
        seen(1, 10.0, 1, 1.0, 0.05, 0.95),
        seen(2, 60.0, 2, 0.9, 0.5, 0.6),
        seen(3, 10.0, 1, 0.8, 0.01, 0.99),
    ];
    let mut all = picks.clone();
    all.extend((0..8).map(|i| seen(i % 4, 0.0, 0, 0.01, 0.01, 0.01)));
    all.push(seen(2, 12.0, 1, 0.02, 0.01, 0.99));
    all.push(seen(3, 60.0, 2, 0.02, 0.01, 0.99));
    HardExampleBatch {
        step: 7,
        batch_size: all.len(),
        examples: picks
            .iter()
            .map(|e| {
                e.picked(Thumbnail {
                    width: 40,
                    height: 24,
                    rgba: vec![128; 40 * 24 * 4],
                })
            })
            .collect(),
        batch: all,
    }
}

/// The app with the two-class dataset loaded, a run started and one batch of hard examples.
fn app_with_a_batch() -> Harness<'static, OhemApp> {
    let mut harness = app_harness(None, false, None);
    let dataset = two_class_dataset();
    let app = harness.state_mut();
    app.apply_event(Event::DatasetLoaded {
        summary: data::summary(&dataset),
        dataset,
        diagnostics: Vec::new(),
    });
    app.apply_event(Event::RunStarted(RunInfo {
        device: "test".into(),
        detector: "small backbone (from scratch) + RoI head, 192 px".into(),
        config: TrainConfig::default(),
        resumed_at_step: None,
    }));
    app.apply_event(Event::HardExamples(batch()));
    harness.run_steps(3);
    harness
}

/// The ranks of the tiles on screen, in the order they are drawn.
fn tile_ranks(harness: &Harness<'_, OhemApp>) -> Vec<usize> {
    harness
        .query_all_by_label_contains("hard example ")
        .filter_map(|node| {
            let text = text_of(&node);
            let rest = text.strip_prefix("hard example ")?;
            rest.split([':', ',']).next()?.parse().ok()
        })
        .collect()
}

fn click(harness: &mut Harness<'_, OhemApp>, label: &str) {
    harness.get_by_label(label).click();
    harness.run_steps(3);
}

#[test]
fn the_shelves_put_hard_negatives_first_and_the_filters_change_what_is_shown() {
    let mut harness = app_with_a_batch();
    assert!(has_label(
        &harness,
        "Hard negatives: 2 of M = 6 picks · of 10 negatives in the batch"
    ));
    assert!(has_label(
        &harness,
        "Hard positives: 4 of M = 6 picks · of 6 positives in the batch"
    ));
    assert_eq!(tile_ranks(&harness), vec![1, 3, 2, 4, 5, 6]);
    // Each tile says its loss split and what it was trained toward.
    assert_eq!(
        count_labels_containing(
            &harness,
            "object, loss 1.800 (classification 1.200 + box 0.600), score 0.30, trained as car"
        ),
        1
    );
    assert_eq!(count_labels_containing(&harness, "trained as truck"), 1);
    assert_eq!(
        count_labels_containing(&harness, "false positive, loss 2.000"),
        1
    );

    click(&mut harness, "score");
    assert_eq!(
        tile_ranks(&harness),
        vec![1, 3, 2, 5, 4, 6],
        "negatives by highest score, positives by lowest"
    );
    click(&mut harness, "would-be FPs");
    assert!(has_label(
        &harness,
        "Would-be false positives at ≥ 0.50: 1 of M = 6 picks · of 10 negatives in the batch"
    ));
    assert_eq!(tile_ranks(&harness), vec![1]);
    click(&mut harness, "positives");
    assert!(count_labels_containing(&harness, "Hard negatives") == 0);
    assert_eq!(tile_ranks(&harness), vec![2, 5, 4, 6]);

    harness.get_by_role(Role::ComboBox).click();
    harness.run_steps(2);
    click(&mut harness, "truck");
    assert_eq!(tile_ranks(&harness), vec![5]);
    click(&mut harness, "negatives");
    assert_eq!(tile_ranks(&harness), vec![1, 3]);
    click(&mut harness, "both");
    click(&mut harness, "loss");
    // The class filter holds for positives only.
    assert_eq!(tile_ranks(&harness), vec![1, 3, 5]);
}

#[test]
fn paused_a_new_m_shows_what_the_batch_would_pick_and_a_tile_opens_its_heat_map() {
    let data = fixture();
    let mut harness = app_harness(Some(data.path().to_path_buf()), false, None);
    wait_for(&mut harness, "the dataset to load", |h| {
        has_label(h, "ready: press Start")
    });
    small_batches(&mut harness, 32, 16);
    harness.get_by_label("Start").click();
    wait_for(&mut harness, "a grid of 16 hard examples", |h| {
        count_labels_containing(h, "hard example ") == 16
    });
    harness.get_by_label("Pause").click();
    wait_for(&mut harness, "the pause", |h| has_label(h, "paused"));
    harness.run_steps(3);
    let step = shown_step(&harness);
    let batch_step = harness.state().shown_hard_examples().unwrap().step;
    assert_eq!(count_labels_containing(&harness, ", no longer picked:"), 0);

    let set_m = |h: &mut Harness<'_, OhemApp>, m: f64| {
        h.get_by_role_and_label(Role::Slider, "M")
            .set_value_accesskit(m);
        h.run_steps(3);
    };
    set_m(&mut harness, 4.0);
    assert_eq!(count_labels_containing(&harness, ", no longer picked:"), 12);
    assert_eq!(count_labels_containing(&harness, "would be picked"), 0);
    assert!(count_labels_containing(&harness, "What-if (M = 4") > 0);
    set_m(&mut harness, 32.0);
    assert_eq!(count_labels_containing(&harness, ", no longer picked:"), 0);
    let new = count_labels_containing(&harness, "would be picked");
    assert!(new > 0, "a larger M picks more of the recorded batch");
    set_m(&mut harness, 16.0);
    assert_eq!(
        count_labels_containing(&harness, "would be picked")
            + count_labels_containing(&harness, ", no longer picked:"),
        0,
        "the run's own M picks what the batch picked"
    );
    assert_eq!(shown_step(&harness), step, "no step was trained");
    assert_eq!(
        harness.state().shown_hard_examples().unwrap().step,
        batch_step
    );

    // A click opens the source image; the trainer answers with the object-score map.
    harness
        .query_all_by_label_contains("hard example ")
        .next()
        .unwrap()
        .click();
    wait_for(&mut harness, "the heat map", |h| {
        h.state().shown_score_map().is_some()
    });
    let report = harness.state().shown_score_map().unwrap();
    let grid = report.map.as_ref().unwrap();
    assert!(grid.cols > 0 && grid.rows > 0);
    assert!(grid.scores.iter().all(|s| (0.0..=1.0).contains(s)));
    assert!(has_label(&harness, "Source image"));
    assert_eq!(shown_step(&harness), step, "still no step");
    eframe::App::on_exit(harness.state_mut(), None);
}

#[test]
fn an_unlabelled_car_and_a_box_on_empty_ground_become_label_suspects() {
    let data = tempfile::tempdir().unwrap();
    write_mislabelled(data.path());
    let export = tempfile::tempdir().unwrap();
    let mut harness = app_harness(
        Some(data.path().to_path_buf()),
        false,
        Some(export.path().to_path_buf()),
    );
    wait_for(&mut harness, "the dataset to load", |h| {
        has_label(h, "ready: press Start")
    });
    // OHEM alone, in batches large enough to reach the mistakes often.
    click(&mut harness, "full batch");
    click(&mut harness, "random-M");
    small_batches(&mut harness, 64, 16);
    harness.get_by_label("Start").click();
    let [x0, y0, x1, y1] = EMPTY_BOX.map(|v| v as f32);
    let empty = Rect::new(x0, y0, x1, y1);
    let [x0, y0, x1, y1] = UNLABELLED_CAR.map(|v| v as f32);
    let car = Rect::new(x0, y0, x1, y1);
    let both_found = |suspects: &[Suspect]| {
        suspects
            .iter()
            .any(|s| s.kind == SuspectKind::WrongBox && s.offender.rect.iou(&empty) > 0.99)
            && suspects
                .iter()
                .any(|s| s.kind == SuspectKind::MissingLabel && s.offender.rect.iou(&car) > 0.3)
    };
    wait_for_within(&mut harness, "both suspects", TRAINING_DEADLINE, |h| {
        both_found(h.state().label_suspects())
    });
    harness.get_by_label("Pause").click();
    wait_for(&mut harness, "the pause", |h| has_label(h, "paused"));
    // Pausing takes a step or two, which may move a score across a bar: the two stay listed.
    assert!(both_found(harness.state().label_suspects()));

    harness.get_by_label_contains("Label suspects (").click();
    harness.run_steps(3);
    assert!(count_labels_containing(&harness, "wrong or sloppy box? road.png") > 0);
    assert!(count_labels_containing(&harness, "missing label? missing.png") > 0);
    harness
        .get_by_label_contains("wrong or sloppy box? road.png")
        .click();
    wait_for(&mut harness, "the suspect's heat map", |h| {
        h.state().shown_score_map().is_some()
    });

    click(&mut harness, "Export suspects CSV…");
    let csv = export.path().join("label_suspects.csv");
    wait_for(&mut harness, "the CSV", |_| csv.is_file());
    let text = std::fs::read_to_string(&csv).unwrap();
    assert!(text.starts_with("image,box_x0,box_y0,box_x1,box_y1,kind,times_picked"));
    assert!(text.contains("road.png,8.0,62.0,48.0,86.0,wrong_box,"));
    assert!(text.contains(",missing_label,"));
    eframe::App::on_exit(harness.state_mut(), None);
}

#[test]
fn the_label_suspects_say_how_many_batches_they_did_not_see() {
    let mut harness = app_with_a_batch();
    harness.get_by_label_contains("Label suspects (").click();
    harness.run_steps(3);
    assert_eq!(count_labels_containing(&harness, "too busy to take"), 0);
    // The trainer dropped three previews while the app was behind, then sent the next batch.
    harness.state_mut().apply_event(Event::PreviewsDropped(3));
    let mut next = batch();
    next.step += 4;
    harness.state_mut().apply_event(Event::HardExamples(next));
    harness.run_steps(3);
    assert!(
        count_labels_containing(
            &harness,
            "judged on the picks of 2 batches; 3 more were trained while the app was too busy to take their picks"
        ) > 0
    );
}
