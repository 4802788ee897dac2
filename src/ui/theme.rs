//! Every colour the app gives a meaning to, in one place, so that red means "false positive"
//! in the hard-example grid, the detection viewer and the error breakdown alike.

use egui::Color32;

use crate::eval::ErrorKind;
use crate::train::config::Strategy;

pub const TRUE_POSITIVE: Color32 = Color32::from_rgb(40, 200, 70);
/// A detection, or a hard negative scored at or above the threshold, that claims an object
/// where there is none.
pub const FALSE_POSITIVE: Color32 = Color32::from_rgb(235, 40, 40);
pub const MISSED: Color32 = Color32::from_rgb(255, 170, 0);
pub const GROUND_TRUTH: Color32 = Color32::from_rgb(220, 220, 220);
/// A detection on a `difficult` box: neither right nor wrong.
pub const IGNORED: Color32 = Color32::from_gray(150);
/// A window of an object in the hard-example grid.
pub const OBJECT: Color32 = Color32::from_rgb(60, 150, 255);
pub const NEUTRAL: Color32 = Color32::from_gray(110);
/// Text of a problem or an error.
pub const PROBLEM_TEXT: Color32 = Color32::from_rgb(255, 90, 80);

/// The colour of a strategy in every plot.
pub fn strategy(strategy: Strategy) -> Color32 {
    let [r, g, b] = strategy.colour();
    Color32::from_rgb(r, g, b)
}

/// The colour of a false-positive type in the error breakdown.
pub fn error_kind(kind: ErrorKind) -> Color32 {
    match kind {
        ErrorKind::Localisation => Color32::from_rgb(230, 170, 40),
        ErrorKind::Duplicate => Color32::from_rgb(170, 120, 220),
        ErrorKind::Confusion => Color32::from_rgb(60, 180, 200),
        ErrorKind::Background => FALSE_POSITIVE,
    }
}
