//! Plain numbers about a loaded dataset, for the UI panel and the CLI.

use std::fmt;
use std::path::PathBuf;

use super::{Dataset, ImageRecord, Layout};

/// Counts for one split.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct SplitSummary {
    pub images: usize,
    /// Images with no box at all.
    pub negative_images: usize,
    pub boxes: usize,
    /// Of `boxes`, those marked difficult (VOC `difficult`, COCO `iscrowd`).
    pub difficult_boxes: usize,
    /// Box count per class index.
    pub boxes_per_class: Vec<usize>,
}

/// What a dataset holds, as plain values.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DatasetSummary {
    pub root: PathBuf,
    pub layout: Layout,
    pub class_names: Vec<String>,
    pub train: SplitSummary,
    pub val: SplitSummary,
    /// `pos/` crops (pos/neg layout only).
    pub positive_crops: usize,
    /// Box count per class over train and validation.
    pub boxes_per_class: Vec<usize>,
    /// Median box size in original-image pixels over train and validation (over the crops when
    /// those splits have no box); 0 when there is no box.
    pub median_box_width_px: f32,
    pub median_box_height_px: f32,
}

fn split_summary(records: &[ImageRecord], class_count: usize) -> SplitSummary {
    let mut summary = SplitSummary {
        images: records.len(),
        boxes_per_class: vec![0; class_count],
        ..SplitSummary::default()
    };
    for record in records {
        if record.boxes.is_empty() {
            summary.negative_images += 1;
        }
        for b in &record.boxes {
            summary.boxes += 1;
            summary.difficult_boxes += usize::from(b.difficult);
            if let Some(count) = summary.boxes_per_class.get_mut(b.class_id) {
                *count += 1;
            }
        }
    }
    summary
}

fn median(mut values: Vec<f32>) -> f32 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f32::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Counts and box statistics of `dataset`.
pub fn summary(dataset: &Dataset) -> DatasetSummary {
    let class_count = dataset.class_names.len();
    let train = split_summary(&dataset.train, class_count);
    let val = split_summary(&dataset.val, class_count);
    let boxes_per_class = train
        .boxes_per_class
        .iter()
        .zip(&val.boxes_per_class)
        .map(|(a, b)| a + b)
        .collect();
    let mut sized: Vec<&ImageRecord> = dataset.train.iter().chain(&dataset.val).collect();
    if sized.iter().all(|r| r.boxes.is_empty()) {
        sized = dataset.positive_crops.iter().collect();
    }
    let rects = || sized.iter().flat_map(|r| r.boxes.iter().map(|b| b.rect));
    DatasetSummary {
        root: dataset.root.clone(),
        layout: dataset.layout,
        class_names: dataset.class_names.clone(),
        train,
        val,
        positive_crops: dataset.positive_crops.len(),
        boxes_per_class,
        median_box_width_px: median(rects().map(|r| r.width()).collect()),
        median_box_height_px: median(rects().map(|r| r.height()).collect()),
    }
}

impl fmt::Display for DatasetSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let classes = self.class_names.len();
        writeln!(
            f,
            "{} dataset at {} — {classes} class{}: {}",
            self.layout,
            self.root.display(),
            if classes == 1 { "" } else { "es" },
            self.class_names.join(", ")
        )?;
        for (name, split) in [("train", &self.train), ("val", &self.val)] {
            write!(
                f,
                "  {name:<5} {} images ({} without objects), {} boxes",
                split.images, split.negative_images, split.boxes
            )?;
            if split.difficult_boxes > 0 {
                write!(f, " ({} difficult)", split.difficult_boxes)?;
            }
            writeln!(f)?;
        }
        if self.positive_crops > 0 {
            writeln!(f, "  crops {} positive crops", self.positive_crops)?;
        }
        let per_class: Vec<String> = self
            .class_names
            .iter()
            .zip(&self.boxes_per_class)
            .map(|(name, count)| format!("{name} {count}"))
            .collect();
        if !per_class.is_empty() {
            writeln!(f, "  boxes per class: {}", per_class.join(", "))?;
        }
        write!(
            f,
            "  median box: {:.0}×{:.0} px",
            self.median_box_width_px, self.median_box_height_px
        )
    }
}
