//! The headless commands, run as a user runs them: the real binary on real folders.

use std::path::Path;

mod common;

use common::cli::{path, run, text};
use common::{sample_data, write_bytes, write_image, write_text};

#[test]
fn inspect_prints_layout_counts_and_every_problem() {
    let out = run(&["inspect", "--data", path(&sample_data())]);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(report.contains("YOLO"), "{report}");
    assert!(
        report.contains("160 images") && report.contains("40 images"),
        "{report}"
    );

    let broken = tempfile::tempdir().expect("temp dir");
    let root = broken.path();
    write_text(
        root,
        "data.yaml",
        "path: .\ntrain: images/train\nval: images/train\nnames: [car]\n",
    );
    write_image(root, "images/train/good.png", 64, 48);
    write_text(
        root,
        "labels/train/good.txt",
        "0 0.5 0.5 0.2 0.2\n0 0.5 oops 0.2 0.2\n",
    );
    write_bytes(root, "images/train/broken.jpg", b"not a jpeg at all");
    let out = run(&["inspect", "--data", path(root)]);
    assert!(out.status.success(), "{}", text(&out));
    let report = text(&out);
    assert!(
        report.contains("good.txt:2"),
        "the malformed line is named: {report}"
    );
    assert!(
        report.contains("broken.jpg"),
        "the corrupt image is named: {report}"
    );
}

#[test]
fn bad_arguments_and_missing_folders_fail_with_one_clear_message() {
    let out = run(&["inspect", "--data", "/nonexistent/folder"]);
    assert!(!out.status.success());
    let message = text(&out);
    assert!(message.contains("/nonexistent/folder"), "{message}");
    assert!(
        !message.contains("panicked") && !message.contains("backtrace"),
        "{message}"
    );

    let out = run(&[
        "train",
        "--data",
        path(&sample_data()),
        "--strategies",
        "ohem,bogus",
        "--out",
        "/tmp/unused",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("unknown strategy 'bogus'"),
        "{}",
        text(&out)
    );

    // Refused by the trainer itself: the command ends with its reason instead of waiting.
    let out = run(&[
        "train",
        "--data",
        path(&sample_data()),
        "--lr",
        "nan",
        "--steps",
        "3",
        "--out",
        path(&std::env::temp_dir().join("ohem-nan-lr")),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("learning rate"), "{}", text(&out));

    let out = run(&[
        "train",
        "--data",
        path(&sample_data()),
        "--hard",
        "0",
        "--out",
        "/tmp/unused",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("at least 1"), "{}", text(&out));

    let out = run(&[
        "detect",
        "--checkpoint",
        "/nonexistent/ohem.safetensors",
        "--images",
        ".",
        "--out",
        "x.json",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no such checkpoint"), "{}", text(&out));
}

#[test]
fn train_writes_a_reproducible_run_that_eval_and_detect_can_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let train = |out: &Path| {
        run(&[
            "train",
            "--data",
            path(&sample_data()),
            "--steps",
            "12",
            "--batch",
            "32",
            "--hard",
            "8",
            "--eval-every",
            "12",
            "--device",
            "cpu",
            "--seed",
            "3",
            "--select-after",
            "6",
            "--out",
            path(out),
        ])
    };
    let first = dir.path().join("first");
    let out = train(&first);
    assert!(out.status.success(), "{}", text(&out));
    for file in [
        "metrics.csv",
        "eval.csv",
        "hard_examples.csv",
        "label_suspects.csv",
        "config.json",
        "model.json",
        "ohem.safetensors",
        "full.safetensors",
        "random.safetensors",
        "loss.png",
        "map.png",
        "pr.png",
    ] {
        assert!(first.join(file).is_file(), "{file} missing");
    }
    let plot = image::open(first.join("loss.png")).expect("loss.png is a PNG");
    assert!(plot.width() >= 640 && plot.height() >= 400);
    let metrics = std::fs::read_to_string(first.join("metrics.csv")).expect("metrics");
    assert_eq!(
        metrics.lines().count(),
        1 + 12 * 3,
        "one row per step and strategy"
    );
    let evals = std::fs::read_to_string(first.join("eval.csv")).expect("evals");
    assert!(evals.lines().next().expect("header").contains("ap50_car"));
    assert_eq!(
        evals.lines().count(),
        1 + 3,
        "one evaluation per strategy at the end"
    );
    let hard = std::fs::read_to_string(first.join("hard_examples.csv")).expect("hard examples");
    // OHEM trains on the whole batch for 6 steps, then picks M = 8 per step.
    let pick_steps: Vec<u64> = hard
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().expect("step").parse().expect("a step"))
        .collect();
    assert_eq!(
        pick_steps.len(),
        6 * 8,
        "OHEM's picks are recorded per step"
    );
    assert!(
        pick_steps.iter().all(|&s| s > 6),
        "no picks during the warm-up"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(first.join("config.json")).expect("config"))
            .expect("json");
    assert_eq!(config["seed"], 3);
    assert_eq!(config["hard_examples"], 8);

    // Same seed on the CPU → same losses.
    let second = dir.path().join("second");
    assert!(train(&second).status.success());
    let losses = |p: &Path| -> Vec<String> {
        std::fs::read_to_string(p.join("metrics.csv"))
            .expect("metrics")
            .lines()
            .map(|l| l.split(',').take(7).skip(5).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(losses(&first), losses(&second));

    let checkpoint = first.join("ohem.safetensors");
    let out = run(&[
        "eval",
        "--data",
        path(&sample_data()),
        "--checkpoint",
        path(&checkpoint),
        "--device",
        "cpu",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("mAP@0.5"), "{}", text(&out));
    assert!(text(&out).contains("precision"), "{}", text(&out));

    // A folder of plain images with no annotations at all, at threshold 0.
    let images = dir.path().join("plain");
    std::fs::create_dir_all(&images).expect("folder");
    for name in ["val_0000.jpg", "val_0001.jpg"] {
        std::fs::copy(
            sample_data().join("images/val").join(name),
            images.join(name),
        )
        .expect("copy");
    }
    let json = dir.path().join("detections.json");
    let out = run(&[
        "detect",
        "--checkpoint",
        path(&checkpoint),
        "--images",
        path(&images),
        "--threshold",
        "0",
        "--device",
        "cpu",
        "--out",
        path(&json),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let detections: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("valid json");
    let rows = detections.as_array().expect("a list");
    assert!(!rows.is_empty());
    for key in ["image_id", "file_name", "category_id", "bbox", "score"] {
        assert!(rows[0].get(key).is_some(), "{key} missing");
    }
    assert_eq!(rows[0]["bbox"].as_array().expect("bbox").len(), 4);
}

#[test]
fn train_lists_a_missing_label_and_a_box_on_empty_ground_in_label_suspects_csv() {
    use common::mislabelled::{write_mislabelled, EMPTY_BOX};
    let data = tempfile::tempdir().expect("temp dir");
    write_mislabelled(data.path());
    let out = tempfile::tempdir().expect("temp dir");
    let run_dir = out.path().join("run");
    let args = [
        "train",
        "--data",
        path(data.path()),
        "--steps",
        "200",
        "--batch",
        "64",
        "--hard",
        "16",
        "--strategies",
        "ohem",
        "--select-after",
        "0",
        "--eval-every",
        "0",
        "--device",
        "cpu",
        "--out",
        path(&run_dir),
    ];
    let output = run(&args);
    assert!(output.status.success(), "{}", text(&output));
    let csv = std::fs::read_to_string(run_dir.join("label_suspects.csv")).expect("suspects");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    let [x0, y0, x1, y1] = EMPTY_BOX;
    let empty_box = format!("road.png,{x0}.0,{y0}.0,{x1}.0,{y1}.0,wrong_box,");
    assert!(rows.iter().any(|r| r.contains(&empty_box)), "{csv}");
    assert!(
        rows.iter()
            .any(|r| r.contains("missing.png") && r.contains(",missing_label,")),
        "{csv}"
    );
}

#[test]
fn compare_runs_every_seed_and_reports_mean_and_std() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(&[
        "compare",
        "--seeds",
        "2",
        "--data",
        path(&sample_data()),
        "--steps",
        "4",
        "--batch",
        "16",
        "--hard",
        "4",
        "--eval-every",
        "4",
        "--device",
        "cpu",
        "--seed",
        "5",
        "--out",
        path(dir.path()),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for seed in ["seed5", "seed6"] {
        assert!(dir.path().join(seed).join("eval.csv").is_file(), "{seed}");
    }
    let rows = std::fs::read_to_string(dir.path().join("compare.csv")).expect("compare.csv");
    assert_eq!(
        rows.lines().count(),
        1 + 2 * 3,
        "a row per seed and strategy"
    );
    assert!(rows
        .lines()
        .next()
        .expect("header")
        .contains("fp_localisation"));
    let summary = std::fs::read_to_string(dir.path().join("summary.txt")).expect("summary");
    assert!(summary.contains(" ± "), "{summary}");
    assert!(
        summary.contains("OHEM beat full batch in") && summary.contains("of 2 seeds"),
        "{summary}"
    );
    assert!(text(&out).contains("mAP@0.5"), "{}", text(&out));
}

#[test]
fn a_timed_compare_trains_each_strategy_alone_for_the_same_minutes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(&[
        "compare",
        "--seeds",
        "1",
        "--data",
        path(&sample_data()),
        "--minutes",
        "0.03",
        "--strategies",
        "ohem,full",
        "--backbone",
        "small",
        "--input-px",
        "160",
        "--batch",
        "64",
        "--hard",
        "16",
        "--eval-every",
        "1000",
        "--device",
        "cpu",
        "--seed",
        "5",
        "--out",
        path(dir.path()),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    for strategy in ["ohem", "full"] {
        let run_dir = dir.path().join("seed5").join(strategy);
        let config: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(run_dir.join("config.json")).expect("config.json"),
        )
        .expect("json");
        assert_eq!(config["strategies"], serde_json::json!([strategy]));
        let metrics = std::fs::read_to_string(run_dir.join("metrics.csv")).expect("metrics");
        let last = metrics.lines().last().expect("a step");
        let elapsed: f64 = last
            .split(',')
            .nth(2)
            .expect("elapsed")
            .parse()
            .expect("secs");
        assert!(elapsed >= 1.8, "{strategy} trained its 1.8 s: {last}");
    }
    let rows = std::fs::read_to_string(dir.path().join("compare.csv")).expect("compare.csv");
    assert_eq!(rows.lines().count(), 1 + 2, "a row per strategy: {rows}");
    assert!(rows.lines().next().expect("header").contains("steps"));
}

#[test]
fn sweep_trains_every_cell_from_the_same_start_and_draws_a_heat_map() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run(&[
        "sweep",
        "--data",
        path(&sample_data()),
        "--hard",
        "4,8",
        "--nms",
        "0.7,none",
        "--steps",
        "6",
        "--batch",
        "16",
        "--device",
        "cpu",
        "--out",
        path(dir.path()),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let rows = std::fs::read_to_string(dir.path().join("sweep.csv")).expect("sweep.csv");
    assert_eq!(rows.lines().count(), 1 + 4, "a row per cell: {rows}");
    assert!(rows.lines().next().expect("header").contains("map50"));
    let heat = image::open(dir.path().join("sweep.png")).expect("sweep.png is a PNG");
    assert!(heat.width() >= 640);
    for cell in ["M4-nms0.7-seed7", "M8-nmsnone-seed7"] {
        assert!(dir.path().join(cell).join("eval.csv").is_file(), "{cell}");
    }
    let bad = run(&[
        "sweep",
        "--data",
        path(&sample_data()),
        "--nms",
        "0.7,maybe",
        "--out",
        path(dir.path()),
    ]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("maybe"), "{}", text(&bad));
}
