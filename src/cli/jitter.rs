//! The part of `bench` that times the trainer thread as a run sees it: the time between one
//! step and the next, without evaluations and with one every few steps. Evaluation runs on its
//! own thread, so the worst step should barely move.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::train::{Command, Event, TrainConfig, TrainerHandle};

/// Steps left out at the start of each run: the first ones also pay for warming up.
const WARMUP_STEPS: usize = 5;

/// Step gaps of one run, in milliseconds, in step order.
struct Gaps(Vec<f64>);

impl Gaps {
    fn median(&self) -> f64 {
        let mut sorted = self.0.clone();
        sorted.sort_by(f64::total_cmp);
        sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
    }

    fn worst(&self) -> f64 {
        self.0.iter().copied().fold(f64::NAN, f64::max)
    }
}

/// Trains `config` for `steps` steps without evaluations and with one every `every` steps,
/// and prints the median and worst time between two steps of each.
pub fn print_step_jitter(
    data: &Path,
    config: &TrainConfig,
    steps: u64,
    every: u64,
) -> anyhow::Result<()> {
    let quiet = step_gaps(data, config, steps, 0)?;
    let evaluating = step_gaps(data, config, steps, every)?;
    println!(
        "time between steps over {steps} steps (K = {}, M = {}): without evaluation median {:.1} ms, worst {:.1} ms; evaluating every {every} steps median {:.1} ms, worst {:.1} ms (worst ×{:.2})",
        config.batch_size,
        config.hard_examples,
        quiet.median(),
        quiet.worst(),
        evaluating.median(),
        evaluating.worst(),
        evaluating.worst() / quiet.worst()
    );
    Ok(())
}

/// The time between consecutive steps of a run on the trainer thread, as its events arrive.
fn step_gaps(data: &Path, config: &TrainConfig, steps: u64, every: u64) -> anyhow::Result<Gaps> {
    let mut trainer = TrainerHandle::spawn(Arc::new(|| {}))?;
    trainer.send(Command::OpenDataset(data.to_path_buf()));
    trainer.send(Command::Start {
        config: TrainConfig {
            steps: Some(steps),
            eval_every: every,
            ..config.clone()
        },
        record: None,
    });
    let mut gaps = Vec::new();
    let mut last: Option<Instant> = None;
    loop {
        let Some(event) = trainer.recv_timeout(Duration::from_secs(120)) else {
            bail!("the trainer went quiet for two minutes");
        };
        match event {
            Event::Step(_) => {
                let now = Instant::now();
                gaps.extend(last.map(|t| now.duration_since(t).as_secs_f64() * 1000.0));
                last = Some(now);
            }
            Event::RunEnded { .. } => break,
            Event::Problem(message) | Event::Diverged { message } | Event::WriteFailed(message) => {
                eprintln!("warning: {message}")
            }
            Event::DatasetFailed { message, .. } | Event::Failed { message } => bail!("{message}"),
            _ => {}
        }
    }
    trainer.shutdown(Duration::from_secs(5));
    Ok(Gaps(gaps.split_off(WARMUP_STEPS.min(gaps.len()))))
}
