//! `scent train`: the lifecycle of trained models (forecast models, and
//! contaminant signatures learned from confirmed contaminations), from
//! history to the running engine.
//!
//! ```text
//! simulated plant ──┐                                        ┌─▶ DIR/forecast_<product>.json
//!                   ├─▶ quality-control ─▶ quality ─▶ train ─┼─▶ PostgreSQL model_version (every version)
//! archived readings ┘   dataflow           index      per    └─▶ scent.models (compacted, key = name)
//!                       (in-process)                  product          │
//!                                                                      ▼
//!                       running engine: applies a record from the epoch it reads it at
//! ```
//!
//! **Lifecycle.**
//! 1. *Train* (`scent train forecast`). The history runs through the
//!    engine's own quality-control dataflow
//!    (`scent_dataflows::quality_control`), in-process and offline: records
//!    enter in event-time order, one epoch per second of event time. Its
//!    line quality index (one sample per line and 10-s cycle window while
//!    batches run) is cut into series: the contiguous runs of one line and
//!    one product (a gap of more than two cycles, or a product change,
//!    starts a new series). The series are grouped by product and one
//!    [`ForecastModel`] is trained per product (the random forests of
//!    `scent_operators::forecast`, one per horizon). The history is either
//!    the deterministic plant simulator (`--from-sim`) or the readings of the
//!    PostgreSQL archive (`--from-archive`); the archive holds no batch
//!    events, so each batch's start and end are taken from its first and
//!    last reading on its line.
//! 2. *Store* (`--database-url`). Every version goes to the table
//!    `model_version` (`deploy/migrations/0002_models.sql`) with what
//!    training measured. The version is the content hash of the model, so
//!    storing is insert-or-ignore and retraining on the same history and
//!    configuration stores nothing new.
//! 3. *Publish* (`--kafka`). The encoded record
//!    (`scent_operators::model_registry`) goes to the compacted models topic
//!    keyed by its name (`forecast/<product>`), so the topic keeps the
//!    latest published record of every model. The producer allows 64 MiB
//!    messages and waits for the broker's acknowledgement; a failure is an
//!    error and a non-zero exit.
//! 4. *Apply*. A running engine reads the models topic as a third input and
//!    applies a record from the epoch it reads it at (`LineForecaster` in
//!    `scent_dataflows::predictive`): no restart, and forecasts made before
//!    stay as they were made.
//! 5. *Roll back or forward* (`scent train publish --name N [--version
//!    V]`). Any stored version is re-published as it was stored, byte for
//!    byte; the engine applies it like a new one. Without `--version`, the
//!    latest `trained_at` is published.
//!
//! **Contaminant signatures** (`scent train contaminant --name N --line L
//! --batch B`). QA confirmed that batch `B` of line `L` was contaminated
//! by `N`. The history replays as above; the batch's cycles are joined with
//! the fingerprints they were scored against, and the signature is learned
//! from the log deviations of the alarming ones
//! (`scent_operators::contaminant_library::learn_signature`: at least 3
//! cycles sharing one direction). The report compares it with the
//! configured library (`resembles`). Storing and publishing are as for
//! forecasts, under the name `contaminant/N`; every engine then matches it
//! on every line from the epoch it reads it at (docs/agents.md, "Knowledge
//! sharing").
//!
//! **What the skill figures mean.** For every horizon, training holds out
//! the latest `holdout_fraction` of origins (20 % by default) (chronologically, with a purge so that no
//! training target falls in the held-out period), fits a forest on the rest
//! and measures on the held-out tail: `mae` is the forest's mean absolute
//! error in index units (1 is the fingerprint alarm limit),
//! `persistence_mae` that of the forecast "the index stays where it is",
//! and `skill = 1 − mae / persistence_mae`: 0 is no better than
//! persistence, 1 is perfect, negative is worse than persistence. The
//! deployed forest is then refitted on every row, so the figure estimates
//! its accuracy rather than measuring it. The importances are the forest's
//! mean-decrease-in-impurity shares: which features the trees split on,
//! not causes (see `scent_operators::forecast`).
//!
//! **Left out.** The history is replayed offline, so wall-time behaviour of
//! the engine (idle partitions, late records beyond the allowed lateness)
//! does not occur; archived dead letters are not replayed. Batch events
//! derived from the archive end at the batch's last reading, not at the
//! plant's end event. Models are not promoted automatically by their skill:
//! publishing is the operator's decision (`--kafka`), and nothing compares
//! a new version with the one running. Covariates (process temperature,
//! humidity) are not fed to the forests yet: the series carry the index
//! alone. Stored versions are never deleted. `--from-archive` reads the
//! whole `reading` table into memory and keys lines by name (one plant per
//! archive). The producer asks for zstd and falls back to lz4 when
//! librdkafka was built without it (rdkafka's `zstd` feature); the report
//! says which codec was used.
//!
//! **Batch length matters.** A series never crosses a changeover, and a
//! forecast needs [`ForecastConfig::history_len`] samples of one run (180
//! cycles, 30 minutes, by default) plus the horizon for every training
//! row (2 hours at most by default). The simulator's default 10-minute
//! batches are too short for that, so `--from-sim` runs 4-hour batches
//! unless `--batch-minutes` says otherwise; a plant with short batches
//! needs a `[forecast]` table with shorter windows and horizons.

use crate::archive::{Archive, ArchiveError};
use crate::config::{Config, ConfigError};
use crate::sim::{Plant, SimError, SimRecord};
use clap::{ArgGroup, Args, Subcommand};
use differential_dataflow::VecCollection;
use rdkafka::producer::{FutureProducer, FutureRecord};
use scent_dataflows::predictive::IndexPoint;
use scent_dataflows::quality_control::{quality_control, QualityControl, QualityControlConfig};
use scent_kafka::KafkaSettings;
use scent_operators::action_changelog::ChangelogConfig;
use scent_operators::contaminant_library::{learn_signature, LearnConfig};
use scent_operators::event_clock::Epoch;
use scent_operators::fingerprint::{check_contaminant_name, cosine};
use scent_operators::forecast::{ForecastConfig, ForecastError, ForecastModel, QualitySample};
use scent_operators::ingest::Ingested;
use scent_operators::model::{BatchEvent, BatchPhase, Reading, SourceCoord};
use scent_operators::model_registry::{
    decode_model_record, encode_model_record, ModelContent, ModelRecord,
};
use serde_json::{json, Value};
use sqlx::Row;
use std::collections::BTreeMap;
use std::iter::Peekable;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use timely::dataflow::operators::vec::Input;
use timely::dataflow::operators::{Inspect, Probe};

/// Width of an epoch of the offline replay, event-time milliseconds. The
/// quality index does not depend on it (the dataflow's output is a
/// function of its input alone); wider epochs are fewer timestamps to
/// process.
const REPLAY_EPOCH_MS: u64 = 1_000;

/// Records a worker feeds between two looks at the dataflow's progress.
const FEED_CHUNK: u64 = 4_096;

/// How far the index may lag the input before a worker stops feeding and
/// steps the dataflow (bounds the records in flight), in epochs.
const MAX_EPOCHS_IN_FLIGHT: u64 = 600;

/// Steps a worker takes at most while waiting for the index to catch up:
/// an operator may hold its output back until later input arrives (an open
/// cycle window), and waiting for it without feeding would never end.
const MAX_STEPS_PER_CHUNK: usize = 256;

/// How long publishing waits for the broker's acknowledgement.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `scent train`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: TrainCommand,
}

/// The subcommands of `scent train`.
#[derive(Debug, Clone, Subcommand)]
pub enum TrainCommand {
    /// Train one quality-index forecast model per product from a plant
    /// history; optionally write, store and publish the models (one JSON
    /// object on stdout).
    Forecast(ForecastOptions),
    /// Learn a confirmed contaminant's signature from the alarming cycles
    /// of the batch it contaminated, for every line's library; optionally
    /// write, store and publish it (one JSON object on stdout).
    Contaminant(ContaminantOptions),
    /// Re-publish a stored model version to the models topic (rollback or
    /// roll forward).
    Publish(PublishOptions),
}

/// Where a training history comes from (shared by the subcommands that
/// replay one).
#[derive(Debug, Clone, Args)]
#[command(group(ArgGroup::new("history").required(true).args(["from_sim", "from_archive"])))]
pub struct HistoryOptions {
    /// Train on a simulated plant history.
    #[arg(long)]
    pub from_sim: bool,
    /// Train on the readings archived in PostgreSQL (`--database-url`).
    #[arg(long, requires = "database_url")]
    pub from_archive: bool,
    /// Seed of the simulated plant.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Approximate number of valid readings to simulate.
    #[arg(long, default_value_t = 2_000_000)]
    pub readings: u64,
    /// Production lines of the simulated plant.
    #[arg(long, default_value_t = 3)]
    pub lines: usize,
    /// Length of the simulated batches, minutes. Forecasts need long
    /// contiguous runs of the index: the default model looks 30 min back
    /// and 2 h ahead, and a batch is one run.
    #[arg(long, default_value_t = 240)]
    pub batch_minutes: i64,
    /// Timely worker threads of the replay.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// TOML file: the engine configuration (quality control, Kafka topics)
    /// plus an optional `[forecast]` table (`ForecastConfig`).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL: the archive to read (`--from-archive`) and where
    /// every model version is stored.
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// Publish the models to the models topic of the broker at HOST:PORT.
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka: Option<String>,
}

/// Options of `scent train forecast`.
#[derive(Debug, Clone, Args)]
pub struct ForecastOptions {
    /// The history to train on.
    #[command(flatten)]
    pub history: HistoryOptions,
    /// Write the replayed quality index to FILE, one JSON object per
    /// line and cycle window (`line`, `batch`, `product`, `ts_ms`, `index`).
    #[arg(long, value_name = "FILE")]
    pub index_out: Option<PathBuf>,
    /// Write DIR/<model name with `/` as `_`>.json, the encoded record.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Options of `scent train contaminant`.
#[derive(Debug, Clone, Args)]
pub struct ContaminantOptions {
    /// The contaminant QA confirmed, as the library will name it.
    #[arg(long)]
    pub name: String,
    /// The line of the contaminated batch.
    #[arg(long)]
    pub line: String,
    /// The contaminated batch: its alarming cycles teach the signature.
    #[arg(long)]
    pub batch: String,
    /// The history holding the batch (and the batches its fingerprint was
    /// fitted on).
    #[command(flatten)]
    pub history: HistoryOptions,
    /// Write DIR/contaminant_<name>.json, the encoded record.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// Options of `scent train publish`.
#[derive(Debug, Clone, Args)]
pub struct PublishOptions {
    /// PostgreSQL URL of the stored model versions.
    #[arg(long, value_name = "URL")]
    pub database_url: String,
    /// The model's name, e.g. `forecast/espresso`.
    #[arg(long)]
    pub name: String,
    /// The version to publish; default: the latest trained.
    #[arg(long)]
    pub version: Option<String>,
    /// Kafka bootstrap servers, overriding `kafka.brokers`.
    #[arg(long, value_name = "HOST:PORT")]
    pub kafka: Option<String>,
    /// TOML configuration file naming the topics.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// What can go wrong in `scent train`.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Bad options or configuration (bad input: fix and retry).
    #[error("{0}")]
    Config(String),
    /// The engine configuration did not load.
    #[error(transparent)]
    EngineConfig(#[from] ConfigError),
    /// The simulator refused its configuration.
    #[error("simulated plant: {0}")]
    Simulator(#[from] SimError),
    /// The archive could not be read or migrated (external).
    #[error("archive: {0}")]
    Archive(#[from] ArchiveError),
    /// The replay through the dataflow failed (an internal error).
    #[error("quality-control replay: {0}")]
    Replay(String),
    /// No product had enough history to train a model.
    #[error("no model trained: {0}")]
    NoModel(String),
    /// Storing or reading model versions failed (external; retrying may help).
    #[error("model store: {0}")]
    Store(#[source] sqlx::Error),
    /// The requested stored version does not exist.
    #[error("no stored version of {name}{}", version.as_ref().map(|v| format!(" with version {v}")).unwrap_or_default())]
    NotFound {
        /// The model name.
        name: String,
        /// The version asked for.
        version: Option<String>,
    },
    /// A stored record does not decode (altered in the database).
    #[error("stored record {name} {version} is refused: {reason}")]
    BadRecord {
        /// The model name.
        name: String,
        /// The version.
        version: String,
        /// Why `decode_model_record` refused it.
        reason: String,
    },
    /// The async runtime for the database and broker clients did not start.
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Publishing failed (external; retrying may help).
    #[error("publishing to Kafka: {0}")]
    Kafka(String),
    /// Writing a model file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Runs `scent train`, printing one JSON object on stdout.
pub fn run(args: TrainArgs) -> Result<(), TrainError> {
    let report = match args.command {
        TrainCommand::Forecast(options) => train_forecast(&options)?,
        TrainCommand::Contaminant(options) => learn_contaminant(&options)?,
        TrainCommand::Publish(options) => publish_stored(&options)?,
    };
    println!("{report}");
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Configuration

/// The engine configuration and the forecast configuration of `path`: the
/// file's `[forecast]` table is the [`ForecastConfig`] (default without),
/// everything else overrides the engine's defaults and `SCENT__` environment
/// (here the file wins over the environment, the other way round from
/// `scent run`).
pub fn load_config(path: Option<&Path>) -> Result<(Config, ForecastConfig), TrainError> {
    let mut config = Config::load(None)?;
    let mut forecast = ForecastConfig::default();
    let Some(path) = path else {
        return Ok((config, forecast));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|error| TrainError::Config(format!("reading {}: {error}", path.display())))?;
    let mut table: toml::Table = toml::from_str(&text)
        .map_err(|error| TrainError::Config(format!("{}: {error}", path.display())))?;
    if let Some(value) = table.remove("forecast") {
        forecast = value.try_into().map_err(|error: toml::de::Error| {
            TrainError::Config(format!("{} [forecast]: {error}", path.display()))
        })?;
        forecast
            .check()
            .map_err(|error| TrainError::Config(format!("{}: {error}", path.display())))?;
    }
    if !table.is_empty() {
        let invalid =
            |error: serde_json::Error| TrainError::Config(format!("{}: {error}", path.display()));
        let mut merged = serde_json::to_value(&config).map_err(invalid)?;
        merge_json(&mut merged, serde_json::to_value(&table).map_err(invalid)?);
        config = serde_json::from_value(merged).map_err(invalid)?;
        config.validate()?;
    }
    Ok((config, forecast))
}

/// Overrides the values of `base` with those of `overrides`, table by table.
fn merge_json(base: &mut Value, overrides: Value) {
    match (base, overrides) {
        (Value::Object(base), Value::Object(overrides)) => {
            for (key, value) in overrides {
                match base.get_mut(&key) {
                    Some(existing) => merge_json(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, value) => *base = value,
    }
}

// ---------------------------------------------------------------------------------------
// History

/// A plant history to replay: per line, its records in event-time order.
pub enum History {
    /// The simulated plant.
    Simulated(Plant),
    /// Archived readings with batch events derived from them, per line.
    Archived(Vec<Vec<HistoryItem>>),
}

/// One record of a history.
#[derive(Debug, Clone)]
pub enum HistoryItem {
    /// A reading, with where it came from.
    Reading(Reading, SourceCoord),
    /// A batch event, with where it came from.
    Batch(BatchEvent, SourceCoord),
}

impl HistoryItem {
    fn ts_ms(&self) -> i64 {
        match self {
            HistoryItem::Reading(reading, _) => reading.ts_ms,
            HistoryItem::Batch(event, _) => event.ts_ms,
        }
    }

    fn into_ingested(self, epoch: Epoch) -> Ingested {
        match self {
            HistoryItem::Reading(reading, source) => Ingested::Reading {
                epoch,
                reading,
                source,
            },
            HistoryItem::Batch(event, source) => Ingested::Batch {
                epoch,
                event,
                source,
            },
        }
    }
}

impl History {
    fn line_count(&self) -> usize {
        match self {
            History::Simulated(plant) => plant.line_names().len(),
            History::Archived(lines) => lines.len(),
        }
    }

    /// The records of line `line`, in event-time order.
    fn line_items(&self, line: usize) -> Box<dyn Iterator<Item = HistoryItem> + '_> {
        match self {
            History::Simulated(plant) => {
                let topics = scent_kafka::Topics::default();
                let partition = line as i32;
                let coord = move |topic: &str, offset: usize| SourceCoord {
                    topic: topic.to_owned(),
                    partition,
                    offset: offset as i64,
                };
                Box::new(
                    plant
                        .line_stream(line)
                        .enumerate()
                        .filter_map(move |(offset, record)| match record {
                            SimRecord::Reading(reading) => Some(HistoryItem::Reading(
                                reading,
                                coord(&topics.readings, offset),
                            )),
                            SimRecord::Batch(event) => {
                                Some(HistoryItem::Batch(event, coord(&topics.batches, offset)))
                            }
                            SimRecord::Malformed { .. } => None,
                        }),
                )
            }
            History::Archived(lines) => Box::new(lines[line].iter().cloned()),
        }
    }
}

/// Groups archived readings by line, derives each batch's start and end
/// events from its first and last reading on its line, and orders every
/// line by event time (a start before the readings of its instant, an end
/// after them).
pub fn archived_history(readings: Vec<(Reading, SourceCoord)>) -> Vec<Vec<HistoryItem>> {
    let batches_topic = scent_kafka::Topics::default().batches;
    let mut lines: BTreeMap<String, Vec<(i64, u8, HistoryItem)>> = BTreeMap::new();
    // (line, batch) -> (product, first ts, last ts)
    let mut spans: BTreeMap<(String, String), (String, i64, i64)> = BTreeMap::new();
    for (reading, source) in readings {
        if let (Some(batch), Some(product)) = (&reading.batch, &reading.product) {
            let span = spans
                .entry((reading.line.clone(), batch.clone()))
                .or_insert_with(|| (product.clone(), reading.ts_ms, reading.ts_ms));
            span.1 = span.1.min(reading.ts_ms);
            span.2 = span.2.max(reading.ts_ms);
        }
        lines.entry(reading.line.clone()).or_default().push((
            reading.ts_ms,
            1,
            HistoryItem::Reading(reading, source),
        ));
    }
    for (offset, ((line, batch), (product, first_ms, last_ms))) in spans.into_iter().enumerate() {
        let partition = lines.keys().position(|name| *name == line).unwrap_or(0) as i32;
        for (phase, ts_ms, order, step) in [
            (BatchPhase::Start, first_ms, 0, 0),
            (BatchPhase::End, last_ms, 2, 1),
        ] {
            let event = BatchEvent {
                batch: batch.clone(),
                line: line.clone(),
                product: product.clone(),
                event: phase,
                ts_ms,
            };
            let source = SourceCoord {
                topic: batches_topic.clone(),
                partition,
                offset: 2 * offset as i64 + step,
            };
            if let Some(items) = lines.get_mut(&line) {
                items.push((ts_ms, order, HistoryItem::Batch(event, source)));
            }
        }
    }
    lines
        .into_values()
        .map(|mut items| {
            items.sort_by_key(|(ts_ms, order, _)| (*ts_ms, *order));
            items.into_iter().map(|(_, _, item)| item).collect()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Replay: the quality index of a history

/// Replays `history` through the quality-control dataflow on `workers`
/// threads and returns its final quality index (every point with a
/// positive net count), ordered by line and time.
pub fn replay_quality_index(
    history: Arc<History>,
    quality_control_config: &QualityControlConfig,
    allowed_lateness_ms: u64,
    workers: usize,
) -> Result<Vec<IndexPoint>, TrainError> {
    replay(
        history,
        quality_control_config,
        allowed_lateness_ms,
        workers,
        |flow| flow.index.clone(),
    )
}

/// Replays `history` through the quality-control dataflow on `workers`
/// threads and returns the final contents of the collection `select`
/// picks from its outputs: every record with a positive net count, in
/// order.
pub fn replay<D, F>(
    history: Arc<History>,
    quality_control_config: &QualityControlConfig,
    allowed_lateness_ms: u64,
    workers: usize,
    select: F,
) -> Result<Vec<D>, TrainError>
where
    D: differential_dataflow::ExchangeData,
    F: for<'scope> Fn(&QualityControl<'scope>) -> VecCollection<'scope, Epoch, D>
        + Send
        + Sync
        + 'static,
{
    let captured: Arc<Mutex<BTreeMap<D, isize>>> = Arc::default();
    let sink = Arc::clone(&captured);
    let select = Arc::new(select);
    let qc = quality_control_config.clone();
    let changelog = ChangelogConfig {
        seal_after_ms: allowed_lateness_ms,
        epoch_ms: REPLAY_EPOCH_MS,
    };
    let guards = timely::execute(timely::Config::process(workers.max(1)), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let sink = Arc::clone(&sink);
        let select = Arc::clone(&select);
        let qc = qc.clone();
        let (mut input, probe) = worker.dataflow::<Epoch, _, _>(move |scope| {
            let (input, ingested) = scope.new_input::<Ingested>();
            let flow = quality_control(ingested, &qc, changelog);
            let (probe, _) = select(&flow)
                .inner
                .inspect(move |(record, _epoch, diff)| {
                    let mut records = sink.lock().expect("no thread panics holding the output");
                    *records.entry(record.clone()).or_insert(0) += *diff;
                })
                .probe();
            (input, probe)
        });
        let mut lines: Vec<Peekable<Box<dyn Iterator<Item = HistoryItem> + '_>>> = (0..history
            .line_count())
            .filter(|line| line % peers == index)
            .map(|line| history.line_items(line).peekable())
            .collect();
        let mut sent = 0u64;
        loop {
            let next = lines
                .iter_mut()
                .enumerate()
                .filter_map(|(position, line)| line.peek().map(|item| (item.ts_ms(), position)))
                .min();
            let Some((ts_ms, position)) = next else {
                break;
            };
            let item = lines[position].next().expect("the item was peeked");
            let epoch = (ts_ms.max(0) as u64 / REPLAY_EPOCH_MS).max(*input.time());
            if epoch > *input.time() {
                input.advance_to(epoch);
            }
            input.send(item.into_ingested(epoch));
            sent += 1;
            if sent.is_multiple_of(FEED_CHUNK) {
                let behind = input.time().saturating_sub(MAX_EPOCHS_IN_FLIGHT);
                let mut steps = 0;
                while probe.less_than(&behind) && steps < MAX_STEPS_PER_CHUNK {
                    worker.step();
                    steps += 1;
                }
                worker.step();
            }
        }
        drop(input);
        while !probe.done() {
            worker.step();
        }
    })
    .map_err(TrainError::Replay)?;
    for result in guards.join() {
        result.map_err(TrainError::Replay)?;
    }
    let records = captured.lock().expect("the workers have finished");
    Ok(records
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(record, _)| record.clone())
        .collect())
}

/// The index series of `points` (ordered by line and time) per product:
/// the contiguous runs of one line and one product, a run breaking where
/// consecutive samples lie more than `max_gap_ms` apart (the model's
/// `ForecastConfig::max_gap_ms`: the engine's forecaster cuts its histories
/// the same way). Where two
/// batches share a cycle window on a line, the higher index is kept (the
/// window's index is the largest over the line).
pub fn series_by_product(
    points: &[IndexPoint],
    max_gap_ms: i64,
) -> BTreeMap<String, Vec<Vec<QualitySample>>> {
    let mut by_product: BTreeMap<String, Vec<Vec<QualitySample>>> = BTreeMap::new();
    let mut current: Option<(&str, &str, Vec<QualitySample>)> = None;
    for point in points {
        if let Some((line, product, samples)) = &mut current {
            let last = samples.last().expect("a run is never empty");
            if *line == point.line && last.ts_ms == point.ts_ms {
                if point.index > last.index {
                    samples.last_mut().expect("not empty").index = point.index;
                }
                continue;
            }
            let continues = *line == point.line
                && *product == point.product
                && point.ts_ms - last.ts_ms <= max_gap_ms;
            if continues {
                samples.push(sample(point));
                continue;
            }
        }
        if let Some((_, product, samples)) = current.take() {
            by_product
                .entry(product.to_owned())
                .or_default()
                .push(samples);
        }
        current = Some((&point.line, &point.product, vec![sample(point)]));
    }
    if let Some((_, product, samples)) = current {
        by_product
            .entry(product.to_owned())
            .or_default()
            .push(samples);
    }
    by_product
}

fn sample(point: &IndexPoint) -> QualitySample {
    QualitySample {
        ts_ms: point.ts_ms,
        index: point.index,
        covariates: Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------
// Training

/// A model trained for one product, with what training measured.
pub struct TrainedModel {
    /// The record to store and publish.
    pub record: ModelRecord,
    /// The encoded record (`encode_model_record`).
    pub encoded: Vec<u8>,
    /// The training summary (see [`training_summary`]).
    pub summary: Value,
}

/// What training measured, as JSON: per horizon the training rows, the
/// held-out skill and the five most important features.
pub fn training_summary(
    record: &ModelRecord,
    model: &ForecastModel,
    series: &[Vec<QualitySample>],
    seconds: f64,
) -> Value {
    let horizons: Vec<Value> = model
        .horizons()
        .iter()
        .enumerate()
        .map(|(position, horizon)| {
            let holdout = &horizon.holdout;
            json!({
                "horizon_ms": horizon.horizon_ms,
                "training_rows": horizon.training_rows,
                "holdout": {
                    "training_rows": holdout.training_rows,
                    "rows": holdout.rows,
                    "mae": holdout.mae,
                    "persistence_mae": holdout.persistence_mae,
                    "skill": holdout.skill,
                },
                "top_importances": model
                    .drivers(position, 5)
                    .into_iter()
                    .map(|(name, share)| json!([name, share]))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "name": record.name,
        "version": record.version,
        "series": series.len(),
        "samples": series.iter().map(Vec::len).sum::<usize>(),
        "training_rows": model.horizons().iter().map(|h| h.training_rows).max().unwrap_or(0),
        "training_seconds": seconds,
        "horizons": horizons,
    })
}

/// Trains one model per product of `series`, stamped `trained_ms`.
/// Products without enough history are returned apart, with the reason.
pub fn train_products(
    series: &BTreeMap<String, Vec<Vec<QualitySample>>>,
    config: &ForecastConfig,
    trained_ms: i64,
) -> (Vec<TrainedModel>, Vec<(String, ForecastError)>) {
    let mut trained = Vec::new();
    let mut skipped = Vec::new();
    for (product, runs) in series {
        let started = Instant::now();
        tracing::info!(product, series = runs.len(), "training forecast model");
        match ForecastModel::train(runs, config) {
            Ok(model) => {
                let record = ModelRecord::forecast(product, &model, trained_ms);
                let summary =
                    training_summary(&record, &model, runs, started.elapsed().as_secs_f64());
                let encoded = encode_model_record(&record);
                trained.push(TrainedModel {
                    record,
                    encoded,
                    summary,
                });
            }
            Err(error) => skipped.push((product.clone(), error)),
        }
    }
    (trained, skipped)
}

fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, TrainError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(TrainError::Runtime)?;
    Ok(runtime.block_on(future))
}

/// The engine configuration with the history's overrides (the broker of
/// `--kafka`; for a simulated plant, its contaminant library), the history,
/// and what it is as JSON.
fn load_history(
    options: &HistoryOptions,
    config: &mut Config,
) -> Result<(History, Value), TrainError> {
    if let Some(brokers) = &options.kafka {
        config.kafka.brokers = brokers.clone();
    }
    if options.from_archive {
        let url = options
            .database_url
            .as_deref()
            .ok_or_else(|| TrainError::Config("--from-archive needs --database-url".into()))?;
        let readings = block_on(async {
            let archive = Archive::connect(url).await?;
            let readings = archive.readings().await;
            archive.close().await;
            readings
        })??;
        let count = readings.len();
        let lines = archived_history(readings);
        let source = json!({"kind": "archive", "readings": count, "lines": lines.len()});
        return Ok((History::Archived(lines), source));
    }
    if options.batch_minutes < 1 {
        return Err(TrainError::Config(
            "--batch-minutes must be at least 1".into(),
        ));
    }
    let mut sim = crate::simulate::sim_config(options.seed, options.readings, options.lines, 0);
    sim.batch_duration_ms = options.batch_minutes * 60_000;
    let plant = Plant::new(sim)?;
    config.quality_control.fingerprint.contaminants = plant.contaminant_library();
    let source = json!({
        "kind": "sim",
        "seed": options.seed,
        "readings": plant.reading_count(),
        "lines": options.lines,
        "batch_minutes": options.batch_minutes,
    });
    Ok((History::Simulated(plant), source))
}

/// `scent train forecast`: returns the JSON report.
pub fn train_forecast(options: &ForecastOptions) -> Result<Value, TrainError> {
    let history_options = &options.history;
    let (mut config, forecast_config) = load_config(history_options.config.as_deref())?;
    let started = Instant::now();
    let (history, source) = load_history(history_options, &mut config)?;
    let points = replay_quality_index(
        Arc::new(history),
        &config.quality_control,
        config.time.allowed_lateness_ms,
        history_options.workers,
    )?;
    let replay_seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        points = points.len(),
        seconds = replay_seconds,
        "quality index replayed"
    );
    if let Some(path) = &options.index_out {
        let mut lines = Vec::new();
        for point in &points {
            serde_json::to_writer(&mut lines, point).expect("an index point serialises");
            lines.push(b'\n');
        }
        std::fs::write(path, lines).map_err(|source| TrainError::Io {
            path: path.clone(),
            source,
        })?;
    }
    let series = series_by_product(&points, forecast_config.max_gap_ms);
    let training_started = Instant::now();
    let trained_ms = chrono::Utc::now().timestamp_millis();
    let (trained, skipped) = train_products(&series, &forecast_config, trained_ms);
    let training_seconds = training_started.elapsed().as_secs_f64();
    let skipped_json: Vec<Value> = skipped
        .iter()
        .map(|(product, error)| json!({"product": product, "reason": error.to_string()}))
        .collect();
    if trained.is_empty() {
        let reasons: Vec<String> = skipped
            .iter()
            .map(|(product, error)| format!("{product}: {error}"))
            .collect();
        return Err(TrainError::NoModel(if reasons.is_empty() {
            format!(
                "the history yielded no quality index ({} points): fingerprints need a \
                 preceding batch of the same product on the line",
                points.len()
            )
        } else {
            reasons.join("; ")
        }));
    }

    let (written, stored, published) = deliver(
        &trained,
        options.out.as_deref(),
        history_options,
        &config,
        &source,
    )?;
    Ok(json!({
        "command": "train forecast",
        "source": source,
        "index_points": points.len(),
        "series": series.values().map(Vec::len).sum::<usize>(),
        "replay_seconds": replay_seconds,
        "training_seconds": training_seconds,
        "forecast_config": forecast_config,
        "models": trained.iter().map(|m| m.summary.clone()).collect::<Vec<_>>(),
        "skipped": skipped_json,
        "written": written,
        "stored": stored,
        "published": published,
    }))
}

// ---------------------------------------------------------------------------------------
// Learning a contaminant

/// `scent train contaminant`: replays the history, learns the signature
/// from the alarming cycles of the confirmed batch on every array of its
/// line (`scent_operators::contaminant_library`), and returns the JSON
/// report.
pub fn learn_contaminant(options: &ContaminantOptions) -> Result<Value, TrainError> {
    // Refused before the replay, not after it.
    let name = options.name.trim();
    check_contaminant_name(name)
        .map_err(|reason| TrainError::Config(format!("--name: {reason}")))?;
    let history_options = &options.history;
    let (mut config, _) = load_config(history_options.config.as_deref())?;
    let started = Instant::now();
    let (history, source) = load_history(history_options, &mut config)?;
    let (line, batch) = (options.line.clone(), options.batch.clone());
    // The batch's cycles, each with the fingerprint it was scored against.
    let scored = replay(
        Arc::new(history),
        &config.quality_control,
        config.time.allowed_lateness_ms,
        history_options.workers,
        move |flow| {
            let (line, batch) = (line.clone(), batch.clone());
            let cycles = flow
                .cycles
                .clone()
                .filter(move |cycle| cycle.line == line && cycle.batch == batch)
                .map(|cycle| {
                    let array = (
                        cycle.line.clone(),
                        cycle.sensor.clone(),
                        cycle.batch.clone(),
                    );
                    (array, cycle)
                });
            let models = flow
                .models
                .clone()
                .map(|(batch, model)| ((model.line.clone(), model.sensor.clone(), batch), model));
            cycles.join(models).map(|(_key, pair)| pair)
        },
    )?;
    let replay_seconds = started.elapsed().as_secs_f64();
    if scored.is_empty() {
        return Err(TrainError::NoModel(format!(
            "no scored cycle of batch {} on line {}: the batch is not in the history, or no \
             fingerprint was fitted for it (it needs a preceding batch of its product on its line)",
            options.batch, options.line
        )));
    }
    let fingerprint = &config.quality_control.fingerprint;
    let mut deviations = Vec::new();
    let mut arrays: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (cycle, model) in &scored {
        let counts = arrays.entry(cycle.sensor.clone()).or_default();
        counts.0 += 1;
        let Ok(score) = model.score(&cycle.values, &[], fingerprint.min_match) else {
            continue;
        };
        if score.alarm(model) {
            counts.1 += 1;
            deviations.push(model.deviation(&cycle.values));
        }
    }
    // The cycles must agree with their mean direction as closely as a
    // cycle must agree with a signature to be named by it.
    let learn_config = LearnConfig {
        min_coherence: fingerprint.min_match,
        ..LearnConfig::default()
    };
    let learned = learn_signature(name, &deviations, &learn_config).map_err(|error| {
        TrainError::NoModel(format!(
            "batch {} on line {}: {error}",
            options.batch, options.line
        ))
    })?;
    // How the new signature compares with the library it joins: a cosine
    // near 1 means the contaminant was known under another name.
    let pattern = learned.signature.pattern();
    let mut resembles: Vec<(String, f64)> = fingerprint
        .contaminants
        .iter()
        .filter(|known| known.response.len() == pattern.len())
        .map(|known| (known.name.clone(), cosine(&pattern, &known.pattern())))
        .collect();
    resembles.sort_by(|a, b| b.1.total_cmp(&a.1));
    let trained_ms = chrono::Utc::now().timestamp_millis();
    let record = ModelRecord::contaminant(learned.signature.clone(), trained_ms);
    let summary = json!({
        "name": record.name,
        "version": record.version,
        "line": options.line,
        "batch": options.batch,
        "arrays": arrays
            .iter()
            .map(|(sensor, (cycles, alarming))| json!({"sensor": sensor, "cycles": cycles, "alarming": alarming}))
            .collect::<Vec<_>>(),
        "cycles": learned.cycles,
        "coherence": learned.coherence,
        "response": learned.signature.response,
        "resembles": resembles
            .iter()
            .map(|(known, cos)| json!({"contaminant": known, "cosine": cos}))
            .collect::<Vec<_>>(),
    });
    let trained = vec![TrainedModel {
        encoded: encode_model_record(&record),
        record,
        summary: summary.clone(),
    }];
    let (written, stored, published) = deliver(
        &trained,
        options.out.as_deref(),
        history_options,
        &config,
        &source,
    )?;
    Ok(json!({
        "command": "train contaminant",
        "source": source,
        "replay_seconds": replay_seconds,
        "signature": summary,
        "written": written,
        "stored": stored,
        "published": published,
    }))
}

/// What [`deliver`] did: files written, versions stored, records published.
type Delivered = (Vec<String>, Vec<Value>, Vec<Value>);

/// Writes (`out`), stores (`--database-url`) and publishes (`--kafka`)
/// trained models, as the options ask; returns what was written, stored
/// and published.
fn deliver(
    trained: &[TrainedModel],
    out: Option<&Path>,
    history: &HistoryOptions,
    config: &Config,
    source: &Value,
) -> Result<Delivered, TrainError> {
    let mut written = Vec::new();
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).map_err(|source| TrainError::Io {
            path: dir.to_owned(),
            source,
        })?;
        for model in trained {
            let path = dir.join(format!("{}.json", model.record.name.replace('/', "_")));
            std::fs::write(&path, &model.encoded).map_err(|source| TrainError::Io {
                path: path.clone(),
                source,
            })?;
            written.push(path.display().to_string());
        }
    }
    let mut stored = Vec::new();
    if let Some(url) = &history.database_url {
        stored = block_on(store_versions(url, trained, source))??;
    }
    let mut published = Vec::new();
    if history.kafka.is_some() {
        let records: Vec<(&str, &[u8])> = trained
            .iter()
            .map(|model| (model.record.name.as_str(), model.encoded.as_slice()))
            .collect();
        published = block_on(publish(&config.kafka, &records))??;
    }
    Ok((written, stored, published))
}

// ---------------------------------------------------------------------------------------
// Store

/// Stores every model version (insert-or-ignore on `(name, version)`);
/// returns per model whether it was new.
pub async fn store_versions(
    database_url: &str,
    models: &[TrainedModel],
    source: &Value,
) -> Result<Vec<Value>, TrainError> {
    let archive = Archive::connect(database_url).await?;
    archive.migrate().await?;
    let mut stored = Vec::new();
    for model in models {
        let (kind, product) = match &model.record.content {
            ModelContent::Forecast { product, .. } => ("forecast", Some(product.as_str())),
            ModelContent::Contaminant { .. } => ("contaminant", None),
        };
        let trained_at = chrono::DateTime::from_timestamp_millis(model.record.trained_ms)
            .ok_or_else(|| TrainError::Config("training time out of range".into()))?;
        let mut training = model.summary.clone();
        training["source"] = source.clone();
        let result = sqlx::query(
            "INSERT INTO model_version (name, version, kind, product, trained_at, training, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (name, version) DO NOTHING",
        )
        .bind(&model.record.name)
        .bind(&model.record.version)
        .bind(kind)
        .bind(product)
        .bind(trained_at)
        .bind(sqlx::types::Json(&training))
        .bind(&model.encoded)
        .execute(archive.pool())
        .await
        .map_err(TrainError::Store)?;
        stored.push(json!({
            "name": model.record.name,
            "version": model.record.version,
            "new": result.rows_affected() == 1,
        }));
    }
    archive.close().await;
    Ok(stored)
}

/// A stored model version: the record's bytes as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    /// The model name.
    pub name: String,
    /// The version.
    pub version: String,
    /// When it was trained.
    pub trained_at: chrono::DateTime<chrono::Utc>,
    /// The encoded record.
    pub record: Vec<u8>,
}

/// The stored version `version` of `name`, or its latest by `trained_at`.
pub async fn load_version(
    database_url: &str,
    name: &str,
    version: Option<&str>,
) -> Result<StoredVersion, TrainError> {
    let archive = Archive::connect(database_url).await?;
    archive.migrate().await?;
    let row = sqlx::query(
        "SELECT name, version, trained_at, record FROM model_version \
         WHERE name = $1 AND ($2::text IS NULL OR version = $2) \
         ORDER BY trained_at DESC, stored_at DESC LIMIT 1",
    )
    .bind(name)
    .bind(version)
    .fetch_optional(archive.pool())
    .await
    .map_err(TrainError::Store)?;
    archive.close().await;
    let row = row.ok_or_else(|| TrainError::NotFound {
        name: name.to_owned(),
        version: version.map(str::to_owned),
    })?;
    Ok(StoredVersion {
        name: row.try_get("name").map_err(TrainError::Store)?,
        version: row.try_get("version").map_err(TrainError::Store)?,
        trained_at: row.try_get("trained_at").map_err(TrainError::Store)?,
        record: row.try_get("record").map_err(TrainError::Store)?,
    })
}

// ---------------------------------------------------------------------------------------
// Publish

/// A producer for model records: 64 MiB messages, zstd compression when
/// this build of librdkafka has it (lz4 otherwise), idempotent, every
/// replica acknowledging. Returns the codec in use.
fn model_producer(settings: &KafkaSettings) -> Result<(FutureProducer, &'static str), TrainError> {
    let mut last_error = String::new();
    for codec in ["zstd", "lz4"] {
        let mut config = settings.client_config();
        config
            .set(
                "message.max.bytes",
                scent_kafka::producer::MAX_MESSAGE_BYTES.to_string(),
            )
            .set("compression.type", codec)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                DELIVERY_TIMEOUT.as_millis().to_string(),
            );
        match config.create::<FutureProducer>() {
            Ok(producer) => return Ok((producer, codec)),
            Err(error) => {
                tracing::warn!(codec, %error, "model producer refused the codec");
                last_error = error.to_string();
            }
        }
    }
    Err(TrainError::Kafka(format!(
        "creating the producer: {last_error}"
    )))
}

/// Publishes encoded records to the models topic, each keyed by its model
/// name, in order, waiting for the broker's acknowledgement of each.
/// Creates the topic first if it is missing (compacted, 64 MiB messages,
/// as `scent topics create` does).
pub async fn publish(
    settings: &KafkaSettings,
    records: &[(&str, &[u8])],
) -> Result<Vec<Value>, TrainError> {
    let topic = settings.topics.models.clone();
    let specs: Vec<_> = scent_kafka::admin::default_topics(settings, 1)
        .into_iter()
        .filter(|spec| spec.name == topic)
        .collect();
    scent_kafka::admin::create_topics(settings, &specs)
        .await
        .map_err(|error| TrainError::Kafka(format!("creating topic {topic}: {error}")))?;
    let (producer, codec) = model_producer(settings)?;
    let mut published = Vec::with_capacity(records.len());
    for (name, encoded) in records {
        let delivery = producer
            .send(
                FutureRecord::to(&topic).key(*name).payload(*encoded),
                DELIVERY_TIMEOUT,
            )
            .await
            .map_err(|(error, _)| {
                TrainError::Kafka(format!(
                    "{name} ({} bytes) to {topic} at {}: {error}",
                    encoded.len(),
                    settings.brokers
                ))
            })?;
        let version = decode_model_record(encoded)
            .map(|record| record.version)
            .unwrap_or_default();
        tracing::info!(
            name,
            version,
            topic,
            offset = delivery.offset,
            "model published"
        );
        published.push(json!({
            "name": name,
            "version": version,
            "topic": topic,
            "partition": delivery.partition,
            "offset": delivery.offset,
            "bytes": encoded.len(),
            "compression": codec,
        }));
    }
    Ok(published)
}

/// `scent train publish`: re-publishes a stored version; returns the JSON
/// report.
pub fn publish_stored(options: &PublishOptions) -> Result<Value, TrainError> {
    let (mut config, _) = load_config(options.config.as_deref())?;
    if let Some(brokers) = &options.kafka {
        config.kafka.brokers = brokers.clone();
    }
    let stored = block_on(load_version(
        &options.database_url,
        &options.name,
        options.version.as_deref(),
    ))??;
    let record =
        decode_model_record(&stored.record).map_err(|rejection| TrainError::BadRecord {
            name: stored.name.clone(),
            version: stored.version.clone(),
            reason: rejection.to_string(),
        })?;
    if record.name != stored.name || record.version != stored.version {
        return Err(TrainError::BadRecord {
            name: stored.name,
            version: stored.version,
            reason: format!(
                "the record is {} {}, not the row's",
                record.name, record.version
            ),
        });
    }
    let published = block_on(publish(
        &config.kafka,
        &[(stored.name.as_str(), stored.record.as_slice())],
    ))??;
    Ok(json!({
        "command": "train publish",
        "trained_at": stored.trained_at.to_rfc3339(),
        "published": published[0],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(line: &str, product: &str, ts_ms: i64, index: f64) -> IndexPoint {
        IndexPoint {
            line: line.into(),
            batch: format!("{line}-{product}"),
            product: product.into(),
            ts_ms,
            index,
        }
    }

    #[test]
    fn series_break_at_gaps_product_changes_and_lines() {
        let mut points = vec![
            point("L1", "espresso", 0, 0.1),
            point("L1", "espresso", 10_000, 0.2),
            point("L1", "espresso", 30_000, 0.3), // 20 s gap: same run
            point("L1", "espresso", 60_000, 0.4), // 30 s gap: new run
            point("L1", "decaf", 70_000, 0.5),    // product change: new run
            point("L2", "espresso", 70_000, 0.6), // other line: new run
            point("L2", "espresso", 80_000, 0.7),
        ];
        points.sort();
        let series = series_by_product(&points, 20_000);
        let lengths =
            |product: &str| -> Vec<usize> { series[product].iter().map(Vec::len).collect() };
        assert_eq!(lengths("espresso"), vec![3, 1, 2]);
        assert_eq!(lengths("decaf"), vec![1]);
    }

    #[test]
    fn a_shared_cycle_window_keeps_the_higher_index() {
        let mut points = vec![
            point("L1", "espresso", 0, 0.1),
            IndexPoint {
                batch: "other".into(),
                ..point("L1", "espresso", 10_000, 0.9)
            },
            point("L1", "espresso", 10_000, 0.2),
        ];
        points.sort();
        let series = series_by_product(&points, 10_000);
        let indices: Vec<f64> = series["espresso"][0].iter().map(|s| s.index).collect();
        assert_eq!(indices, vec![0.1, 0.9]);
    }

    #[test]
    fn archived_readings_yield_batch_events_around_them() {
        let reading = |ts_ms: i64, batch: Option<&str>| Reading {
            plant: "p1".into(),
            line: "L1".into(),
            sensor: "enose-1".into(),
            kind: scent_operators::model::SensorKind::Enose,
            ts_ms,
            seq: ts_ms as u64,
            batch: batch.map(str::to_owned),
            product: batch.map(|_| "espresso".to_owned()),
            values: vec![1.0; 8],
        };
        let coord = |offset| SourceCoord {
            topic: "scent.readings".into(),
            partition: 0,
            offset,
        };
        let history = archived_history(vec![
            (reading(3_000, Some("B2")), coord(3)),
            (reading(1_000, Some("B1")), coord(1)),
            (reading(2_000, Some("B1")), coord(2)),
            (reading(2_500, None), coord(4)),
        ]);
        let kinds: Vec<String> = history[0]
            .iter()
            .map(|item| match item {
                HistoryItem::Reading(r, _) => format!("r{}", r.ts_ms),
                HistoryItem::Batch(e, _) => format!("{}:{:?}@{}", e.batch, e.event, e.ts_ms),
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "B1:Start@1000",
                "r1000",
                "r2000",
                "B1:End@2000",
                "r2500",
                "B2:Start@3000",
                "r3000",
                "B2:End@3000"
            ]
        );
    }

    #[test]
    fn the_forecast_table_of_a_config_file_is_read_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.toml");
        std::fs::write(
            &path,
            "[forecast]\nhorizons_ms = [60000]\nwindows = [6]\nlags = [1]\n\
             [forecast.forest]\ntrees = 5\n\
             [kafka.topics]\nmodels = \"test.models\"\n",
        )
        .unwrap();
        let (config, forecast) = load_config(Some(&path)).unwrap();
        assert_eq!(forecast.horizons_ms, vec![60_000]);
        assert_eq!(forecast.forest.trees, 5);
        assert_eq!(config.kafka.topics.models, "test.models");
        assert_eq!(config.kafka.topics.readings, "scent.readings");
    }

    /// A small trained model, its record and encoding.
    fn small_record() -> (ModelRecord, Vec<u8>) {
        let series: Vec<QualitySample> = (0..400)
            .map(|i| QualitySample {
                ts_ms: i * 10_000,
                index: 0.5 + 0.3 * ((i as f64) / 20.0).sin(),
                covariates: Vec::new(),
            })
            .collect();
        let config = ForecastConfig {
            horizons_ms: vec![60_000],
            lags: vec![1, 2],
            windows: vec![6],
            min_training_rows: 50,
            forest: scent_operators::forecast::ForestConfig {
                trees: 4,
                max_depth: 4,
                ..Default::default()
            },
            ..ForecastConfig::default()
        };
        let model = ForecastModel::train(&[series], &config).unwrap();
        let record = ModelRecord::forecast("espresso", &model, 1_795_514_400_000);
        let encoded = encode_model_record(&record);
        (record, encoded)
    }

    #[test]
    fn an_encoded_record_decodes_with_its_version() {
        let (record, encoded) = small_record();
        let decoded = decode_model_record(&encoded).unwrap();
        assert_eq!(decoded.version, record.version);
        assert_eq!(decoded.name, "forecast/espresso");
    }

    #[test]
    fn a_tampered_record_is_refused() {
        let (_, encoded) = small_record();
        let mut value: Value = serde_json::from_slice(&encoded).unwrap();
        // Change one number inside the model: the first importance of the
        // first horizon.
        let importances = value["model"]["horizons"][0]["importances"]
            .as_array_mut()
            .unwrap();
        let first = importances[0].as_f64().unwrap();
        importances[0] = json!(first + 0.125);
        let tampered = serde_json::to_vec(&value).unwrap();
        let rejection = decode_model_record(&tampered).unwrap_err();
        assert!(
            rejection.to_string().contains("content hash"),
            "{rejection}"
        );
    }
}
