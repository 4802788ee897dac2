//! Headless commands: inspect a dataset, train, evaluate, detect, benchmark. They drive the same
//! trainer thread as the app, so a CLI run is an app run without a window.

mod bench;
mod files;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::data::{self, LoadOptions};
use crate::detector::{DetectorNet, ModelInfo};
use crate::eval;
use crate::train::engine::{detect_split, validation_ground_truth, MATCH_IOU};
use crate::train::thread::parse_strategies;
use crate::train::{Command, DeviceChoice, Event, TrainConfig, TrainerHandle};

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

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[arg(long)]
    pub data: PathBuf,
    /// Steps (batches) to train.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// K: examples (windows) per batch.
    #[arg(long = "batch", default_value_t = 128)]
    pub batch_size: usize,
    /// M: hard examples kept per batch.
    #[arg(long = "hard", default_value_t = 32)]
    pub hard_examples: usize,
    /// Comma-separated: ohem, full, random.
    #[arg(long, default_value = "ohem,full,random")]
    pub strategies: String,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Evaluate on the validation split every N steps (and at the end).
    #[arg(long, default_value_t = 250)]
    pub eval_every: u64,
    /// Share of background windows in a batch.
    #[arg(long, default_value_t = 0.75)]
    pub negative_fraction: f32,
    /// Turn off NMS by loss among the hard-example candidates.
    #[arg(long)]
    pub no_nms_by_loss: bool,
    /// At most this many negatives per positive among the hard examples.
    #[arg(long)]
    pub max_neg_per_pos: Option<f32>,
    /// CPU threads for libtorch (0: its default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Run folder: metrics.csv, eval.csv, hard_examples.csv, config.json, weights.
    #[arg(long)]
    pub out: PathBuf,
}

impl TrainArgs {
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        if !(0.0..=1.0).contains(&self.negative_fraction) {
            bail!("--negative-fraction must lie between 0 and 1");
        }
        if self.steps == 0 || self.batch_size == 0 || self.hard_examples == 0 {
            bail!("--steps, --batch and --hard must be at least 1");
        }
        Ok(TrainConfig {
            steps: Some(self.steps),
            batch_size: self.batch_size,
            hard_examples: self.hard_examples,
            strategies: parse_strategies(&self.strategies)?,
            lr: self.lr,
            device: self.device.into(),
            seed: self.seed,
            eval_every: self.eval_every,
            negative_fraction: self.negative_fraction,
            nms_by_loss: !self.no_nms_by_loss,
            max_negatives_per_positive: self.max_neg_per_pos,
            cpu_threads: self.threads,
            ..TrainConfig::default()
        })
    }
}

/// Runs a subcommand; the caller prints the error and exits non-zero.
pub fn run(command: Commands) -> anyhow::Result<()> {
    match command {
        Commands::Inspect { data } => inspect(&data),
        Commands::Train(args) => train(&args),
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

fn train(args: &TrainArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let mut trainer = TrainerHandle::spawn(Arc::new(|| {}))?;
    trainer.send(Command::OpenDataset(args.data.clone()));
    let dataset = loop {
        match next_event(&trainer)? {
            Event::DatasetLoaded {
                dataset,
                summary,
                diagnostics,
            } => {
                eprintln!("{summary}");
                if !diagnostics.is_empty() {
                    eprintln!(
                        "{} problem(s) in the dataset, listed above; training on the good items",
                        diagnostics.len()
                    );
                }
                break dataset;
            }
            Event::DatasetFailed { path, message } => {
                bail!("cannot open dataset {}: {message}", path.display())
            }
            _ => {}
        }
    };
    let mut outputs = files::RunFiles::create(&args.out, &dataset)?;
    trainer.send(Command::Start(config.clone()));

    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    // A second Ctrl-C falls through to the default handler and ends the process.
    let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));

    let bar = ProgressBar::new(config.steps.unwrap_or(0));
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Where the run is: a problem before it starts, or while saving, ends the command.
    #[derive(PartialEq)]
    enum Phase {
        Starting,
        Training,
        Saving,
    }
    let mut phase = Phase::Starting;
    let mut stop_sent = false;
    loop {
        if interrupted.load(Ordering::SeqCst) && !stop_sent && phase == Phase::Training {
            say(&bar, "stopping: the weights trained so far will be saved");
            trainer.send(Command::StopRun);
            stop_sent = true;
        }
        let Some(event) = trainer.recv_timeout(Duration::from_millis(200)) else {
            if trainer.is_finished() {
                bail!("the trainer ended unexpectedly");
            }
            continue;
        };
        match event {
            Event::RunStarted(info) => {
                say(
                    &bar,
                    format!(
                        "training {} on {} — window {}×{} px",
                        config
                            .strategies
                            .iter()
                            .map(|s| s.key())
                            .collect::<Vec<_>>()
                            .join(", "),
                        info.device,
                        info.window_px.0,
                        info.window_px.1
                    ),
                );
                outputs.write_config(&args.data, &info)?;
                phase = Phase::Training;
            }
            Event::Step(report) => {
                bar.set_position(report.step);
                let losses: Vec<String> = report
                    .strategies
                    .iter()
                    .map(|s| format!("{} {:.3}", s.strategy.key(), s.batch_loss))
                    .collect();
                bar.set_message(format!("batch loss: {}", losses.join("  ")));
                outputs.step(&report)?;
            }
            Event::HardExamples(batch) => outputs.hard_examples(&batch, &dataset)?,
            Event::Evaluated(report) => {
                say(
                    &bar,
                    format!(
                        "step {:>5}  {:<10} mAP@0.5 {:.3}  val loss {:.4}",
                        report.step,
                        report.strategy.label(),
                        report.evaluation.map(),
                        report.val_loss
                    ),
                );
                outputs.evaluation(&report, &dataset)?;
            }
            Event::Problem(message) if phase != Phase::Training => {
                bar.finish_and_clear();
                bail!("{message}");
            }
            Event::Problem(message) => say(&bar, format!("warning: {message}")),
            Event::RunEnded { .. } => {
                bar.finish_and_clear();
                outputs.flush()?;
                trainer.send(Command::SaveCheckpoint(args.out.clone()));
                phase = Phase::Saving;
            }
            Event::CheckpointSaved(paths) => {
                for p in paths {
                    eprintln!("wrote {}", p.display());
                }
                eprintln!("wrote {}", args.out.join("metrics.csv").display());
                trainer.shutdown(Duration::from_secs(5));
                return Ok(());
            }
            Event::Failed { message } => bail!("{message}"),
            Event::Stopped => bail!("the trainer stopped before saving"),
            _ => {}
        }
    }
}

/// A line above the progress bar, or plainly on stderr when there is no terminal to draw it on.
fn say(bar: &ProgressBar, line: impl AsRef<str>) {
    if bar.is_hidden() {
        eprintln!("{}", line.as_ref());
    } else {
        bar.println(line);
    }
}

fn next_event(trainer: &TrainerHandle) -> anyhow::Result<Event> {
    loop {
        if let Some(event) = trainer.recv_timeout(Duration::from_millis(200)) {
            return Ok(event);
        }
        if trainer.is_finished() {
            bail!("the trainer ended unexpectedly");
        }
    }
}

/// A trained detector loaded from `<strategy>.safetensors` and the `model.json` beside it.
pub struct LoadedModel {
    pub info: ModelInfo,
    pub net: DetectorNet,
    pub device: tch::Device,
    _vs: tch::nn::VarStore,
}

pub fn load_model(checkpoint: &Path, device: DeviceChoice) -> anyhow::Result<LoadedModel> {
    if !checkpoint.is_file() {
        bail!("{}: no such checkpoint file", checkpoint.display());
    }
    let info_path = checkpoint.with_file_name("model.json");
    let info = ModelInfo::load(&info_path).with_context(|| {
        format!(
            "{} needs the model.json that `train` writes beside it",
            checkpoint.display()
        )
    })?;
    let (device, _) = crate::detector::resolve_device(device)?;
    let mut vs = tch::nn::VarStore::new(device);
    let net = DetectorNet::new(&vs.root(), info.class_names.len(), info.window);
    vs.load(checkpoint)
        .with_context(|| format!("{}: not weights of this detector", checkpoint.display()))?;
    Ok(LoadedModel {
        info,
        net,
        device,
        _vs: vs,
    })
}

fn evaluate(
    data_dir: &Path,
    checkpoint: &Path,
    threshold: f32,
    device: DeviceChoice,
) -> anyhow::Result<()> {
    let model = load_model(checkpoint, device)?;
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
    let detections = detect_split(&model.net, &dataset.val, &model.info.scales, model.device);
    bar.finish_and_clear();
    let evaluation = eval::evaluate(
        &detections,
        &validation_ground_truth(&dataset),
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
    let model = load_model(checkpoint, device)?;
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
        for d in
            crate::detector::detect(&model.net, &pixels, &model.info.scales, floor, model.device)
        {
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
    crate::train::files::write_atomically(out, serde_json::to_string_pretty(&results)?.as_bytes())?;
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
