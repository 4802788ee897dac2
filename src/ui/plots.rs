//! The loss, mAP, precision–recall and error-breakdown plots, drawn every frame from the cached
//! points in [`super::curves`], with saved runs overlaid faintly behind the live one.

use std::collections::BTreeMap;

use egui::{Color32, Id};
use egui_plot::{
    Bar, BarChart, ColorConflictHandling, Corner, Legend, Line, LineStyle, MarkerShape, Plot,
    PlotPoint, PlotPoints, Points, Text, VLine,
};

use super::curves::PlotsState;
use super::theme;
use crate::eval::ErrorKind;
use crate::train::config::Strategy;
use crate::train::messages::EvalReport;

/// The loss plot's frame: legend, axes, hover label, log scale.
fn loss_plot(height: f32, log_y: bool, x_by_time: bool) -> Plot<'static> {
    let x_name = if x_by_time { "seconds" } else { "step" };
    let plot = Plot::new("loss_plot")
        .height(height)
        .legend(
            Legend::default()
                .position(Corner::RightTop)
                .text_style(egui::TextStyle::Small)
                .color_conflict_handling(ColorConflictHandling::PickLast),
        )
        .x_axis_label(x_name)
        .y_axis_label(if log_y { "loss (log)" } else { "loss" })
        .link_axis(Id::unique(LINK_GROUP), [true, false])
        .link_cursor(Id::unique(LINK_GROUP), [true, false])
        .label_formatter(move |position| {
            let (name, p) = match position {
                egui_plot::HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => (*plot_name, *position),
                egui_plot::HoverPosition::Elsewhere { position } => ("", *position),
            };
            let y = if log_y { 10f64.powf(p.y) } else { p.y };
            Some(format!("{name}\n{x_name} {:.1}\nloss {y:.4}", p.x))
        });
    if !log_y {
        return plot;
    }
    plot.y_grid_spacer(egui_plot::log_grid_spacer(10))
        .y_axis_formatter(|mark, _| format_log_tick(mark.value))
}

/// Settings row above the plots.
pub fn plot_settings_ui(ui: &mut egui::Ui, state: &mut PlotsState) {
    ui.horizontal_wrapped(|ui| {
        ui.label("x:");
        ui.selectable_value(&mut state.x_by_time, false, "step");
        ui.selectable_value(&mut state.x_by_time, true, "time");
        ui.separator();
        ui.add(egui::Slider::new(&mut state.smoothing, 0.0..=0.99).text("smoothing"));
        ui.checkbox(&mut state.log_y, "log y");
        ui.weak("loss: solid = trained examples, dashed = whole batch");
        ui.checkbox(&mut state.ignore_outliers, "ignore outliers")
            .on_hover_text(
            "Scale the loss axis to the bulk of the points; a spike is drawn clipped at the edge",
        );
        overlays_ui(ui, state);
    });
}

/// The overlaid runs, each with a checkbox that shows it and a button that takes it off.
fn overlays_ui(ui: &mut egui::Ui, state: &mut PlotsState) {
    let names = state.overlay_names();
    if names.is_empty() {
        return;
    }
    ui.separator();
    ui.weak("other runs, dotted:");
    for name in names {
        ui.horizontal(|ui| {
            let mut shown = state.is_overlay_shown(&name);
            if ui.checkbox(&mut shown, name.as_str()).changed() {
                state.show_overlay(&name, shown);
            }
            if ui
                .small_button("×")
                .on_hover_text(format!("Take {name} off the plots"))
                .clicked()
            {
                state.remove_overlay(&name);
            }
        });
    }
}

/// A curve of an overlaid run: its strategy's colour, but fainter, thinner and dotted, so the
/// live run stays in front.
fn overlay_line<'a>(run: &str, strategy: Strategy, points: PlotPoints<'a>) -> Line<'a> {
    Line::new(format!("{run} · {}", strategy.label()), points)
        .color(theme::strategy(strategy).gamma_multiply(0.7))
        .width(1.0)
        .style(LineStyle::dotted_loose())
}

const LINK_GROUP: &str = "loss-and-map-x";

/// Loss curves of every strategy: trained-examples loss solid (smoothed over a faint raw
/// curve), whole-batch loss dashed, K/M changes as vertical lines; behind them the whole-batch
/// loss of each overlaid run, dotted.
pub fn loss_plot_ui(ui: &mut egui::Ui, state: &mut PlotsState, height: f32) {
    let x_by_time = state.x_by_time;
    let smoothing = state.smoothing;
    let plot = loss_plot(height, state.log_y, x_by_time);
    let clip_range = state.robust_y_range.filter(|_| state.ignore_outliers);
    let drawn: &PlotsState = state;
    let response = plot.show(ui, |plot_ui| {
        for (run, overlay) in drawn.shown_overlays() {
            for (strategy, series) in &overlay.batch {
                let points = clipped(&series.smooth_view, clip_range);
                plot_ui.line(overlay_line(run, *strategy, points));
            }
        }
        for (strategy, curves) in &drawn.curves {
            let color = theme::strategy(*strategy);
            // One legend entry per strategy (lines of one name share it); the line styles are
            // explained once, beside the plot's settings.
            let name = strategy.label().to_string();
            if smoothing > 0.0 {
                plot_ui.line(
                    Line::new(name.clone(), clipped(&curves.trained.raw_view, clip_range))
                        .color(color.gamma_multiply(0.25))
                        .width(1.0)
                        .allow_hover(false),
                );
            }
            plot_ui.line(
                Line::new(name, clipped(&curves.trained.smooth_view, clip_range))
                    .color(color)
                    .width(1.8),
            );
            plot_ui.line(
                Line::new(
                    strategy.label(),
                    clipped(&curves.batch.smooth_view, clip_range),
                )
                .color(color.gamma_multiply(0.8))
                .width(1.2)
                .style(LineStyle::dashed_dense()),
            );
        }
        // At the top of the data, not of the plot: an item placed at the plot's edge would
        // widen the automatic bounds a little more every frame.
        let Some(top) = drawn
            .loss_y_max
            .map(|max| clip_range.map_or(max, |(_, high)| max.min(high)))
        else {
            return;
        };
        for change in &drawn.changes {
            let x = if x_by_time {
                change.elapsed_secs
            } else {
                change.step as f64
            };
            plot_ui.vline(
                VLine::new("K/M changes", x)
                    .color(Color32::GRAY)
                    .style(LineStyle::dashed_loose()),
            );
            plot_ui.text(
                Text::new("K/M changes", PlotPoint::new(x, top), change.text.clone())
                    .anchor(egui::Align2::LEFT_TOP)
                    .color(Color32::GRAY),
            );
        }
    });
    let bounds = response.transform.bounds();
    state.drawn_loss_y_range = Some((bounds.min()[1], bounds.max()[1]));
}

/// The points of `view`, with y clamped into `range` when there is one: the plot then scales to
/// the range and an outlier is drawn at its edge.
fn clipped(view: &[PlotPoint], range: Option<(f64, f64)>) -> PlotPoints<'_> {
    match range {
        None => PlotPoints::Borrowed(view),
        Some((low, high)) => PlotPoints::Owned(
            view.iter()
                .map(|p| PlotPoint::new(p.x, p.y.clamp(low, high)))
                .collect(),
        ),
    }
}

fn format_log_tick(log_value: f64) -> String {
    let value = 10f64.powf(log_value);
    if (0.01..1000.0).contains(&value) {
        format!("{value:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    } else {
        format!("{value:.0e}")
    }
}

/// Validation mAP of each strategy over the run, and of the overlaid runs dotted behind it; x
/// linked with the loss plot.
pub fn map_plot_ui(ui: &mut egui::Ui, state: &mut PlotsState, height: f32) {
    let x_name = if state.x_by_time { "seconds" } else { "step" };
    // Spans the loss plot's range even before the first evaluation.
    let last_x = if state.x_by_time {
        state.last_secs
    } else {
        state.last_step as f64
    };
    let state: &PlotsState = state;
    Plot::new("map_plot")
        .height(height)
        .legend(
            Legend::default()
                .position(Corner::LeftTop)
                .text_style(egui::TextStyle::Small),
        )
        .x_axis_label(x_name)
        .y_axis_label("val mAP@0.5")
        .include_x(0.0)
        .include_x(last_x)
        // From 0 to the best mAP so far: early values like 0.009 and 0.020 stay apart.
        .include_y(0.0)
        .link_axis(Id::unique(LINK_GROUP), [true, false])
        .link_cursor(Id::unique(LINK_GROUP), [true, false])
        .show(ui, |plot_ui| {
            for (run, overlay) in state.shown_overlays() {
                for (strategy, points) in &overlay.map_view {
                    let points = PlotPoints::Borrowed(points);
                    plot_ui.line(overlay_line(run, *strategy, points));
                }
            }
            for (strategy, points) in &state.map_view {
                let color = theme::strategy(*strategy);
                plot_ui.line(
                    Line::new(strategy.label(), PlotPoints::Borrowed(points))
                        .color(color)
                        .width(1.8),
                );
                plot_ui.points(
                    Points::new(strategy.label(), PlotPoints::Borrowed(points))
                        .color(color)
                        .radius(2.5),
                );
            }
        });
}

/// The precision–recall curve of each strategy's latest evaluation, with the point at the
/// score threshold marked (filled) and the best-F1 point (a hollow diamond); P/R/F1 at the threshold are written below by the caller.
pub fn pr_plot_ui(
    ui: &mut egui::Ui,
    latest: &BTreeMap<Strategy, std::sync::Arc<EvalReport>>,
    threshold: f32,
    height: f32,
) {
    Plot::new("pr_plot")
        .height(height)
        .legend(
            Legend::default()
                .position(Corner::LeftBottom)
                .text_style(egui::TextStyle::Small),
        )
        .x_axis_label("recall")
        .y_axis_label("precision")
        .include_x(0.0)
        .include_x(1.0)
        .include_y(0.0)
        .include_y(1.05)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .show(ui, |plot_ui| {
            for (strategy, report) in latest {
                let color = theme::strategy(*strategy);
                let curve: PlotPoints<'_> = report
                    .evaluation
                    .pr_curve()
                    .iter()
                    .map(|p| [f64::from(p.recall), f64::from(p.precision)])
                    .collect();
                let name = format!("{} (step {})", strategy.label(), report.step);
                plot_ui.line(Line::new(name.clone(), curve).color(color).width(1.5));
                let at = report.evaluation.point_at(threshold);
                plot_ui.points(
                    Points::new(
                        name.clone(),
                        vec![[f64::from(at.recall), f64::from(at.precision)]],
                    )
                    .color(color)
                    .radius(5.0)
                    .filled(true),
                );
                let best = report.evaluation.best_f1_point();
                plot_ui.points(
                    Points::new(
                        name,
                        vec![[f64::from(best.recall), f64::from(best.precision)]],
                    )
                    .color(color)
                    .shape(MarkerShape::Diamond)
                    .radius(6.0)
                    .filled(false),
                );
            }
        });
}

/// Why each strategy's detections at the score threshold are wrong: one horizontal bar per
/// strategy, its false positives stacked by type (Hoiem et al.'s breakdown).
pub fn error_breakdown_ui(
    ui: &mut egui::Ui,
    latest: &BTreeMap<Strategy, std::sync::Arc<EvalReport>>,
    threshold: f32,
    height: f32,
) {
    let strategies: Vec<(Strategy, crate::eval::ErrorBreakdown)> = latest
        .iter()
        .map(|(s, r)| (*s, r.evaluation.error_breakdown(threshold)))
        .collect();
    let names: Vec<&'static str> = strategies.iter().map(|(s, _)| s.label()).collect();
    let mut charts: Vec<BarChart> = Vec::new();
    for kind in ErrorKind::ALL {
        let bars = strategies
            .iter()
            .enumerate()
            .map(|(i, (s, e))| {
                Bar::new(i as f64, e.count(kind) as f64)
                    .name(format!("{}: {}", s.label(), kind.label()))
                    .width(0.6)
            })
            .collect();
        let below: Vec<&BarChart> = charts.iter().collect();
        let chart = BarChart::new(kind.label(), bars)
            .color(theme::error_kind(kind))
            .horizontal()
            .stack_on(&below);
        charts.push(chart);
    }
    Plot::new("error_breakdown")
        .height(height)
        .legend(
            Legend::default()
                .position(Corner::RightTop)
                .text_style(egui::TextStyle::Small),
        )
        .x_axis_label(format!("false positives at ≥ {threshold:.2}"))
        .y_axis_formatter(move |mark, _| {
            let i = mark.value.round();
            if (mark.value - i).abs() < 1e-6 && i >= 0.0 {
                names
                    .get(i as usize)
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        })
        .include_x(0.0)
        .include_y(-0.6)
        // Room above the bars for the legend.
        .include_y(strategies.len().max(1) as f64 + 1.4)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .show(ui, |plot_ui| {
            for chart in charts {
                plot_ui.bar_chart(chart);
            }
        });
}

#[cfg(test)]
mod tests {
    use egui_kittest::kittest::Queryable;
    use egui_kittest::Harness;

    use super::*;
    use crate::train::messages::{StepReport, StrategyStep};

    /// Step `step` of the default strategies, every loss `loss`.
    fn step_report(step: u64, loss: f32) -> StepReport {
        StepReport {
            step,
            elapsed_secs: step as f64 * 0.05,
            batch_size: 128,
            hard_examples: 32,
            examples_per_sec: 2500.0,
            strategies: Strategy::DEFAULT
                .into_iter()
                .map(|strategy| StrategyStep {
                    strategy,
                    trained_loss: loss,
                    batch_loss: loss,
                    forward_ms: 1.0,
                    select_ms: 0.1,
                    train_ms: 2.0,
                })
                .collect(),
        }
    }

    #[test]
    fn an_overlaid_run_is_listed_and_can_be_hidden_and_taken_off() {
        let mut state = PlotsState::default();
        state.record_step(&step_report(1, 0.5));
        state.overlay_step("baseline", &step_report(1, 0.8));
        let mut harness = Harness::builder()
            .with_size(egui::vec2(1400.0, 900.0))
            .build_ui_state(
                |ui, state: &mut PlotsState| {
                    state.refresh_views();
                    plot_settings_ui(ui, state);
                    loss_plot_ui(ui, state, 380.0);
                    map_plot_ui(ui, state, 190.0);
                },
                state,
            );
        harness.get_by_label("baseline").click();
        harness.run_steps(2);
        assert!(!harness.state().is_overlay_shown("baseline"));
        harness.get_by_label("×").click();
        harness.run_steps(2);
        assert!(harness.state().overlay_names().is_empty());
    }
}
