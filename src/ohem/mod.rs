//! Which examples (RoIs) of a batch get backpropagated: the selection strategies of online hard
//! example mining (Shrivastava, Gupta, Girshick, CVPR 2016) and their baselines.
//!
//! Selection sees the per-RoI losses of the read-only pass, in f32, plus where each RoI lies; it
//! returns batch indices. It never runs the network and never touches an optimizer.

use rand::seq::index::sample;
use rand::Rng;
use thiserror::Error;

use crate::geometry::{descending_order, nms, Rect};

/// How OHEM picks its hard examples.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectionConfig {
    /// M: how many to keep.
    pub hard_examples: usize,
    /// Suppress near-duplicate candidates of the same image by loss before taking the top M.
    pub nms_by_loss: bool,
    /// IoU above which a lower-loss candidate is suppressed (0.7 in the paper).
    pub nms_iou: f32,
    /// At most this many negatives per selected positive (mmdetection's `neg_pos_ub`).
    pub max_negatives_per_positive: Option<f32>,
}

/// Where one example of the batch lies: what NMS by loss and the cap need to know.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// The image of the batch it lies on: NMS by loss compares RoIs of one image only.
    pub image: usize,
    /// The RoI, in any pixels shared by the RoIs of its image.
    pub window: Rect,
    pub positive: bool,
}

#[derive(Debug, Error, PartialEq)]
pub enum SelectionError {
    #[error("M (hard examples per batch) must be at least 1")]
    NoHardExamples,
    #[error("{losses} losses for {candidates} examples")]
    LengthMismatch { losses: usize, candidates: usize },
}

/// OHEM's selection: the `M` examples with the highest loss, after optional NMS by loss and
/// the optional negatives-per-positive cap. Returns batch indices, highest loss first (ties by
/// index, so the result is deterministic). NaN losses rank highest: a diverging example is
/// the one to look at. With `M ≥ K` every example is kept; NMS may leave fewer than `M`.
pub fn select_hard(
    losses: &[f32],
    candidates: &[Candidate],
    config: &SelectionConfig,
) -> Result<Vec<usize>, SelectionError> {
    if config.hard_examples == 0 {
        return Err(SelectionError::NoHardExamples);
    }
    let ranks = ranks(losses, candidates)?;
    let m = config.hard_examples;
    // With a cap, the quotas are filled from the whole order; without, M is enough.
    let needed = if config.max_negatives_per_positive.is_some() {
        usize::MAX
    } else {
        m
    };
    let mut order: Vec<usize> = if config.nms_by_loss {
        let items: Vec<(Rect, f32, usize)> = candidates
            .iter()
            .enumerate()
            .map(|(i, c)| (c.window, ranks[i], c.image))
            .collect();
        nms(&items, config.nms_iou, needed)
    } else {
        descending_order(&ranks)
    };
    if let Some(ratio) = config.max_negatives_per_positive {
        let positives: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| candidates[i].positive)
            .take(m)
            .collect();
        let cap = (ratio.max(0.0) * positives.len().max(1) as f32).ceil() as usize;
        let negatives = order
            .iter()
            .copied()
            .filter(|&i| !candidates[i].positive)
            .take(cap.min(m - positives.len()));
        let chosen: std::collections::HashSet<usize> =
            positives.iter().copied().chain(negatives).collect();
        // Both quotas are taken from `order`, so filtering it keeps the ranking.
        order.retain(|i| chosen.contains(i));
    }
    order.truncate(m);
    Ok(order)
}

/// The losses as ranks, one per candidate: a NaN loss ranks highest, since a diverging example
/// is the one to look at.
fn ranks(losses: &[f32], candidates: &[Candidate]) -> Result<Vec<f32>, SelectionError> {
    if losses.len() != candidates.len() {
        return Err(SelectionError::LengthMismatch {
            losses: losses.len(),
            candidates: candidates.len(),
        });
    }
    Ok(losses
        .iter()
        .map(|&l| if l.is_nan() { f32::INFINITY } else { l })
        .collect())
}

/// SSD's hard negative mining (Liu et al. 2016): every positive of the batch, and the
/// highest-loss negatives, `negatives_per_positive` of them per positive (as many as for one
/// positive when the batch holds none). Returns batch indices, highest loss first.
pub fn select_positives_and_hardest_negatives(
    losses: &[f32],
    candidates: &[Candidate],
    negatives_per_positive: f32,
) -> Result<Vec<usize>, SelectionError> {
    let ranks = ranks(losses, candidates)?;
    let order = descending_order(&ranks);
    let positives = candidates.iter().filter(|c| c.positive).count();
    let quota = (negatives_per_positive.max(0.0) * positives.max(1) as f32).round() as usize;
    let mut negatives_taken = 0;
    Ok(order
        .into_iter()
        .filter(|&i| {
            if candidates[i].positive {
                return true;
            }
            negatives_taken += 1;
            negatives_taken <= quota
        })
        .collect())
}

/// The random-M baseline: `M` distinct indices drawn uniformly (all when `M ≥ K`), sorted.
pub fn select_random(batch_size: usize, hard_examples: usize, rng: &mut impl Rng) -> Vec<usize> {
    let m = hard_examples.min(batch_size);
    let mut picked = sample(rng, batch_size, m).into_vec();
    picked.sort_unstable();
    picked
}

#[cfg(test)]
mod ssd_tests {
    use super::*;

    fn example(positive: bool) -> Candidate {
        Candidate {
            image: 0,
            window: Rect::new(0.0, 0.0, 10.0, 10.0),
            positive,
        }
    }

    #[test]
    fn three_to_one_keeps_every_positive_and_the_hardest_negatives() {
        // Two positives (one easy), six negatives: all positives, the six best negatives.
        let positive = [
            true, false, false, true, false, false, false, false, false, false,
        ];
        let losses = [0.01, 0.9, 0.2, 1.5, 0.8, 0.05, 0.7, 0.6, 0.3, 0.4];
        let candidates: Vec<Candidate> = positive.iter().map(|&p| example(p)).collect();
        let picked = select_positives_and_hardest_negatives(&losses, &candidates, 3.0).unwrap();
        assert_eq!(picked, vec![3, 1, 4, 6, 7, 9, 8, 0]);
        // No positive: as many negatives as for one.
        let negatives: Vec<Candidate> = (0..6).map(|_| example(false)).collect();
        let picked = select_positives_and_hardest_negatives(&losses[..6], &negatives, 3.0).unwrap();
        assert_eq!(picked, vec![3, 1, 4]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn plain(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                image: i,
                window: Rect::new(0.0, 0.0, 10.0, 10.0),
                positive: false,
            })
            .collect()
    }

    fn config(m: usize) -> SelectionConfig {
        SelectionConfig {
            hard_examples: m,
            nms_by_loss: false,
            nms_iou: 0.7,
            max_negatives_per_positive: None,
        }
    }

    #[test]
    fn top_m_takes_highest_losses_with_ties_broken_by_index() {
        let losses = [0.1, 0.9, 0.5, 0.9, 0.2, 0.5];
        let picked = select_hard(&losses, &plain(6), &config(3)).unwrap();
        assert_eq!(picked, vec![1, 3, 2]);
    }

    #[test]
    fn m_at_least_k_keeps_everything_and_zero_is_refused() {
        let losses = [0.3, 0.1, 0.2];
        assert_eq!(
            select_hard(&losses, &plain(3), &config(5)).unwrap(),
            vec![0, 2, 1]
        );
        assert_eq!(
            select_hard(&losses, &plain(3), &config(0)),
            Err(SelectionError::NoHardExamples)
        );
    }

    #[test]
    fn nms_by_loss_drops_near_duplicates_of_the_same_image_only() {
        let window = |x: f32| Rect::new(x, 0.0, x + 10.0, 10.0);
        let c = |image, x| Candidate {
            image,
            window: window(x),
            positive: false,
        };
        // 0 and 1 overlap with IoU 9/11 ≈ 0.82 in image 0; 2 is the same box in image 1;
        // 3 overlaps 0 with IoU 5/15 ≈ 0.33.
        let candidates = [c(0, 0.0), c(0, 1.0), c(1, 1.0), c(0, 5.0)];
        let losses = [0.9, 0.8, 0.7, 0.6];
        let mut cfg = config(3);
        cfg.nms_by_loss = true;
        assert_eq!(
            select_hard(&losses, &candidates, &cfg).unwrap(),
            vec![0, 2, 3]
        );
        cfg.nms_iou = 0.9;
        assert_eq!(
            select_hard(&losses, &candidates, &cfg).unwrap(),
            vec![0, 1, 2]
        );
    }

    #[test]
    fn negatives_per_positive_cap() {
        let mut candidates = plain(6);
        candidates[4].positive = true;
        let losses = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4];
        let mut cfg = config(4);
        cfg.max_negatives_per_positive = Some(2.0);
        // one positive → at most two negatives, the two hardest
        assert_eq!(
            select_hard(&losses, &candidates, &cfg).unwrap(),
            vec![0, 1, 4]
        );
    }

    #[test]
    fn nan_loss_ranks_first() {
        let losses = [0.1, f32::NAN, 0.5];
        assert_eq!(
            select_hard(&losses, &plain(3), &config(1)).unwrap(),
            vec![1]
        );
    }

    #[test]
    fn random_m_is_distinct_and_seeded() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let picked = select_random(10, 4, &mut rng);
        assert_eq!(picked.len(), 4);
        assert!(picked.windows(2).all(|w| w[0] < w[1]));
        let mut again = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        assert_eq!(select_random(10, 4, &mut again), picked);
        assert_eq!(select_random(3, 9, &mut again), vec![0, 1, 2]);
    }
}
