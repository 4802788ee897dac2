//! Writing a run folder from the trainer's events, on the thread that receives them (the CLI's)
//! or on a `recorder` thread of its own (the app's), so training never waits for the disk.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use anyhow::Context;
use crossbeam_channel::{bounded, Sender, TrySendError};

use super::{thumbs, RunConfig, Validation, DETECTIONS_HEADER, HARD_HEADER, METRICS_HEADER};
use crate::data::Dataset;
use crate::eval::{self, ErrorKind};
use crate::files::{write_atomically, PathCell};
use crate::train::messages::{EvalReport, Event, HardExampleBatch, RunInfo, StepReport};

type CsvFile = csv::Writer<BufWriter<File>>;

/// The open files of a run folder.
pub struct Recorder {
    dir: PathBuf,
    dataset: Arc<Dataset>,
    metrics: CsvFile,
    hard: CsvFile,
    thumbs: BufWriter<File>,
    detections: CsvFile,
    evals: CsvFile,
}

impl Recorder {
    /// Starts the record of the run `info` in `dir`: a new run writes every file afresh; a
    /// continued one (`info.resumed_at_step`) keeps what was recorded up to its checkpoint's
    /// step, drops what came after (it is trained again), and appends.
    pub fn start(
        dir: &Path,
        dataset: Arc<Dataset>,
        data_dir: &Path,
        info: &RunInfo,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // config.json makes the folder a run folder to a reader: it comes last.
        write_validation(dir, &dataset)?;
        write_config(dir, data_dir, info)?;
        let header = eval_header(&dataset);
        let open = |name: &str, header: &[String], keep: fn(u64, u64) -> bool| match info
            .resumed_at_step
        {
            Some(step) => append_to(&dir.join(name), header, |row| keep(row, step)),
            None => create(&dir.join(name), header),
        };
        // A continued run that evaluates at its checkpoint's step does so again first.
        let evaluations_kept: fn(u64, u64) -> bool = match info.resumed_at_step {
            Some(step) if info.config.evaluates_again_when_continued_at(step) => |row, at| row < at,
            _ => |row, at| row <= at,
        };
        let steps_kept: fn(u64, u64) -> bool = |row, at| row <= at;
        let strings = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let thumbs_path = dir.join(super::THUMBNAILS);
        if let Some(step) = info.resumed_at_step {
            cut_thumbnails(&thumbs_path, step)?;
        } else {
            File::create(&thumbs_path)
                .with_context(|| format!("cannot write {}", thumbs_path.display()))?;
        }
        let thumbs = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&thumbs_path)
            .with_context(|| format!("cannot write {}", thumbs_path.display()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            metrics: open(super::METRICS, &strings(&METRICS_HEADER), steps_kept)?,
            hard: open(super::HARD_EXAMPLES, &strings(&HARD_HEADER), steps_kept)?,
            thumbs: BufWriter::new(thumbs),
            detections: open(
                super::DETECTIONS,
                &strings(&DETECTIONS_HEADER),
                evaluations_kept,
            )?,
            evals: open(super::EVALUATIONS, &header, evaluations_kept)?,
            dataset,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records what `event` adds to the run; other events change nothing on disk. A failed
    /// write (a full disk) names the file.
    pub fn record(&mut self, event: &Event) -> anyhow::Result<()> {
        match event {
            Event::Step(report) => self
                .step(report)
                .with_context(|| self.cannot(super::METRICS)),
            Event::HardExamples(batch) => self.hard_examples(batch),
            Event::Evaluated(report) => self.evaluation(report),
            _ => Ok(()),
        }
    }

    fn cannot(&self, file: &str) -> String {
        format!("cannot write {}", self.dir.join(file).display())
    }

    fn step(&mut self, report: &StepReport) -> anyhow::Result<()> {
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
                report.examples_per_sec,
            ))?;
        }
        self.metrics.flush()?;
        Ok(())
    }

    /// The pixels first, then the rows: a row on disk always has its thumbnail.
    fn hard_examples(&mut self, batch: &HardExampleBatch) -> anyhow::Result<()> {
        let thumbnails: Vec<_> = batch.examples.iter().map(|e| e.thumbnail.clone()).collect();
        thumbs::append(&mut self.thumbs, batch.step, &thumbnails)
            .and_then(|_| Ok(self.thumbs.flush()?))
            .with_context(|| self.cannot(super::THUMBNAILS))?;
        self.hard_rows(batch)
            .with_context(|| self.cannot(super::HARD_EXAMPLES))
    }

    fn hard_rows(&mut self, batch: &HardExampleBatch) -> anyhow::Result<()> {
        for (rank, e) in batch.examples.iter().enumerate() {
            let image = e
                .seen
                .source_image
                .and_then(|i| self.dataset.train.get(i))
                .map_or(PathCell(Path::new("(pos crop)")), |r| PathCell(&r.path));
            let w = e.seen.window;
            self.hard.serialize((
                batch.step,
                rank + 1,
                image,
                e.seen
                    .source_image
                    .map(|i| i.to_string())
                    .unwrap_or_default(),
                w.x0,
                w.y0,
                w.x1,
                w.y1,
                e.seen.label,
                e.seen.loss,
                e.seen.classification_loss,
                e.seen.score,
                batch.batch_size,
            ))?;
        }
        self.hard.flush()?;
        Ok(())
    }

    /// The detections first, then the `eval.csv` row: a reader that sees the row has them all.
    fn evaluation(&mut self, report: &EvalReport) -> anyhow::Result<()> {
        self.detections(report)
            .with_context(|| self.cannot(super::DETECTIONS))?;
        self.evals
            .write_record(eval_row(report))
            .and_then(|_| Ok(self.evals.flush()?))
            .with_context(|| self.cannot(super::EVALUATIONS))
    }

    fn detections(&mut self, report: &EvalReport) -> anyhow::Result<()> {
        for d in &report.detections {
            let r = d.rect;
            self.detections.serialize((
                report.step,
                report.strategy.key(),
                d.image,
                d.class_id,
                d.score,
                r.x0,
                r.y0,
                r.x1,
                r.y1,
            ))?;
        }
        self.detections.flush()?;
        Ok(())
    }

    /// Flushes every file (each is flushed as it is written; this is for the end).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        self.metrics.flush()?;
        self.hard.flush()?;
        self.thumbs.flush()?;
        self.detections.flush()?;
        self.evals.flush()?;
        Ok(())
    }
}

fn create(path: &Path, header: &[String]) -> anyhow::Result<CsvFile> {
    let file = File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
    let mut writer = csv::Writer::from_writer(BufWriter::new(file));
    writer.write_record(header)?;
    writer.flush()?;
    Ok(writer)
}

/// Opens `path` to append after keeping only its rows whose step `keep` accepts (rewritten
/// atomically); a missing file is created. Rows are CSV records, not lines: a class name with
/// a line break in it is one quoted field. A record cut off by a crash (no line end) goes.
fn append_to(
    path: &Path,
    header: &[String],
    keep: impl Fn(u64) -> bool,
) -> anyhow::Result<CsvFile> {
    let Ok(bytes) = std::fs::read(path) else {
        return create(path, header);
    };
    write_atomically(path, &kept_records(&bytes, keep))?;
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(BufWriter::new(file)))
}

/// The header record of the CSV text `bytes` and those of its complete records whose leading
/// step `keep` accepts, byte for byte as they were.
fn kept_records(bytes: &[u8], keep: impl Fn(u64) -> bool) -> Vec<u8> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut kept = Vec::with_capacity(bytes.len());
    let mut header = true;
    loop {
        let start = reader.position().byte() as usize;
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) | Err(_) => break,
        }
        let end = (reader.position().byte() as usize).min(bytes.len());
        let text = &bytes[start..end];
        if !text.ends_with(b"\n") {
            break;
        }
        let row_step = std::str::from_utf8(record.get(0).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse::<u64>().ok());
        if std::mem::take(&mut header) || row_step.is_some_and(&keep) {
            kept.extend_from_slice(text);
        }
    }
    kept
}

/// Cuts `hard_examples.thumbs` after the last record of a step up to `step`.
fn cut_thumbnails(path: &Path, step: u64) -> anyhow::Result<()> {
    let end = thumbs::index(path, 0)?
        .into_iter()
        .filter(|r| r.step <= step)
        .map(|r| r.end)
        .max()
        .unwrap_or(0);
    if !path.exists() {
        return Ok(());
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.set_len(end)
        .with_context(|| format!("cannot cut {} back", path.display()))?;
    Ok(())
}

fn write_config(dir: &Path, data_dir: &Path, info: &RunInfo) -> anyhow::Result<()> {
    let config = RunConfig {
        data: crate::files::canonical(data_dir),
        device_name: info.device.clone(),
        detector: info.detector.clone(),
        train: info.config.clone(),
    };
    write_atomically(
        &dir.join(super::CONFIG),
        serde_json::to_string_pretty(&config)?.as_bytes(),
    )
}

fn write_validation(dir: &Path, dataset: &Dataset) -> anyhow::Result<()> {
    let validation = Validation {
        class_names: dataset.class_names.clone(),
        images: dataset
            .val
            .iter()
            .map(|r| r.path.display().to_string())
            .collect(),
        boxes: eval::ground_truth(&dataset.val),
    };
    write_atomically(
        &dir.join(super::VALIDATION),
        serde_json::to_string(&validation)?.as_bytes(),
    )
}

fn eval_header(dataset: &Dataset) -> Vec<String> {
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
    header
}

fn eval_row(report: &EvalReport) -> Vec<String> {
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
    row
}

/// Records the recorder thread may have waiting: far more than a healthy disk ever lets pile up.
const RECORDS_WAITING: usize = 16_384;

/// A [`Recorder`] on its own `recorder` thread: the app hands it events and never waits.
/// Dropping it flushes and ends the thread.
pub struct RecorderThread {
    events: Option<Sender<Event>>,
    thread: Option<JoinHandle<()>>,
    dir: PathBuf,
    on_error: Arc<dyn Fn(String) + Send + Sync>,
}

impl RecorderThread {
    /// Records into `recorder`; a failure to write is told once through `on_error`, and the
    /// recording stops there (training goes on).
    pub fn spawn(
        mut recorder: Recorder,
        on_error: impl Fn(String) + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let (events, received) = bounded::<Event>(RECORDS_WAITING);
        let dir = recorder.dir().to_path_buf();
        let on_error: Arc<dyn Fn(String) + Send + Sync> = Arc::new(on_error);
        let report = on_error.clone();
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || {
                for event in received {
                    if let Err(error) = recorder.record(&event) {
                        report(format!(
                            "recording into {} stopped: {error:#}",
                            recorder.dir().display()
                        ));
                        return;
                    }
                }
                let _ = recorder.flush();
            })?;
        Ok(Self {
            events: Some(events),
            thread: Some(thread),
            dir,
            on_error,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Queues `event` for the record. A disk so slow that the queue fills stops the recording
    /// (said through `on_error`) rather than make the caller wait.
    pub fn record(&mut self, event: &Event) {
        if !matches!(
            event,
            Event::Step(_) | Event::HardExamples(_) | Event::Evaluated(_)
        ) {
            return;
        }
        let Some(events) = &self.events else {
            return;
        };
        if let Err(TrySendError::Full(_)) = events.try_send(event.clone()) {
            self.events = None;
            (self.on_error)(format!(
                "recording into {} stopped: the disk fell {RECORDS_WAITING} records behind (the run goes on, unrecorded)",
                self.dir.display()
            ));
        }
    }
}

impl Drop for RecorderThread {
    fn drop(&mut self) {
        self.events = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::kept_records;

    #[test]
    fn a_quoted_line_break_stays_inside_its_record() {
        let text = b"step,\"ap50_red\nfox\",map\n1,\"a\nb\",0.5\n2,x,0.6\n3,y,0.7";
        let kept = kept_records(text, |step| step <= 2);
        assert_eq!(
            kept,
            b"step,\"ap50_red\nfox\",map\n1,\"a\nb\",0.5\n2,x,0.6\n".to_vec()
        );
        // The last record had no line end: cut off, it goes even though its step is kept.
        assert_eq!(kept_records(text, |_| true), kept);
    }
}
