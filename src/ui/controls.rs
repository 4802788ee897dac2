//! The left-hand controls: K, M, learning rate, strategies, selection options and the score
//! threshold. Live settings become [`Command`]s for the trainer; the threshold never leaves the
//! app (every view applies it at draw time).

use crate::ohem::SelectionConfig;
use crate::train::config::{Strategy, TrainConfig};
use crate::train::messages::Command;

/// Smallest and largest K offered.
pub const BATCH_SIZE_RANGE: std::ops::RangeInclusive<usize> = 16..=8192;

/// What the controls currently say.
#[derive(Clone, Debug, PartialEq)]
pub struct Controls {
    /// K: examples per batch.
    pub batch_size: usize,
    /// M: hard examples kept per batch (1..=K).
    pub hard_examples: usize,
    /// Detections and examples scored at or above this count as "object".
    pub score_threshold: f32,
    /// Until the user moves the threshold, each evaluation sets it to its best-F1 point.
    pub threshold_follows_best_f1: bool,
    pub lr: f64,
    pub strategies: Vec<Strategy>,
    pub nms_by_loss: bool,
    pub cap_negatives: bool,
    pub max_negatives_per_positive: f32,
    /// Evaluate every this many steps (0: only on request).
    pub eval_every: u64,
}

impl Default for Controls {
    fn default() -> Self {
        let config = TrainConfig::default();
        Self {
            batch_size: config.batch_size,
            hard_examples: config.hard_examples,
            score_threshold: 0.5,
            threshold_follows_best_f1: true,
            lr: config.lr,
            strategies: config.strategies,
            nms_by_loss: config.nms_by_loss,
            cap_negatives: false,
            max_negatives_per_positive: 3.0,
            eval_every: 50,
        }
    }
}

impl Controls {
    /// The configuration a Start button sends: the app trains until stopped.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            steps: None,
            batch_size: self.batch_size,
            hard_examples: self.hard_examples.clamp(1, self.batch_size),
            strategies: self.strategies.clone(),
            lr: self.lr,
            eval_every: self.eval_every,
            nms_by_loss: self.nms_by_loss,
            max_negatives_per_positive: self.negatives_cap(),
            ..TrainConfig::default()
        }
    }

    fn negatives_cap(&self) -> Option<f32> {
        self.cap_negatives
            .then_some(self.max_negatives_per_positive)
    }

    /// OHEM's selection with these controls (`nms_iou` is the run's).
    pub fn selection(&self, nms_iou: f32) -> SelectionConfig {
        SelectionConfig {
            hard_examples: self.hard_examples.clamp(1, self.batch_size),
            nms_by_loss: self.nms_by_loss,
            nms_iou,
            max_negatives_per_positive: self.negatives_cap(),
        }
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
    let mut action = None;

    ui.heading("Training");
    let k_changed = ui
        .add(
            egui::Slider::new(&mut controls.batch_size, BATCH_SIZE_RANGE)
                .logarithmic(true)
                .text("K"),
        )
        .on_hover_text("K: RoIs scored in each batch")
        .changed();
    if k_changed {
        commands.push(Command::SetBatchSize(controls.batch_size));
        if controls.hard_examples > controls.batch_size {
            controls.hard_examples = controls.batch_size;
            commands.push(Command::SetHardExamples(controls.hard_examples));
        }
    }
    let m_changed = ui
        .add(
            egui::Slider::new(&mut controls.hard_examples, 1..=controls.batch_size)
                .logarithmic(true)
                .text("M"),
        )
        .on_hover_text("M: the highest-loss examples OHEM backpropagates per batch")
        .changed();
    if m_changed {
        commands.push(Command::SetHardExamples(controls.hard_examples));
    }
    threshold_ui(ui, controls, best_f1);

    let lr_changed = ui
        .add(
            egui::Slider::new(&mut controls.lr, 1e-4..=1e-1)
                .logarithmic(true)
                .text("learning rate")
                .custom_formatter(|v, _| format!("{v:.1e}")),
        )
        .changed();
    if lr_changed {
        commands.push(Command::SetLearningRate(controls.lr));
    }

    ui.separator();
    ui.label("Strategies (used by the next Start)");
    let mut strategies_changed = false;
    for strategy in Strategy::ALL {
        let mut on = controls.strategies.contains(&strategy);
        if ui.checkbox(&mut on, strategy.label()).changed() {
            if on {
                controls.strategies.push(strategy);
                controls.strategies.sort();
            } else {
                controls.strategies.retain(|s| *s != strategy);
            }
            strategies_changed = true;
        }
    }
    if strategies_changed {
        commands.push(Command::SetStrategies(controls.strategies.clone()));
    }

    ui.separator();
    if ui
        .checkbox(&mut controls.nms_by_loss, "NMS by loss (IoU 0.7)")
        .on_hover_text("Drop near-duplicate RoIs (NMS by loss at IoU 0.7) before taking the top M, as in the paper")
        .changed()
    {
        commands.push(Command::SetNmsByLoss(controls.nms_by_loss));
    }
    let cap_toggled = ui
        .checkbox(&mut controls.cap_negatives, "cap negatives per positive")
        .changed();
    let cap_moved = ui
        .add_enabled(
            controls.cap_negatives,
            egui::Slider::new(&mut controls.max_negatives_per_positive, 0.5..=10.0)
                .text("negatives per positive"),
        )
        .changed();
    if cap_toggled || cap_moved {
        commands.push(Command::SetMaxNegativesPerPositive(
            controls.negatives_cap(),
        ));
    }
    ui.add(
        egui::Slider::new(&mut controls.eval_every, 0..=500)
            .text("evaluate every")
            .suffix(" steps"),
    )
    .on_hover_text("Used by the next Start; 0 evaluates only on request");

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
    (commands, action)
}

/// The score threshold's slider and its "best F1" button.
fn threshold_ui(ui: &mut egui::Ui, controls: &mut Controls, best_f1: Option<f32>) {
    let moved = ui
        .add(
            egui::Slider::new(&mut controls.score_threshold, THRESHOLD_RANGE)
                .text("score threshold"),
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
