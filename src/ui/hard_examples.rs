//! The hard examples OHEM selected in a batch, on two shelves — hard negatives first, then hard
//! positives — each tile with its loss split into the classification and box terms and the
//! label it was trained toward. Filters by kind and class, sorting by loss or score, a bounded
//! history to step back through, and a what-if view that replays the selection on the recorded
//! batch with the current settings. Beside it, the label suspects; a click opens the source
//! image with a heat map of the object score.

use std::collections::{HashMap, HashSet, VecDeque};

use egui::{Color32, RichText, Sense, TextureHandle, TextureOptions, Vec2};

use super::images::ImageTextures;
use super::source_view::{source_window_ui, SourceView};
use super::suspects::{suspects_ui, SuspectsAction, SuspectsState};
use super::tiles::{
    tile_with_hover_ui, PickStatus, ShelfContext, Tile, BOX_TERM, CLASSIFICATION_TERM, LABEL_H,
    WHAT_IF_NEW,
};
use super::what_if::{picks_in_batch, replay, WhatIfSettings};
use crate::data::Dataset;
use crate::geometry::Rect;
use crate::train::messages::{HardExample, HardExampleBatch, ScoreMapReport};

/// Batches kept for stepping back.
pub const HISTORY_LEN: usize = 50;

/// Space between thumbnails.
const GAP: f32 = 4.0;
/// Room for a shelf's heading.
const SHELF_HEADING_H: f32 = 22.0;
/// Which examples the shelves show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KindFilter {
    #[default]
    Both,
    Negatives,
    Positives,
    /// Negatives scored at or above the threshold.
    WouldBeFalsePositives,
}

/// The order of the tiles on a shelf.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SortBy {
    #[default]
    Loss,
    /// The most wrong first: negatives by highest score, positives by lowest.
    Score,
}

/// Which half of the panel is shown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Tab {
    #[default]
    Gallery,
    Suspects,
}

/// What the panel asks the app to do.
#[derive(Clone, Debug, PartialEq)]
pub enum ExamplesAction {
    /// Ask the trainer for the object-score map of a training image at a window's size.
    ScoreMap { image: usize, window: Rect },
    /// Write the label suspects to a CSV file.
    ExportSuspects,
}

/// What the gallery is drawn with, besides its own state.
#[derive(Clone, Copy, Debug)]
pub struct GalleryContext {
    pub threshold: f32,
    /// The current selection settings, when a run has started.
    pub what_if: Option<WhatIfSettings>,
    /// Training runs and the gallery follows it: the what-if view waits for a pause.
    pub running: bool,
    /// What the empty gallery says, from what the app is doing.
    pub empty_hint: &'static str,
}

struct BatchView {
    batch: HardExampleBatch,
    /// Uploaded the first time the batch is shown, then reused.
    textures: Option<Vec<TextureHandle>>,
    /// The batch index of each pick, found the first time the what-if view needs it.
    pick_indices: Option<Vec<Option<usize>>>,
    /// The last what-if selection: its settings and the batch indices they pick.
    what_if: Option<(WhatIfSettings, Vec<usize>)>,
}

/// The hard-example history, what the gallery shows, the label suspects and the source view.
#[derive(Default)]
pub struct HardExamplesState {
    history: VecDeque<BatchView>,
    /// `None` follows the newest batch; otherwise an index into the history.
    viewing: Option<usize>,
    /// How often each training image supplied a hard example in this run.
    pick_counts: HashMap<usize, usize>,
    pub kind_filter: KindFilter,
    /// Positives of this class only (`None`: every class).
    pub class_filter: Option<usize>,
    pub sort_by: SortBy,
    tab: Tab,
    suspects: SuspectsState,
    /// The source image opened by a click.
    source: Option<SourceView>,
}

impl HardExamplesState {
    /// Forgets the run. The kind and order filters stay; the class filter goes, as the next
    /// run may be on a dataset with other classes.
    pub fn clear(&mut self) {
        *self = Self {
            kind_filter: self.kind_filter,
            sort_by: self.sort_by,
            tab: self.tab,
            ..Self::default()
        };
    }

    /// Takes a batch; `dataset` supplies the boxes the label suspects are judged against.
    pub fn record(&mut self, batch: HardExampleBatch, dataset: Option<&Dataset>) {
        for example in &batch.examples {
            if let Some(image) = example.seen.source_image {
                *self.pick_counts.entry(image).or_default() += 1;
            }
        }
        if let Some(dataset) = dataset {
            self.suspects.record(&batch, &dataset.train);
        }
        if self.history.len() == HISTORY_LEN {
            self.history.pop_front();
            if let Some(i) = &mut self.viewing {
                *i = i.saturating_sub(1);
            }
        }
        self.history.push_back(BatchView {
            batch,
            textures: None,
            pick_indices: None,
            what_if: None,
        });
    }

    /// A score map from the trainer, for the opened source image.
    pub fn take_score_map(&mut self, report: ScoreMapReport) {
        if let Some(view) = &mut self.source {
            view.take_score_map(report);
        }
    }

    /// The batch on screen.
    pub fn shown_batch(&self) -> Option<&HardExampleBatch> {
        let index = self.viewing.unwrap_or(self.history.len().checked_sub(1)?);
        self.history.get(index).map(|v| &v.batch)
    }

    /// The images picked most often so far, most first.
    pub fn hardest_images(&self, n: usize) -> Vec<(usize, usize)> {
        let mut counts: Vec<(usize, usize)> =
            self.pick_counts.iter().map(|(i, c)| (*i, *c)).collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts.truncate(n);
        counts
    }

    /// `count` batches' previews never reached the app: the suspects say they did not see them.
    pub fn previews_dropped(&mut self, count: u64) {
        self.suspects.previews_dropped(count);
    }

    pub fn suspects(&self) -> &SuspectsState {
        &self.suspects
    }

    /// The opened source image, if any.
    pub fn source(&self) -> Option<&SourceView> {
        self.source.as_ref()
    }

    fn open_source(&mut self, image: usize, window: Rect, caption: String) {
        self.source = Some(SourceView::new(image, window, caption));
    }
}

/// The panel: the gallery or the label suspects, and the source image window.
pub fn examples_panel_ui(
    ui: &mut egui::Ui,
    state: &mut HardExamplesState,
    dataset: Option<&Dataset>,
    textures: &mut ImageTextures,
    context: GalleryContext,
) -> Option<ExamplesAction> {
    ui.horizontal(|ui| {
        let heading = |text: String| RichText::new(text).heading();
        ui.selectable_value(
            &mut state.tab,
            Tab::Gallery,
            heading("Hard examples of this batch".into()),
        );
        let suspects = format!("Label suspects ({})", state.suspects.count());
        ui.selectable_value(&mut state.tab, Tab::Suspects, heading(suspects));
    });
    let mut action = None;
    match state.tab {
        Tab::Gallery => hard_examples_ui(ui, state, dataset, textures, context),
        Tab::Suspects => {
            let hardest = state.hardest_images(5);
            match suspects_ui(ui, &state.suspects, &hardest, dataset) {
                Some(SuspectsAction::Open {
                    image,
                    rect,
                    caption,
                }) => state.open_source(image, rect, caption),
                Some(SuspectsAction::Export) => action = Some(ExamplesAction::ExportSuspects),
                None => {}
            }
        }
    }
    if let Some(view) = &mut state.source {
        let (open, request) = source_window_ui(ui, view, dataset, textures);
        if !open {
            state.source = None;
        }
        if let Some((image, window)) = request {
            action = Some(ExamplesAction::ScoreMap { image, window });
        }
    }
    action
}

/// The grid of the shown batch: history, filters, the what-if line and the two shelves.
fn hard_examples_ui(
    ui: &mut egui::Ui,
    state: &mut HardExamplesState,
    dataset: Option<&Dataset>,
    textures: &mut ImageTextures,
    context: GalleryContext,
) {
    history_bar_ui(ui, state, context.running);
    filter_bar_ui(ui, state, dataset);
    let Some(index) = state.viewing.or_else(|| state.history.len().checked_sub(1)) else {
        ui.weak(context.empty_hint);
        return;
    };
    let following = state.viewing.is_none() && context.running;
    let settings = context.what_if.filter(|_| !following);
    let filters = state_filters(state);
    let view = &mut state.history[index];
    // A batch without the record of its examples has nothing to replay.
    let settings = settings.filter(|_| !view.batch.batch.is_empty());
    let what_if = settings.map(|s| what_if_picks(view, s));
    let tiles = tiles(view, what_if.as_deref());
    what_if_line_ui(ui, view, what_if.as_deref(), settings, context.running);
    let shelves = shelves(filters, &tiles, context.threshold);
    let ctx = ui.ctx().clone();
    let thumbnails: &[TextureHandle] = view.textures.get_or_insert_with(|| {
        (view.batch.examples.iter().enumerate())
            .map(|(i, e)| upload_thumbnail(&ctx, view.batch.step, i, e))
            .collect()
    });
    let shelf_context = ShelfContext {
        batch: &view.batch,
        thumbnails,
        dataset,
        threshold: context.threshold,
        max_loss: tiles.iter().map(|t| t.example.loss).fold(0.0, f32::max),
    };
    let clicked = shelves_ui(ui, &shelves, &shelf_context, textures);
    if let Some((image, window, caption)) = clicked {
        state.open_source(image, window, caption);
    }
}

/// The batch indices `settings` would pick, computed once per settings and batch.
fn what_if_picks(view: &mut BatchView, settings: WhatIfSettings) -> Vec<usize> {
    match &view.what_if {
        Some((cached, picks)) if *cached == settings => picks.clone(),
        _ => {
            let picks = replay(&view.batch, &settings);
            view.what_if = Some((settings, picks.clone()));
            picks
        }
    }
}

/// The batch's picks, and with a what-if selection the examples it adds.
fn tiles(view: &mut BatchView, what_if: Option<&[usize]>) -> Vec<Tile> {
    let batch = &view.batch;
    let mut tiles: Vec<Tile> = batch
        .examples
        .iter()
        .enumerate()
        .map(|(i, e)| Tile {
            pick: Some(i),
            example: e.seen,
            status: PickStatus::Picked,
            rank: i + 1,
        })
        .collect();
    let Some(what_if) = what_if else {
        return tiles;
    };
    let indices = view
        .pick_indices
        .get_or_insert_with(|| picks_in_batch(batch));
    let chosen: HashSet<usize> = what_if.iter().copied().collect();
    for (tile, index) in tiles.iter_mut().zip(indices.iter()) {
        if index.is_some_and(|i| !chosen.contains(&i)) {
            tile.status = PickStatus::Dropped;
        }
    }
    let picked: HashSet<usize> = indices.iter().flatten().copied().collect();
    for (rank, &i) in what_if.iter().enumerate() {
        if let (false, Some(example)) = (picked.contains(&i), batch.batch.get(i)) {
            tiles.push(Tile {
                pick: None,
                example: *example,
                status: PickStatus::New,
                rank: rank + 1,
            });
        }
    }
    tiles
}

#[derive(Clone, Copy)]
struct Filters {
    kind: KindFilter,
    class: Option<usize>,
    sort_by: SortBy,
}

fn state_filters(state: &HardExamplesState) -> Filters {
    Filters {
        kind: state.kind_filter,
        class: state.class_filter,
        sort_by: state.sort_by,
    }
}

/// One shelf: its heading's words and its tiles in order.
struct Shelf {
    /// "Hard negatives", "Hard positives" or "Would-be false positives at ≥ 0.50".
    title: String,
    negatives: bool,
    tiles: Vec<Tile>,
}

/// The shelves the filters leave, negatives first.
fn shelves(filters: Filters, tiles: &[Tile], threshold: f32) -> Vec<Shelf> {
    let negatives_title = match filters.kind {
        KindFilter::WouldBeFalsePositives => {
            format!("Would-be false positives at ≥ {threshold:.2}")
        }
        _ => "Hard negatives".to_string(),
    };
    let show_negatives = filters.kind != KindFilter::Positives;
    let show_positives = matches!(filters.kind, KindFilter::Both | KindFilter::Positives);
    let mut shelves = Vec::new();
    for (negatives, title) in [(true, negatives_title), (false, "Hard positives".into())] {
        if !(if negatives {
            show_negatives
        } else {
            show_positives
        }) {
            continue;
        }
        let mut shelf: Vec<Tile> = tiles
            .iter()
            .filter(|t| (t.example.label == 0) == negatives)
            .filter(|t| {
                filters.kind != KindFilter::WouldBeFalsePositives || t.example.score >= threshold
            })
            .filter(|t| negatives || filters.class.is_none_or(|c| t.example.label == c + 1))
            .copied()
            .collect();
        sort_tiles(&mut shelf, filters.sort_by, negatives);
        shelves.push(Shelf {
            title,
            negatives,
            tiles: shelf,
        });
    }
    shelves
}

fn sort_tiles(tiles: &mut [Tile], sort_by: SortBy, negatives: bool) {
    let key = |t: &Tile| match sort_by {
        SortBy::Loss => t.example.loss,
        SortBy::Score if negatives => t.example.score,
        SortBy::Score => -t.example.score,
    };
    tiles.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.rank.cmp(&b.rank)));
}

/// Earlier / later / newest through the batches kept; `running`: a run trains, so the newest
/// batch is live (a recorded run's newest is only its last).
fn history_bar_ui(ui: &mut egui::Ui, state: &mut HardExamplesState, running: bool) {
    ui.horizontal(|ui| {
        let len = state.history.len();
        let current = state.viewing.unwrap_or(len.saturating_sub(1));
        if ui
            .add_enabled(len > 0 && current > 0, egui::Button::new("< earlier"))
            .on_hover_text("Earlier batch")
            .clicked()
        {
            state.viewing = Some(current - 1);
        }
        if ui
            .add_enabled(state.viewing.is_some(), egui::Button::new("later >"))
            .on_hover_text("Later batch")
            .clicked()
        {
            state.viewing = (current + 1 < len.saturating_sub(1)).then_some(current + 1);
        }
        if ui
            .add_enabled(state.viewing.is_some(), egui::Button::new("live"))
            .on_hover_text("Follow the newest batch")
            .clicked()
        {
            state.viewing = None;
        }
        if let Some(batch) = state.shown_batch() {
            let live = match (state.viewing, running) {
                (None, true) => " (live)",
                (None, false) => " (newest)",
                _ => "",
            };
            ui.label(format!(
                "step {}: {} of K = {}{live}",
                batch.step,
                batch.examples.len(),
                batch.batch_size
            ));
        }
        ui.separator();
        loss_legend_ui(ui);
    });
}

/// Kind, class and order of the tiles, and the loss bar's legend.
fn filter_bar_ui(ui: &mut egui::Ui, state: &mut HardExamplesState, dataset: Option<&Dataset>) {
    ui.horizontal_wrapped(|ui| {
        ui.spacing_mut().item_spacing.x = 4.0;
        let kinds = [
            (
                KindFilter::Both,
                "both",
                "Hard negatives and hard positives",
            ),
            (KindFilter::Negatives, "negatives", "Background RoIs only"),
            (KindFilter::Positives, "positives", "Object RoIs only"),
            (
                KindFilter::WouldBeFalsePositives,
                "would-be FPs",
                "Would-be false positives: negatives scored at or above the score threshold",
            ),
        ];
        for (kind, text, hint) in kinds {
            ui.selectable_value(&mut state.kind_filter, kind, text)
                .on_hover_text(hint);
        }
        ui.separator();
        ui.label("sort:");
        ui.selectable_value(&mut state.sort_by, SortBy::Loss, "loss")
            .on_hover_text("Highest loss first");
        ui.selectable_value(&mut state.sort_by, SortBy::Score, "score")
            .on_hover_text("The most wrong first: negatives by highest score, positives by lowest");
        class_filter_ui(ui, state, dataset);
    });
}

/// What a tile's bar and numbers are: a swatch and a word for each term.
fn loss_legend_ui(ui: &mut egui::Ui) {
    ui.weak("loss:");
    for (colour, word) in [(CLASSIFICATION_TERM, "cls"), (BOX_TERM, "box")] {
        let (rect, _) = ui.allocate_exact_size(Vec2::new(10.0, 6.0), Sense::hover());
        ui.painter().rect_filled(rect, 0.0, colour);
        ui.label(RichText::new(word).color(colour).small());
    }
}

/// The class of the positives shown, when the dataset has more than one.
fn class_filter_ui(ui: &mut egui::Ui, state: &mut HardExamplesState, dataset: Option<&Dataset>) {
    let Some(names) = dataset.map(|d| &d.class_names).filter(|n| n.len() > 1) else {
        return;
    };
    let shown = state
        .class_filter
        .and_then(|c| names.get(c))
        .map_or("all classes", String::as_str);
    egui::ComboBox::from_id_salt("hard_examples_class")
        .selected_text(shown)
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut state.class_filter, None, "all classes");
            for (c, name) in names.iter().enumerate() {
                ui.selectable_value(&mut state.class_filter, Some(c), name);
            }
        })
        .response
        .on_hover_text("Positives of this class only (negatives have no class)");
}

/// What the what-if settings change, or how to use them.
fn what_if_line_ui(
    ui: &mut egui::Ui,
    view: &BatchView,
    what_if: Option<&[usize]>,
    settings: Option<WhatIfSettings>,
    running: bool,
) {
    let (Some(picks), Some(settings)) = (what_if, settings) else {
        if running {
            return;
        }
        ui.weak("Pause to try M, NMS by loss or the cap on this batch without training.");
        return;
    };
    let indices = view.pick_indices.as_deref().unwrap_or_default();
    let chosen: HashSet<usize> = picks.iter().copied().collect();
    let kept = indices
        .iter()
        .flatten()
        .filter(|i| chosen.contains(i))
        .count();
    let dropped = view.batch.examples.len() - kept;
    let new = picks.len() - kept;
    if dropped == 0 && new == 0 {
        ui.weak("What-if: move M, NMS or the cap to see what this batch would pick.");
        return;
    }
    let s = settings.selection;
    let cap = s
        .max_negatives_per_positive
        .map_or("no cap".to_string(), |r| format!("≤ {r:.1} neg/pos"));
    let nms = if s.nms_by_loss { "NMS on" } else { "NMS off" };
    ui.label(
        RichText::new(format!(
            "What-if (M = {}, {nms}, {cap}): {kept} the same · {new} new (ringed) · {dropped} dropped (greyed)",
            s.hard_examples,
        ))
        .color(WHAT_IF_NEW),
    );
}

/// The shelves in a scroll area; returns the source image, window and caption of a clicked tile.
fn shelves_ui(
    ui: &mut egui::Ui,
    shelves: &[Shelf],
    context: &ShelfContext<'_>,
    textures: &mut ImageTextures,
) -> Option<(usize, Rect, String)> {
    let mut clicked = None;
    egui::ScrollArea::vertical()
        .id_salt("hard_examples_grid")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            let mut available = ui.available_size();
            available.y -= SHELF_HEADING_H * shelves.len() as f32;
            let count: usize = shelves.iter().map(|s| s.tiles.len().max(1)).sum();
            let cell = cell_size(available, count);
            for shelf in shelves {
                ui.label(RichText::new(shelf_heading(shelf, context.batch)).strong());
                if shelf.tiles.is_empty() {
                    ui.weak("none");
                }
                ui.horizontal_wrapped(|ui| {
                    ui.spacing_mut().item_spacing = Vec2::splat(GAP);
                    for tile in &shelf.tiles {
                        if let Some(open) = tile_with_hover_ui(ui, tile, context, textures, cell) {
                            clicked = Some(open);
                        }
                    }
                });
                ui.add_space(GAP);
            }
        });
    clicked
}

/// "Hard negatives: 5 of M = 32 picks · of 96 negatives in the batch".
fn shelf_heading(shelf: &Shelf, batch: &HardExampleBatch) -> String {
    let picks = shelf
        .tiles
        .iter()
        .filter(|t| t.status != PickStatus::New)
        .count();
    let mut heading = format!(
        "{}: {picks} of M = {} picks",
        shelf.title,
        batch.examples.len()
    );
    if !batch.batch.is_empty() {
        let in_batch = batch
            .batch
            .iter()
            .filter(|e| (e.label == 0) == shelf.negatives)
            .count();
        let what = if shelf.negatives {
            "negatives"
        } else {
            "positives"
        };
        heading.push_str(&format!(" · of {in_batch} {what} in the batch"));
    }
    heading
}

/// The largest square cell (within sane limits) with which all `n` thumbnails and their text
/// fit in `available`; the smallest one when they cannot (the grid scrolls).
fn cell_size(available: Vec2, n: usize) -> f32 {
    let fits = |cell: f32| {
        let columns = ((available.x + GAP) / (cell + GAP)).floor().max(1.0);
        let rows = ((available.y + GAP) / (cell + LABEL_H + GAP)).floor();
        columns * rows >= n as f32
    };
    let mut cell = 128.0;
    while cell > 48.0 && !fits(cell) {
        cell -= 4.0;
    }
    cell.min(available.x.max(48.0))
}

fn upload_thumbnail(
    ctx: &egui::Context,
    step: u64,
    rank: usize,
    example: &HardExample,
) -> TextureHandle {
    let t = &example.thumbnail;
    let image = if t.rgba.len() == t.width * t.height * 4 && t.width > 0 {
        egui::ColorImage::from_rgba_unmultiplied([t.width, t.height], &t.rgba)
    } else {
        egui::ColorImage::filled([1, 1], Color32::BLACK)
    };
    ctx.load_texture(
        format!("hard-{step}-{rank}"),
        image,
        TextureOptions::NEAREST,
    )
}
