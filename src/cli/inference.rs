//! `eval` and `detect`: a saved detector on a dataset's validation split, or on any folder of
//! images.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use indicatif::ProgressBar;

use super::files;
use super::train::say;
use crate::data::{self, LoadOptions};
use crate::detector::{self, LoadedModel};
use crate::eval::{self, MATCH_IOU};
use crate::train::DeviceChoice;

fn load(data_dir: &Path) -> anyhow::Result<data::Dataset> {
    let spinner =
        ProgressBar::new_spinner().with_message(format!("loading {}", data_dir.display()));
    spinner.enable_steady_tick(Duration::from_millis(100));
    let loaded = data::load_dataset(data_dir, &LoadOptions::default());
    spinner.finish_and_clear();
    let (dataset, diagnostics) =
        loaded.with_context(|| format!("cannot open dataset {}", data_dir.display()))?;
    for d in &diagnostics {
        eprintln!("warning: {d}");
    }
    Ok(dataset)
}

pub(super) fn evaluate(
    data_dir: &Path,
    checkpoint: &Path,
    threshold: f32,
    device: DeviceChoice,
) -> anyhow::Result<()> {
    let model = LoadedModel::load(checkpoint, device)?;
    let dataset = load(data_dir)?;
    if dataset.class_names != model.info().class_names {
        bail!(
            "the checkpoint detects {:?} but the dataset's classes are {:?}",
            model.info().class_names,
            dataset.class_names
        );
    }
    if dataset.val.is_empty() {
        bail!("{} has no validation images", data_dir.display());
    }
    let bar = ProgressBar::new_spinner().with_message(format!(
        "detecting on {} validation images",
        dataset.val.len()
    ));
    bar.enable_steady_tick(Duration::from_millis(100));
    let (detections, _) = detector::detect_images(&model.net, &dataset.val, model.device);
    bar.finish_and_clear();
    let evaluation = eval::evaluate(
        &detections,
        &eval::ground_truth(&dataset.val),
        dataset.class_names.len(),
        MATCH_IOU,
    );
    for (name, ap) in dataset.class_names.iter().zip(evaluation.ap_per_class()) {
        match ap {
            Some(ap) => println!("AP@0.5 {name:<20} {ap:.4}"),
            None => println!("AP@0.5 {name:<20} (no validation boxes)"),
        }
    }
    println!("mAP@0.5 {:.4}", evaluation.map());
    let c = evaluation.counts_at(threshold);
    // With nothing detected, precision is undefined: no number should read as a perfect one.
    let precision = if c.tp + c.fp == 0 {
        "– (no detections)".to_string()
    } else {
        format!("{:.4}", c.precision)
    };
    println!(
        "at score ≥ {threshold}: precision {precision}  recall {:.4}  F1 {:.4}  (TP {}, FP {}, FN {})",
        c.recall, c.f1, c.tp, c.fp, c.fn_
    );
    println!(
        "{}",
        describe_errors(&evaluation.error_breakdown(threshold))
    );
    let best = evaluation.best_f1_point();
    println!(
        "best F1 {:.4} at score ≥ {:.4} (precision {:.4}, recall {:.4}); there {}",
        best.f1(),
        best.score,
        best.precision,
        best.recall,
        describe_errors(&evaluation.error_breakdown(best.score))
    );
    Ok(())
}

pub(super) fn detect(
    checkpoint: &Path,
    images_dir: &Path,
    threshold: f32,
    out: &Path,
    device: DeviceChoice,
) -> anyhow::Result<()> {
    if !images_dir.is_dir() {
        bail!("{}: no such folder", images_dir.display());
    }
    crate::files::check_writable(out)?;
    let model = LoadedModel::load(checkpoint, device)?;
    let paths = data::list_images(images_dir);
    if paths.is_empty() {
        bail!(
            "{} holds no images (jpg, png, bmp, gif, tif, webp)",
            images_dir.display()
        );
    }
    let bar = ProgressBar::new(paths.len() as u64);
    let options = LoadOptions::default();
    let mut results = Vec::new();
    let mut failures = 0;
    for (image_id, path) in paths.iter().enumerate() {
        bar.inc(1);
        let (pixels, width, height) = match data::decode_image(path, &options) {
            Ok(decoded) => decoded,
            Err(diagnostic) => {
                say(&bar, format!("warning: {diagnostic}"));
                failures += 1;
                continue;
            }
        };
        let (sx, sy) = (
            pixels.width() as f32 / width.max(1) as f32,
            pixels.height() as f32 / height.max(1) as f32,
        );
        let floor = threshold.max(1e-6);
        for d in model.net.detect(&pixels, floor, model.device) {
            results.push(files::CocoResult {
                image_id: image_id as u64 + 1,
                file_name: crate::files::file_name(path),
                category_id: d.class_id as u64 + 1,
                category_name: model
                    .info()
                    .class_names
                    .get(d.class_id)
                    .cloned()
                    .unwrap_or_default(),
                bbox: d.rect.scaled_xy(1.0 / sx, 1.0 / sy).to_xywh(),
                score: d.score,
            });
        }
    }
    bar.finish_and_clear();
    crate::files::write_atomically(out, serde_json::to_string_pretty(&results)?.as_bytes())?;
    eprintln!(
        "wrote {} detections on {} images to {}{}",
        results.len(),
        paths.len() - failures,
        out.display(),
        if failures > 0 {
            format!(" ({failures} unreadable images skipped, listed above)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The error breakdown in one line: false positives by type, misses by size.
pub fn describe_errors(errors: &eval::ErrorBreakdown) -> String {
    let kinds: Vec<String> = eval::ErrorKind::ALL
        .iter()
        .map(|&k| format!("{} {}", k.label(), errors.count(k)))
        .collect();
    format!(
        "false positives: {}; misses: small {}, medium {}, large {}",
        kinds.join(", "),
        errors.missed_small,
        errors.missed_medium,
        errors.missed_large
    )
}
