//! The files of a training run: `metrics.csv`, `eval.csv`, `hard_examples.csv`,
//! `label_suspects.csv`, `config.json`.
//! Written by the CLI thread from the trainer's events, so training never waits for the disk.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Serialize;

use crate::data::Dataset;
use crate::eval::ErrorKind;
use crate::train::messages::{EvalReport, HardExampleBatch, RunInfo, StepReport};
use crate::train::suspects::{suspects_csv, Suspect};

/// One row of COCO's results format, with the file name added for people.
#[derive(Debug, Serialize)]
pub struct CocoResult {
    pub image_id: u64,
    pub file_name: String,
    pub category_id: u64,
    pub category_name: String,
    /// `[x, y, width, height]` in the image's pixels.
    pub bbox: [f32; 4],
    pub score: f32,
}

pub struct RunFiles {
    dir: PathBuf,
    metrics: csv::Writer<BufWriter<File>>,
    evals: csv::Writer<BufWriter<File>>,
    hard: csv::Writer<BufWriter<File>>,
}

fn writer(path: &Path) -> anyhow::Result<csv::Writer<BufWriter<File>>> {
    let file = File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(csv::Writer::from_writer(BufWriter::new(file)))
}

impl RunFiles {
    pub fn create(dir: &Path, dataset: &Dataset) -> anyhow::Result<Self> {
        let mut metrics = writer(&dir.join("metrics.csv"))?;
        metrics.write_record([
            "step",
            "strategy",
            "elapsed_secs",
            "batch_size",
            "hard_examples",
            "trained_loss",
            "batch_loss",
            "forward_ms",
            "select_ms",
            "train_ms",
        ])?;
        let mut evals = writer(&dir.join("eval.csv"))?;
        let mut header = vec![
            "step".to_string(),
            "strategy".into(),
            "val_loss".into(),
            "map50".into(),
        ];
        header.extend(dataset.class_names.iter().map(|c| format!("ap50_{c}")));
        // The error breakdown at the score threshold where F1 is highest.
        header.push("best_f1_threshold".into());
        header.push("best_f1".into());
        header.extend(ErrorKind::ALL.map(|k| format!("fp_{}", k.label())));
        header.extend(["missed_small", "missed_medium", "missed_large"].map(String::from));
        evals.write_record(&header)?;
        let mut hard = writer(&dir.join("hard_examples.csv"))?;
        hard.write_record([
            "step", "rank", "image", "x0", "y0", "x1", "y1", "label", "loss", "score",
        ])?;
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics,
            evals,
            hard,
        })
    }

    pub fn write_config(&self, data_dir: &Path, info: &RunInfo) -> anyhow::Result<()> {
        #[derive(Serialize)]
        struct RunConfig<'a> {
            data: &'a Path,
            device: &'a str,
            window_px: (usize, usize),
            #[serde(flatten)]
            train: &'a crate::train::TrainConfig,
        }
        let config = RunConfig {
            data: data_dir,
            device: &info.device,
            window_px: info.window_px,
            train: &info.config,
        };
        crate::files::write_atomically(
            &self.dir.join("config.json"),
            serde_json::to_string_pretty(&config)?.as_bytes(),
        )
    }

    pub fn step(&mut self, report: &StepReport) -> anyhow::Result<()> {
        for s in &report.strategies {
            self.metrics.serialize((
                report.step,
                s.strategy.key(),
                report.elapsed_secs,
                report.batch_size,
                report.hard_examples,
                s.trained_loss,
                s.batch_loss,
                s.forward_ms,
                s.select_ms,
                s.train_ms,
            ))?;
        }
        Ok(())
    }

    pub fn hard_examples(
        &mut self,
        batch: &HardExampleBatch,
        dataset: &Dataset,
    ) -> anyhow::Result<()> {
        for (rank, e) in batch.examples.iter().enumerate() {
            let image = e
                .source_image
                .and_then(|i| dataset.train.get(i))
                .map(|r| r.path.display().to_string())
                .unwrap_or_else(|| "(pos crop)".into());
            let w = e.window;
            self.hard.serialize((
                batch.step,
                rank + 1,
                image,
                w.x0,
                w.y0,
                w.x1,
                w.y1,
                e.label,
                e.loss,
                e.score,
            ))?;
        }
        Ok(())
    }

    pub fn evaluation(&mut self, report: &EvalReport, _dataset: &Dataset) -> anyhow::Result<()> {
        let mut row = vec![
            report.step.to_string(),
            report.strategy.key().to_string(),
            format!("{:.6}", report.val_loss),
            format!("{:.6}", report.evaluation.map()),
        ];
        row.extend(
            report
                .evaluation
                .ap_per_class()
                .iter()
                .map(|ap| ap.map(|v| format!("{v:.6}")).unwrap_or_default()),
        );
        let best = report.evaluation.best_f1_point();
        let errors = report.evaluation.error_breakdown(best.score);
        row.push(format!("{:.6}", best.score));
        row.push(format!("{:.6}", best.f1()));
        row.extend(ErrorKind::ALL.map(|k| errors.count(k).to_string()));
        row.extend(
            [
                errors.missed_small,
                errors.missed_medium,
                errors.missed_large,
            ]
            .map(|n| n.to_string()),
        );
        self.evals.write_record(&row)?;
        self.evals.flush()?;
        Ok(())
    }

    /// `label_suspects.csv`: the run's label suspects (see `train::suspects`), rewritten whole.
    pub fn label_suspects(&self, suspects: &[Suspect], dataset: &Dataset) -> anyhow::Result<()> {
        let bytes = suspects_csv(suspects, &dataset.train)?;
        crate::files::write_atomically(&self.dir.join("label_suspects.csv"), &bytes)
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.metrics.flush()?;
        self.evals.flush()?;
        self.hard.flush()?;
        Ok(())
    }
}
