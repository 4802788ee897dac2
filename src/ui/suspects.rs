//! The label suspects panel: the persistent offenders that the rule of `train::suspects` flags
//! as a possibly wrong box or a possibly missing label, the most picked places and images, and
//! the export of `label_suspects.csv`.

use egui::RichText;

use super::theme;
use crate::data::{Dataset, ImageRecord};
use crate::files::file_name;
use crate::geometry::Rect;
use crate::train::messages::HardExampleBatch;
use crate::train::suspects::{
    suspects_csv, Offender, OffenderKind, OffenderLog, Suspect, SuspectBars, SuspectKind,
    TypicalScores, NEGATIVE_SUSPECT_MAX_BOX_IOU, NEGATIVE_SUSPECT_MIN_SCORE,
    POSITIVE_SUSPECT_MAX_SCORE, SUSPECT_MARGIN, SUSPECT_MIN_PICKS, SUSPECT_MIN_PICK_RATE,
};

/// Offenders listed under "most picked".
const MOST_PICKED_SHOWN: usize = 8;

/// The run's offenders and the suspects among them, brought up to date with every batch.
#[derive(Default)]
pub struct SuspectsState {
    log: OffenderLog,
    suspects: Vec<Suspect>,
    /// Batches whose picks were judged.
    batches_seen: u64,
    /// Batches whose picks never reached the app (the trainer drops previews the app is too
    /// busy to take): the suspects are judged without them.
    batches_missed: u64,
}

impl SuspectsState {
    pub fn record(&mut self, batch: &HardExampleBatch, images: &[ImageRecord]) {
        self.log.record(batch, images);
        self.suspects = self.log.suspects();
        self.batches_seen += 1;
    }

    pub fn previews_dropped(&mut self, count: u64) {
        self.batches_missed += count;
    }

    /// How many batches the suspects were judged on, and how many they missed.
    pub fn coverage(&self) -> (u64, u64) {
        (self.batches_seen, self.batches_missed)
    }

    pub fn count(&self) -> usize {
        self.suspects.len()
    }

    pub fn suspects(&self) -> &[Suspect] {
        &self.suspects
    }

    pub fn log(&self) -> &OffenderLog {
        &self.log
    }

    /// `label_suspects.csv` as bytes.
    pub fn csv(&self, images: &[ImageRecord]) -> anyhow::Result<Vec<u8>> {
        suspects_csv(&self.suspects, images)
    }
}

/// What the panel asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum SuspectsAction {
    /// Open a training image with this box or window on it.
    Open {
        image: usize,
        rect: Rect,
        caption: String,
    },
    /// Export the suspects as CSV.
    Export,
}

/// The suspects, most picked first, then the most picked places and images.
pub fn suspects_ui(
    ui: &mut egui::Ui,
    state: &SuspectsState,
    hardest_images: &[(usize, usize)],
    dataset: Option<&Dataset>,
) -> Option<SuspectsAction> {
    let mut action = None;
    ui.horizontal_wrapped(|ui| {
        if ui
            .add_enabled(state.count() > 0, egui::Button::new("Export suspects CSV…"))
            .on_hover_text("Writes label_suspects.csv into a folder")
            .clicked()
        {
            action = Some(SuspectsAction::Export);
        }
        let typical = state.log().typical();
        let score = |s: Option<f32>| s.map_or("–".to_string(), |s| format!("{s:.2}"));
        ui.weak(format!(
            "typical score: positives {} · negatives {}",
            score(typical.positive),
            score(typical.negative)
        ));
    });
    rule_ui(ui, &state.log().typical());
    let (seen, missed) = state.coverage();
    if missed > 0 {
        ui.weak(format!(
            "judged on the picks of {seen} batches; {missed} more were trained while the app was too busy to take their picks"
        ));
    }
    let images = dataset.map_or(&[][..], |d| &d.train[..]);
    egui::ScrollArea::vertical()
        .id_salt("label_suspects")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            // Long rows wrap instead of widening the panel.
            ui.style_mut().wrap_mode = Some(egui::TextWrapMode::Wrap);
            if state.suspects().is_empty() {
                ui.weak("No suspect yet.");
            }
            for suspect in state.suspects() {
                if let Some(open) = suspect_row_ui(ui, suspect, images) {
                    action = Some(open);
                }
            }
            ui.separator();
            hardest_images_ui(ui, hardest_images, images);
            egui::CollapsingHeader::new("Most picked places")
                .id_salt("most_picked")
                .default_open(true)
                .show(ui, |ui| {
                    for offender in state.log().most_picked(MOST_PICKED_SHOWN) {
                        let text = offender_line(offender, images);
                        if ui
                            .selectable_label(false, RichText::new(&text).small())
                            .clicked()
                        {
                            action = Some(open(offender, text));
                        }
                    }
                });
        });
    action
}

/// The rule in words, with its numbers, and the scores it asks for now.
fn rule_ui(ui: &mut egui::Ui, typical: &TypicalScores) {
    let bars = SuspectBars::of(typical);
    let bar = |b: Option<f32>| b.map_or("–".to_string(), |b| format!("{b:.2}"));
    ui.weak(format!(
        "Now a wrong box scores ≤ {}, a missing label ≥ {}.",
        bar(bars.positive_max),
        bar(bars.negative_min)
    ));
    let rate = SUSPECT_MIN_PICK_RATE * 100.0;
    egui::CollapsingHeader::new("The rule")
        .id_salt("suspect_rule")
        .show(ui, |ui| {
            ui.label(RichText::new(format!(
                "Both kinds stay hard: picked at least {SUSPECT_MIN_PICKS} times, in at least {rate:.0} % of the batches they were in."
            )).small());
            ui.label(RichText::new(format!(
                "Wrong or sloppy box? A positive whose recent and last scores stay ≤ {POSITIVE_SUSPECT_MAX_SCORE:.2} and {SUSPECT_MARGIN:.2} below the typical positive's."
            )).small());
            ui.label(RichText::new(format!(
                "Missing label? A negative region overlapping every box by IoU ≤ {NEGATIVE_SUSPECT_MAX_BOX_IOU:.1}, whose recent and last scores stay ≥ {NEGATIVE_SUSPECT_MIN_SCORE:.2} and {SUSPECT_MARGIN:.2} above the typical negative's."
            )).small());
        });
}

/// One suspect; returns what to open when it is clicked.
fn suspect_row_ui(
    ui: &mut egui::Ui,
    suspect: &Suspect,
    images: &[ImageRecord],
) -> Option<SuspectsAction> {
    let colour = match suspect.kind {
        SuspectKind::WrongBox => theme::MISSED,
        SuspectKind::MissingLabel => theme::FALSE_POSITIVE,
    };
    let text = format!(
        "{} {}",
        suspect.kind.question(),
        offender_line(&suspect.offender, images)
    );
    let mut clicked = false;
    ui.horizontal(|ui| {
        let (swatch, _) = ui.allocate_exact_size(egui::vec2(8.0, 8.0), egui::Sense::hover());
        ui.painter().rect_filled(swatch, 1.0, colour);
        clicked = ui
            .selectable_label(false, RichText::new(&text).small())
            .on_hover_text("Open the image with this box and the object-score heat map")
            .clicked();
    });
    clicked.then(|| open(&suspect.offender, format!("label suspect: {text}")))
}

/// "train_0042.jpg, box 120,80–170,110: picked 12× of 14 seen, mean loss 2.31, last score 0.87".
fn offender_line(offender: &Offender, images: &[ImageRecord]) -> String {
    let name = images
        .get(offender.image)
        .map_or_else(|| format!("#{}", offender.image), |r| file_name(&r.path));
    let what = match offender.kind {
        OffenderKind::Positive { box_index } => format!("box {}", box_index + 1),
        OffenderKind::Negative => "background".to_string(),
    };
    let r = offender.rect;
    format!(
        "{name}, {what} at {:.0},{:.0}–{:.0},{:.0}: picked {}× of {} seen, mean loss {:.2}, last score {:.2}",
        r.x0,
        r.y0,
        r.x1,
        r.y1,
        offender.times_picked,
        offender.times_seen,
        offender.mean_loss(),
        offender.last_score
    )
}

fn open(offender: &Offender, caption: String) -> SuspectsAction {
    SuspectsAction::Open {
        image: offender.image,
        rect: offender.rect,
        caption,
    }
}

fn hardest_images_ui(ui: &mut egui::Ui, hardest: &[(usize, usize)], images: &[ImageRecord]) {
    if hardest.is_empty() {
        return;
    }
    ui.horizontal_wrapped(|ui| {
        ui.label("Hardest images:");
        for &(image, count) in hardest {
            let name = images
                .get(image)
                .map_or_else(|| format!("#{image}"), |r| file_name(&r.path));
            ui.weak(format!("{name} ×{count}"));
        }
    });
}
