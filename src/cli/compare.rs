//! `ohem-studio compare`: the same run with several seeds, so that a verdict on OHEM against
//! full batch rests on more than one draw. One seed on a few dozen validation images varies by
//! more than the differences people look for; the OHEM paper's own re-runs varied by ±0.4 mAP.

use std::fmt::Write as _;
use std::path::Path;

use clap::Args;
use serde::Serialize;

use super::train::{self, TrainArgs};
use crate::eval::ErrorKind;
use crate::train::messages::EvalReport;
use crate::train::{Strategy, TrainConfig};

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Seeds to run: `--seed`, `--seed + 1`, … Each seed's run goes to `<out>/seed<N>/`.
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    #[command(flatten)]
    pub train: TrainArgs,
}

/// One row of `compare.csv`: a strategy's last evaluation in one seed's run.
#[derive(Debug, Serialize)]
struct Row {
    seed: u64,
    strategy: &'static str,
    steps: u64,
    map50: f32,
    best_f1: f32,
    best_f1_threshold: f32,
    fp_localisation: usize,
    fp_duplicate: usize,
    fp_confusion: usize,
    fp_background: usize,
    missed_small: usize,
    missed_medium: usize,
    missed_large: usize,
}

impl Row {
    fn new(seed: u64, report: &EvalReport) -> Self {
        let best = report.evaluation.best_f1_point();
        let errors = report.evaluation.error_breakdown(best.score);
        Self {
            seed,
            strategy: report.strategy.key(),
            steps: report.step,
            map50: report.evaluation.map(),
            best_f1: best.f1(),
            best_f1_threshold: best.score,
            fp_localisation: errors.count(ErrorKind::Localisation),
            fp_duplicate: errors.count(ErrorKind::Duplicate),
            fp_confusion: errors.count(ErrorKind::Confusion),
            fp_background: errors.count(ErrorKind::Background),
            missed_small: errors.missed_small,
            missed_medium: errors.missed_medium,
            missed_large: errors.missed_large,
        }
    }
}

pub fn run(args: &CompareArgs) -> anyhow::Result<()> {
    if args.seeds == 0 {
        anyhow::bail!("--seeds must be at least 1");
    }
    if args.train.resume.is_some() {
        anyhow::bail!("compare starts its runs afresh: continue one of them with `train --resume`");
    }
    let base = args.train.config()?;
    let folder = train::RunFolder::claim(args.train.out()?, args.train.overwrite)?;
    let interrupted = train::interrupt_flag();
    let mut rows = Vec::new();
    for i in 0..args.seeds {
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("stopped before seed {}", base.seed.wrapping_add(i));
            break;
        }
        let seed = base.seed.wrapping_add(i);
        eprintln!("— seed {seed} ({} of {}) —", i + 1, args.seeds);
        let out = folder.child(&format!("seed{seed}"))?;
        for (name, config) in runs_of_seed(&base, seed) {
            let out = match name {
                Some(strategy) => out.child(strategy)?,
                None => out.clone(),
            };
            let evaluations = train::run(args.train.data()?, &out, config, &interrupted)?;
            rows.extend(evaluations.iter().map(|e| Row::new(seed, e)));
        }
    }
    if rows.is_empty() {
        anyhow::bail!(
            "no run was evaluated: {} has no validation images to compare on",
            args.train.data()?.display()
        );
    }
    let csv_path = args.train.out()?.join("compare.csv");
    write_rows(&csv_path, &rows)?;
    let summary = summary(&rows, &base.strategies);
    crate::files::write_atomically(&args.train.out()?.join("summary.txt"), summary.as_bytes())?;
    print!("{summary}");
    eprintln!("wrote {}", csv_path.display());
    Ok(())
}

/// The runs of one seed. Trained side by side, strategies get the same steps; given minutes,
/// each strategy trains alone (in a folder of its own) so that each has the cores for the same
/// time and a cheaper step trains more often.
fn runs_of_seed(base: &TrainConfig, seed: u64) -> Vec<(Option<&'static str>, TrainConfig)> {
    let mut config = base.clone();
    config.seed = seed;
    if config.minutes.is_none() || config.strategies.len() < 2 {
        return vec![(None, config)];
    }
    config
        .strategies
        .iter()
        .map(|&strategy| {
            let mut alone = config.clone();
            alone.strategies = vec![strategy];
            (Some(strategy.key()), alone)
        })
        .collect()
}

fn write_rows(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    let bytes = writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::files::write_atomically(path, &bytes)
}

/// Mean and sample standard deviation (0 for a single value).
fn mean_std(values: &[f32]) -> (f32, f32) {
    let n = values.len().max(1) as f32;
    let mean = values.iter().sum::<f32>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

/// The table people read: per strategy the final mAP@0.5 as mean ± std over seeds, the errors
/// at the best-F1 threshold summed over seeds, and how many seeds OHEM beat full batch in.
fn summary(rows: &[Row], strategies: &[Strategy]) -> String {
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{:<10} {:>16} {:>6}  {:>5} {:>5} {:>5} {:>5}   {:>5} {:>5} {:>5}   per seed",
        "strategy", "mAP@0.5", "steps", "loc", "dup", "conf", "bg", "m-S", "m-M", "m-L"
    );
    for strategy in strategies {
        let mine: Vec<&Row> = rows
            .iter()
            .filter(|r| r.strategy == strategy.key())
            .collect();
        if mine.is_empty() {
            continue;
        }
        let maps: Vec<f32> = mine.iter().map(|r| r.map50).collect();
        let (mean, std) = mean_std(&maps);
        let sum = |f: fn(&Row) -> usize| mine.iter().map(|r| f(r)).sum::<usize>();
        let per_seed: Vec<String> = maps.iter().map(|m| format!("{m:.3}")).collect();
        let _ = writeln!(
            text,
            "{:<10} {:>8.3} ± {:<5.3} {:>6}  {:>5} {:>5} {:>5} {:>5}   {:>5} {:>5} {:>5}   {}",
            strategy.key(),
            mean,
            std,
            sum(|r| r.steps as usize) / mine.len(),
            sum(|r| r.fp_localisation),
            sum(|r| r.fp_duplicate),
            sum(|r| r.fp_confusion),
            sum(|r| r.fp_background),
            sum(|r| r.missed_small),
            sum(|r| r.missed_medium),
            sum(|r| r.missed_large),
            per_seed.join(" ")
        );
    }
    let map_of = |seed: u64, key: &str| {
        rows.iter()
            .find(|r| r.seed == seed && r.strategy == key)
            .map(|r| r.map50)
    };
    let seeds: Vec<u64> = {
        let mut s: Vec<u64> = rows.iter().map(|r| r.seed).collect();
        s.dedup();
        s
    };
    let pairs: Vec<(f32, f32)> = seeds
        .iter()
        .filter_map(|&s| Some((map_of(s, "ohem")?, map_of(s, "full")?)))
        .collect();
    if !pairs.is_empty() {
        let wins = pairs.iter().filter(|(o, f)| o > f).count();
        let _ = writeln!(
            text,
            "OHEM beat full batch in {wins} of {} seeds (errors: false positives by type and misses by size at each run's best-F1 threshold, summed over seeds)",
            pairs.len()
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_and_sample_std() {
        let (mean, std) = mean_std(&[0.5, 0.7, 0.6]);
        assert!((mean - 0.6).abs() < 1e-6);
        assert!((std - 0.1).abs() < 1e-6);
        assert_eq!(mean_std(&[0.4]), (0.4, 0.0));
    }
}
