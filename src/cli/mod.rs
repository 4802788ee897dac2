//! Headless commands: inspect a dataset, train, evaluate, detect, benchmark. They drive the same
//! trainer thread as the app, so a CLI run is an app run without a window.

mod bench;
mod compare;
mod files;
mod inference;
mod jitter;
mod run_charts;
mod sweep;
mod train;

pub use train::TrainArgs;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::data::{self, LoadOptions};
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
    /// A run folder to show (`train --out`, or one the app recorded), followed while it grows;
    /// repeat to overlay more runs on its plots.
    #[arg(long = "run", value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// The app records each run it trains in a new folder inside this one.
    #[arg(long, default_value = "runs")]
    pub runs_dir: PathBuf,
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
    /// Train OHEM over a grid of M and NMS-by-loss thresholds; write sweep.csv and a heat map.
    Sweep(sweep::SweepArgs),
    /// Evaluate saved weights on a dataset's validation split.
    Eval {
        #[arg(long)]
        data: PathBuf,
        /// A `<strategy>.safetensors` written by `train` (its `model.json` must sit beside it).
        #[arg(long)]
        checkpoint: PathBuf,
        /// Score threshold for precision, recall and F1 (0 to 1).
        #[arg(long, default_value_t = 0.5, value_parser = score_threshold)]
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
        #[arg(long, default_value_t = 0.5, value_parser = score_threshold)]
        threshold: f32,
        /// The COCO results JSON to write; an existing file is refused unless --overwrite.
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing --out file.
        #[arg(long)]
        overwrite: bool,
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
        Commands::Sweep(args) => sweep::run(&args),
        Commands::Eval {
            data,
            checkpoint,
            threshold,
            device,
        } => inference::evaluate(&data, &checkpoint, threshold, device.into()),
        Commands::Detect {
            checkpoint,
            images,
            threshold,
            out,
            overwrite,
            device,
        } => {
            if out.exists() && !overwrite {
                anyhow::bail!(
                    "{} already exists: choose another --out file, or pass --overwrite to replace it",
                    out.display()
                );
            }
            inference::detect(&checkpoint, &images, threshold, &out, device.into())
        }
        Commands::Bench(args) => bench::run(&args),
    }
}

/// A score threshold: a number from 0 to 1.
fn score_threshold(text: &str) -> Result<f32, String> {
    match text.parse::<f32>() {
        Ok(t) if (0.0..=1.0).contains(&t) => Ok(t),
        _ => Err(format!("{text} is not a score between 0 and 1")),
    }
}

fn inspect(data_dir: &Path) -> anyhow::Result<()> {
    let (dataset, diagnostics) = data::load_dataset(data_dir, &LoadOptions::default())
        .with_context(|| format!("cannot open dataset {}", data_dir.display()))?;
    println!("{}", data::summary(&dataset));
    let notes = diagnostics.iter().filter(|d| d.is_note()).count();
    println!(
        "{} problem(s) found, {notes} note(s)",
        diagnostics.len() - notes
    );
    for d in &diagnostics {
        println!("  {d}");
    }
    Ok(())
}
