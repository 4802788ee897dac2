//! The headless commands against a hostile user, part two: two processes writing one run
//! folder, a disk that fills up, kills at the worst moments, class names that break CSV lines,
//! pipes where files should be, and the messages of numbers that make no sense. The real binary
//! on real folders.

use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

mod common;

use common::cli::{
    assert_sentence, bin, path, run, signal, small_sample_run, start_until, text,
    wait_with_deadline,
};
use common::{write_image, write_text};
use ohem_studio::train::resume::{checkpoint_dir, read_state};

fn args(list: &[String]) -> Vec<&str> {
    list.iter().map(String::as_str).collect()
}

/// Sets the value after `flag` in the argument list `list`.
fn set_arg(list: &mut [String], flag: &str, value: &str) {
    let at = list.iter().position(|a| a == flag).expect(flag) + 1;
    list[at] = value.to_string();
}

/// A long run on the sample data (the small backbone) that evaluates every `eval_every` steps.
fn long_run(out: &Path, eval_every: u64) -> Vec<String> {
    small_sample_run(out, 100_000, eval_every)
}

/// Waits until `out` holds a checkpoint, failing after `secs`; returns its step.
fn wait_for_checkpoint(child: &mut Child, out: &Path, secs: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(step) = checkpoint_dir(out)
            .and_then(|_| read_state(out).ok())
            .map(|s| s.step)
        {
            return step;
        }
        if Instant::now() > deadline || child.try_wait().expect("wait").is_some() {
            let _ = child.kill();
            panic!("no checkpoint in {} within {secs} s", out.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ends `child` with SIGTERM (it saves) and checks that it succeeded.
fn stop(mut child: Child) {
    signal(&child, "TERM");
    let status = wait_with_deadline(&mut child, 60);
    assert!(status.success(), "{status}");
}

#[test]
fn a_second_train_into_the_same_folder_is_refused_while_the_first_runs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let first_args = long_run(&out, 1000);
    let first = start_until(&args(&first_args), "training");
    let second = run(&args(&long_run(&out, 1000)));
    assert!(!second.status.success(), "{}", text(&second));
    assert_sentence(&second);
    let said = text(&second);
    assert!(
        said.contains("being written by another ohem-studio"),
        "{said}"
    );
    assert!(said.contains(&format!("pid {}", first.id())), "{said}");
    stop(first);
    // One run in the folder: every step once per strategy, in order.
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).expect("metrics");
    let mut rows_per_step = std::collections::BTreeMap::<u64, usize>::new();
    let mut last = 0;
    for line in metrics.lines().skip(1) {
        let step: u64 = line
            .split(',')
            .next()
            .expect("step")
            .parse()
            .expect("a step");
        assert!(step >= last, "{metrics}");
        last = step;
        *rows_per_step.entry(step).or_default() += 1;
    }
    let strategies = rows_per_step.values().next().copied().expect("a step");
    assert!(
        rows_per_step.values().all(|&n| n == strategies),
        "{metrics}"
    );
    assert!(
        !out.join(".run.lock").exists(),
        "the lock goes with its run"
    );
}

#[test]
fn resume_is_refused_while_another_process_trains_the_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let mut first = start_until(&args(&long_run(&out, 5)), "training");
    wait_for_checkpoint(&mut first, &out, 120);
    let resumed = run(&["train", "--resume", path(&out)]);
    assert!(!resumed.status.success(), "{}", text(&resumed));
    assert!(
        text(&resumed).contains("being written by another ohem-studio"),
        "{}",
        text(&resumed)
    );
    stop(first);
    // Once its owner is gone, the run continues.
    let mut again = start_until(&["train", "--resume", path(&out)], "continuing");
    std::thread::sleep(Duration::from_millis(500));
    assert!(again.try_wait().expect("wait").is_none(), "it trains");
    stop(again);
}

/// `train` with every file it writes limited to `max_bytes`: past that, a write fails as on a
/// full disk (SIGXFSZ ignored, so the call fails with an error instead of killing the process).
#[cfg(unix)]
fn run_with_file_limit(arguments: &[&str], max_bytes: u64) -> Output {
    use std::os::unix::process::CommandExt;
    let mut command = bin();
    command.args(arguments);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: max_bytes,
                rlim_max: max_bytes,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.output().expect("the binary runs")
}

#[cfg(unix)]
#[test]
fn a_full_disk_stops_the_run_names_the_file_and_keeps_the_run_it_replaces() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let first = run(&args(&small_sample_run(&out, 4, 2)));
    assert!(first.status.success(), "{}", text(&first));
    let old_model = std::fs::read(out.join("model.json")).expect("model.json");

    let mut replacing = small_sample_run(&out, 400, 1000);
    replacing.push("--overwrite".into());
    let full = run_with_file_limit(&args(&replacing), 96 << 10);
    let said = text(&full);
    assert!(!full.status.success(), "{said}");
    assert_sentence(&full);
    assert!(said.contains("cannot write"), "{said}");
    assert!(said.contains(path(&out)), "the file is named: {said}");
    assert!(said.contains("kept in"), "{said}");
    // The run it was to replace is still there, whole.
    let kept = out.join(".previous/model.json");
    assert_eq!(std::fs::read(&kept).expect("kept model.json"), old_model);
    assert!(out.join(".previous/ohem.safetensors").is_file());
}

#[test]
fn a_run_killed_between_its_last_checkpoint_and_its_final_save_is_finished_by_resume() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let straight = run(&args(&small_sample_run(&out, 6, 3)));
    assert!(straight.status.success(), "{}", text(&straight));
    let eval = std::fs::read_to_string(out.join("eval.csv")).expect("eval.csv");
    // What a kill right after the last checkpoint leaves: no final weights, no final
    // evaluation (the checkpoint at step 6 was written first).
    for entry in std::fs::read_dir(&out).expect("listing").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "model.json" || name.ends_with(".safetensors") {
            std::fs::remove_file(entry.path()).expect("remove");
        }
    }
    let cut: String = eval
        .lines()
        .filter(|l| !l.starts_with("6,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(out.join("eval.csv"), cut).expect("cut eval.csv");
    assert_eq!(read_state(&out).expect("checkpoint").step, 6);

    let finished = run(&["train", "--resume", path(&out)]);
    let said = text(&finished);
    assert!(finished.status.success(), "{said}");
    assert!(said.contains("finishing"), "{said}");
    assert!(out.join("model.json").is_file());
    assert_eq!(
        std::fs::read_to_string(out.join("eval.csv")).expect("eval.csv"),
        eval,
        "the final evaluation again, once"
    );
    // Now there is nothing left to do.
    let again = run(&["train", "--resume", path(&out)]);
    assert!(!again.status.success());
    assert!(
        text(&again).contains("nothing to continue"),
        "{}",
        text(&again)
    );
}

#[test]
fn a_run_killed_before_its_first_evaluation_can_be_resumed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let mut child = start_until(&args(&long_run(&out, 100_000)), "training");
    let step = wait_for_checkpoint(&mut child, &out, 60);
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(step > 0);
    let resumed = start_until(&["train", "--resume", path(&out)], "continuing");
    stop(resumed);
}

/// A YOLO dataset of small photos with one box each, whose one class is `class_name`.
fn yolo_dataset(root: &Path, class_name: &str) -> PathBuf {
    write_text(
        root,
        "data.yaml",
        &format!(
            "path: .\ntrain: images/train\nval: images/val\nnames: [{}]\n",
            serde_json::to_string(class_name).expect("quoted")
        ),
    );
    for (split, count) in [("train", 6), ("val", 2)] {
        for i in 0..count {
            write_image(root, &format!("images/{split}/{i}.png"), 96, 96);
            write_text(
                root,
                &format!("labels/{split}/{i}.txt"),
                "0 0.5 0.5 0.4 0.4\n",
            );
        }
    }
    root.to_path_buf()
}

#[test]
fn a_class_name_with_a_line_break_survives_a_resume_of_eval_csv() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = yolo_dataset(&dir.path().join("data"), "red\nfox");
    let out = dir.path().join("run");
    let mut train = small_sample_run(&out, 60, 3);
    set_arg(&mut train, "--data", path(&data));
    let child = start_until(&args(&train), "mAP@0.5");
    stop(child);
    let resumed = run(&["train", "--resume", path(&out)]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    let mut reader = csv::Reader::from_path(out.join("eval.csv")).expect("eval.csv");
    let header = reader.headers().expect("header").clone();
    assert!(header.iter().any(|h| h == "ap50_red\nfox"), "{header:?}");
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a record")).collect();
    assert!(rows.len() >= 2, "{rows:?}");
    for row in &rows {
        assert_eq!(row.len(), header.len(), "{row:?}");
        row[0].parse::<u64>().expect("a step");
    }
    assert!(
        rows.iter().any(|r| &r[0] == "60"),
        "the resumed run's last evaluation"
    );
}

#[test]
fn eval_every_0_still_evaluates_at_the_end() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let output = run(&args(&small_sample_run(&out, 3, 0)));
    assert!(output.status.success(), "{}", text(&output));
    let eval = std::fs::read_to_string(out.join("eval.csv")).expect("eval.csv");
    let steps: Vec<&str> = eval
        .lines()
        .skip(1)
        .map(|l| &l[..l.find(',').expect("csv")])
        .collect();
    assert!(
        !steps.is_empty() && steps.iter().all(|s| *s == "3"),
        "{eval}"
    );
}

#[test]
fn numbers_that_cannot_be_meant_get_the_right_sentence() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("run");
    let mut huge = small_sample_run(&out, 3, 0);
    set_arg(&mut huge, "--batch", "1000000");
    let refused = run(&args(&huge));
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("at most 65536"),
        "{}",
        text(&refused)
    );

    let mut none = small_sample_run(&out, 3, 0);
    set_arg(&mut none, "--steps", "0");
    let refused = run(&args(&none));
    assert!(!refused.status.success());
    let said = text(&refused);
    assert!(said.contains("step budget must be at least 1"), "{said}");
    assert!(!said.contains("select-after"), "{said}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn an_out_folder_that_cannot_be_made_is_refused_before_the_dataset_loads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").expect("file");
    let output = run(&args(&small_sample_run(&file.join("run"), 3, 0)));
    assert!(!output.status.success());
    let said = text(&output);
    assert!(said.contains("cannot create"), "{said}");
    assert!(!said.contains("loading"), "refused first: {said}");
}

#[test]
fn an_error_is_said_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-such-dataset");
    let out = dir.path().join("run");
    let mut train = small_sample_run(&out, 3, 0);
    set_arg(&mut train, "--data", path(&missing));
    let output = run(&args(&train));
    assert!(!output.status.success());
    let said = text(&output);
    assert_eq!(said.matches("error:").count(), 1, "{said}");
    assert!(said.contains("no-such-dataset"), "{said}");
}

#[cfg(unix)]
#[test]
fn inspect_does_not_wait_on_a_pipe_in_place_of_a_label_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = yolo_dataset(&dir.path().join("data"), "fox");
    let fifo = data.join("labels/train/0.txt");
    std::fs::remove_file(&fifo).expect("remove");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
    let mut child = bin()
        .args(["inspect", "--data", path(&data)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    wait_with_deadline(&mut child, 60);
    let output = child.wait_with_output().expect("output");
    let said = text(&output);
    assert!(said.contains("not a regular file"), "{said}");
    assert!(said.contains("0.txt"), "{said}");
}

#[cfg(target_os = "linux")]
#[test]
fn an_image_whose_name_is_not_utf8_is_recorded_by_its_real_name() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let data = yolo_dataset(&dir.path().join("data"), "fox");
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
    for (folder, extension) in [("images/train", "png"), ("labels/train", "txt")] {
        let renamed = data.join(folder).join(name).with_extension(extension);
        std::fs::rename(data.join(folder).join(format!("0.{extension}")), renamed).expect("rename");
    }
    let out = dir.path().join("run");
    let mut train = small_sample_run(&out, 30, 1000);
    set_arg(&mut train, "--data", path(&data));
    let output = run(&args(&train));
    assert!(output.status.success(), "{}", text(&output));
    let hard = std::fs::read(out.join("hard_examples.csv")).expect("hard_examples.csv");
    let real = b"images/train/caf\xe9.png";
    assert!(
        hard.windows(real.len()).any(|w| w == real),
        "the picks from caf\\xe9.png name it as it is named"
    );
    assert!(!String::from_utf8_lossy(&hard).contains("caf\u{fffd}.png\n"));
    // And the run still reads back.
    let mut reader = ohem_studio::run::RunReader::open(&out).expect("opens");
    reader.poll().expect("reads");
}

#[test]
fn detect_into_a_folder_that_does_not_exist_is_refused_before_any_image_is_scored() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run_dir = dir.path().join("run");
    let trained = run(&args(&small_sample_run(&run_dir, 2, 0)));
    assert!(trained.status.success(), "{}", text(&trained));
    let out = dir.path().join("nowhere/detections.json");
    let output = run(&[
        "detect",
        "--checkpoint",
        path(&run_dir.join("ohem.safetensors")),
        "--images",
        path(&common::sample_data().join("images/val")),
        "--device",
        "cpu",
        "--out",
        path(&out),
    ]);
    assert!(!output.status.success());
    let said = text(&output);
    assert!(
        said.contains(&format!("cannot write {}", out.display())),
        "{said}"
    );
    assert!(!said.contains(".partial"), "{said}");
}
