//! The plots a `train` run leaves in its folder: `loss.png` (whole-batch loss per strategy,
//! smoothed), `map.png` (validation mAP per evaluation) and `pr.png` (the last evaluation's
//! precision–recall curves).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::charts::{debiased_ema, line_chart, Axes, Series};
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
        let mut written = Vec::new();
        let loss: Vec<Series> = self
            .losses
            .iter()
            .map(|(s, (steps, values))| {
                let smooth = debiased_ema(values, SMOOTHING);
                series(*s, steps.iter().copied().zip(smooth).collect())
            })
            .collect();
        if !loss.is_empty() {
            let path = dir.join("loss.png");
            let axes = axes("whole-batch loss (smoothed)", "step", "loss", None);
            line_chart(&path, &axes, &loss)?;
            written.push(path);
        }
        if !self.maps.is_empty() {
            let maps: Vec<Series> = self
                .maps
                .iter()
                .map(|(s, p)| series(*s, p.clone()))
                .collect();
            let path = dir.join("map.png");
            line_chart(
                &path,
                &axes("validation mAP@0.5", "step", "mAP@0.5", Some((0.0, 1.0))),
                &maps,
            )?;
            written.push(path);
        }
        if !self.last.is_empty() {
            let curves: Vec<Series> = self
                .last
                .iter()
                .map(|(s, r)| {
                    let points = r.evaluation.pr_curve().iter();
                    series(
                        *s,
                        points
                            .map(|p| (f64::from(p.recall), f64::from(p.precision)))
                            .collect(),
                    )
                })
                .collect();
            let path = dir.join("pr.png");
            let mut axes = axes(
                "precision–recall, last evaluation",
                "recall",
                "precision",
                Some((0.0, 1.05)),
            );
            axes.x_range = Some((0.0, 1.0));
            line_chart(&path, &axes, &curves)?;
            written.push(path);
        }
        Ok(written)
    }
}

fn series(strategy: Strategy, points: Vec<(f64, f64)>) -> Series {
    Series {
        label: strategy.label().to_string(),
        rgb: strategy.colour(),
        points,
    }
}

fn axes<'a>(title: &'a str, x: &'a str, y: &'a str, y_range: Option<(f64, f64)>) -> Axes<'a> {
    Axes {
        title,
        x_label: x,
        y_label: y,
        x_range: None,
        y_range,
    }
}
