//! Reading a run folder back as the trainer's own events, from the start and then as it grows:
//! the app shows a recorded run with the code that shows a live one. Only complete lines and
//! records are taken; what is still being written waits for the next look.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};

use super::{thumbs, RunConfig, Validation, DETECTIONS_HEADER, HARD_HEADER, METRICS_HEADER};
use crate::eval::{self, Detection, MATCH_IOU};
use crate::geometry::Rect;
use crate::train::config::Strategy;
use crate::train::messages::{
    EvalReport, Event, HardExample, HardExampleBatch, RunInfo, SeenExample, StepReport,
    StrategyStep, Thumbnail,
};

/// A CSV file read in pieces: where the last complete line ended, its number, and the header.
#[derive(Default)]
struct Tail {
    offset: u64,
    lines: u64,
    header: Vec<String>,
    /// The last look read to the end of what was on disk (not stopped at the size limit).
    caught_up: bool,
}

impl Tail {
    /// The rows completed since the last call.
    fn rows(&mut self, path: &Path) -> anyhow::Result<Vec<Row>> {
        let bytes = read_from(path, self.offset)?;
        self.caught_up = (bytes.len() as u64) < READ_PER_LOOK;
        let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
            return Ok(Vec::new());
        };
        self.offset += end as u64 + 1;
        let first_line = self.lines;
        self.lines += bytes[..=end].iter().filter(|&&b| b == b'\n').count() as u64;
        let file: Arc<str> = crate::files::file_name(path).into();
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(&bytes[..=end]);
        let mut rows = Vec::new();
        // Bytes, not text: an image's name need not be UTF-8 (it is written as the bytes that
        // name the file), and only numbers and keys are read back from the other columns.
        let text = |field: &[u8]| String::from_utf8_lossy(field).into_owned();
        for record in reader.byte_records() {
            let record = record.with_context(|| format!("{}", path.display()))?;
            if self.header.is_empty() {
                self.header = record.iter().map(text).collect();
                continue;
            }
            let line = first_line + record.position().map_or(0, |p| p.line());
            rows.push(Row {
                fields: record.iter().map(text).collect(),
                file: file.clone(),
                line,
            });
        }
        Ok(rows)
    }

    fn column(&self, name: &str) -> anyhow::Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no column {name}"))
    }

    /// The positions of the columns `names`.
    fn columns<const N: usize>(&self, names: [&str; N]) -> anyhow::Result<[usize; N]> {
        let mut found = [0; N];
        for (slot, name) in found.iter_mut().zip(names) {
            *slot = self.column(name)?;
        }
        Ok(found)
    }
}

/// One CSV row, and where it is (for messages).
struct Row {
    fields: Vec<String>,
    file: Arc<str>,
    line: u64,
}

impl Row {
    /// The value in `column`, or an error that names the file, line and column.
    fn get<T: std::str::FromStr>(&self, column: usize) -> anyhow::Result<T> {
        let text = self.text(column);
        text.parse().map_err(|_| {
            anyhow::anyhow!(
                "{}:{}: '{text}' in column {} is not what a run writes there",
                self.file,
                self.line,
                column + 1
            )
        })
    }

    fn text(&self, column: usize) -> &str {
        self.fields.get(column).map_or("", String::as_str)
    }
}

/// At most this many bytes of a file are read per look: a long run's history comes in pieces,
/// a look at a time, instead of all at once.
const READ_PER_LOOK: u64 = 32 << 20;
/// Hard-example batches of a look whose pixels are decoded: the newest, which the app keeps.
const BATCHES_WITH_PIXELS: usize = 64;

/// Up to [`READ_PER_LOOK`] bytes of `path` from `offset` on (none when the file does not exist
/// yet). A file now shorter than what was read of it was rewritten under the reader.
fn read_from(path: &Path, offset: u64) -> anyhow::Result<Vec<u8>> {
    let Ok(file) = std::fs::File::open(path) else {
        return Ok(Vec::new());
    };
    if file.metadata()?.len() < offset {
        bail!(
            "{} was rewritten while it was being read (the run was continued or replaced): open the run again",
            path.display()
        );
    }
    let mut file = file;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.take(READ_PER_LOOK)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes)
}

/// A run folder being read.
pub struct RunReader {
    dir: PathBuf,
    config: RunConfig,
    validation: Validation,
    /// Whether the run wrote its `validation.json`.
    validation_known: bool,
    /// The run's strategies, in the order its learners record them.
    strategies: Vec<Strategy>,
    started: bool,
    metrics: Tail,
    hard: Tail,
    detections: Tail,
    evals: Tail,
    thumbs_offset: u64,
    /// Whether hard examples are read at all (an overlay draws only curves; damaged ones stop).
    with_hard_examples: bool,
    /// Whether evaluations are read (damaged ones stop).
    with_evaluations: bool,
    /// A step whose rows have not all been read yet.
    partial_step: Option<StepReport>,
    /// Picks read, by step, with the batch size, waiting for the rest of their rows or for
    /// their thumbnail record.
    partial_picks: BTreeMap<u64, (usize, Vec<HardExample>)>,
    /// Thumbnail records found, by step, waiting for their rows.
    thumbnails: BTreeMap<u64, thumbs::Record>,
    /// Detections read, by step and strategy, waiting for their `eval.csv` row.
    detections_waiting: BTreeMap<(u64, Strategy), Vec<Detection>>,
    /// `eval.csv` rows (step, strategy, validation loss) waiting for all their detections.
    evaluations_waiting: Vec<(u64, Strategy, f32)>,
    last_secs: f64,
    last_step: u64,
}

impl RunReader {
    /// Opens the run folder `dir`; nothing is read past `config.json` and `validation.json`
    /// until [`RunReader::poll`].
    pub fn open(dir: &Path) -> anyhow::Result<Self> {
        let config_path = dir.join(super::CONFIG);
        if !config_path.is_file() {
            bail!(
                "{} is not a run folder: it has no {} (a run folder is what `train --out` or the app's recording writes)",
                dir.display(),
                super::CONFIG
            );
        }
        let config: RunConfig = read_json(&config_path)?;
        let validation_path = dir.join(super::VALIDATION);
        let (validation, validation_known) = if validation_path.is_file() {
            (read_json(&validation_path)?, true)
        } else {
            (Validation::default(), false)
        };
        let mut strategies = config.train.strategies.clone();
        strategies.sort();
        strategies.dedup();
        Ok(Self {
            dir: dir.to_path_buf(),
            config,
            validation,
            validation_known,
            strategies,
            started: false,
            metrics: Tail::default(),
            hard: Tail::default(),
            detections: Tail::default(),
            evals: Tail::default(),
            thumbs_offset: 0,
            with_hard_examples: true,
            with_evaluations: true,
            partial_step: None,
            partial_picks: BTreeMap::new(),
            thumbnails: BTreeMap::new(),
            detections_waiting: BTreeMap::new(),
            evaluations_waiting: Vec::new(),
            last_secs: 0.0,
            last_step: 0,
        })
    }

    /// Reads the curves and evaluations only, not the hard examples (for an overlay).
    pub fn without_hard_examples(mut self) -> Self {
        self.with_hard_examples = false;
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &RunConfig {
        &self.config
    }

    /// The validation images and boxes the run was scored on, when it wrote them.
    pub fn validation(&self) -> Option<&Validation> {
        self.validation_known.then_some(&self.validation)
    }

    /// The last step read.
    pub fn last_step(&self) -> u64 {
        self.last_step
    }

    /// Everything recorded since the last call, as the events that first carried it: the run's
    /// start once, then steps, hard examples and evaluations in the order they were written.
    pub fn poll(&mut self) -> anyhow::Result<Vec<Event>> {
        let mut events = Vec::new();
        if !std::mem::replace(&mut self.started, true) {
            events.push(Event::RunStarted(RunInfo {
                device: self.config.device_name.clone(),
                detector: self.config.detector.clone(),
                config: self.config.train.clone(),
                resumed_at_step: None,
            }));
        }
        self.read_steps(&mut events)?;
        // Damaged hard examples or evaluations are said once; the curves go on.
        if self.with_hard_examples {
            if let Err(error) = self.read_hard_examples(&mut events) {
                self.with_hard_examples = false;
                events.push(self.unreadable("hard examples", &error));
            }
        }
        if self.with_evaluations {
            if let Err(error) = self.read_evaluations(&mut events) {
                self.with_evaluations = false;
                events.push(self.unreadable("evaluations", &error));
            }
        }
        Ok(events)
    }

    fn unreadable(&self, what: &str, error: &anyhow::Error) -> Event {
        Event::Problem(format!(
            "the {what} of {} are no longer read: {error:#}",
            self.dir.display()
        ))
    }

    fn read_steps(&mut self, events: &mut Vec<Event>) -> anyhow::Result<()> {
        let path = self.dir.join(super::METRICS);
        let rows = self.metrics.rows(&path)?;
        if rows.is_empty() {
            return Ok(());
        }
        let [step, strategy, secs, k, hard, trained, batch, forward, select, train, rate] =
            self.metrics.columns(METRICS_HEADER)?;
        for row in rows {
            let at: u64 = row.get(step)?;
            let record = StrategyStep {
                strategy: row.get(strategy)?,
                trained_loss: row.get(trained)?,
                batch_loss: row.get(batch)?,
                forward_ms: row.get(forward)?,
                select_ms: row.get(select)?,
                train_ms: row.get(train)?,
            };
            if self.partial_step.as_ref().is_some_and(|s| s.step != at) {
                events.extend(self.partial_step.take().map(Event::Step));
            }
            let report = self.partial_step.get_or_insert_with(|| StepReport {
                step: at,
                elapsed_secs: 0.0,
                batch_size: 0,
                hard_examples: 0,
                examples_per_sec: 0.0,
                strategies: Vec::new(),
            });
            report.elapsed_secs = row.get(secs)?;
            report.batch_size = row.get(k)?;
            report.hard_examples = row.get(hard)?;
            report.examples_per_sec = row.get(rate)?;
            report.strategies.push(record);
            if report.strategies.len() == self.strategies.len() {
                let done = self.partial_step.take();
                events.extend(done.map(Event::Step));
            }
        }
        if let Some(Event::Step(last)) = events.iter().rev().find(|e| matches!(e, Event::Step(_))) {
            self.last_step = last.step;
            self.last_secs = last.elapsed_secs;
        }
        Ok(())
    }

    /// The rows first, then the thumbnail records: the writer appends a step's record before
    /// its rows, so every row read has its record on disk by the time the records are looked at.
    fn read_hard_examples(&mut self, events: &mut Vec<Event>) -> anyhow::Result<()> {
        self.read_picks()?;
        let path = self.dir.join(super::THUMBNAILS);
        for record in thumbs::index(&path, self.thumbs_offset)? {
            self.thumbs_offset = record.end;
            self.thumbnails.insert(record.step, record);
        }
        let complete: Vec<u64> = self
            .partial_picks
            .iter()
            .filter(|(step, (_, picks))| {
                self.thumbnails
                    .get(step)
                    .is_some_and(|r| r.count == picks.len())
            })
            .map(|(step, _)| *step)
            .collect();
        // Pixels for the newest batches only: the app shows no older ones.
        let newest = complete.len().saturating_sub(BATCHES_WITH_PIXELS);
        for (i, step) in complete.into_iter().enumerate() {
            let (Some((batch_size, mut examples)), Some(record)) = (
                self.partial_picks.remove(&step),
                self.thumbnails.remove(&step),
            ) else {
                continue;
            };
            if i >= newest {
                let tiles = thumbs::decode(&path, record)?;
                for (example, tile) in examples.iter_mut().zip(tiles) {
                    example.thumbnail = tile;
                }
            }
            events.push(Event::HardExamples(HardExampleBatch {
                step,
                batch_size,
                examples,
                // Only the picks are recorded, not the whole batch.
                batch: Vec::new(),
            }));
        }
        Ok(())
    }

    /// The hard-example rows written since the last look, kept by step.
    fn read_picks(&mut self) -> anyhow::Result<()> {
        let rows = self.hard.rows(&self.dir.join(super::HARD_EXAMPLES))?;
        if rows.is_empty() {
            return Ok(());
        }
        let [step, _, _, image, x0, y0, x1, y1, label, loss, class_loss, score, k] =
            self.hard.columns(HARD_HEADER)?;
        for row in rows {
            let pick = SeenExample {
                source_image: row.text(image).parse().ok(),
                batch_image: 0,
                window: Rect::new(row.get(x0)?, row.get(y0)?, row.get(x1)?, row.get(y1)?),
                label: row.get(label)?,
                loss: row.get(loss)?,
                classification_loss: row.get(class_loss)?,
                score: row.get(score)?,
            }
            .picked(Thumbnail::default());
            let (at, batch_size): (u64, usize) = (row.get(step)?, row.get(k)?);
            let waiting = self.partial_picks.entry(at);
            waiting
                .or_insert_with(|| (batch_size, Vec::new()))
                .1
                .push(pick);
        }
        Ok(())
    }

    /// The `eval.csv` rows first, then the detections: the writer appends an evaluation's
    /// detections before its row, so once the detections are read to the end of the file, every
    /// row read before has all of them.
    fn read_evaluations(&mut self, events: &mut Vec<Event>) -> anyhow::Result<()> {
        let rows = self.evals.rows(&self.dir.join(super::EVALUATIONS))?;
        if !rows.is_empty() {
            let [step, strategy, val_loss] =
                self.evals.columns(["step", "strategy", "val_loss"])?;
            for row in rows {
                let loss = row.get(val_loss).unwrap_or(f32::NAN);
                self.evaluations_waiting
                    .push((row.get(step)?, row.get(strategy)?, loss));
            }
        }
        self.read_detections()?;
        if !self.detections.caught_up {
            return Ok(());
        }
        for (step, strategy, val_loss) in std::mem::take(&mut self.evaluations_waiting) {
            let detections = self
                .detections_waiting
                .remove(&(step, strategy))
                .unwrap_or_default();
            let evaluation = eval::evaluate(
                &detections,
                &self.validation.boxes,
                self.validation.class_names.len(),
                MATCH_IOU,
            );
            events.push(Event::Evaluated(Arc::new(EvalReport {
                step,
                strategy,
                detections,
                evaluation,
                val_loss,
            })));
        }
        Ok(())
    }

    /// Detections wait by step and strategy for the `eval.csv` row written after them.
    fn read_detections(&mut self) -> anyhow::Result<()> {
        let rows = self.detections.rows(&self.dir.join(super::DETECTIONS))?;
        if rows.is_empty() {
            return Ok(());
        }
        let [step, strategy, image, class, score, x0, y0, x1, y1] =
            self.detections.columns(DETECTIONS_HEADER)?;
        for row in rows {
            let key = (row.get(step)?, row.get(strategy)?);
            self.detections_waiting
                .entry(key)
                .or_default()
                .push(Detection {
                    image: row.get(image)?,
                    class_id: row.get(class)?,
                    rect: Rect::new(row.get(x0)?, row.get(y0)?, row.get(x1)?, row.get(y1)?),
                    score: row.get(score)?,
                });
        }
        Ok(())
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not what a run writes", path.display()))
}
