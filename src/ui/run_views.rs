//! Recorded runs on screen: the one viewed in full, the one waiting for its dataset to load,
//! those overlaid on the plots, and an open sweep.

use std::time::{Duration, Instant};

use super::curves::PlotsState;
use super::dataset_panel::DatasetPanel;
use super::plot_files::SweepView;
use super::runs::RunFollower;
use crate::train::messages::Event;
use crate::train::resume::read_state;

/// A viewed run that grew this recently may be trained by another process: not continued.
const QUIET_BEFORE_CONTINUE: Duration = Duration::from_secs(10);

/// The recorded runs the app shows.
#[derive(Default)]
pub struct RunViews {
    /// The run shown in full, followed as it grows.
    pub viewing: Option<RunFollower>,
    /// A run to view once its dataset has loaded.
    pub pending: Option<RunFollower>,
    /// Runs drawn over the plots.
    pub overlays: Vec<RunFollower>,
    pub sweep: Option<SweepView>,
    /// When the viewed run's "Continue training" was last checked, and why it cannot be.
    continue_check: Option<(Instant, Option<String>)>,
}

impl RunViews {
    /// [`Self::cannot_continue`], looked up at most once a second (it reads the checkpoint's
    /// state from disk).
    pub fn cannot_continue_now(&mut self, data: &DatasetPanel) -> Option<String> {
        let fresh = self
            .continue_check
            .as_ref()
            .is_some_and(|(at, _)| at.elapsed() < Duration::from_secs(1));
        if !fresh {
            self.continue_check = Some((Instant::now(), self.cannot_continue(data)));
        }
        self.continue_check
            .as_ref()
            .and_then(|(_, why)| why.clone())
    }

    /// Why the viewed run cannot be continued now, if it cannot.
    fn cannot_continue(&self, data: &DatasetPanel) -> Option<String> {
        let viewing = self.viewing.as_ref()?;
        let state = match read_state(viewing.dir()) {
            Ok(state) => state,
            Err(error) => return Some(format!("{error:#}")),
        };
        if let Some(why) = state.nothing_to_continue(viewing.dir()) {
            return Some(why);
        }
        if !data.holds(viewing.data()) {
            return Some(format!(
                "open its dataset {} first",
                viewing.data().display()
            ));
        }
        let quiet = viewing.quiet_for();
        (quiet < QUIET_BEFORE_CONTINUE).then(|| {
            format!(
                "the run is still growing (another process may be training it): it can be continued once nothing is added for {} s",
                QUIET_BEFORE_CONTINUE.as_secs()
            )
        })
    }

    /// What the overlaid runs recorded since the last frame, onto `plots`; an overlay taken off
    /// the plots is closed. Returns the problems they reported.
    pub fn draw_overlays(&mut self, plots: &mut PlotsState) -> Vec<String> {
        let shown = plots.overlay_names();
        self.overlays
            .retain(|o| !o.drawn() || shown.iter().any(|n| n == o.name()));
        let mut problems = Vec::new();
        for overlay in &mut self.overlays {
            for event in overlay.take_events() {
                match event {
                    Event::Step(report) => plots.overlay_step(overlay.name(), &report),
                    Event::Evaluated(report) => plots.overlay_evaluation(overlay.name(), &report),
                    Event::Problem(message) => problems.push(message),
                    _ => continue,
                }
                overlay.set_drawn();
            }
        }
        problems
    }

    /// The sweep's window, while it is open.
    pub fn sweep_ui(&mut self, ctx: &egui::Context) {
        if let Some(view) = &self.sweep {
            let mut open = true;
            view.ui(ctx, &mut open);
            if !open {
                self.sweep = None;
            }
        }
    }
}
