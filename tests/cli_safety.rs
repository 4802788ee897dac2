//! Nothing lost, nothing hung: the headless commands against a hostile user — runs into folders
//! that already hold a run, weights that do not belong to their model.json, signals, a learning
//! rate that diverges, numbers out of range. The real binary on real folders.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

mod common;

use common::cli::{assert_sentence, bin, path, run, signal, start_until, text, wait_with_deadline};
use common::sample_data;

/// A small run of `strategies` on the sample data into `out`: K 16, M 4, evaluated only at the end.
fn train_args<'a>(out: &'a Path, strategies: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        path_of(sample_data()),
        "--steps",
        steps,
        "--batch",
        "16",
        "--hard",
        "4",
        "--eval-every",
        "0",
        "--device",
        "cpu",
        "--strategies",
        strategies,
        "--out",
        path(out),
    ]
}

/// [`train_args`] for 4 steps, plus `extra` arguments, run to the end.
fn train(out: &Path, strategies: &str, extra: &[&str]) -> Output {
    let mut args = train_args(out, strategies, "4");
    args.extend_from_slice(extra);
    run(&args)
}

fn path_of(p: PathBuf) -> &'static str {
    Box::leak(
        p.into_os_string()
            .into_string()
            .expect("utf-8")
            .into_boxed_str(),
    )
}

/// A YOLO folder whose images hold no object: it opens, but no run can start on it.
fn dataset_without_objects(root: &Path) {
    std::fs::create_dir_all(root.join("images/train")).expect("folders");
    std::fs::create_dir_all(root.join("labels/train")).expect("folders");
    std::fs::write(
        root.join("data.yaml"),
        "path: .\ntrain: images/train\nval: images/train\nnames: [car]\n",
    )
    .expect("yaml");
    for i in 0..3 {
        image::RgbImage::from_pixel(64, 48, image::Rgb([90, 90, 90]))
            .save(root.join(format!("images/train/{i}.png")))
            .expect("png");
    }
}

#[test]
fn a_run_never_overwrites_another_run_by_accident() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let first = train(&out, "ohem,full", &[]);
    assert!(first.status.success(), "{}", text(&first));
    let metrics = std::fs::read(out.join("metrics.csv")).expect("metrics");

    // Into the same folder again: refused before anything is written.
    let again = train(&out, "ohem", &[]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("already holds files"),
        "{}",
        text(&again)
    );
    assert!(text(&again).contains("--overwrite"), "{}", text(&again));
    assert_eq!(
        std::fs::read(out.join("metrics.csv")).expect("metrics"),
        metrics
    );

    // Allowed to overwrite, but the run cannot start: the old run is left as it was.
    let empty = dir.path().join("empty");
    dataset_without_objects(&empty);
    let failed = run(&[
        "train",
        "--data",
        path(&empty),
        "--steps",
        "4",
        "--out",
        path(&out),
        "--overwrite",
    ]);
    assert!(!failed.status.success());
    assert_sentence(&failed);
    assert_eq!(
        std::fs::read(out.join("metrics.csv")).expect("metrics"),
        metrics
    );
    assert!(out.join("full.safetensors").is_file());

    // Overwritten for real, by a run with fewer strategies, over leftovers of a broken save:
    // no weights of the old run stay beside the new model.json, and no leftover stays at all.
    std::fs::write(out.join(".ohem.partial.safetensors"), b"half a file").expect("leftover");
    std::fs::create_dir(out.join("checkpoint.old")).expect("old checkpoint");
    assert!(out.join("checkpoint/full.safetensors").is_file());
    let replaced = train(&out, "ohem", &["--overwrite"]);
    assert!(replaced.status.success(), "{}", text(&replaced));
    assert!(out.join("ohem.safetensors").is_file());
    assert!(
        !out.join("full.safetensors").exists(),
        "the old run's weights are gone"
    );
    assert!(!out.join(".ohem.partial.safetensors").exists());
    // Nor a checkpoint of the old run to continue by mistake.
    assert!(!out.join("checkpoint.old").exists());
    assert!(out.join("checkpoint/ohem.safetensors").is_file());
    assert!(!out.join("checkpoint/full.safetensors").exists());
}

#[test]
fn weights_that_do_not_belong_to_their_model_json_are_refused_in_a_sentence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    assert!(train(&a, "ohem,full", &[]).status.success());
    assert!(train(&b, "ohem", &["--seed", "9"]).status.success());
    let eval = |checkpoint: &Path| {
        run(&[
            "eval",
            "--data",
            path_of(sample_data()),
            "--checkpoint",
            path(checkpoint),
            "--device",
            "cpu",
        ])
    };
    assert!(eval(&b.join("ohem.safetensors")).status.success());

    // A weight file left from another run.
    std::fs::copy(a.join("full.safetensors"), b.join("full.safetensors")).expect("copy");
    let stale = eval(&b.join("full.safetensors"));
    assert!(!stale.status.success());
    assert_sentence(&stale);
    assert!(
        text(&stale).contains("not among the weights"),
        "{}",
        text(&stale)
    );

    // Another run's file under the listed name (a save interrupted between the two files).
    std::fs::copy(a.join("ohem.safetensors"), b.join("ohem.safetensors")).expect("copy");
    let swapped = eval(&b.join("ohem.safetensors"));
    assert!(!swapped.status.success());
    assert_sentence(&swapped);
    assert!(text(&swapped).contains("another run"), "{}", text(&swapped));

    // A hand-edited model.json: an input of absurd size, then a second class the weights lack.
    let model_path = a.join("model.json");
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model_path).expect("model.json"))
            .expect("json");
    let edits: [(&str, serde_json::Value, &str); 2] = [
        ("input_px", 800_000.into(), "describes no detector"),
        (
            "class_names",
            serde_json::json!(["car", "bus"]),
            "does not fit",
        ),
    ];
    for (field, value, expected) in edits {
        let mut edited = original.clone();
        edited[field] = value;
        edited.as_object_mut().expect("object").remove("weights");
        std::fs::write(&model_path, edited.to_string()).expect("write");
        let out = eval(&a.join("ohem.safetensors"));
        assert!(!out.status.success());
        assert_sentence(&out);
        assert!(text(&out).contains(expected), "{}", text(&out));
    }
    std::fs::write(&model_path, "{ not json").expect("write");
    let out = eval(&a.join("ohem.safetensors"));
    assert!(!out.status.success());
    assert_sentence(&out);
    assert!(text(&out).contains("is not a model.json"), "{}", text(&out));
}

#[test]
fn detect_never_overwrites_a_file_unless_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run_dir = dir.path().join("run");
    assert!(train(&run_dir, "ohem", &[]).status.success());
    let model_json = std::fs::read(run_dir.join("model.json")).expect("model.json");
    let images = sample_data().join("images/val");
    let out = run(&[
        "detect",
        "--checkpoint",
        path(&run_dir.join("ohem.safetensors")),
        "--images",
        path(&images),
        "--device",
        "cpu",
        "--out",
        path(&run_dir.join("model.json")),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("already exists"), "{}", text(&out));
    assert_eq!(
        std::fs::read(run_dir.join("model.json")).expect("model.json"),
        model_json
    );
}

#[test]
fn numbers_out_of_range_are_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let refused = |args: &[&str], expected: &str| {
        let mut all = vec![
            "train",
            "--data",
            path_of(sample_data()),
            "--out",
            path(&out),
        ];
        all.extend_from_slice(args);
        let output = run(&all);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert_sentence(&output);
        assert!(
            text(&output).contains(expected),
            "{args:?}: {}",
            text(&output)
        );
        assert!(!out.exists(), "{args:?} wrote the run folder");
    };
    refused(&["--hard", "64", "--batch", "8"], "cannot exceed K");
    refused(&["--lr", "1e9"], "learning rate");
    for threshold in ["nan", "-1", "2"] {
        let flag = format!("--threshold={threshold}");
        let output = run(&[
            "eval",
            "--data",
            path_of(sample_data()),
            "--checkpoint",
            "x.safetensors",
            &flag,
        ]);
        assert!(!output.status.success());
        assert!(
            text(&output).contains("not a score between 0 and 1"),
            "{}",
            text(&output)
        );
    }
    // More threads than the machine has are capped, not spawned.
    let capped = train(&out, "ohem", &["--threads", "100000"]);
    assert!(capped.status.success(), "{}", text(&capped));
    assert!(text(&capped).contains("capped"), "{}", text(&capped));
}

#[test]
fn a_diverging_run_stops_with_an_error_and_keeps_its_last_good_weights() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let mut args = train_args(&out, "full", "300");
    args.extend_from_slice(&["--warmup", "0", "--no-lr-decay", "--lr", "10"]);
    let output = run(&args);
    assert!(!output.status.success(), "{}", text(&output));
    assert_sentence(&output);
    let message = text(&output);
    assert!(message.contains("diverged"), "{message}");
    assert!(
        message.contains("last good weights were saved"),
        "{message}"
    );
    let rows = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics");
    assert!(rows.lines().count() < 1 + 300, "it stopped early");
    // The saved weights are the good ones: they evaluate to finite numbers.
    let eval = run(&[
        "eval",
        "--data",
        path_of(sample_data()),
        "--checkpoint",
        path(&out.join("full.safetensors")),
        "--device",
        "cpu",
    ]);
    assert!(eval.status.success(), "{}", text(&eval));
    assert!(!text(&eval).contains("NaN"), "{}", text(&eval));
}

#[test]
fn sigterm_and_sighup_stop_training_at_the_next_step_and_save() {
    for name in ["TERM", "HUP"] {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("run");
        let args = train_args(&out, "ohem", "100000");
        let mut child = start_until(&args, "training ohem");
        // Let a few steps land in metrics.csv first.
        std::thread::sleep(Duration::from_millis(500));
        signal(&child, name);
        let status = wait_with_deadline(&mut child, 30);
        assert!(status.success(), "SIG{name}: {status}");
        assert!(
            out.join("ohem.safetensors").is_file(),
            "SIG{name}: weights saved"
        );
        assert!(
            out.join("model.json").is_file(),
            "SIG{name}: model.json saved"
        );
    }
}

#[test]
fn ctrl_c_while_the_dataset_loads_ends_the_command_without_writing() {
    // Enough large photos that loading takes seconds: a pos/neg set with 600 negatives.
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("big");
    std::fs::create_dir_all(root.join("pos")).expect("folder");
    std::fs::create_dir_all(root.join("neg")).expect("folder");
    image::RgbImage::from_pixel(40, 40, image::Rgb([200, 30, 30]))
        .save(root.join("pos/0.png"))
        .expect("png");
    let photo = root.join("neg/0.jpg");
    image::RgbImage::from_fn(1600, 1200, |x, y| {
        image::Rgb([(x % 251) as u8, (y % 241) as u8, 7])
    })
    .save(&photo)
    .expect("jpeg");
    for i in 1..600 {
        std::fs::copy(&photo, root.join(format!("neg/{i}.jpg"))).expect("copy");
    }
    let out = dir.path().join("run");
    let args = [
        "train",
        "--data",
        path(&root),
        "--steps",
        "10",
        "--out",
        path(&out),
    ];
    let mut child = start_until(&args, "loading");
    let signalled = Instant::now();
    signal(&child, "INT");
    let status = wait_with_deadline(&mut child, 20);
    assert!(status.success(), "{status}");
    assert!(signalled.elapsed() < Duration::from_secs(20));
    assert!(!out.exists(), "nothing was written");
}

#[test]
fn missing_imagenet_weights_fall_back_to_the_small_backbone_said_once_or_refuse_when_asked_for() {
    let dir = tempfile::tempdir().expect("temp dir");
    let empty = dir.path().join("no-weights");
    std::fs::create_dir(&empty).expect("folder");
    let run_dir = dir.path().join("run");
    let out = bin()
        .args(train_args(&run_dir, "ohem,full", "2"))
        .env("OHEM_STUDIO_WEIGHTS", &empty)
        .output()
        .expect("the binary runs");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        text(&out).matches("are not at").count(),
        1,
        "the fallback is said once: {}",
        text(&out)
    );
    assert!(text(&out).contains("make weights"), "{}", text(&out));
    let model: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run_dir.join("model.json")).expect("model.json"),
    )
    .expect("json");
    assert_eq!(model["backbone"], "small");

    // Asked for by name, the pretrained backbone is not replaced behind the user's back.
    let asked = dir.path().join("asked");
    let mut args = train_args(&asked, "ohem", "2");
    args.extend_from_slice(&["--backbone", "efficientnet-lite0"]);
    let out = bin()
        .args(args)
        .env("OHEM_STUDIO_WEIGHTS", &empty)
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    assert_sentence(&out);
    assert!(text(&out).contains("make weights"), "{}", text(&out));
}
