//! Headless commands: inspect a dataset, train, evaluate, detect, benchmark. They drive the same
//! trainer thread as the app, so a CLI run is an app run without a window.

mod bench;
mod compare;
mod files;
mod train;

pub use train::TrainArgs;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use indicatif::ProgressBar;

use crate::data::{self, LoadOptions};
use crate::detector::{self, LoadedModel};
use crate::eval::{self, MATCH_IOU};
use crate::train::DeviceChoice;

/// Watch online hard example mining train an object detector, batch by batch.
///
/// Without a subcommand, opens the app.
#[derive(Debug, Parser)]
#[command(name = "ohem-studio", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Commands>,
    /// Dataset folder the app opens at launch.
    #[arg(long, default_value = "sample_data", global = false)]
    pub data: PathBuf,
    /// Start training as soon as the dataset is open.
    #[arg(long)]
    pub start: bool,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Print a dataset's layout, counts per split and every problem found in it.
    Inspect {
        /// Dataset folder (YOLO, Pascal VOC, COCO or pos/neg).
        #[arg(long)]
        data: PathBuf,
    },
    /// Train the strategies side by side and write metrics, hard examples and weights.
    Train(TrainArgs),
    /// Train every strategy with several seeds and report mean ± std of the final mAP.
    Compare(compare::CompareArgs),
    /// Evaluate saved weights on a dataset's validation split.
    Eval {
        #[arg(long)]
        data: PathBuf,
        /// A `<strategy>.safetensors` written by `train` (its `model.json` must sit beside it).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Score threshold for precision, recall and F1.
        #[arg(long, default_value_t = 0.5)]
        threshold: f32,
        #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
        device: DeviceArg,
    },
    /// Detect objects in every image of a folder and write COCO results JSON.
    Detect {
        #[arg(long)]
        checkpoint: PathBuf,
        /// Folder of images (annotations, if any, are ignored).
        #[arg(long)]
        images: PathBuf,
        /// Keep detections scoring at least this (0 keeps every candidate NMS leaves).
        #[arg(long, default_value_t = 0.5)]
        threshold: f32,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
        device: DeviceArg,
    },
    /// Time a training step of each strategy and print OHEM's cost relative to full batch.
    Bench(bench::BenchArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

impl From<DeviceArg> for DeviceChoice {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Auto => DeviceChoice::Auto,
            DeviceArg::Cpu => DeviceChoice::Cpu,
            DeviceArg::Cuda => DeviceChoice::Cuda,
        }
    }
}

/// Runs a subcommand; the caller prints the error and exits non-zero.
pub fn run(command: Commands) -> anyhow::Result<()> {
    match command {
        Commands::Inspect { data } => inspect(&data),
        Commands::Train(args) => train::train(&args),
        Commands::Compare(args) => compare::run(&args),
        Commands::Eval {
            data,
            checkpoint,
            threshold,
            device,
        } => evaluate(&data, &checkpoint, threshold, device.into()),
        Commands::Detect {
            checkpoint,
            images,
            threshold,
            out,
            device,
        } => detect(&checkpoint, &images, threshold, &out, device.into()),
        Commands::Bench(args) => bench::run(&args),
    }
}

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

fn inspect(data_dir: &Path) -> anyhow::Result<()> {
    let (dataset, diagnostics) = data::load_dataset(data_dir, &LoadOptions::default())
        .with_context(|| format!("cannot open dataset {}", data_dir.display()))?;
    println!("{}", data::summary(&dataset));
    println!("{} problem(s) found", diagnostics.len());
    for d in &diagnostics {
        println!("  {d}");
    }
    Ok(())
}

fn evaluate(
    data_dir: &Path,
    checkpoint: &Path,
    threshold: f32,
    device: DeviceChoice,
) -> anyhow::Result<()> {
    let model = LoadedModel::load(checkpoint, device)?;
    let dataset = load(data_dir)?;
    if dataset.class_names != model.info.class_names {
        bail!(
            "the checkpoint detects {:?} but the dataset's classes are {:?}",
            model.info.class_names,
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
    let detections =
        detector::detect_images(&model.net, &dataset.val, &model.info.scales, model.device);
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
    println!(
        "at score ≥ {threshold}: precision {:.4}  recall {:.4}  F1 {:.4}  (TP {}, FP {}, FN {})",
        c.precision, c.recall, c.f1, c.tp, c.fp, c.fn_
    );
    println!(
        "{}",
        describe_errors(&evaluation.error_breakdown(threshold))
    );
    Ok(())
}

fn detect(
    checkpoint: &Path,
    images_dir: &Path,
    threshold: f32,
    out: &Path,
    device: DeviceChoice,
) -> anyhow::Result<()> {
    if !(0.0..=1.0).contains(&threshold) {
        bail!("--threshold must lie between 0 and 1");
    }
    if !images_dir.is_dir() {
        bail!("{}: no such folder", images_dir.display());
    }
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
                train::say(&bar, format!("warning: {diagnostic}"));
                failures += 1;
                continue;
            }
        };
        let (sx, sy) = (
            pixels.width() as f32 / width.max(1) as f32,
            pixels.height() as f32 / height.max(1) as f32,
        );
        let floor = threshold.max(1e-6);
        for d in detector::detect(&model.net, &pixels, &model.info.scales, floor, model.device) {
            results.push(files::CocoResult {
                image_id: image_id as u64 + 1,
                file_name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                category_id: d.class_id as u64 + 1,
                category_name: model
                    .info
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
