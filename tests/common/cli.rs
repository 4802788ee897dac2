//! The real binary, run as a person runs it, and what it printed.

use std::path::Path;
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ohem-studio"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("the binary runs")
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
