//! `ohem-studio sweep`: OHEM over a grid of M and NMS-by-loss thresholds, every cell from the
//! same initial weights on the same batches, so the grid shows what the two knobs do and
//! nothing else. Writes `sweep.csv` and the heat map `sweep.png` of the final mAP.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use serde::Serialize;

use super::train::{interrupt_flag, run as train_run, RunFolder};
use super::DeviceArg;
use crate::charts::heat_map;
use crate::train::{Strategy, TrainConfig};

#[derive(Debug, Args)]
pub struct SweepArgs {
    #[arg(long)]
    pub data: PathBuf,
    /// Values of M (hard examples per batch), comma-separated.
    #[arg(long, default_value = "16,32,64")]
    pub hard: String,
    /// NMS-by-loss IoU thresholds, comma-separated; `none` turns NMS by loss off.
    #[arg(long, default_value = "0.5,0.7,none")]
    pub nms: String,
    /// Steps each cell trains.
    #[arg(long, default_value_t = 1000)]
    pub steps: u64,
    /// K: examples per batch.
    #[arg(long = "batch", default_value_t = 128)]
    pub batch_size: usize,
    /// Seeds per cell: `--seed`, `--seed + 1`, …; the heat map shows their mean.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// CPU threads for libtorch (0: its default).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Output folder: one run folder per cell and seed, `sweep.csv` and `sweep.png`.
    #[arg(long)]
    pub out: PathBuf,
    /// Replace a sweep in a non-empty --out folder.
    #[arg(long)]
    pub overwrite: bool,
}

#[derive(Serialize)]
struct Row {
    hard_examples: usize,
    nms: String,
    seed: u64,
    map50: f32,
}

/// An NMS setting: an IoU threshold, or none.
fn parse_nms(list: &str) -> anyhow::Result<Vec<Option<f32>>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s {
            "none" | "off" => Ok(None),
            _ => match s.parse::<f32>() {
                Ok(v) if (0.0..=1.0).contains(&v) => Ok(Some(v)),
                _ => bail!("--nms {s:?}: an IoU between 0 and 1, or none"),
            },
        })
        .collect()
}

fn parse_hard(list: &str) -> anyhow::Result<Vec<usize>> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| match s.parse::<usize>() {
            Ok(m) if m > 0 => Ok(m),
            _ => bail!("--hard {s:?}: a whole number of at least 1"),
        })
        .collect()
}

fn nms_name(nms: Option<f32>) -> String {
    nms.map_or("none".to_string(), |v| format!("{v}"))
}

pub fn run(args: &SweepArgs) -> anyhow::Result<()> {
    let hard = parse_hard(&args.hard)?;
    let nms = parse_nms(&args.nms)?;
    if hard.is_empty() || nms.is_empty() || args.seeds == 0 {
        bail!("the grid is empty: give at least one M, one NMS setting and one seed");
    }
    let folder = RunFolder::claim(&args.out, args.overwrite)?;
    let interrupted = interrupt_flag();
    let mut rows = Vec::new();
    'grid: for &m in &hard {
        for &iou in &nms {
            for seed in (0..args.seeds).map(|i| args.seed.wrapping_add(i)) {
                if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
                    eprintln!("stopped: the grid is incomplete");
                    break 'grid;
                }
                eprintln!("— M {m}, NMS {}, seed {seed} —", nms_name(iou));
                let config = cell_config(args, m, iou, seed);
                config.validate()?;
                let cell = folder.child(&format!("M{m}-nms{}-seed{seed}", nms_name(iou)))?;
                let evaluations = train_run(&args.data, &cell, config, &interrupted)?;
                if let Some(last) = evaluations.iter().find(|e| e.strategy == Strategy::Ohem) {
                    rows.push(Row {
                        hard_examples: m,
                        nms: nms_name(iou),
                        seed,
                        map50: last.evaluation.map(),
                    });
                }
            }
        }
    }
    if rows.is_empty() {
        bail!("no cell was evaluated: the dataset needs validation images");
    }
    write_outputs(args, &hard, &nms, &rows)
}

/// The run of one cell: OHEM alone, evaluated at the end.
fn cell_config(args: &SweepArgs, m: usize, iou: Option<f32>, seed: u64) -> TrainConfig {
    TrainConfig {
        steps: Some(args.steps),
        batch_size: args.batch_size,
        hard_examples: m,
        strategies: vec![Strategy::Ohem],
        nms_by_loss: iou.is_some(),
        nms_iou: iou.unwrap_or(TrainConfig::default().nms_iou),
        device: args.device.into(),
        seed,
        eval_every: args.steps,
        cpu_threads: args.threads.min(crate::train::config::machine_threads()),
        ..TrainConfig::default()
    }
}

/// `sweep.csv` (one row per cell and seed) and `sweep.png` (mean mAP per cell).
fn write_outputs(
    args: &SweepArgs,
    hard: &[usize],
    nms: &[Option<f32>],
    rows: &[Row],
) -> anyhow::Result<()> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    for row in rows {
        writer.serialize(row)?;
    }
    let bytes = writer.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    let csv_path = args.out.join("sweep.csv");
    crate::files::write_atomically(&csv_path, &bytes)?;
    let grid: Vec<Vec<Option<f64>>> = hard
        .iter()
        .map(|&m| {
            nms.iter()
                .map(|&iou| {
                    let maps: Vec<f64> = rows
                        .iter()
                        .filter(|r| r.hard_examples == m && r.nms == nms_name(iou))
                        .map(|r| f64::from(r.map50))
                        .collect();
                    (!maps.is_empty()).then(|| maps.iter().sum::<f64>() / maps.len() as f64)
                })
                .collect()
        })
        .collect();
    let png = args.out.join("sweep.png");
    let row_names: Vec<String> = hard.iter().map(|m| m.to_string()).collect();
    let column_names: Vec<String> = nms.iter().map(|&v| nms_name(v)).collect();
    let title = format!(
        "OHEM final mAP@0.5 after {} steps (mean of {} seed(s))",
        args.steps, args.seeds
    );
    heat_map(
        &png,
        &title,
        ("M (hard examples)", &row_names),
        ("NMS by loss (IoU)", &column_names),
        &grid,
    )?;
    for (m, row) in hard.iter().zip(&grid) {
        let cells: Vec<String> = row
            .iter()
            .map(|v| v.map_or("   –  ".into(), |v| format!("{v:.3}")))
            .collect();
        println!("M {m:>4}: {}", cells.join("  "));
    }
    eprintln!("wrote {} and {}", csv_path.display(), png.display());
    Ok(())
}
