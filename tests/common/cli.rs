//! The real binary, run as a person runs it, and what it printed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ohem-studio"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
}

/// A message a person can read: no panic, no libtorch trace.
pub fn assert_sentence(output: &Output) {
    let message = text(output);
    for sign in [
        "panicked",
        "backtrace",
        "Exception raised",
        "c10::",
        "libtorch_cpu",
    ] {
        assert!(!message.contains(sign), "{sign} in: {message}");
    }
}

/// Standard output and standard error together.
pub fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `train` on sample_data into `out`: the small backbone on 192-pixel images, small batches
/// (K 32, M 8), one CPU thread, `steps` steps with an evaluation every `eval_every`; the
/// arguments after the program name.
pub fn small_sample_run(out: &Path, steps: u64, eval_every: u64) -> Vec<String> {
    let sample = super::sample_data();
    let (steps, eval_every) = (steps.to_string(), eval_every.to_string());
    [
        "train",
        "--data",
        path(&sample),
        "--steps",
        &steps,
        "--eval-every",
        &eval_every,
        "--batch",
        "32",
        "--hard",
        "8",
        "--backbone",
        "small",
        "--input-px",
        "192",
        "--threads",
        "1",
        "--device",
        "cpu",
        "--out",
        path(out),
    ]
    .map(String::from)
    .to_vec()
}

/// Starts a long run and returns it once `ready` appears on its stderr.
pub fn start_until(args: &[&str], ready: &str) -> std::process::Child {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (seen_tx, seen_rx) = crossbeam_channel::bounded(1);
    let wanted = ready.to_string();
    // Reads every line to the end, so the child never blocks on a full pipe.
    std::thread::Builder::new()
        .name("child-stderr".into())
        .spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(&wanted) {
                    let _ = seen_tx.try_send(Ok(()));
                }
                lines.push(line);
            }
            let _ = seen_tx.try_send(Err(lines));
        })
        .expect("reader thread");
    match seen_rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(())) => child,
        outcome => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{ready:?} never appeared: {outcome:?}");
        }
    }
}

pub fn signal(child: &std::process::Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

pub fn wait_with_deadline(child: &mut std::process::Child, secs: u64) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the command did not stop within {secs} s of the signal");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
