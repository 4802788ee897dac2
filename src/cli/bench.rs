//! `ohem-studio bench`: per-step cost of each strategy on the same batches.
//!
//! OHEM's promise is less compute than full-batch training: the head's forward pass over K RoIs
//! plus a forward/backward over M, against a forward/backward over K. The backbone runs (and
//! is backpropagated) once per image either way, so the saving is in the head, which scores
//! thousands of RoIs per batch.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use super::DeviceArg;
use crate::data::{self, LoadOptions};
use crate::detector::pretrained::weights_path;
use crate::detector::BackboneKind;
use crate::train::batch::Batch;
use crate::train::images::{ImageStream, TrainImage};
use crate::train::{Engine, Strategy, TrainConfig};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[arg(long, default_value = "sample_data")]
    pub data: PathBuf,
    /// K: RoIs scored per batch.
    #[arg(long = "batch", default_value_t = TrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// M: RoIs trained per batch.
    #[arg(long = "hard", default_value_t = TrainConfig::default().hard_examples)]
    pub hard_examples: usize,
    /// The backbone [default: EfficientNet-Lite0 when its weights are there].
    #[arg(long, value_enum)]
    pub backbone: Option<BackboneKind>,
    /// Timed steps (after a few untimed warm-up steps).
    #[arg(long, default_value_t = 30)]
    pub steps: u64,
    /// Comma-separated strategies to time.
    #[arg(long, default_value = "ohem,full,random,focal,ohem-3to1,bootstrap")]
    pub strategies: String,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// CPU threads for libtorch (0: its default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// A plain-PyTorch script of the same step (examples/torch_reference.py) to run after the
    /// timing with the same K, M and steps; its times are printed beside ours. Needs a Python
    /// that can import torch (`make bench` points it at the torch it fetched).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Steps of each of the two runs that time the trainer thread with and without evaluations
    /// (0: skip them).
    #[arg(long, default_value_t = 60)]
    pub jitter_steps: u64,
    /// Evaluate every this many steps in the second of those runs.
    #[arg(long, default_value_t = 20)]
    pub jitter_every: u64,
}

/// The step at which bootstrapping scans during the benchmark (one scan in the timed steps).
const BENCH_SCAN_AT: u64 = 20;

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let (dataset, _) = data::load_dataset(&args.data, &LoadOptions::default())
        .with_context(|| format!("cannot open dataset {}", args.data.display()))?;
    let config = TrainConfig {
        batch_size: args.batch_size,
        hard_examples: args.hard_examples,
        backbone: args.backbone,
        strategies: Strategy::parse_list(&args.strategies)?,
        device: args.device.into(),
        cpu_threads: args.threads,
        eval_every: 0,
        // One scan inside the timed steps, reported apart and spread over the default interval.
        bootstrap_every: BENCH_SCAN_AT,
        ..TrainConfig::default()
    };
    let mut engine = Engine::new(Arc::new(dataset), config.clone())?;
    for note in engine.take_notes() {
        eprintln!("note: {note}");
    }
    let mut stream = ImageStream::spawn(engine.train_sampler(), engine.config().seed, 0)?;
    if args.steps == 0 {
        anyhow::bail!("--steps must be at least 1");
    }
    let n_images = engine.config().images_per_batch;
    let warmup = 5;
    // Every batch is prepared before the clock starts and the loader thread is gone, so the
    // timing measures the step alone, not the step sharing the cores with batch preparation.
    let batches: Vec<Vec<TrainImage>> = (0..warmup + args.steps)
        .map(|_| {
            stream
                .next_batch(n_images)
                .context("the batch loader stopped")
        })
        .collect::<anyhow::Result<_>>()?;
    drop(stream);
    let prepared: Vec<Batch> = batches.iter().map(|images| engine.batch(images)).collect();
    let k = prepared.iter().map(Batch::len).sum::<usize>() / prepared.len().max(1);
    let m = args.hard_examples.min(k);
    println!(
        "device {}, {}, {n_images} images and K = {k} RoIs (mean) per batch, M = {m}, {} timed steps",
        engine.device_name(),
        engine.info().describe(),
        args.steps
    );
    let (totals, scan_ms) = time_steps(&mut engine, &batches, &prepared, warmup, args.steps)?;
    let n = args.steps.max(1) as f64;
    let per_step: Vec<(Strategy, f64)> = engine
        .learners()
        .iter()
        .zip(&totals)
        .map(|(learner, t)| (learner.strategy(), t.iter().sum::<f64>() / n))
        .collect();
    print_table(&per_step, &totals, n, k);
    print_ratios(&per_step, scan_ms);
    let time_of = |s: Strategy| per_step.iter().find(|(x, _)| *x == s).map(|(_, t)| *t);
    if let Some(script) = &args.reference {
        let ours = (time_of(Strategy::Ohem), time_of(Strategy::FullBatch));
        let timed = &prepared[warmup as usize..];
        compare_with_pytorch(script, args, &engine, timed, ours);
    }
    if args.jitter_steps > 0 {
        let runs = TrainConfig {
            strategies: Strategy::DEFAULT.to_vec(),
            ..config
        };
        super::jitter::print_step_jitter(&args.data, &runs, args.jitter_steps, args.jitter_every)?;
    }
    Ok(())
}

/// Trains every batch, timing the parts of each strategy's step after `warmup` steps. Returns
/// the summed milliseconds (forward, select, train) per learner, with bootstrapping's one scan
/// taken out and spread at the rate of the default rescan interval, and that scan's time.
fn time_steps(
    engine: &mut Engine,
    images: &[Vec<TrainImage>],
    batches: &[Batch],
    warmup: u64,
    steps: u64,
) -> anyhow::Result<(Vec<[f64; 3]>, Option<f64>)> {
    let mut totals = vec![[0.0f64; 3]; engine.learners().len()];
    let mut scan_ms = None;
    for (step, (images, batch)) in images.iter().zip(batches).enumerate() {
        let step = step as u64;
        let outcome = engine.train_batch(images, batch)?;
        if step < warmup {
            continue;
        }
        for (total, s) in totals.iter_mut().zip(&outcome.report.strategies) {
            let mut forward = s.forward_ms as f64;
            if s.strategy == Strategy::Bootstrap && step == BENCH_SCAN_AT {
                let plain = total[0] / (step - warmup).max(1) as f64;
                scan_ms = Some(forward - plain);
                forward = plain;
            }
            total[0] += forward;
            total[1] += s.select_ms as f64;
            total[2] += s.train_ms as f64;
        }
    }
    let every = TrainConfig::default().bootstrap_every as f64;
    let bootstrap = engine
        .learners()
        .iter()
        .position(|l| l.strategy() == Strategy::Bootstrap);
    if let (Some(scan), Some(i)) = (scan_ms, bootstrap) {
        totals[i][0] += scan / every * steps as f64;
    }
    Ok((totals, scan_ms))
}

/// Every strategy's step cost as a share of full batch's.
fn print_ratios(per_step: &[(Strategy, f64)], scan_ms: Option<f64>) {
    if let Some(scan) = scan_ms {
        let every = TrainConfig::default().bootstrap_every;
        println!(
            "bootstrapping: one scan took {scan:.0} ms; rescanning every {every} steps adds {:.2} ms per step (in its forward column)",
            scan / every as f64
        );
    }
    let time_of = |s: Strategy| per_step.iter().find(|(x, _)| *x == s).map(|(_, t)| *t);
    let Some(full) = time_of(Strategy::FullBatch) else {
        return;
    };
    let ratios: Vec<String> = per_step
        .iter()
        .map(|(s, t)| format!("{} {:.3}", s.key(), t / full))
        .collect();
    println!("step cost relative to full batch: {}", ratios.join(", "));
    if let Some(ohem) = time_of(Strategy::Ohem) {
        println!("ratio OHEM / full batch: {:.3}", ohem / full);
        if let Some(random) = time_of(Strategy::RandomM) {
            println!("ratio OHEM / random-M: {:.3}", ohem / random);
        }
    }
    if let Some(random) = time_of(Strategy::RandomM) {
        println!("ratio random-M / full batch: {:.3}", random / full);
    }
}

/// One row per strategy: mean milliseconds of each part of the step, and examples per second.
fn print_table(per_step: &[(Strategy, f64)], totals: &[[f64; 3]], n: f64, k: usize) {
    println!(
        "{:<14} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "strategy", "forward", "select", "train", "step", "RoIs/s"
    );
    for ((strategy, step_ms), t) in per_step.iter().zip(totals) {
        println!(
            "{:<14} {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>8.2}ms {:>12.0}",
            strategy.label(),
            t[0] / n,
            t[1] / n,
            t[2] / n,
            step_ms,
            k as f64 / (step_ms / 1000.0)
        );
    }
}

/// Runs the PyTorch version of the step on the same batches and prints our times as
/// multiples of its times.
fn compare_with_pytorch(
    script: &Path,
    args: &BenchArgs,
    engine: &Engine,
    batches: &[Batch],
    ours: (Option<f64>, Option<f64>),
) {
    let exported =
        std::env::temp_dir().join(format!("ohem-bench-{}.safetensors", std::process::id()));
    if let Err(error) = export_batches(batches, &exported) {
        println!("PyTorch reference skipped: cannot write the batches for it: {error}");
        return;
    }
    let text = run_reference(script, args, engine, &exported);
    let _ = std::fs::remove_file(&exported);
    let text = match text {
        Ok(text) => text,
        Err(why) => return println!("PyTorch reference skipped: {why}"),
    };
    print!("{text}");
    let Some((ohem, full)) = parse_reference(&text) else {
        println!("PyTorch reference: no step times in its output");
        return;
    };
    if let (Some(our_ohem), Some(our_full)) = ours {
        println!(
            "ohem-studio / PyTorch: OHEM step {:.2}×, full step {:.2}×",
            our_ohem / ohem,
            our_full / full
        );
    }
}

/// Every batch's pixels, RoIs, labels and targets into one safetensors file, by
/// `<batch>.<image>.<name>`.
fn export_batches(batches: &[Batch], path: &Path) -> Result<(), tch::TchError> {
    let named: Vec<(String, tch::Tensor)> = batches
        .iter()
        .enumerate()
        .flat_map(|(b, batch)| {
            batch.images.iter().enumerate().flat_map(move |(i, image)| {
                [
                    (format!("{b}.{i}.pixels"), image.pixels.shallow_clone()),
                    (format!("{b}.{i}.rois"), image.rois.rois.shallow_clone()),
                    (format!("{b}.{i}.labels"), image.rois.labels.shallow_clone()),
                    (
                        format!("{b}.{i}.targets"),
                        image.rois.targets.shallow_clone(),
                    ),
                ]
            })
        })
        .map(|(n, t)| (n, t.to_device(tch::Device::Cpu)))
        .collect();
    tch::Tensor::write_safetensors(&named, path)
}

/// The reference script's output on the batches in `exported`, or why there is none.
fn run_reference(
    script: &Path,
    args: &BenchArgs,
    engine: &Engine,
    exported: &Path,
) -> Result<String, String> {
    let info = engine.info();
    let weights = weights_path(info.backbone)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let threads = if args.threads > 0 {
        args.threads
    } else {
        tch::get_num_threads().max(1) as usize
    };
    let device = if engine.device_name() == "CPU" {
        "cpu"
    } else {
        "cuda"
    };
    let output = std::process::Command::new(&python)
        .arg(script)
        .args(["--batches", &exported.display().to_string()])
        .args(["--backbone", info.backbone.key()])
        .args(["--weights", &weights])
        .args(["--classes", &info.class_names.len().to_string()])
        .args(["--m", &args.hard_examples.to_string()])
        .args(["--threads", &threads.to_string()])
        .args(["--device", device])
        .output()
        .map_err(|error| format!("cannot run {python}: {error}"))?;
    if !output.status.success() {
        let reason = String::from_utf8_lossy(&output.stderr);
        let reason = reason.lines().last().unwrap_or("no message").to_string();
        return Err(format!("{} failed ({reason})", script.display()));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The OHEM and full step milliseconds from the reference's "… OHEM step X ms, full step Y ms"
/// line.
fn parse_reference(text: &str) -> Option<(f64, f64)> {
    let line = text.lines().find(|l| l.contains("OHEM step"))?;
    let number_after = |key: &str| -> Option<f64> {
        let rest = &line[line.find(key)? + key.len()..];
        rest.split_whitespace().next()?.parse().ok()
    };
    Some((number_after("OHEM step")?, number_after("full step")?))
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_reference_times() {
        let text = "PyTorch 2.11.0, 2 threads, K = 256, M = 64\nPyTorch OHEM step 33.60 ms, full step 59.10 ms, ratio 0.569\n";
        assert_eq!(super::parse_reference(text), Some((33.6, 59.1)));
    }
}
