//! The history behind the plots: per strategy the loss of the trained examples and of the whole
//! batch, mAP per evaluation, K/M changes; and the points each plot draws, derived into a cache
//! that is rebuilt only when the data or a view setting changes. No drawing here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use egui_plot::PlotPoint;

pub use crate::charts::debiased_ema;
use crate::train::config::Strategy;
use crate::train::messages::{EvalReport, StepReport};

/// Past this many points a series is drawn as min/max pairs per bucket.
const DOWNSAMPLE_ABOVE: usize = 4000;
/// Buckets of a downsampled series: about one per pixel of a wide plot.
const DOWNSAMPLE_BUCKETS: usize = 2000;

/// Past this many points, new data alone rebuilds a curve at most every [`REFRESH_INTERVAL`]:
/// rebuilding grows with the history, and a long run must not slow every frame down.
const LIVE_POINTS: usize = 2_000;
pub(super) const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// How a series is turned into plot points.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ViewKey {
    len: usize,
    x_by_time: bool,
    smoothing: f32,
    log_y: bool,
}

/// One curve's history, and the points last derived from it.
#[derive(Default)]
pub struct Series {
    steps: Vec<f64>,
    secs: Vec<f64>,
    values: Vec<f64>,
    view_key: Option<ViewKey>,
    refreshed_at: Option<Instant>,
    pub(super) raw_view: Vec<PlotPoint>,
    pub(super) smooth_view: Vec<PlotPoint>,
}

impl Series {
    pub fn push(&mut self, step: f64, secs: f64, value: f64) {
        self.steps.push(step);
        self.secs.push(secs);
        self.values.push(value);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Every recorded point as (step, value), smoothed with `weight` as the plot draws it.
    pub fn smoothed_by_step(&self, weight: f32) -> Vec<(f64, f64)> {
        self.steps
            .iter()
            .copied()
            .zip(debiased_ema(&self.values, weight))
            .collect()
    }

    /// Rebuilds the drawn points if the data or the view settings changed since last time.
    /// Returns `true` when new data is waiting for the next rebuild.
    fn refresh(&mut self, key: ViewKey, now: Instant) -> bool {
        if self.view_key == Some(key) {
            return false;
        }
        let only_new_data = self.view_key.is_some_and(|old| {
            ViewKey {
                len: key.len,
                ..old
            } == key
        });
        let recently = self
            .refreshed_at
            .is_some_and(|t| now.duration_since(t) < REFRESH_INTERVAL);
        if only_new_data && key.len > LIVE_POINTS && recently {
            return true;
        }
        let xs = if key.x_by_time {
            &self.secs
        } else {
            &self.steps
        };
        let y_of = |v: f64| if key.log_y { v.max(1e-12).log10() } else { v };
        let raw: Vec<PlotPoint> = xs
            .iter()
            .zip(&self.values)
            .map(|(&x, &v)| PlotPoint::new(x, y_of(v)))
            .collect();
        let smoothed: Vec<PlotPoint> = xs
            .iter()
            .zip(debiased_ema(&self.values, key.smoothing))
            .map(|(&x, v)| PlotPoint::new(x, y_of(v)))
            .collect();
        self.raw_view = downsample_min_max(raw, DOWNSAMPLE_BUCKETS);
        self.smooth_view = downsample_min_max(smoothed, DOWNSAMPLE_BUCKETS);
        self.view_key = Some(key);
        self.refreshed_at = Some(now);
        false
    }
}

/// Keeps the lowest and highest point of each of `buckets` equal runs, in x order, so that
/// spikes survive; series at or below [`DOWNSAMPLE_ABOVE`] points are returned unchanged.
pub fn downsample_min_max(points: Vec<PlotPoint>, buckets: usize) -> Vec<PlotPoint> {
    if points.len() <= DOWNSAMPLE_ABOVE || buckets == 0 {
        return points;
    }
    let per_bucket = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(buckets * 2);
    for chunk in points.chunks(per_bucket) {
        let (mut lo, mut hi) = (0, 0);
        for (i, p) in chunk.iter().enumerate() {
            if p.y < chunk[lo].y {
                lo = i;
            }
            if p.y > chunk[hi].y {
                hi = i;
            }
        }
        out.push(chunk[lo.min(hi)]);
        if lo != hi {
            out.push(chunk[lo.max(hi)]);
        }
    }
    out
}

/// Both loss curves of one strategy.
#[derive(Default)]
pub struct StrategyCurves {
    /// Mean loss over the examples the strategy backpropagated (OHEM: the hard ones).
    pub trained: Series,
    /// Mean loss over the whole batch: the fair comparison between strategies.
    pub batch: Series,
}

/// A K or M change, drawn as a vertical line where it took effect.
#[derive(Clone, Debug, PartialEq)]
pub struct SettingChange {
    pub step: u64,
    pub elapsed_secs: f64,
    pub text: String,
}

/// Share of the loss points left out at each end when outliers are ignored in the y range.
const OUTLIER_QUANTILE: f64 = 0.01;

/// Everything the plots show, and how.
pub struct PlotsState {
    pub x_by_time: bool,
    /// EMA weight, 0 (raw) to 0.99.
    pub smoothing: f32,
    pub log_y: bool,
    /// Scale the loss plot's y axis to the bulk of the points: a spike is drawn clipped at the
    /// edge instead of flattening every curve (TensorBoard's "ignore outliers").
    pub ignore_outliers: bool,
    /// The loss plot's y range without outliers, in drawn units (log10 under `log_y`).
    pub(super) robust_y_range: Option<(f64, f64)>,
    /// The highest loss point drawn, in drawn units.
    pub(super) loss_y_max: Option<f64>,
    /// The y range the loss plot was last drawn with.
    pub(super) drawn_loss_y_range: Option<(f64, f64)>,
    pub curves: BTreeMap<Strategy, StrategyCurves>,
    pub changes: Vec<SettingChange>,
    /// mAP per strategy: `[step, secs, map]`.
    pub map_history: BTreeMap<Strategy, Vec<[f64; 3]>>,
    pub(super) map_view: BTreeMap<Strategy, Vec<PlotPoint>>,
    map_view_by_time: Option<bool>,
    last_batch: Option<(usize, usize)>,
    pub(super) last_secs: f64,
    pub(super) last_step: u64,
}

impl Default for PlotsState {
    fn default() -> Self {
        Self {
            x_by_time: false,
            smoothing: 0.6,
            log_y: false,
            ignore_outliers: true,
            robust_y_range: None,
            loss_y_max: None,
            drawn_loss_y_range: None,
            curves: BTreeMap::new(),
            changes: Vec::new(),
            map_history: BTreeMap::new(),
            map_view: BTreeMap::new(),
            map_view_by_time: None,
            last_batch: None,
            last_secs: 0.0,
            last_step: 0,
        }
    }
}

impl PlotsState {
    /// Forgets the last run's curves.
    pub fn clear(&mut self) {
        *self = Self {
            x_by_time: self.x_by_time,
            smoothing: self.smoothing,
            log_y: self.log_y,
            ignore_outliers: self.ignore_outliers,
            ..Self::default()
        };
    }

    pub fn record_step(&mut self, report: &StepReport) {
        let step = report.step as f64;
        for s in &report.strategies {
            let curves = self.curves.entry(s.strategy).or_default();
            curves
                .trained
                .push(step, report.elapsed_secs, f64::from(s.trained_loss));
            curves
                .batch
                .push(step, report.elapsed_secs, f64::from(s.batch_loss));
        }
        let batch = (report.batch_size, report.hard_examples);
        if let Some((k, m)) = self.last_batch {
            let mut parts = Vec::new();
            if k != batch.0 {
                parts.push(format!("K {k} -> {}", batch.0));
            }
            if m != batch.1 {
                parts.push(format!("M {m} -> {}", batch.1));
            }
            if !parts.is_empty() {
                self.changes.push(SettingChange {
                    step: report.step,
                    elapsed_secs: report.elapsed_secs,
                    text: parts.join(", "),
                });
            }
        }
        self.last_batch = Some(batch);
        self.last_secs = report.elapsed_secs;
        self.last_step = report.step;
    }

    pub fn record_evaluation(&mut self, report: &EvalReport) {
        self.map_history.entry(report.strategy).or_default().push([
            report.step as f64,
            self.last_secs,
            f64::from(report.evaluation.map()),
        ]);
        self.map_view_by_time = None;
    }

    pub fn steps_recorded(&self) -> usize {
        self.curves
            .values()
            .map(|c| c.trained.len())
            .max()
            .unwrap_or(0)
    }

    /// Brings the drawn points up to date; `true` when some wait for a later frame.
    pub fn refresh_views(&mut self) -> bool {
        let now = Instant::now();
        let mut waiting = false;
        let mut rebuilt = false;
        for curves in self.curves.values_mut() {
            for series in [&mut curves.trained, &mut curves.batch] {
                let key = ViewKey {
                    len: series.len(),
                    x_by_time: self.x_by_time,
                    smoothing: self.smoothing,
                    log_y: self.log_y,
                };
                let before = series.view_key;
                waiting |= series.refresh(key, now);
                rebuilt |= series.view_key != before;
            }
        }
        if rebuilt {
            let drawn = self
                .curves
                .values()
                .flat_map(|c| c.trained.raw_view.iter().chain(&c.batch.raw_view));
            let ys: Vec<f64> = drawn.map(|p| p.y).filter(|y| y.is_finite()).collect();
            self.loss_y_max = ys.iter().copied().reduce(f64::max);
            self.robust_y_range = robust_range(ys, OUTLIER_QUANTILE);
        }
        if self.map_view_by_time != Some(self.x_by_time) {
            let column = usize::from(self.x_by_time);
            self.map_view = self
                .map_history
                .iter()
                .map(|(s, rows)| {
                    let points = rows
                        .iter()
                        .map(|r| PlotPoint::new(r[column], r[2]))
                        .collect();
                    (*s, points)
                })
                .collect();
            self.map_view_by_time = Some(self.x_by_time);
        }
        waiting
    }

    /// Writes every loss and mAP point as `strategy,curve,step,elapsed_secs,value`.
    pub fn write_csv(&self, path: &Path) -> anyhow::Result<()> {
        let mut out = csv::Writer::from_writer(Vec::new());
        out.write_record(["strategy", "curve", "step", "elapsed_secs", "value"])?;
        for (strategy, curves) in &self.curves {
            for (name, series) in [
                ("trained_loss", &curves.trained),
                ("batch_loss", &curves.batch),
            ] {
                for i in 0..series.len() {
                    out.serialize((
                        strategy.key(),
                        name,
                        series.steps[i] as u64,
                        series.secs[i],
                        series.values[i],
                    ))?;
                }
            }
        }
        for (strategy, rows) in &self.map_history {
            for r in rows {
                out.serialize((strategy.key(), "map", r[0] as u64, r[1], r[2]))?;
            }
        }
        let bytes = out.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
        crate::files::write_atomically(path, &bytes)
    }
}
/// The range of `values` without the lowest and highest `quantile` of them, widened by a tenth
/// on each side; `None` when no value is finite.
pub fn robust_range(mut values: Vec<f64>, quantile: f64) -> Option<(f64, f64)> {
    values.retain(|v| v.is_finite());
    if values.is_empty() {
        return None;
    }
    let last = values.len() - 1;
    let rank = |q: f64| (last as f64 * q).floor() as usize;
    let low = *values
        .select_nth_unstable_by(rank(quantile), f64::total_cmp)
        .1;
    let high = *values
        .select_nth_unstable_by(last - rank(quantile), f64::total_cmp)
        .1;
    let pad = ((high - low) * 0.1).max(1e-6);
    Some((low - pad, high + pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_curves_take_new_points_at_most_four_times_a_second() {
        let key = |len| ViewKey {
            len,
            x_by_time: false,
            smoothing: 0.6,
            log_y: false,
        };
        let mut series = Series::default();
        for i in 0..3_000 {
            series.push(i as f64, i as f64, 1.0);
        }
        let start = Instant::now();
        assert!(!series.refresh(key(3_000), start));
        series.push(3_000.0, 3_000.0, 50.0);
        let peak = |s: &Series| s.raw_view.iter().map(|p| p.y).fold(f64::MIN, f64::max);
        // Right after a rebuild the new point waits...
        assert!(series.refresh(key(3_001), start + Duration::from_millis(10)));
        assert_eq!(peak(&series), 1.0);
        // ...a changed setting never does...
        let mut log = key(3_001);
        log.log_y = true;
        assert!(!series.refresh(log, start + Duration::from_millis(20)));
        // ...and the interval later it is drawn.
        series.push(3_001.0, 3_001.0, 70.0);
        assert!(!series.refresh(key(3_002), start + Duration::from_millis(300)));
        assert_eq!(peak(&series), 70.0);
    }

    #[test]
    fn robust_range_leaves_a_spike_out() {
        let mut values = vec![0.5; 300];
        values[150] = 30.0;
        values[10] = f64::NAN;
        let (low, high) = robust_range(values, OUTLIER_QUANTILE).unwrap();
        assert!(low < 0.5 && high > 0.5 && high < 1.0, "{low}..{high}");
        assert_eq!(robust_range(vec![f64::NAN], OUTLIER_QUANTILE), None);
    }

    #[test]
    fn debiased_ema_starts_at_the_first_value() {
        let smoothed = debiased_ema(&[2.0, 2.0, 2.0], 0.9);
        for v in smoothed {
            assert!((v - 2.0).abs() < 1e-9);
        }
        assert_eq!(debiased_ema(&[1.0, 3.0], 0.0), vec![1.0, 3.0]);
    }

    #[test]
    fn downsampling_keeps_extremes() {
        let mut points: Vec<PlotPoint> =
            (0..10_000).map(|i| PlotPoint::new(i as f64, 1.0)).collect();
        points[5000].y = 100.0;
        points[7000].y = -5.0;
        let out = downsample_min_max(points, 1000);
        assert!(out.len() <= 2000);
        assert!(out.iter().any(|p| p.y == 100.0));
        assert!(out.iter().any(|p| p.y == -5.0));
        assert!(out.windows(2).all(|w| w[0].x <= w[1].x));
    }
}
