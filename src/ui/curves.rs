//! The history behind the plots: per strategy the loss of the trained examples and of the whole
//! batch, mAP per evaluation, K/M changes, the same for saved runs overlaid on the live one, and
//! the points each plot draws. Every curve keeps its whole history (for the CSV and the saved
//! PNGs) and, updated as each point arrives, a bounded min/max summary of it that the plots draw
//! from: neither a new point nor a frame costs more as a run grows. No drawing here.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use egui_plot::PlotPoint;

pub use crate::charts::debiased_ema;
use crate::train::config::Strategy;
use crate::train::messages::{EvalReport, StepReport};

/// Buckets a curve is summarised in, about one per pixel column of a wide plot; even, because
/// full buckets merge in pairs. A curve is drawn from at most two points per bucket.
const MAX_BUCKETS: usize = 2000;

/// Past this many points, new data alone refreshes a curve's drawn points at most every
/// [`REFRESH_INTERVAL`]: a live run repaints about a hundred times a second, and redrawing every
/// curve and its y range for each new point shows nothing a person could see.
const LIVE_POINTS: usize = 2_000;
pub(super) const REFRESH_INTERVAL: Duration = Duration::from_millis(250);

/// Values at or below this, zero and negatives among them, are drawn at it on a log axis.
const LOG_FLOOR: f64 = 1e-12;

/// How a series is turned into plot points.
#[derive(Clone, Copy, Debug, PartialEq)]
struct ViewKey {
    len: usize,
    x_by_time: bool,
    smoothing: f32,
    log_y: bool,
}

/// [`debiased_ema`] one value at a time, with the same arithmetic in the same order, so that the
/// plots and the PNGs saved from the full history agree to the last bit.
#[derive(Clone, Copy, Debug)]
struct RunningEma {
    weight: f32,
    last: f64,
    debias: f64,
}

impl RunningEma {
    fn new(weight: f32) -> Self {
        Self {
            weight,
            last: 0.0,
            debias: 1.0,
        }
    }

    /// The smoothed value once `value` is in; a value that is not finite passes through and
    /// leaves the average as it was.
    fn next(&mut self, value: f64) -> f64 {
        if !value.is_finite() {
            return value;
        }
        let weight = f64::from(self.weight.clamp(0.0, 0.999));
        self.last = self.last * weight + (1.0 - weight) * value;
        self.debias *= weight;
        if self.debias < 1.0 {
            self.last / (1.0 - self.debias)
        } else {
            value
        }
    }
}

impl Default for RunningEma {
    fn default() -> Self {
        Self::new(0.0)
    }
}

/// A point of a curve with both its x (so a switch to seconds needs no rebuild, and drawing
/// never reads the history) and its index in the history (its order among the points).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Extreme {
    index: usize,
    step: f64,
    secs: f64,
    value: f64,
}

impl Extreme {
    /// The point as drawn: y in log10 under `log_y`, which keeps extremes extreme since it is
    /// monotonic.
    fn drawn(self, x_by_time: bool, log_y: bool) -> PlotPoint {
        let x = if x_by_time { self.secs } else { self.step };
        let y = if log_y {
            self.value.max(LOG_FLOOR).log10()
        } else {
            self.value
        };
        PlotPoint::new(x, y)
    }
}

/// The lowest and highest finite point of a run of consecutive points.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Extremes {
    low: Extreme,
    high: Extreme,
}

impl Extremes {
    fn merge(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(Self {
                low: if b.low.value < a.low.value {
                    b.low
                } else {
                    a.low
                },
                high: if b.high.value > a.high.value {
                    b.high
                } else {
                    a.high
                },
            }),
            (a, b) => a.or(b),
        }
    }

    /// Both extremes in history order, once when they are the same point.
    fn in_order(self) -> impl Iterator<Item = Extreme> {
        let (first, last) = if self.low.index <= self.high.index {
            (self.low, self.high)
        } else {
            (self.high, self.low)
        };
        std::iter::once(first).chain((last.index != first.index).then_some(last))
    }
}

/// A curve summarised in at most [`MAX_BUCKETS`] runs of equally many consecutive points, each
/// keeping its lowest and highest finite point, so a spike survives however long the curve
/// grows. When the buckets are full, neighbours merge in pairs and every later bucket takes
/// twice as many points: a new point costs O(1) amortised, and drawing reads only the buckets.
#[derive(Debug)]
struct Buckets {
    /// Points per bucket, a power of two.
    width: usize,
    /// Points summarised so far: the index of the next one.
    len: usize,
    /// `None` for a run in which no point is finite.
    buckets: Vec<Option<Extremes>>,
}

impl Default for Buckets {
    fn default() -> Self {
        Self {
            width: 1,
            len: 0,
            buckets: Vec::new(),
        }
    }
}

impl Buckets {
    fn push(&mut self, step: f64, secs: f64, value: f64) {
        if self.len.is_multiple_of(self.width) {
            if self.buckets.len() == MAX_BUCKETS {
                self.merge_pairs();
            }
            self.buckets.push(None);
        }
        let point = value.is_finite().then_some(Extreme {
            index: self.len,
            step,
            secs,
            value,
        });
        self.len += 1;
        if let Some(last) = self.buckets.last_mut() {
            *last = Extremes::merge(*last, point.map(|p| Extremes { low: p, high: p }));
        }
    }

    /// Halves the number of buckets; called when all of them are full, so each pair spans
    /// exactly twice the old width.
    fn merge_pairs(&mut self) {
        let half = self.buckets.len() / 2;
        for i in 0..half {
            self.buckets[i] = Extremes::merge(self.buckets[2 * i], self.buckets[2 * i + 1]);
        }
        self.buckets.truncate(half);
        self.width *= 2;
    }

    /// The extremes of every bucket in history order, as drawn.
    fn points(&self, x_by_time: bool, log_y: bool) -> Vec<PlotPoint> {
        let mut out = Vec::with_capacity(2 * self.buckets.len());
        for extremes in self.buckets.iter().flatten() {
            out.extend(extremes.in_order().map(|p| p.drawn(x_by_time, log_y)));
        }
        out
    }
}

/// One curve: its whole history, the min/max summary of its raw and smoothed values kept up to
/// date as points arrive, and the points last drawn from that summary.
#[derive(Default)]
pub struct Series {
    steps: Vec<f64>,
    secs: Vec<f64>,
    values: Vec<f64>,
    raw: Buckets,
    /// The average as of the last point, with the weight it was smoothed with.
    ema: RunningEma,
    smoothed: Buckets,
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
        self.raw.push(step, secs, value);
        self.smoothed.push(step, secs, self.ema.next(value));
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

    /// Smooths the whole history again when `weight` is not the one it was smoothed with: the
    /// only time a curve's cost grows with its length.
    fn smooth_with(&mut self, weight: f32) {
        if self.ema.weight == weight {
            return;
        }
        self.ema = RunningEma::new(weight);
        self.smoothed = Buckets::default();
        let history = self.steps.iter().zip(&self.secs).zip(&self.values);
        for ((&step, &secs), &value) in history {
            self.smoothed.push(step, secs, self.ema.next(value));
        }
    }

    /// Redraws the points from the summaries if the data or the view settings changed since
    /// last time. Returns `true` when new data is waiting for the next refresh.
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
        self.smooth_with(key.smoothing);
        self.raw_view = self.raw.points(key.x_by_time, key.log_y);
        self.smooth_view = self.smoothed.points(key.x_by_time, key.log_y);
        self.view_key = Some(key);
        self.refreshed_at = Some(now);
        false
    }
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

/// mAP per strategy: `[step, secs, map]`.
type MapHistory = BTreeMap<Strategy, Vec<[f64; 3]>>;

/// Evaluations of both OHEM and full batch before their difference is more than noise.
const EVALUATIONS_TO_JUDGE: usize = 5;

/// A saved run drawn behind the live one: per strategy its whole-batch loss (the curve that
/// compares across runs) and its mAP.
pub struct Overlay {
    shown: bool,
    pub(super) batch: BTreeMap<Strategy, Series>,
    map_history: MapHistory,
    pub(super) map_view: BTreeMap<Strategy, Vec<PlotPoint>>,
    /// Seconds of its last step: where its next evaluation goes on a time axis.
    last_secs: f64,
}

impl Default for Overlay {
    fn default() -> Self {
        Self {
            shown: true,
            batch: BTreeMap::new(),
            map_history: BTreeMap::new(),
            map_view: BTreeMap::new(),
            last_secs: 0.0,
        }
    }
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
    /// Set when the curves in the y range changed without one of them being redrawn.
    y_range_stale: bool,
    pub curves: BTreeMap<Strategy, StrategyCurves>,
    pub changes: Vec<SettingChange>,
    /// mAP per strategy: `[step, secs, map]`.
    pub map_history: MapHistory,
    pub(super) map_view: BTreeMap<Strategy, Vec<PlotPoint>>,
    map_view_by_time: Option<bool>,
    /// Saved runs drawn behind the live one, by name; they outlive [`Self::clear`].
    overlays: BTreeMap<String, Overlay>,
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
            y_range_stale: false,
            curves: BTreeMap::new(),
            changes: Vec::new(),
            map_history: BTreeMap::new(),
            map_view: BTreeMap::new(),
            map_view_by_time: None,
            overlays: BTreeMap::new(),
            last_batch: None,
            last_secs: 0.0,
            last_step: 0,
        }
    }
}

impl PlotsState {
    /// Forgets the last run's curves; the overlaid runs stay.
    pub fn clear(&mut self) {
        *self = Self {
            x_by_time: self.x_by_time,
            smoothing: self.smoothing,
            log_y: self.log_y,
            ignore_outliers: self.ignore_outliers,
            overlays: std::mem::take(&mut self.overlays),
            y_range_stale: true,
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

    /// OHEM's mAP minus full batch's at the latest step both were evaluated at, said in one
    /// line with how many such evaluations there are; "too early to judge" under
    /// [`EVALUATIONS_TO_JUDGE`]. `None` unless both strategies have been evaluated.
    pub fn ohem_versus_full(&self) -> Option<String> {
        let steps = |strategy| -> BTreeMap<u64, f64> {
            self.map_history
                .get(&strategy)
                .into_iter()
                .flatten()
                .map(|&[step, _, map]| (step as u64, map))
                .collect()
        };
        let (ohem, full) = (steps(Strategy::Ohem), steps(Strategy::FullBatch));
        let shared: Vec<(u64, f64)> = ohem
            .iter()
            .filter_map(|(step, o)| full.get(step).map(|f| (*step, o - f)))
            .collect();
        let &(step, difference) = shared.last()?;
        let count = shared.len();
        let plural = if count == 1 { "" } else { "s" };
        let judged = if count < EVALUATIONS_TO_JUDGE {
            "; too early to judge"
        } else {
            ""
        };
        Some(format!(
            "OHEM {difference:+.3} mAP over full batch at step {step} ({count} evaluation{plural} of both){judged}"
        ))
    }

    pub fn record_evaluation(&mut self, report: &EvalReport) {
        record_map(&mut self.map_history, report, self.last_secs);
        self.map_view_by_time = None;
    }

    /// Adds a step of the saved run `run` to its overlay (created, shown, on its first step):
    /// only the whole-batch loss, the curve that compares across runs.
    pub fn overlay_step(&mut self, run: &str, report: &StepReport) {
        let overlay = self.overlays.entry(run.to_string()).or_default();
        for s in &report.strategies {
            overlay.batch.entry(s.strategy).or_default().push(
                report.step as f64,
                report.elapsed_secs,
                f64::from(s.batch_loss),
            );
        }
        overlay.last_secs = report.elapsed_secs;
    }

    /// Adds an evaluation of the saved run `run` to its overlay's mAP curves.
    pub fn overlay_evaluation(&mut self, run: &str, report: &EvalReport) {
        let overlay = self.overlays.entry(run.to_string()).or_default();
        record_map(&mut overlay.map_history, report, overlay.last_secs);
        self.map_view_by_time = None;
    }

    /// Takes the saved run `run` off the plots.
    pub fn remove_overlay(&mut self, run: &str) {
        if self.overlays.remove(run).is_some() {
            self.y_range_stale = true;
        }
    }

    /// The overlaid runs, in name order.
    pub fn overlay_names(&self) -> Vec<String> {
        self.overlays.keys().cloned().collect()
    }

    /// Shows or hides the overlaid run `run`; the loss plot's y range follows.
    pub fn show_overlay(&mut self, run: &str, shown: bool) {
        if let Some(overlay) = self.overlays.get_mut(run) {
            self.y_range_stale |= overlay.shown != shown;
            overlay.shown = shown;
        }
    }

    /// Whether the overlaid run `run` is drawn.
    pub fn is_overlay_shown(&self, run: &str) -> bool {
        self.overlays.get(run).is_some_and(|o| o.shown)
    }

    /// The overlaid runs drawn, in name order.
    pub(super) fn shown_overlays(&self) -> impl Iterator<Item = (&str, &Overlay)> {
        self.overlays
            .iter()
            .filter(|(_, o)| o.shown)
            .map(|(run, o)| (run.as_str(), o))
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
        let (x_by_time, smoothing, log_y) = (self.x_by_time, self.smoothing, self.log_y);
        let mut waiting = false;
        let mut redrawn = std::mem::take(&mut self.y_range_stale);
        for series in self.loss_series_mut() {
            let key = ViewKey {
                len: series.len(),
                x_by_time,
                smoothing,
                log_y,
            };
            let before = series.view_key;
            waiting |= series.refresh(key, now);
            redrawn |= series.view_key != before;
        }
        if redrawn {
            self.refresh_loss_y_range();
        }
        if self.map_view_by_time != Some(x_by_time) {
            self.map_view = map_points(&self.map_history, x_by_time);
            for overlay in self.overlays.values_mut() {
                overlay.map_view = map_points(&overlay.map_history, x_by_time);
            }
            self.map_view_by_time = Some(x_by_time);
        }
        waiting
    }

    /// Every loss curve, of the live run and of the overlays.
    fn loss_series_mut(&mut self) -> impl Iterator<Item = &mut Series> {
        let live = self
            .curves
            .values_mut()
            .flat_map(|c| [&mut c.trained, &mut c.batch]);
        let overlaid = self
            .overlays
            .values_mut()
            .flat_map(|o| o.batch.values_mut());
        live.chain(overlaid)
    }

    /// The loss plot's y range, from the raw points drawn of the live run and the overlays shown:
    /// a few thousand per curve however long the runs are.
    fn refresh_loss_y_range(&mut self) {
        let live = self
            .curves
            .values()
            .flat_map(|c| c.trained.raw_view.iter().chain(&c.batch.raw_view));
        let overlaid = self
            .shown_overlays()
            .flat_map(|(_, o)| o.batch.values())
            .flat_map(|s| &s.raw_view);
        let ys: Vec<f64> = live
            .chain(overlaid)
            .map(|p| p.y)
            .filter(|y| y.is_finite())
            .collect();
        self.loss_y_max = ys.iter().copied().reduce(f64::max);
        self.robust_y_range = robust_range(ys, OUTLIER_QUANTILE);
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

/// Appends the mAP of `report` to `history`, at `secs` on a time axis.
fn record_map(history: &mut MapHistory, report: &EvalReport, secs: f64) {
    history.entry(report.strategy).or_default().push([
        report.step as f64,
        secs,
        f64::from(report.evaluation.map()),
    ]);
}

/// The mAP points of `history`, by step or by seconds.
fn map_points(history: &MapHistory, x_by_time: bool) -> BTreeMap<Strategy, Vec<PlotPoint>> {
    let column = usize::from(x_by_time);
    history
        .iter()
        .map(|(s, rows)| {
            let points = rows
                .iter()
                .map(|r| PlotPoint::new(r[column], r[2]))
                .collect();
            (*s, points)
        })
        .collect()
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
    use crate::train::messages::StrategyStep;

    fn view(len: usize) -> ViewKey {
        ViewKey {
            len,
            x_by_time: false,
            smoothing: 0.6,
            log_y: false,
        }
    }

    fn step_report(step: u64, trained_loss: f32, batch_loss: f32) -> StepReport {
        StepReport {
            step,
            elapsed_secs: step as f64 * 0.5,
            batch_size: 128,
            hard_examples: 32,
            examples_per_sec: 1000.0,
            strategies: [Strategy::Ohem, Strategy::FullBatch]
                .into_iter()
                .map(|strategy| StrategyStep {
                    strategy,
                    trained_loss,
                    batch_loss,
                    forward_ms: 1.0,
                    select_ms: 0.1,
                    train_ms: 2.0,
                })
                .collect(),
        }
    }

    fn evaluation(step: u64) -> EvalReport {
        EvalReport {
            step,
            strategy: Strategy::Ohem,
            detections: Vec::new(),
            evaluation: crate::eval::evaluate(&[], &[], 1, 0.5),
            val_loss: 0.3,
        }
    }

    #[test]
    fn long_curves_take_new_points_at_most_four_times_a_second() {
        let mut series = Series::default();
        for i in 0..3_000 {
            series.push(i as f64, i as f64, 1.0);
        }
        let start = Instant::now();
        assert!(!series.refresh(view(3_000), start));
        series.push(3_000.0, 3_000.0, 50.0);
        let peak = |s: &Series| s.raw_view.iter().map(|p| p.y).fold(f64::MIN, f64::max);
        // Right after a rebuild the new point waits...
        assert!(series.refresh(view(3_001), start + Duration::from_millis(10)));
        assert_eq!(peak(&series), 1.0);
        // ...a changed setting never does...
        let log = ViewKey {
            log_y: true,
            ..view(3_001)
        };
        assert!(!series.refresh(log, start + Duration::from_millis(20)));
        // ...and the interval later it is drawn.
        series.push(3_001.0, 3_001.0, 70.0);
        assert!(!series.refresh(view(3_002), start + Duration::from_millis(300)));
        assert_eq!(peak(&series), 70.0);
    }

    #[test]
    fn a_hundred_thousand_points_are_drawn_as_a_few_thousand_with_their_extremes() {
        let mut series = Series::default();
        let values: Vec<f64> = (0..100_000)
            .map(|i| match i {
                54_321 => 1e6,
                77_777 => 0.001,
                1_234 => f64::NAN,
                99_000 => f64::INFINITY,
                _ => 1.0 + (i % 7) as f64 * 0.01,
            })
            .collect();
        for (i, &value) in values.iter().enumerate() {
            series.push(i as f64, i as f64 * 0.5, value);
        }
        let now = Instant::now();
        series.refresh(view(values.len()), now);
        for drawn in [&series.raw_view, &series.smooth_view] {
            assert!(drawn.len() <= 2 * MAX_BUCKETS, "{} points", drawn.len());
            assert!(drawn.iter().all(|p| p.x.is_finite() && p.y.is_finite()));
            assert!(drawn.windows(2).all(|w| w[0].x < w[1].x));
        }
        let has = |drawn: &[PlotPoint], x: f64, y: f64| drawn.iter().any(|p| p.x == x && p.y == y);
        assert!(has(&series.raw_view, 54_321.0, 1e6));
        assert!(has(&series.raw_view, 77_777.0, 0.001));
        let smoothed_peak = debiased_ema(&values, 0.6)
            .into_iter()
            .filter(|v| v.is_finite())
            .fold(f64::MIN, f64::max);
        assert!(has(&series.smooth_view, 54_321.0, smoothed_peak));

        let by_time_in_log = ViewKey {
            x_by_time: true,
            log_y: true,
            ..view(values.len())
        };
        series.refresh(by_time_in_log, now);
        assert!(has(&series.raw_view, 27_160.5, 6.0));
        assert!(has(&series.raw_view, 38_888.5, -3.0));
    }

    #[test]
    fn the_smoothed_curve_is_debiased_ema_and_is_redone_when_the_weight_changes() {
        let mut values: Vec<f64> = (0..2_000).map(|i| ((i * 37) % 11) as f64).collect();
        values[700] = f64::NAN;
        let mut series = Series::default();
        let drawn_matches = |series: &Series, values: &[f64], weight: f32| {
            let expected: Vec<f64> = debiased_ema(values, weight)
                .into_iter()
                .filter(|v| v.is_finite())
                .collect();
            let drawn: Vec<f64> = series.smooth_view.iter().map(|p| p.y).collect();
            drawn == expected
        };
        for (i, &value) in values[..1_500].iter().enumerate() {
            series.push(i as f64, i as f64, value);
        }
        for weight in [0.6, 0.95] {
            series.refresh(
                ViewKey {
                    smoothing: weight,
                    ..view(1_500)
                },
                Instant::now(),
            );
            assert!(drawn_matches(&series, &values[..1_500], weight), "{weight}");
        }
        // Points arriving after the change are smoothed with the new weight as they come.
        for (i, &value) in values.iter().enumerate().skip(1_500) {
            series.push(i as f64, i as f64, value);
        }
        let key = ViewKey {
            smoothing: 0.95,
            ..view(2_000)
        };
        series.refresh(key, Instant::now());
        assert!(drawn_matches(&series, &values, 0.95));
    }

    #[test]
    fn a_spike_in_a_long_run_is_drawn_but_left_out_of_the_robust_range() {
        let mut plots = PlotsState::default();
        for step in 1..=100_000 {
            let loss = if step == 60_000 { 40.0 } else { 0.5 };
            plots.record_step(&step_report(step, loss, loss));
        }
        plots.refresh_views();
        assert_eq!(plots.loss_y_max, Some(40.0));
        let (low, high) = plots.robust_y_range.unwrap();
        assert!(low < 0.5 && high > 0.5 && high < 1.0, "{low}..{high}");
    }

    #[test]
    fn overlays_outlive_clear_and_take_part_in_the_y_range_while_shown() {
        let mut plots = PlotsState::default();
        plots.record_step(&step_report(1, 1.0, 1.0));
        // Only an overlay's whole-batch loss is drawn: its trained loss stays out of the range.
        plots.overlay_step("old", &step_report(1, 900.0, 50.0));
        plots.overlay_evaluation("old", &evaluation(1));
        plots.refresh_views();
        assert_eq!(plots.loss_y_max, Some(50.0));
        assert_eq!(plots.overlays["old"].map_view[&Strategy::Ohem].len(), 1);

        plots.clear();
        plots.refresh_views();
        assert_eq!(plots.overlay_names(), ["old"]);
        assert_eq!(plots.loss_y_max, Some(50.0));

        plots.record_step(&step_report(1, 1.0, 1.0));
        plots.show_overlay("old", false);
        plots.refresh_views();
        assert_eq!(plots.loss_y_max, Some(1.0));
        plots.show_overlay("old", true);
        plots.refresh_views();
        assert_eq!(plots.loss_y_max, Some(50.0));
        plots.remove_overlay("old");
        plots.refresh_views();
        assert!(plots.overlay_names().is_empty());
        assert_eq!(plots.loss_y_max, Some(1.0));
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
}
