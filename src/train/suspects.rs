//! Persistent offenders and label suspects: which parts of the training images OHEM keeps
//! picking batch after batch, and which of those look like labelling mistakes.
//!
//! An *offender* is one place in one training image, tracked across batches:
//! - a **positive** is keyed by its image and the annotated box it was cut around (the box of
//!   its class with the highest IoU with the RoI): every RoI of that box counts
//!   for it, so the record speaks of one label;
//! - a **negative** is keyed by its image and a *region*: the first picked RoI, which later
//!   negative RoIs of the same image join when their IoU with it is at least
//!   [`SAME_REGION_IOU`]. Negatives lie anywhere at any size, so an exact RoI rarely
//!   comes twice, while a missing label keeps being hit by overlapping RoIs.
//!
//! `pos/` crops have no image index and are not tracked.
//!
//! A *label suspect* is an offender that the rule of [`suspect_kind`] flags. Plain Rust over the
//! [`HardExampleBatch`]es the trainer sends: no tensors and no UI, so the app and
//! `ohem-studio train` (which writes `label_suspects.csv`) share it.

use std::collections::{BTreeSet, HashMap};

use crate::data::ImageRecord;
use crate::geometry::Rect;
use crate::train::messages::{HardExampleBatch, SeenExample};

/// Picks before an offender can be a suspect: one bad batch proves nothing.
pub const SUSPECT_MIN_PICKS: u32 = 5;
/// A suspect stays hard: OHEM picked it in at least this share of the batches it was in (a
/// window beside an object that scores high now and then is picked far less often).
pub const SUSPECT_MIN_PICK_RATE: f32 = 0.5;
/// Weight of the newest pick in an offender's recent score (an exponential moving average), and
/// of the newest batch in the typical scores: recent enough to follow the model, smooth enough
/// not to flicker.
pub const RECENT_WEIGHT: f32 = 0.3;
/// A positive is suspect while its scores stay at most this…
pub const POSITIVE_SUSPECT_MAX_SCORE: f32 = 0.3;
/// A negative is suspect while its scores stay at least this (where a detector at threshold
/// 0.5 would call it an object)…
pub const NEGATIVE_SUSPECT_MIN_SCORE: f32 = 0.5;
/// …and in either case this far from how its kind typically scores: the model tells most
/// objects (or most background) apart and fails on this one. Early in a run, and for a model
/// that scores everything near 0.5, the bar moves out of reach or higher.
pub const SUSPECT_MARGIN: f32 = 0.3;
/// A negative suspect overlaps no annotated box by more than this IoU (the IoU below which
/// evaluation calls a false positive one on background).
pub const NEGATIVE_SUSPECT_MAX_BOX_IOU: f32 = 0.1;
/// Negative windows of one image belong to the same region from this IoU with its first window:
/// the IoU below which a window counts as background, so that the windows of the pyramid's
/// neighbouring scales around one unlabelled object make one region.
pub const SAME_REGION_IOU: f32 = 0.3;
/// Offenders kept; past it the least picked half (the oldest first among equals) is forgotten.
pub const MAX_OFFENDERS: usize = 20_000;

/// What an offender is trained as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffenderKind {
    /// Windows cut around the annotated box `box_index` of the image.
    Positive { box_index: usize },
    /// Background windows of one region of the image.
    Negative,
}

/// One place of one training image that OHEM picked, with what the read-only passes saw of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Offender {
    /// Index among the training images.
    pub image: usize,
    pub kind: OffenderKind,
    /// What it is trained toward: 0 background, `c + 1` class `c`.
    pub label: usize,
    /// The annotated box (positive) or the region's first window (negative), original pixels.
    pub rect: Rect,
    /// Batches in which OHEM picked it.
    pub times_picked: u32,
    /// Batches in which it was one of the K examples, picked or not.
    pub times_seen: u32,
    loss_sum: f64,
    /// Score at its latest pick.
    pub last_score: f32,
    /// Score over its picks, newest weighted by [`RECENT_WEIGHT`].
    pub recent_score: f32,
    /// Step of its latest pick.
    pub last_step: u64,
    /// Highest IoU of `rect` with an annotated box of the image (a positive's own box counts).
    pub max_box_iou: f32,
}

impl Offender {
    /// Mean loss over its picks.
    pub fn mean_loss(&self) -> f32 {
        (self.loss_sum / f64::from(self.times_picked.max(1))) as f32
    }
}

/// Why an offender looks like a labelling mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuspectKind {
    /// A positive the model keeps scoring low while it recognises the others: the box may be
    /// wrong or sloppy.
    WrongBox,
    /// A negative on no annotated box that the model keeps scoring high while it rejects
    /// background elsewhere: an object may be missing its label.
    MissingLabel,
}

impl SuspectKind {
    /// The name in `label_suspects.csv`.
    pub fn key(self) -> &'static str {
        match self {
            SuspectKind::WrongBox => "wrong_box",
            SuspectKind::MissingLabel => "missing_label",
        }
    }

    /// What it says to a person.
    pub fn question(self) -> &'static str {
        match self {
            SuspectKind::WrongBox => "wrong or sloppy box?",
            SuspectKind::MissingLabel => "missing label?",
        }
    }
}

/// How the batch's positives and negatives score in general: the median score of each in a
/// batch, averaged over batches with weight [`RECENT_WEIGHT`] for the newest.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TypicalScores {
    pub positive: Option<f32>,
    pub negative: Option<f32>,
}

/// The scores the rule asks of suspects, given how positives and negatives typically score:
/// a wrong box scores at most `positive_max`, a missing label at least `negative_min` (`None`
/// while there is no typical score yet).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SuspectBars {
    pub positive_max: Option<f32>,
    pub negative_min: Option<f32>,
}

impl SuspectBars {
    /// [`POSITIVE_SUSPECT_MAX_SCORE`] and [`NEGATIVE_SUSPECT_MIN_SCORE`], moved to keep
    /// [`SUSPECT_MARGIN`] from the typical scores.
    pub fn of(typical: &TypicalScores) -> Self {
        Self {
            positive_max: typical
                .positive
                .map(|s| POSITIVE_SUSPECT_MAX_SCORE.min(s - SUSPECT_MARGIN)),
            negative_min: typical
                .negative
                .map(|s| NEGATIVE_SUSPECT_MIN_SCORE.max(s + SUSPECT_MARGIN)),
        }
    }
}

/// The label-suspect rule. Either kind stays hard: picked at least [`SUSPECT_MIN_PICKS`] times,
/// in at least [`SUSPECT_MIN_PICK_RATE`] of the batches it was in. Then a **positive** is a
/// suspect ([`SuspectKind::WrongBox`]) when its recent score and its last score are both at
/// most [`POSITIVE_SUSPECT_MAX_SCORE`] and at least [`SUSPECT_MARGIN`] below the typical
/// positive's; a **negative** is a suspect ([`SuspectKind::MissingLabel`]) when its recent score
/// and its last score are both at least [`NEGATIVE_SUSPECT_MIN_SCORE`] and at least
/// [`SUSPECT_MARGIN`] above the typical negative's, and it overlaps every annotated box of its
/// image by at most [`NEGATIVE_SUSPECT_MAX_BOX_IOU`]. (See [`SuspectBars`].)
pub fn suspect_kind(offender: &Offender, typical: &TypicalScores) -> Option<SuspectKind> {
    let picks = offender.times_picked;
    let rate = picks as f32 / offender.times_seen.max(picks).max(1) as f32;
    if picks < SUSPECT_MIN_PICKS || rate < SUSPECT_MIN_PICK_RATE {
        return None;
    }
    let (recent, last) = (offender.recent_score, offender.last_score);
    let bars = SuspectBars::of(typical);
    match offender.kind {
        OffenderKind::Positive { .. } => bars
            .positive_max
            .is_some_and(|bar| recent.max(last) <= bar)
            .then_some(SuspectKind::WrongBox),
        OffenderKind::Negative => (bars.negative_min.is_some_and(|bar| recent.min(last) >= bar)
            && offender.max_box_iou <= NEGATIVE_SUSPECT_MAX_BOX_IOU)
            .then_some(SuspectKind::MissingLabel),
    }
}

/// An offender the rule flags.
#[derive(Clone, Debug, PartialEq)]
pub struct Suspect {
    pub kind: SuspectKind,
    pub offender: Offender,
}

/// Every offender of a run so far.
#[derive(Clone, Debug, Default)]
pub struct OffenderLog {
    offenders: Vec<Offender>,
    /// Indices into `offenders`, per training image.
    by_image: HashMap<usize, Vec<usize>>,
    typical: TypicalScores,
}

impl OffenderLog {
    /// Takes one batch: an offender with picks in it counts as picked once (its RoIs' mean loss
    /// and mean score stand for the batch), and one with any RoI of the batch on it counts as
    /// seen once; picks on no known offender create one. A batch holds many RoIs of one box or
    /// region, so counting RoIs would let a single bad batch make a suspect. `images` are the
    /// training images the batch's `source_image`s index.
    pub fn record(&mut self, batch: &HardExampleBatch, images: &[ImageRecord]) {
        // Offender → (picks, loss sum, score sum) in this batch, in order of first pick.
        let mut picked: Vec<(usize, u32, f64, f64)> = Vec::new();
        for pick in &batch.examples {
            let seen = pick.seen;
            let Some(index) = self.find_or_insert(&seen, images) else {
                continue;
            };
            match picked.iter_mut().find(|p| p.0 == index) {
                Some(p) => {
                    p.1 += 1;
                    p.2 += f64::from(seen.loss);
                    p.3 += f64::from(seen.score);
                }
                None => picked.push((index, 1, f64::from(seen.loss), f64::from(seen.score))),
            }
        }
        let mut seen_here: BTreeSet<usize> = batch
            .batch
            .iter()
            .filter_map(|example| self.find(example, images))
            .collect();
        for &(index, picks, loss_sum, score_sum) in &picked {
            let score = (score_sum / f64::from(picks)) as f32;
            let offender = &mut self.offenders[index];
            offender.times_picked += 1;
            offender.loss_sum += loss_sum / f64::from(picks);
            offender.recent_score = if offender.times_picked == 1 {
                score
            } else {
                mix(offender.recent_score, score)
            };
            offender.last_score = score;
            offender.last_step = batch.step;
            // A batch recorded without its other RoIs: the pick was seen.
            seen_here.insert(index);
        }
        for index in seen_here {
            self.offenders[index].times_seen += 1;
        }
        self.update_typical(batch);
        if self.offenders.len() > MAX_OFFENDERS {
            self.forget_least_picked();
        }
    }

    pub fn offenders(&self) -> &[Offender] {
        &self.offenders
    }

    pub fn typical(&self) -> TypicalScores {
        self.typical
    }

    /// The offenders the rule flags, most picked first (then by mean loss).
    pub fn suspects(&self) -> Vec<Suspect> {
        let mut suspects: Vec<Suspect> = self
            .offenders
            .iter()
            .filter_map(|o| {
                suspect_kind(o, &self.typical).map(|kind| Suspect {
                    kind,
                    offender: o.clone(),
                })
            })
            .collect();
        suspects.sort_by(|a, b| {
            let (a, b) = (&a.offender, &b.offender);
            b.times_picked
                .cmp(&a.times_picked)
                .then(b.mean_loss().total_cmp(&a.mean_loss()))
                .then((a.image, a.last_step).cmp(&(b.image, b.last_step)))
        });
        suspects
    }

    /// The `n` offenders picked most often, most first.
    pub fn most_picked(&self, n: usize) -> Vec<&Offender> {
        let mut all: Vec<&Offender> = self.offenders.iter().collect();
        all.sort_by(|a, b| {
            b.times_picked
                .cmp(&a.times_picked)
                .then(b.mean_loss().total_cmp(&a.mean_loss()))
        });
        all.truncate(n);
        all
    }

    /// The offender `example` belongs to, if it is known.
    fn find(&self, example: &SeenExample, images: &[ImageRecord]) -> Option<usize> {
        let image = example.source_image?;
        let candidates = self.by_image.get(&image)?;
        match place_of(example, images.get(image)?)? {
            Place::Box(box_index) => candidates.iter().copied().find(|&i| {
                self.offenders[i].kind == OffenderKind::Positive { box_index }
                    && self.offenders[i].label == example.label
            }),
            Place::Background => candidates
                .iter()
                .copied()
                .filter(|&i| self.offenders[i].kind == OffenderKind::Negative)
                .map(|i| (i, self.offenders[i].rect.iou(&example.window)))
                .filter(|&(_, iou)| iou >= SAME_REGION_IOU)
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .map(|(i, _)| i),
        }
    }

    fn find_or_insert(&mut self, example: &SeenExample, images: &[ImageRecord]) -> Option<usize> {
        if let Some(index) = self.find(example, images) {
            return Some(index);
        }
        let image = example.source_image?;
        let record = images.get(image)?;
        let (kind, rect) = match place_of(example, record)? {
            Place::Box(box_index) => (
                OffenderKind::Positive { box_index },
                record.boxes[box_index].rect,
            ),
            Place::Background => (OffenderKind::Negative, example.window),
        };
        let max_box_iou = record
            .boxes
            .iter()
            .map(|b| b.rect.iou(&rect))
            .fold(0.0, f32::max);
        self.offenders.push(Offender {
            image,
            kind,
            label: example.label,
            rect,
            times_picked: 0,
            times_seen: 0,
            loss_sum: 0.0,
            last_score: example.score,
            recent_score: example.score,
            last_step: 0,
            max_box_iou,
        });
        let index = self.offenders.len() - 1;
        self.by_image.entry(image).or_default().push(index);
        Some(index)
    }

    fn update_typical(&mut self, batch: &HardExampleBatch) {
        let scores = |positive: bool| -> Vec<f32> {
            batch
                .batch
                .iter()
                .filter(|e| (e.label > 0) == positive && e.score.is_finite())
                .map(|e| e.score)
                .collect()
        };
        let smooth = |old: Option<f32>, new: Option<f32>| match (old, new) {
            (Some(old), Some(new)) => Some(mix(old, new)),
            (old, new) => new.or(old),
        };
        self.typical = TypicalScores {
            positive: smooth(self.typical.positive, median(scores(true))),
            negative: smooth(self.typical.negative, median(scores(false))),
        };
    }

    /// Keeps the most picked half (the most recently picked first among equals).
    fn forget_least_picked(&mut self) {
        self.offenders.sort_by(|a, b| {
            b.times_picked
                .cmp(&a.times_picked)
                .then(b.last_step.cmp(&a.last_step))
        });
        self.offenders.truncate(MAX_OFFENDERS / 2);
        self.by_image.clear();
        for (index, offender) in self.offenders.iter().enumerate() {
            self.by_image.entry(offender.image).or_default().push(index);
        }
    }
}

/// Where an example lies in its image, as far as offenders go.
enum Place {
    /// On the annotated box with this index.
    Box(usize),
    Background,
}

/// A positive's box: the box of its class that its window overlaps most.
fn place_of(example: &SeenExample, record: &ImageRecord) -> Option<Place> {
    if example.label == 0 {
        return Some(Place::Background);
    }
    record
        .boxes
        .iter()
        .enumerate()
        .filter(|(_, b)| b.class_id + 1 == example.label)
        .map(|(i, b)| (i, b.rect.iou(&example.window)))
        .filter(|&(_, iou)| iou > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| Place::Box(i))
}

fn mix(old: f32, new: f32) -> f32 {
    old + RECENT_WEIGHT * (new - old)
}

fn median(mut values: Vec<f32>) -> Option<f32> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f32::total_cmp);
    Some(values[values.len() / 2])
}

/// `label_suspects.csv`: one row per suspect, most picked first. `box` is the annotated box of
/// a wrong-box suspect, the region's first window of a missing-label one, in original pixels.
pub fn suspects_csv(suspects: &[Suspect], images: &[ImageRecord]) -> anyhow::Result<Vec<u8>> {
    let mut csv = csv::Writer::from_writer(Vec::new());
    csv.write_record([
        "image",
        "box_x0",
        "box_y0",
        "box_x1",
        "box_y1",
        "kind",
        "times_picked",
        "times_seen",
        "mean_loss",
        "last_score",
    ])?;
    for suspect in suspects {
        let o = &suspect.offender;
        // The file's own name, bytes as they are: also one that is not UTF-8.
        let image = images.get(o.image).map_or_else(
            || format!("#{}", o.image).into_bytes(),
            |r| crate::files::path_bytes(&r.path).to_vec(),
        );
        let fields = [
            format!("{:.1}", o.rect.x0),
            format!("{:.1}", o.rect.y0),
            format!("{:.1}", o.rect.x1),
            format!("{:.1}", o.rect.y1),
            suspect.kind.key().to_string(),
            o.times_picked.to_string(),
            o.times_seen.to_string(),
            format!("{:.4}", o.mean_loss()),
            format!("{:.4}", o.last_score),
        ];
        csv.write_record(std::iter::once(image).chain(fields.map(String::into_bytes)))?;
    }
    Ok(csv.into_inner()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::data::GtBox;
    use crate::train::messages::{HardExample, Thumbnail};

    /// A 100×100 image with car boxes at (10, 10)–(50, 30) and (10, 60)–(50, 80).
    fn images() -> Vec<ImageRecord> {
        let car = |y: f32| GtBox {
            class_id: 0,
            rect: Rect::new(10.0, y, 50.0, y + 20.0),
            difficult: false,
        };
        vec![ImageRecord {
            path: "road.png".into(),
            width: 100,
            height: 100,
            boxes: vec![car(10.0), car(60.0)],
            pixels: Arc::new(image::RgbImage::new(1, 1)),
            scale: 1.0,
        }]
    }

    fn seen(window: Rect, label: usize, loss: f32, score: f32) -> SeenExample {
        SeenExample {
            source_image: Some(0),
            batch_image: 0,
            window,
            label,
            loss,
            classification_loss: loss,
            score,
        }
    }

    fn pick(e: &SeenExample) -> HardExample {
        e.picked(Thumbnail {
            width: 0,
            height: 0,
            rgba: Vec::new(),
        })
    }

    /// A batch of `picked` (all picked) and `others` (seen only).
    fn batch(step: u64, picked: &[SeenExample], others: &[SeenExample]) -> HardExampleBatch {
        HardExampleBatch {
            step,
            batch_size: picked.len() + others.len(),
            examples: picked.iter().map(pick).collect(),
            batch: picked.iter().chain(others).copied().collect(),
        }
    }

    /// Peers that make the model look trained: the second car high, the road low.
    fn peers() -> Vec<SeenExample> {
        let car = Rect::new(12.0, 60.0, 52.0, 80.0);
        let road = Rect::new(60.0, 80.0, 90.0, 100.0);
        vec![
            seen(car, 1, 0.05, 0.95),
            seen(car, 1, 0.05, 0.9),
            seen(car, 1, 0.05, 0.9),
            seen(road, 0, 0.01, 0.02),
            seen(road, 0, 0.01, 0.05),
            seen(road, 0, 0.01, 0.01),
        ]
    }

    fn offender(kind: OffenderKind, picks: u32, recent: f32, last: f32, iou: f32) -> Offender {
        Offender {
            image: 0,
            kind,
            label: usize::from(kind != OffenderKind::Negative),
            rect: Rect::new(0.0, 0.0, 10.0, 10.0),
            times_picked: picks,
            times_seen: picks,
            loss_sum: f64::from(picks),
            last_score: last,
            recent_score: recent,
            last_step: 1,
            max_box_iou: iou,
        }
    }

    const TRAINED: TypicalScores = TypicalScores {
        positive: Some(0.9),
        negative: Some(0.05),
    };
    /// Early in a run: background learnt first, objects not yet.
    const UNTRAINED: TypicalScores = TypicalScores {
        positive: Some(0.3),
        negative: Some(0.2),
    };
    /// A model that scores most windows near 0.5.
    const UNSURE: TypicalScores = TypicalScores {
        positive: Some(0.55),
        negative: Some(0.5),
    };

    #[test]
    fn the_bars_keep_a_margin_from_the_typical_scores() {
        assert_eq!(
            SuspectBars::of(&TRAINED),
            SuspectBars {
                positive_max: Some(POSITIVE_SUSPECT_MAX_SCORE),
                negative_min: Some(NEGATIVE_SUSPECT_MIN_SCORE),
            }
        );
        let unsure = SuspectBars::of(&UNSURE);
        assert!((unsure.positive_max.unwrap() - 0.25).abs() < 1e-6);
        assert!((unsure.negative_min.unwrap() - 0.8).abs() < 1e-6);
        let none = SuspectBars::of(&TypicalScores::default());
        assert_eq!((none.positive_max, none.negative_min), (None, None));
    }

    #[test]
    fn a_positive_is_suspect_when_it_stays_low_while_its_peers_score_high() {
        let positive = OffenderKind::Positive { box_index: 0 };
        let low = offender(positive, SUSPECT_MIN_PICKS, 0.1, 0.2, 1.0);
        assert_eq!(suspect_kind(&low, &TRAINED), Some(SuspectKind::WrongBox));
        // Too few picks, a last score that recovered, or a model that knows no car yet: none.
        let few = offender(positive, SUSPECT_MIN_PICKS - 1, 0.1, 0.1, 1.0);
        assert_eq!(suspect_kind(&few, &TRAINED), None);
        let recovered = offender(positive, 9, 0.25, 0.6, 1.0);
        assert_eq!(suspect_kind(&recovered, &TRAINED), None);
        assert_eq!(suspect_kind(&low, &UNTRAINED), None);
        assert_eq!(suspect_kind(&low, &TypicalScores::default()), None);
        // Picked in a third of the batches it was in: not one that stays hard.
        let seldom = Offender {
            times_seen: 3 * SUSPECT_MIN_PICKS,
            ..low.clone()
        };
        assert_eq!(suspect_kind(&seldom, &TRAINED), None);
        let half = Offender {
            times_seen: 2 * SUSPECT_MIN_PICKS,
            ..low
        };
        assert_eq!(suspect_kind(&half, &TRAINED), Some(SuspectKind::WrongBox));
    }

    #[test]
    fn a_negative_is_suspect_when_it_scores_high_on_no_box_while_background_scores_low() {
        let high = offender(OffenderKind::Negative, 6, 0.8, 0.7, 0.0);
        assert_eq!(
            suspect_kind(&high, &TRAINED),
            Some(SuspectKind::MissingLabel)
        );
        // Beside a box (a localisation error, not a missing label): none.
        let beside = offender(OffenderKind::Negative, 6, 0.8, 0.7, 0.25);
        assert_eq!(suspect_kind(&beside, &TRAINED), None);
        let dropping = offender(OffenderKind::Negative, 6, 0.8, 0.3, 0.0);
        assert_eq!(suspect_kind(&dropping, &TRAINED), None);
        // When most windows score near 0.5, only a far higher one stands out.
        assert_eq!(suspect_kind(&high, &UNSURE), None);
        let higher = offender(OffenderKind::Negative, 6, 0.9, 0.85, 0.0);
        assert_eq!(
            suspect_kind(&higher, &UNSURE),
            Some(SuspectKind::MissingLabel)
        );
        // The thresholds themselves are inside.
        let edge = offender(
            OffenderKind::Negative,
            SUSPECT_MIN_PICKS,
            NEGATIVE_SUSPECT_MIN_SCORE,
            NEGATIVE_SUSPECT_MIN_SCORE,
            NEGATIVE_SUSPECT_MAX_BOX_IOU,
        );
        assert_eq!(
            suspect_kind(&edge, &TRAINED),
            Some(SuspectKind::MissingLabel)
        );
    }

    #[test]
    fn windows_of_one_box_and_of_one_region_count_for_one_offender() {
        let images = images();
        let mut log = OffenderLog::default();
        // Jittered windows of the car, and background windows shifted by a few pixels.
        for step in 1..=6u64 {
            let dx = step as f32;
            let car = seen(Rect::new(8.0 + dx, 9.0, 48.0 + dx, 31.0), 1, 1.5, 0.1);
            let sign = seen(Rect::new(60.0 + dx, 40.0, 90.0 + dx, 70.0), 0, 2.0, 0.8);
            // A negative elsewhere, seen but not picked.
            let other = seen(Rect::new(0.0, 70.0, 30.0, 100.0), 0, 0.01, 0.01);
            log.record(&batch(step, &[car, sign], &[other]), &images);
        }
        assert_eq!(log.offenders().len(), 2);
        let car = &log.offenders()[0];
        assert_eq!(car.kind, OffenderKind::Positive { box_index: 0 });
        assert_eq!(car.rect, Rect::new(10.0, 10.0, 50.0, 30.0));
        assert_eq!((car.times_picked, car.times_seen), (6, 6));
        assert!((car.mean_loss() - 1.5).abs() < 1e-6);
        let sign = &log.offenders()[1];
        assert_eq!(sign.kind, OffenderKind::Negative);
        assert_eq!(sign.rect, Rect::new(61.0, 40.0, 91.0, 70.0));
        assert_eq!(sign.max_box_iou, 0.0);
        assert_eq!(sign.last_step, 6);
        // A window far from the region starts another one.
        let far = seen(Rect::new(60.0, 0.0, 90.0, 30.0), 0, 1.0, 0.6);
        log.record(&batch(7, &[far], &[]), &images);
        assert_eq!(log.offenders().len(), 3);
    }

    #[test]
    fn many_rois_of_one_box_in_one_batch_count_once() {
        let images = images();
        let mut log = OffenderLog::default();
        let rois: Vec<SeenExample> = (0..8)
            .map(|i| {
                seen(
                    Rect::new(9.0 + i as f32, 10.0, 49.0, 30.0),
                    1,
                    1.0 + i as f32,
                    0.1,
                )
            })
            .collect();
        log.record(&batch(1, &rois, &[]), &images);
        let car = &log.offenders()[0];
        assert_eq!((car.times_picked, car.times_seen), (1, 1));
        assert!(
            (car.mean_loss() - 4.5).abs() < 1e-6,
            "the batch's mean loss"
        );
        assert!(log.suspects().is_empty(), "one batch makes no suspect");
    }

    #[test]
    fn seen_counts_examples_that_were_not_picked() {
        let images = images();
        let mut log = OffenderLog::default();
        let car = seen(Rect::new(10.0, 10.0, 50.0, 30.0), 1, 1.0, 0.2);
        log.record(&batch(1, &[car], &[]), &images);
        log.record(&batch(2, &[], &[car]), &images);
        log.record(&batch(3, &[], &[car]), &images);
        let o = &log.offenders()[0];
        assert_eq!((o.times_picked, o.times_seen), (1, 3));
    }

    #[test]
    fn the_log_flags_a_box_that_stays_low_and_a_region_that_stays_high() {
        let images = images();
        let mut log = OffenderLog::default();
        let car = seen(Rect::new(10.0, 10.0, 50.0, 30.0), 1, 2.5, 0.05);
        let sign = seen(Rect::new(60.0, 40.0, 90.0, 70.0), 0, 2.0, 0.85);
        for step in 1..SUSPECT_MIN_PICKS as u64 {
            log.record(&batch(step, &[car, sign], &peers()), &images);
            assert!(
                log.suspects().is_empty(),
                "not before {SUSPECT_MIN_PICKS} picks"
            );
        }
        log.record(&batch(9, &[car, sign], &peers()), &images);
        let suspects = log.suspects();
        let kinds: Vec<SuspectKind> = suspects.iter().map(|s| s.kind).collect();
        // Both picked five times: the higher mean loss first.
        assert_eq!(
            kinds,
            vec![SuspectKind::WrongBox, SuspectKind::MissingLabel]
        );
        let csv = String::from_utf8(suspects_csv(&suspects, &images).unwrap()).unwrap();
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines[0],
            "image,box_x0,box_y0,box_x1,box_y1,kind,times_picked,times_seen,mean_loss,last_score"
        );
        assert_eq!(
            lines[1],
            "road.png,10.0,10.0,50.0,30.0,wrong_box,5,5,2.5000,0.0500"
        );
        assert_eq!(
            lines[2],
            "road.png,60.0,40.0,90.0,70.0,missing_label,5,5,2.0000,0.8500"
        );
    }

    #[test]
    fn the_log_stays_bounded() {
        let images: Vec<ImageRecord> = (0..100).flat_map(|_| images()).collect();
        let mut log = OffenderLog::default();
        // Far-apart negative windows never join a region: each is an offender of its own.
        let windows: Vec<SeenExample> = (0..MAX_OFFENDERS + 1)
            .map(|i| {
                let x = (i / images.len()) as f32 * 100.0;
                SeenExample {
                    source_image: Some(i % images.len()),
                    ..seen(Rect::new(x, 0.0, x + 10.0, 10.0), 0, 1.0, 0.5)
                }
            })
            .collect();
        log.record(&batch(1, &windows, &[]), &images);
        assert!(log.offenders().len() <= MAX_OFFENDERS);
        // The bookkeeping still finds what it kept.
        let kept = &log.offenders()[0];
        let again = SeenExample {
            source_image: Some(kept.image),
            ..seen(kept.rect, 0, 1.0, 0.5)
        };
        log.record(&batch(2, &[again], &[]), &images);
        assert_eq!(log.offenders()[0].times_picked, 2);
    }
}
