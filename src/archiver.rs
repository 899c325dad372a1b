//! The archiver: Kafka topics to the PostgreSQL archive, exactly once.
//!
//! It reads `scent.readings`, `scent.actions` and `scent.readings.dlq`
//! (`read_committed`) from the offsets stored in the archive itself, and
//! commits each batch of rows together with the next offsets in one
//! database transaction ([`Archive::commit`]). A crash anywhere loses
//! nothing and duplicates nothing: on restart it resumes from the offsets
//! of the last committed transaction.
//!
//! Readings are archived when they decode and pass the per-record
//! validation (the same kernels as the engine's ingest); records that do
//! not are on the dead-letter topic, which is archived too. Readings the
//! engine rejected for stateful reasons (`late`, `duplicate_sequence`) are
//! valid data: they are in `reading` and, with the reason, in
//! `dead_letter`. When
//! PostgreSQL is unavailable the archiver keeps its pending batch, stops
//! reading and retries with backoff: the engine is unaffected, the archive
//! lags, and the lag lives in Kafka until the database is back. A record
//! the database refuses outright (a data error no retry can fix) is found
//! by committing the batch in halves; a refused reading is archived as a
//! dead letter with reason `unarchivable`, so one bad record never stops
//! the archive.

use crate::archive::{Archive, ArchiveBatch, ArchivedDeadLetter, ConsumerOffset};
use crate::config::{ArchiveConfig, IngestConfig};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use scent_kafka::admin::partition_count;
use scent_kafka::codec::{decode_action, decode_dead_letter};
use scent_kafka::KafkaSettings;
use scent_operators::model::SourceCoord;
use scent_operators::validate::validate_reading;
use scent_operators::wire::decode_reading;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why the archiver stopped.
#[derive(Debug, Error)]
pub enum ArchiverError {
    /// Kafka could not be used.
    #[error(transparent)]
    Kafka(#[from] scent_kafka::KafkaError),
    /// The archive failed in a way a retry cannot fix.
    #[error(transparent)]
    Archive(#[from] crate::archive::ArchiveError),
}

/// Labels of archived records.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    /// Destination table.
    pub table: String,
}

/// Metrics of the archiver.
#[derive(Debug, Clone)]
pub struct ArchiveMetrics {
    /// Rows inserted, by table.
    pub rows: Family<TableLabels, Counter>,
    /// Records read but not archived (undecodable messages on the output
    /// topics, invalid readings that the DLQ carries).
    pub skipped: Counter,
    /// Committed transactions.
    pub commits: Counter,
    /// Failed commit attempts (each is retried).
    pub failures: Counter,
    /// Records the database refused; readings among them are archived as
    /// dead letters instead.
    pub unarchivable: Counter,
    /// Duration of one commit.
    pub commit_duration: Histogram,
}

impl ArchiveMetrics {
    /// Creates the metrics and registers them under `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = ArchiveMetrics {
            rows: Family::default(),
            skipped: Counter::default(),
            commits: Counter::default(),
            failures: Counter::default(),
            unarchivable: Counter::default(),
            commit_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
        };
        let archive = registry.sub_registry_with_prefix("archive");
        archive.register(
            "rows",
            "Rows inserted into the archive, by table",
            metrics.rows.clone(),
        );
        archive.register(
            "skipped",
            "Records read but not archived",
            metrics.skipped.clone(),
        );
        archive.register(
            "commits",
            "Archive transactions committed",
            metrics.commits.clone(),
        );
        archive.register(
            "failures",
            "Archive commit attempts that failed",
            metrics.failures.clone(),
        );
        archive.register(
            "unarchivable",
            "Records the archive database refused (readings are kept as dead letters)",
            metrics.unarchivable.clone(),
        );
        archive.register_with_unit(
            "commit_duration",
            "Duration of one archive transaction",
            Unit::Seconds,
            metrics.commit_duration.clone(),
        );
        metrics
    }
}

/// Runs the archiver until `shutdown` is set.
pub async fn run_archiver(
    config: ArchiveConfig,
    kafka: KafkaSettings,
    ingest: IngestConfig,
    metrics: ArchiveMetrics,
    shutdown: Arc<AtomicBool>,
) -> Result<(), ArchiverError> {
    let Some(archive) = connect_with_retry(&config.database_url, &metrics, &shutdown).await else {
        return Ok(());
    };
    let topics = [
        kafka.topics.readings.clone(),
        kafka.topics.actions.clone(),
        kafka.topics.dead_letters.clone(),
    ];
    let consumer: StreamConsumer = kafka
        .client_config()
        .set("group.id", format!("{}-archive", kafka.group_id))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .map_err(|error| scent_kafka::KafkaError::Config(error.to_string()))?;
    let stored: BTreeMap<(String, i32), i64> = loop {
        match archive.offsets(&config.consumer).await {
            Ok(offsets) => {
                break offsets
                    .into_iter()
                    .map(|o| ((o.topic, o.partition), o.next_offset))
                    .collect()
            }
            Err(error) if error.is_retryable() && !shutdown.load(Ordering::Relaxed) => {
                tracing::warn!(%error, "archive offsets unavailable, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    let mut assignment = TopicPartitionList::new();
    for topic in &topics {
        let partitions = {
            let kafka = kafka.clone();
            let topic = topic.clone();
            tokio::task::spawn_blocking(move || {
                partition_count(&kafka, &topic, Duration::from_secs(30))
            })
            .await
            .expect("metadata lookup does not panic")?
        };
        for partition in 0..partitions {
            let offset = stored
                .get(&(topic.clone(), partition))
                .map_or(Offset::Beginning, |&next| Offset::Offset(next));
            assignment
                .add_partition_offset(topic, partition, offset)
                .map_err(|error| scent_kafka::KafkaError::broker("assign", error))?;
        }
    }
    consumer
        .assign(&assignment)
        .map_err(|error| scent_kafka::KafkaError::broker("assign", error))?;
    tracing::info!(consumer = %config.consumer, "archiver started");

    let max_delay = Duration::from_millis(config.max_batch_delay_ms);
    let mut batch = PendingBatch::new(&config.consumer);
    while !shutdown.load(Ordering::Relaxed) {
        let deadline = Instant::now() + max_delay;
        while batch.records < config.max_batch_records && !shutdown.load(Ordering::Relaxed) {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            match tokio::time::timeout(remaining, consumer.recv()).await {
                Err(_) => break,
                Ok(Ok(message)) => batch.add(&message, &kafka, &ingest, &metrics),
                Ok(Err(error)) => {
                    tracing::warn!(%error, "archiver consume error");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        commit_with_retry(&archive, &mut batch, &metrics, &shutdown).await?;
    }
    Ok(())
}

async fn connect_with_retry(
    url: &str,
    metrics: &ArchiveMetrics,
    shutdown: &AtomicBool,
) -> Option<Archive> {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.load(Ordering::Relaxed) {
        match Archive::connect(url).await {
            Ok(archive) => match archive.migrate().await {
                Ok(()) => return Some(archive),
                Err(error) => tracing::warn!(%error, "archive migration failed, retrying"),
            },
            Err(error) => tracing::warn!(%error, "archive database unavailable, retrying"),
        }
        metrics.failures.inc();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    None
}

/// Commits the pending batch, retrying while the database is unavailable.
async fn commit_with_retry(
    archive: &Archive,
    batch: &mut PendingBatch,
    metrics: &ArchiveMetrics,
    shutdown: &AtomicBool,
) -> Result<(), ArchiverError> {
    if batch.batch.is_empty() && batch.next.is_empty() {
        return Ok(());
    }
    batch.seal();
    let mut backoff = Duration::from_millis(200);
    loop {
        let started = Instant::now();
        match archive.commit(&batch.batch).await {
            Ok(stats) => {
                metrics
                    .commit_duration
                    .observe(started.elapsed().as_secs_f64());
                metrics.commits.inc();
                for (table, rows) in [
                    ("reading", stats.readings),
                    ("action", stats.actions),
                    ("dead_letter", stats.dead_letters),
                ] {
                    metrics
                        .rows
                        .get_or_create(&TableLabels {
                            table: table.into(),
                        })
                        .inc_by(rows);
                }
                batch.clear();
                return Ok(());
            }
            Err(error) if error.is_retryable() && !shutdown.load(Ordering::Relaxed) => {
                metrics.failures.inc();
                tracing::warn!(%error, retry_in_ms = backoff.as_millis() as u64, "archive commit failed, retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(error) if error.is_retryable() => {
                // Shutting down: the uncommitted batch is read again on restart.
                return Ok(());
            }
            Err(error) => {
                tracing::error!(%error, "archive refused a batch, isolating the records it refuses");
                match isolate_refused(archive, &batch.batch, metrics).await {
                    Ok(refused) => {
                        // The rest is committed; commit the substitutes and
                        // the offsets.
                        batch.batch = ArchiveBatch {
                            dead_letters: refused,
                            offsets: std::mem::take(&mut batch.batch.offsets),
                            ..ArchiveBatch::default()
                        };
                        backoff = Duration::from_millis(200);
                    }
                    // The database went away while isolating: retry the
                    // whole batch later (committed parts are idempotent).
                    Err(error) if error.is_retryable() => {
                        metrics.failures.inc();
                        tracing::warn!(%error, "archive unavailable while isolating, retrying");
                        if shutdown.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
}

/// Commits `batch` without its offsets in ever smaller parts until every
/// record the database refuses (a data error, which no retry can fix) is
/// alone. Refused readings come back as dead letters (stage `process`,
/// reason `unarchivable`) to be archived in their place; a refused action
/// or dead letter is scent's own output, so it is logged as the internal
/// error it is and counted. Parts are committed separately; a crash in
/// between is harmless, because every archive table has a natural key.
pub async fn isolate_refused(
    archive: &Archive,
    batch: &ArchiveBatch,
    metrics: &ArchiveMetrics,
) -> Result<Vec<ArchivedDeadLetter>, crate::archive::ArchiveError> {
    let mut refused = Vec::new();
    let mut parts = vec![ArchiveBatch {
        offsets: Vec::new(),
        ..batch.clone()
    }];
    while let Some(part) = parts.pop() {
        let size = part.readings.len() + part.actions.len() + part.dead_letters.len();
        if size == 0 {
            continue;
        }
        let error = match archive.commit(&part).await {
            Ok(_) => continue,
            Err(error) if error.is_retryable() => return Err(error),
            Err(error) => error,
        };
        if size > 1 {
            parts.extend(split(part));
            continue;
        }
        metrics.unarchivable.inc();
        if let Some((reading, coord)) = part.readings.into_iter().next() {
            tracing::error!(%error, %coord, "reading refused by the archive, kept as a dead letter");
            refused.push(ArchivedDeadLetter {
                dead_letter: scent_operators::model::DeadLetter {
                    record: scent_operators::model::RawRecord {
                        stream: scent_operators::model::InputStream::Readings,
                        key: Some(reading.key().into_bytes()),
                        payload: scent_operators::wire::encode_reading(&reading),
                        source: coord,
                    },
                    rejection: scent_operators::model::Rejection::new(
                        scent_operators::model::Stage::Process,
                        scent_operators::model::RejectReason::Unarchivable,
                        error.to_string(),
                    ),
                },
                dlq_coord: None,
            });
        } else if let Some((action, coord)) = part.actions.first() {
            tracing::error!(%error, action_id = %action.action_id, ?coord, "action refused by the archive");
        } else if let Some(letter) = part.dead_letters.first() {
            tracing::error!(%error, source = %letter.dead_letter.record.source, "dead letter refused by the archive");
        }
    }
    Ok(refused)
}

/// Splits a batch's records into two halves (offsets stay behind).
fn split(part: ArchiveBatch) -> [ArchiveBatch; 2] {
    fn halve<T>(mut items: Vec<T>) -> (Vec<T>, Vec<T>) {
        let second = items.split_off(items.len() / 2);
        (items, second)
    }
    let (readings_a, readings_b) = halve(part.readings);
    let (actions_a, actions_b) = halve(part.actions);
    let (letters_a, letters_b) = halve(part.dead_letters);
    [
        ArchiveBatch {
            readings: readings_a,
            actions: actions_a,
            dead_letters: letters_a,
            offsets: Vec::new(),
        },
        ArchiveBatch {
            readings: readings_b,
            actions: actions_b,
            dead_letters: letters_b,
            offsets: Vec::new(),
        },
    ]
}

/// Records read since the last commit, and where each partition resumes.
struct PendingBatch {
    consumer: String,
    batch: ArchiveBatch,
    next: BTreeMap<(String, i32), i64>,
    records: usize,
}

impl PendingBatch {
    fn new(consumer: &str) -> Self {
        PendingBatch {
            consumer: consumer.to_owned(),
            batch: ArchiveBatch::default(),
            next: BTreeMap::new(),
            records: 0,
        }
    }

    fn add(
        &mut self,
        message: &BorrowedMessage<'_>,
        kafka: &KafkaSettings,
        ingest: &IngestConfig,
        metrics: &ArchiveMetrics,
    ) {
        let topic = message.topic();
        let coord = SourceCoord {
            topic: topic.to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        };
        self.next
            .insert((coord.topic.clone(), coord.partition), coord.offset + 1);
        self.records += 1;
        let payload = message.payload().unwrap_or_default();
        if topic == kafka.topics.readings {
            let valid = decode_reading(payload, &ingest.limits()).and_then(|reading| {
                validate_reading(&reading, &ingest.validation).map(|()| reading)
            });
            match valid {
                Ok(reading) => self.batch.readings.push((reading, coord)),
                Err(_) => {
                    metrics.skipped.inc();
                }
            }
        } else if topic == kafka.topics.actions {
            match decode_action(topic, payload) {
                Ok(action) => self.batch.actions.push((action, Some(coord))),
                Err(error) => {
                    tracing::warn!(%error, %coord, "undecodable action not archived");
                    metrics.skipped.inc();
                }
            }
        } else if topic == kafka.topics.dead_letters {
            let headers: Vec<(String, Vec<u8>)> = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|h| {
                            (
                                h.key.to_owned(),
                                h.value.map(<[u8]>::to_vec).unwrap_or_default(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            match decode_dead_letter(topic, message.key(), payload, &headers) {
                Ok(dead_letter) => self.batch.dead_letters.push(ArchivedDeadLetter {
                    dead_letter,
                    dlq_coord: Some(coord),
                }),
                Err(error) => {
                    tracing::warn!(%error, %coord, "undecodable dead letter not archived");
                    metrics.skipped.inc();
                }
            }
        }
    }

    /// Moves the resume offsets into the batch, to commit with its rows.
    fn seal(&mut self) {
        self.batch.offsets = self
            .next
            .iter()
            .map(|((topic, partition), next)| ConsumerOffset {
                consumer: self.consumer.clone(),
                topic: topic.clone(),
                partition: *partition,
                next_offset: *next,
            })
            .collect();
    }

    fn clear(&mut self) {
        self.batch = ArchiveBatch::default();
        self.next.clear();
        self.records = 0;
    }
}
