//! The plots a `train` run leaves in its folder: `loss.png` (whole-batch loss per strategy,
//! smoothed), `map.png` (validation mAP per evaluation) and `pr.png` (the last evaluation's
//! precision–recall curves).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::charts::{debiased_ema, write_run_plots, Series};
use crate::train::messages::{EvalReport, StepReport};
use crate::train::Strategy;

/// Smoothing of the loss curves, as the app's default.
const SMOOTHING: f32 = 0.9;

/// What the run's plots need, gathered from its events.
#[derive(Default)]
pub struct RunCharts {
    losses: BTreeMap<Strategy, (Vec<f64>, Vec<f64>)>,
    maps: BTreeMap<Strategy, Vec<(f64, f64)>>,
    last: BTreeMap<Strategy, EvalReport>,
}

impl RunCharts {
    pub fn record_step(&mut self, report: &StepReport) {
        for s in &report.strategies {
            let (steps, losses) = self.losses.entry(s.strategy).or_default();
            steps.push(report.step as f64);
            losses.push(f64::from(s.batch_loss));
        }
    }

    pub fn record_evaluation(&mut self, report: &EvalReport) {
        self.maps
            .entry(report.strategy)
            .or_default()
            .push((report.step as f64, f64::from(report.evaluation.map())));
        self.last.insert(report.strategy, report.clone());
    }

    /// Writes the plots into `dir`; returns the files written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let loss: Vec<Series> = self
            .losses
            .iter()
            .map(|(s, (steps, values))| {
                let smooth = debiased_ema(values, SMOOTHING);
                series(*s, steps.iter().copied().zip(smooth).collect())
            })
            .collect();
        let map: Vec<Series> = self
            .maps
            .iter()
            .map(|(s, p)| series(*s, p.clone()))
            .collect();
        let pr: Vec<Series> = self
            .last
            .iter()
            .map(|(s, r)| series(*s, pr_points(r)))
            .collect();
        write_run_plots(dir, &loss, &map, &pr)
    }
}

/// The precision–recall curve of an evaluation as (recall, precision) points.
fn pr_points(report: &EvalReport) -> Vec<(f64, f64)> {
    report
        .evaluation
        .pr_curve()
        .iter()
        .map(|p| (f64::from(p.recall), f64::from(p.precision)))
        .collect()
}

fn series(strategy: Strategy, points: Vec<(f64, f64)>) -> Series {
    Series {
        label: strategy.label().to_string(),
        rgb: strategy.colour(),
        points,
    }
}
