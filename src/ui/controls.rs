//! The left-hand controls: K, M, learning rate, strategies, selection options and the score
//! threshold. Live settings go to the trainer as one [`Command::SetLive`] and come back as the
//! settings it adopted, which is what the controls then show; the threshold never leaves the
//! app (every view applies it at draw time).

use crate::ohem::SelectionConfig;
use crate::train::config::{LiveSettings, Strategy, TrainConfig};
use crate::train::messages::Command;

/// Smallest and largest K offered.
pub const BATCH_SIZE_RANGE: std::ops::RangeInclusive<usize> = 16..=8192;
/// The negatives cap a newly ticked "cap negatives" starts at (SSD's 3:1).
const DEFAULT_NEGATIVES_CAP: f32 = 3.0;

/// What the controls currently say.
#[derive(Clone, Debug, PartialEq)]
pub struct Controls {
    /// K, M, learning rate, NMS, negatives cap, evaluate-every: as the trainer last adopted
    /// them ([`Controls::adopt`]), or as edited since and sent.
    pub live: LiveSettings,
    /// Detections and examples scored at or above this count as "object".
    pub score_threshold: f32,
    /// Until the user moves the threshold, each evaluation sets it to its best-F1 point.
    pub threshold_follows_best_f1: bool,
    pub strategies: Vec<Strategy>,
    /// The negatives cap's slider value, kept while the cap is off.
    pub negatives_cap: f32,
}

impl Default for Controls {
    fn default() -> Self {
        let config = TrainConfig::default();
        Self {
            live: config.live(),
            score_threshold: 0.5,
            threshold_follows_best_f1: true,
            strategies: config.strategies,
            negatives_cap: config
                .max_negatives_per_positive
                .unwrap_or(DEFAULT_NEGATIVES_CAP),
        }
    }
}

impl Controls {
    /// The configuration a Start button sends: the app trains until stopped.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            steps: None,
            strategies: self.strategies.clone(),
            ..TrainConfig::default()
        }
        .with_live(&self.live.clamped())
    }

    /// Shows the settings the trainer says it uses.
    pub fn adopt(&mut self, live: LiveSettings) {
        if let Some(cap) = live.max_negatives_per_positive {
            self.negatives_cap = cap;
        }
        self.live = live;
    }

    /// OHEM's selection with these controls.
    pub fn selection(&self) -> SelectionConfig {
        self.live.clamped().selection()
    }
}

/// Buttons in the controls that ask the app (not the trainer) to do something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlAction {
    EvaluateNow,
    SaveWeights,
}

/// The score threshold's slider range.
pub const THRESHOLD_RANGE: std::ops::RangeInclusive<f32> = 0.05..=0.99;

impl Controls {
    /// Moves the threshold to an evaluation's best-F1 score, within the slider's range.
    pub fn set_threshold_to_best_f1(&mut self, best_f1_score: f32) {
        if best_f1_score.is_finite() {
            self.score_threshold =
                best_f1_score.clamp(*THRESHOLD_RANGE.start(), *THRESHOLD_RANGE.end());
        }
    }
}

/// Draws the controls; returns the commands to send for what changed, and any button pressed.
/// `best_f1` is the score of the latest evaluation's best-F1 point.
pub fn controls_ui(
    ui: &mut egui::Ui,
    controls: &mut Controls,
    run_active: bool,
    best_f1: Option<f32>,
) -> (Vec<Command>, Option<ControlAction>) {
    let mut commands = Vec::new();
    ui.heading("Training");
    let mut live_changed = batch_ui(ui, &mut controls.live);
    threshold_ui(ui, controls, best_f1);
    live_changed |= ui
        .add(
            egui::Slider::new(&mut controls.live.lr, 1e-4..=1e-1)
                .logarithmic(true)
                .text("learning rate")
                .custom_formatter(|v, _| format!("{v:.1e}")),
        )
        .changed();
    ui.separator();
    if strategies_ui(ui, &mut controls.strategies) {
        commands.push(Command::SetStrategies(controls.strategies.clone()));
    }
    ui.separator();
    live_changed |= selection_ui(ui, controls);
    live_changed |= ui
        .add(
            egui::Slider::new(&mut controls.live.eval_every, 0..=500)
                .text("evaluate every")
                .suffix(" steps"),
        )
        .on_hover_text("From the next step on; 0 evaluates only at the end or on request")
        .changed();
    if live_changed {
        // Shown clamped at once; the trainer's answer then says what it took.
        controls.live = controls.live.clamped();
        commands.push(Command::SetLive(controls.live));
    }
    (commands, buttons_ui(ui, run_active))
}

/// K and M; whether either moved.
fn batch_ui(ui: &mut egui::Ui, live: &mut LiveSettings) -> bool {
    let k_changed = ui
        .add(
            egui::Slider::new(&mut live.batch_size, BATCH_SIZE_RANGE)
                .logarithmic(true)
                .text("K"),
        )
        .on_hover_text("K: RoIs scored in each batch")
        .changed();
    let m_changed = ui
        .add(
            egui::Slider::new(&mut live.hard_examples, 1..=live.batch_size)
                .logarithmic(true)
                .text("M"),
        )
        .on_hover_text("M: the highest-loss examples OHEM backpropagates per batch")
        .changed();
    k_changed || m_changed
}

/// A checkbox per strategy; whether the list changed.
fn strategies_ui(ui: &mut egui::Ui, strategies: &mut Vec<Strategy>) -> bool {
    ui.label("Strategies (used by the next Start)");
    let mut changed = false;
    for strategy in Strategy::ALL {
        let mut on = strategies.contains(&strategy);
        if ui.checkbox(&mut on, strategy.label()).changed() {
            if on {
                strategies.push(strategy);
                strategies.sort();
            } else {
                strategies.retain(|s| *s != strategy);
            }
            changed = true;
        }
    }
    changed
}

/// NMS by loss and the negatives cap; whether either changed.
fn selection_ui(ui: &mut egui::Ui, controls: &mut Controls) -> bool {
    let live = &mut controls.live;
    let iou = live.nms_iou;
    let nms_changed = ui
        .checkbox(&mut live.nms_by_loss, format!("NMS by loss (IoU {iou:.2})"))
        .on_hover_text(format!(
            "Drop near-duplicate RoIs (NMS by loss at IoU {iou:.2}) before taking the top M, as in the paper"
        ))
        .changed();
    let mut capped = live.max_negatives_per_positive.is_some();
    let cap_toggled = ui
        .checkbox(&mut capped, "cap negatives per positive")
        .changed();
    let cap_moved = ui
        .add_enabled(
            capped,
            egui::Slider::new(&mut controls.negatives_cap, 0.5..=10.0)
                .text("negatives per positive"),
        )
        .changed();
    live.max_negatives_per_positive = capped.then_some(controls.negatives_cap);
    nms_changed || cap_toggled || cap_moved
}

/// "Evaluate now" and "Save weights…".
fn buttons_ui(ui: &mut egui::Ui, run_active: bool) -> Option<ControlAction> {
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        if ui
            .add_enabled(run_active, egui::Button::new("Evaluate now"))
            .clicked()
        {
            action = Some(ControlAction::EvaluateNow);
        }
        if ui
            .add_enabled(run_active, egui::Button::new("Save weights…"))
            .on_hover_text("Writes <folder>/<time>/<strategy>.safetensors")
            .clicked()
        {
            action = Some(ControlAction::SaveWeights);
        }
    });
    action
}

/// The score threshold's slider and its "best F1" button.
fn threshold_ui(ui: &mut egui::Ui, controls: &mut Controls, best_f1: Option<f32>) {
    let moved = ui
        .add(
            egui::Slider::new(&mut controls.score_threshold, THRESHOLD_RANGE)
                .text("score threshold")
                // The same two decimals whether dragged or set to an evaluation's best F1.
                .fixed_decimals(2),
        )
        .on_hover_text("Applies at once to every view; training is not affected")
        .changed();
    if moved {
        controls.threshold_follows_best_f1 = false;
    }
    ui.horizontal(|ui| {
        let hint = match best_f1 {
            Some(score) => format!("The latest evaluation's highest F1 is at {score:.2}"),
            None => "Available after the first evaluation".to_string(),
        };
        if ui
            .add_enabled(best_f1.is_some(), egui::Button::new("best F1"))
            .on_hover_text(hint)
            .clicked()
        {
            if let Some(score) = best_f1 {
                controls.set_threshold_to_best_f1(score);
            }
        }
        if controls.threshold_follows_best_f1 {
            ui.weak("follows each evaluation's best F1");
        }
    });
}
