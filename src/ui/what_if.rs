//! What the selection would have picked from a recorded batch with other settings: OHEM's own
//! selection (`ohem::select_hard`, plain Rust) re-run on the losses the read-only pass saw, with
//! no training and no trainer involved.

use crate::ohem::{select_hard, Candidate, SelectionConfig};
use crate::train::config::OhemLoss;
use crate::train::messages::HardExampleBatch;

/// The settings a what-if selection runs with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WhatIfSettings {
    pub selection: SelectionConfig,
    /// What the run ranks examples by.
    pub ranked_by: OhemLoss,
}

/// Where each of the batch's picks sits in the batch: the pick's record matched against the
/// batch's (`None` when no example of the batch matches, which a well-formed batch never has).
pub fn picks_in_batch(batch: &HardExampleBatch) -> Vec<Option<usize>> {
    let mut taken = vec![false; batch.batch.len()];
    batch
        .examples
        .iter()
        .map(|pick| {
            let found = (0..batch.batch.len()).find(|&i| {
                let seen = &batch.batch[i];
                !taken[i]
                    && seen.source_image == pick.seen.source_image
                    && seen.window == pick.seen.window
                    && seen.label == pick.seen.label
                    && seen.loss.to_bits() == pick.seen.loss.to_bits()
            });
            if let Some(i) = found {
                taken[i] = true;
            }
            found
        })
        .collect()
}

/// The batch indices `settings` would pick from `batch`, highest rank first; empty when the
/// batch carries no record of its examples.
pub fn replay(batch: &HardExampleBatch, settings: &WhatIfSettings) -> Vec<usize> {
    let ranking: Vec<f32> = batch
        .batch
        .iter()
        .map(|e| match settings.ranked_by {
            OhemLoss::Classification => e.classification_loss,
            OhemLoss::ClassificationAndBox => e.loss,
        })
        .collect();
    let candidates: Vec<Candidate> = batch
        .batch
        .iter()
        .map(|e| Candidate {
            image: e.batch_image,
            window: e.window,
            positive: e.label > 0,
        })
        .collect();
    let selection = SelectionConfig {
        hard_examples: settings.selection.hard_examples.max(1),
        ..settings.selection
    };
    select_hard(&ranking, &candidates, &selection).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Rect;
    use crate::train::messages::{SeenExample, Thumbnail};

    fn batch() -> HardExampleBatch {
        // Six windows of one image side by side; 1 overlaps 0 almost entirely.
        let window = |x: f32| Rect::new(x, 0.0, x + 10.0, 10.0);
        let xs = [0.0, 1.0, 20.0, 40.0, 60.0, 80.0];
        let losses = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4];
        let batch: Vec<SeenExample> = xs
            .iter()
            .zip(losses)
            .enumerate()
            .map(|(i, (&x, loss))| SeenExample {
                source_image: Some(0),
                batch_image: 0,
                window: window(x),
                label: usize::from(i == 4),
                loss,
                // The classification term ranks the other way round.
                classification_loss: 1.0 - loss,
                score: 0.5,
            })
            .collect();
        let examples = [0, 2]
            .iter()
            .map(|&i| {
                batch[i].picked(Thumbnail {
                    width: 0,
                    height: 0,
                    rgba: Vec::new(),
                })
            })
            .collect();
        HardExampleBatch {
            step: 1,
            batch_size: 6,
            examples,
            batch,
        }
    }

    fn settings(m: usize, nms: bool, cap: Option<f32>) -> WhatIfSettings {
        WhatIfSettings {
            selection: SelectionConfig {
                hard_examples: m,
                nms_by_loss: nms,
                nms_iou: 0.7,
                max_negatives_per_positive: cap,
            },
            ranked_by: OhemLoss::ClassificationAndBox,
        }
    }

    #[test]
    fn picks_are_found_in_the_batch() {
        assert_eq!(picks_in_batch(&batch()), vec![Some(0), Some(2)]);
    }

    #[test]
    fn m_nms_and_the_cap_change_the_picks() {
        let b = batch();
        // The run's own settings give back its picks.
        assert_eq!(replay(&b, &settings(2, true, None)), vec![0, 2]);
        assert_eq!(replay(&b, &settings(4, true, None)), vec![0, 2, 3, 4]);
        // Without NMS the near-duplicate is back.
        assert_eq!(replay(&b, &settings(2, false, None)), vec![0, 1]);
        // One positive, at most one negative per positive.
        assert_eq!(replay(&b, &settings(4, true, Some(1.0))), vec![0, 4]);
        let by_classification = WhatIfSettings {
            ranked_by: OhemLoss::Classification,
            ..settings(2, true, None)
        };
        assert_eq!(replay(&b, &by_classification), vec![5, 4]);
    }
}
