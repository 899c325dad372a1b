//! The write path: one [`ArchiveBatch`] in one PostgreSQL transaction.
//!
//! ```text
//! encode everything (CSV for readings, column arrays for the rest)   <- data errors here,
//! BEGIN                                                                  before any I/O
//!   COPY pg_temp.archive_reading_staging FROM STDIN (FORMAT csv)
//!   INSERT INTO reading SELECT ... FROM staging ORDER BY source coords ON CONFLICT DO NOTHING
//!   INSERT INTO action SELECT ... FROM UNNEST($1..$14) ON CONFLICT DO NOTHING
//!   INSERT INTO dead_letter SELECT ... FROM UNNEST($1..$12) ON CONFLICT DO NOTHING
//!   INSERT INTO archive_offset ... ON CONFLICT DO UPDATE (only forward)
//! COMMIT
//! ```
//!
//! Idempotency: every record table has a natural key (Kafka coordinates, `action_id`, DLQ
//! coordinates) and rows are only inserted, never updated, so committing a batch again
//! changes nothing; offsets only move forward (`GREATEST` semantics), so an old batch
//! replayed after a newer one cannot rewind the consumer. Exactly-once follows because the
//! offsets are in the same transaction as the rows: either both are durable or neither is,
//! and a consumer that resumes from [`Archive::offsets`](super::Archive::offsets) re-reads
//! exactly what was not committed. Two archivers racing on the same records are also safe
//! (one waits for the other's key locks, then skips), so no fencing is needed.
//!
//! Rows are inserted in a deterministic order (source coordinates, `action_id`), which
//! keeps `bigserial` ids in record order and avoids lock-order deadlocks between racing
//! archivers. The staging table is a temporary table created once per connection with
//! `ON COMMIT DELETE ROWS`, so it never holds rows across transactions and costs no catalog
//! churn per commit.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use scent_operators::model::{Action, InputStream, Reason, SourceCoord};
use sqlx::types::Json;
use sqlx::{PgConnection, Postgres, Transaction};

use super::csv::{self, STAGING_COLUMNS};
use super::{Archive, ArchiveBatch, ArchiveError, CommitStats, ConsumerOffset};

/// Creates the per-connection staging table; run once on every new pool connection.
pub(crate) const CREATE_STAGING: &str = "\
CREATE TEMPORARY TABLE IF NOT EXISTS archive_reading_staging (
    plant            text,
    line             text,
    sensor           text,
    kind             text,
    ts               timestamptz,
    seq              bigint,
    batch            text,
    product          text,
    \"values\"       double precision[],
    source_topic     text,
    source_partition integer,
    source_offset    bigint
) ON COMMIT DELETE ROWS";

/// CSV is sent to the server in chunks of about this many bytes.
const COPY_CHUNK_BYTES: usize = 1 << 20;

const INSERT_READINGS: &str = "\
INSERT INTO reading (plant, line, sensor, kind, ts, seq, batch, product, \"values\",
                     source_topic, source_partition, source_offset)
SELECT plant, line, sensor, kind, ts, seq, batch, product, \"values\",
       source_topic, source_partition, source_offset
FROM pg_temp.archive_reading_staging
ORDER BY source_topic COLLATE \"C\", source_partition, source_offset
ON CONFLICT (source_topic, source_partition, source_offset) DO NOTHING";

// No conflict target: both the primary key (action_id) and the action's own coordinates
// are natural keys, and a row matching either is already archived.
const INSERT_ACTIONS: &str = "\
INSERT INTO action (action_id, kind, plant, line, batch, product, decision, ts,
                    reasons, evidence, payload, source_topic, source_partition, source_offset)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::timestamptz[], $9::jsonb[], $10::jsonb[], $11::jsonb[],
                     $12::text[], $13::integer[], $14::bigint[])
ON CONFLICT DO NOTHING";

// No conflict target: DLQ coordinates when known, else the partial unique index on source
// coordinates, stage and reason code.
const INSERT_DEAD_LETTERS: &str = "\
INSERT INTO dead_letter (stream, source_topic, source_partition, source_offset, stage,
                         reason_code, reason, record_key, payload,
                         dlq_topic, dlq_partition, dlq_offset)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::integer[], $4::bigint[], $5::text[],
                     $6::text[], $7::text[], $8::bytea[], $9::bytea[],
                     $10::text[], $11::integer[], $12::bigint[])
ON CONFLICT DO NOTHING";

const UPSERT_OFFSETS: &str = "\
INSERT INTO archive_offset (consumer, topic, partition, next_offset)
SELECT * FROM UNNEST($1::text[], $2::text[], $3::integer[], $4::bigint[])
ON CONFLICT (consumer, topic, partition) DO UPDATE
    SET next_offset = EXCLUDED.next_offset, updated_at = now()
    WHERE archive_offset.next_offset < EXCLUDED.next_offset";

impl Archive {
    /// Archives `batch` in one transaction: readings, actions, dead letters and consumer
    /// offsets become durable together or not at all.
    ///
    /// Idempotent: records already archived (same Kafka coordinates, same `action_id`, same
    /// DLQ coordinates) are skipped and counted in [`CommitStats`]; offsets only move
    /// forward, so replaying a batch never rewinds a consumer. Any error leaves the database
    /// unchanged, and a [retryable](ArchiveError::is_retryable) error may be retried with the
    /// same batch. Every record is encoded before the transaction begins, so a record that
    /// cannot be encoded fails the commit without touching the database.
    pub async fn commit(&self, batch: &ArchiveBatch) -> Result<CommitStats, ArchiveError> {
        let started = Instant::now();
        let copy_chunks = encode_readings(batch)?;
        let actions = ActionColumns::encode(&batch.actions)?;
        let dead_letters = DeadLetterColumns::encode(batch);
        let offsets = OffsetColumns::encode(&batch.offsets)?;

        let mut stats = CommitStats::default();
        if batch.is_empty() {
            return Ok(stats);
        }

        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| ArchiveError::from_sqlx("begin", e))?;

        if !batch.readings.is_empty() {
            let offered = batch.readings.len() as u64;
            let copy_started = Instant::now();
            copy_readings(&mut tx, &copy_chunks, offered).await?;
            let inserted = sqlx::query(INSERT_READINGS)
                .execute(&mut *tx)
                .await
                .map_err(|e| ArchiveError::from_sqlx("reading insert", e))?
                .rows_affected();
            stats.readings = inserted;
            stats.readings_skipped = offered - inserted;
            stats.readings_elapsed = copy_started.elapsed();
        }
        if !batch.actions.is_empty() {
            let inserted = actions.insert(&mut tx).await?;
            stats.actions = inserted;
            stats.actions_skipped = batch.actions.len() as u64 - inserted;
        }
        if !batch.dead_letters.is_empty() {
            let inserted = dead_letters.insert(&mut tx).await?;
            stats.dead_letters = inserted;
            stats.dead_letters_skipped = batch.dead_letters.len() as u64 - inserted;
        }
        if !offsets.consumer.is_empty() {
            stats.offsets_advanced = offsets.upsert(&mut tx).await?;
        }

        tx.commit()
            .await
            .map_err(|e| ArchiveError::from_sqlx("commit", e))?;
        stats.elapsed = started.elapsed();
        tracing::debug!(
            readings = stats.readings,
            readings_skipped = stats.readings_skipped,
            actions = stats.actions,
            dead_letters = stats.dead_letters,
            offsets_advanced = stats.offsets_advanced,
            elapsed_ms = stats.elapsed.as_secs_f64() * 1e3,
            "archive batch committed"
        );
        Ok(stats)
    }
}

/// CSV for all readings of the batch, in chunks of about [`COPY_CHUNK_BYTES`].
fn encode_readings(batch: &ArchiveBatch) -> Result<Vec<String>, ArchiveError> {
    let mut chunks = Vec::new();
    let mut chunk = String::new();
    for (reading, source) in &batch.readings {
        csv::push_reading(&mut chunk, reading, source)?;
        if chunk.len() >= COPY_CHUNK_BYTES {
            chunks.push(std::mem::take(&mut chunk));
        }
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    Ok(chunks)
}

/// Streams the CSV chunks into the staging table.
async fn copy_readings(
    conn: &mut PgConnection,
    chunks: &[String],
    expected_rows: u64,
) -> Result<(), ArchiveError> {
    let statement =
        format!("COPY pg_temp.archive_reading_staging ({STAGING_COLUMNS}) FROM STDIN (FORMAT csv)");
    let mut copy = conn
        .copy_in_raw(&statement)
        .await
        .map_err(|e| ArchiveError::from_sqlx("reading copy", e))?;
    for chunk in chunks {
        if let Err(e) = copy.send(chunk.as_bytes()).await {
            // Best effort: the transaction is rolled back when it is dropped anyway.
            let _ = copy.abort("scent archive: send failed").await;
            return Err(ArchiveError::from_sqlx("reading copy", e));
        }
    }
    let copied = copy
        .finish()
        .await
        .map_err(|e| ArchiveError::from_sqlx("reading copy", e))?;
    if copied != expected_rows {
        return Err(ArchiveError::data(
            "reading copy",
            format!("COPY stored {copied} rows for {expected_rows} readings"),
        ));
    }
    Ok(())
}

/// Actions as one array per column, sorted by `action_id`, for an `UNNEST` insert.
#[derive(Default)]
struct ActionColumns {
    action_id: Vec<String>,
    kind: Vec<String>,
    plant: Vec<String>,
    line: Vec<String>,
    batch: Vec<Option<String>>,
    product: Vec<Option<String>>,
    decision: Vec<Option<String>>,
    ts: Vec<DateTime<Utc>>,
    reasons: Vec<Json<serde_json::Value>>,
    evidence: Vec<Json<serde_json::Value>>,
    payload: Vec<Json<serde_json::Value>>,
    source_topic: Vec<Option<String>>,
    source_partition: Vec<Option<i32>>,
    source_offset: Vec<Option<i64>>,
}

impl ActionColumns {
    fn encode(actions: &[(Action, Option<SourceCoord>)]) -> Result<Self, ArchiveError> {
        let mut sorted: Vec<_> = actions.iter().collect();
        sorted.sort_by(|a, b| a.0.action_id.cmp(&b.0.action_id));
        let mut columns = ActionColumns::default();
        for (action, source) in sorted {
            let context = || format!("action {:?}", action.action_id);
            check_action_floats(action).map_err(|detail| ArchiveError::data(context(), detail))?;
            let ts = csv::utc_from_ms(action.ts_ms)
                .map_err(|detail| ArchiveError::data(context(), detail))?;
            // The columns are projections of the payload, so they cannot disagree with it.
            let payload = serde_json::to_value(action)
                .map_err(|e| ArchiveError::data(context(), e.to_string()))?;
            let name = |field: &str| {
                payload
                    .get(field)
                    .and_then(|v| v.as_str())
                    .map(String::from)
            };
            columns.kind.push(name("kind").unwrap_or_default());
            columns.decision.push(name("decision"));
            columns.reasons.push(Json(payload["reasons"].clone()));
            columns.evidence.push(Json(payload["evidence"].clone()));
            columns.action_id.push(action.action_id.clone());
            columns.plant.push(action.plant.clone());
            columns.line.push(action.line.clone());
            columns.batch.push(action.batch.clone());
            columns.product.push(action.product.clone());
            columns.ts.push(ts);
            columns.payload.push(Json(payload));
            columns
                .source_topic
                .push(source.as_ref().map(|s| s.topic.clone()));
            columns
                .source_partition
                .push(source.as_ref().map(|s| s.partition));
            columns
                .source_offset
                .push(source.as_ref().map(|s| s.offset));
        }
        Ok(columns)
    }

    async fn insert(self, tx: &mut Transaction<'_, Postgres>) -> Result<u64, ArchiveError> {
        let result = sqlx::query(INSERT_ACTIONS)
            .bind(self.action_id)
            .bind(self.kind)
            .bind(self.plant)
            .bind(self.line)
            .bind(self.batch)
            .bind(self.product)
            .bind(self.decision)
            .bind(self.ts)
            .bind(self.reasons)
            .bind(self.evidence)
            .bind(self.payload)
            .bind(self.source_topic)
            .bind(self.source_partition)
            .bind(self.source_offset)
            .execute(&mut **tx)
            .await
            .map_err(|e| ArchiveError::from_sqlx("action insert", e))?;
        Ok(result.rows_affected())
    }
}

/// JSON has no NaN or infinity (serde_json writes them as `null`, which would not read
/// back), so non-finite statistics are refused rather than silently changed.
fn check_action_floats(action: &Action) -> Result<(), String> {
    let bad = |reason: &Reason, name: &str, value: f64| {
        format!(
            "reason for sensor {:?} has a non-finite {name} ({value}), which JSON cannot hold",
            reason.sensor
        )
    };
    for reason in &action.reasons {
        if !reason.max_statistic.is_finite() {
            return Err(bad(reason, "max_statistic", reason.max_statistic));
        }
        if !reason.limit.is_finite() {
            return Err(bad(reason, "limit", reason.limit));
        }
    }
    Ok(())
}

/// Dead letters as one array per column, sorted by coordinates, for an `UNNEST` insert.
#[derive(Default)]
struct DeadLetterColumns<'a> {
    stream: Vec<&'static str>,
    source_topic: Vec<&'a str>,
    source_partition: Vec<i32>,
    source_offset: Vec<i64>,
    stage: Vec<&'static str>,
    reason_code: Vec<&'static str>,
    reason: Vec<&'a str>,
    record_key: Vec<Option<&'a [u8]>>,
    payload: Vec<&'a [u8]>,
    dlq_topic: Vec<Option<&'a str>>,
    dlq_partition: Vec<Option<i32>>,
    dlq_offset: Vec<Option<i64>>,
}

impl<'a> DeadLetterColumns<'a> {
    fn encode(batch: &'a ArchiveBatch) -> Self {
        let mut sorted: Vec<_> = batch.dead_letters.iter().collect();
        sorted.sort_by(|a, b| {
            (&a.dlq_coord, &a.dead_letter.record.source)
                .cmp(&(&b.dlq_coord, &b.dead_letter.record.source))
        });
        let mut columns = DeadLetterColumns::default();
        for archived in sorted {
            let record = &archived.dead_letter.record;
            let rejection = &archived.dead_letter.rejection;
            columns.stream.push(stream_name(record.stream));
            columns.source_topic.push(&record.source.topic);
            columns.source_partition.push(record.source.partition);
            columns.source_offset.push(record.source.offset);
            columns.stage.push(rejection.stage.as_str());
            columns.reason_code.push(rejection.reason.code());
            columns.reason.push(&rejection.detail);
            columns.record_key.push(record.key.as_deref());
            columns.payload.push(&record.payload);
            let dlq = archived.dlq_coord.as_ref();
            columns.dlq_topic.push(dlq.map(|c| c.topic.as_str()));
            columns.dlq_partition.push(dlq.map(|c| c.partition));
            columns.dlq_offset.push(dlq.map(|c| c.offset));
        }
        columns
    }

    async fn insert(self, tx: &mut Transaction<'_, Postgres>) -> Result<u64, ArchiveError> {
        let result = sqlx::query(INSERT_DEAD_LETTERS)
            .bind(self.stream)
            .bind(self.source_topic)
            .bind(self.source_partition)
            .bind(self.source_offset)
            .bind(self.stage)
            .bind(self.reason_code)
            .bind(self.reason)
            .bind(self.record_key)
            .bind(self.payload)
            .bind(self.dlq_topic)
            .bind(self.dlq_partition)
            .bind(self.dlq_offset)
            .execute(&mut **tx)
            .await
            .map_err(|e| ArchiveError::from_sqlx("dead letter insert", e))?;
        Ok(result.rows_affected())
    }
}

/// The name of an input stream in the `dead_letter.stream` column.
pub(crate) fn stream_name(stream: InputStream) -> &'static str {
    match stream {
        InputStream::Readings => "readings",
        InputStream::Batches => "batches",
        InputStream::Models => "models",
    }
}

/// Consumer offsets, the highest per (consumer, topic, partition), as column arrays.
#[derive(Default)]
struct OffsetColumns<'a> {
    consumer: Vec<&'a str>,
    topic: Vec<&'a str>,
    partition: Vec<i32>,
    next_offset: Vec<i64>,
}

impl<'a> OffsetColumns<'a> {
    fn encode(offsets: &'a [ConsumerOffset]) -> Result<Self, ArchiveError> {
        // One row per key: an upsert may not touch the same row twice in one statement.
        let mut highest: BTreeMap<(&str, &str, i32), i64> = BTreeMap::new();
        for offset in offsets {
            if offset.partition < 0 || offset.next_offset < 0 {
                return Err(ArchiveError::data(
                    format!(
                        "offset of consumer {:?} on {}/{}",
                        offset.consumer, offset.topic, offset.partition
                    ),
                    format!(
                        "partition {} and next offset {} must not be negative",
                        offset.partition, offset.next_offset
                    ),
                ));
            }
            let key = (
                offset.consumer.as_str(),
                offset.topic.as_str(),
                offset.partition,
            );
            let next = highest.entry(key).or_insert(offset.next_offset);
            *next = (*next).max(offset.next_offset);
        }
        let mut columns = OffsetColumns::default();
        for ((consumer, topic, partition), next_offset) in highest {
            columns.consumer.push(consumer);
            columns.topic.push(topic);
            columns.partition.push(partition);
            columns.next_offset.push(next_offset);
        }
        Ok(columns)
    }

    async fn upsert(self, tx: &mut Transaction<'_, Postgres>) -> Result<u64, ArchiveError> {
        let result = sqlx::query(UPSERT_OFFSETS)
            .bind(self.consumer)
            .bind(self.topic)
            .bind(self.partition)
            .bind(self.next_offset)
            .execute(&mut **tx)
            .await
            .map_err(|e| ArchiveError::from_sqlx("offset upsert", e))?;
        Ok(result.rows_affected())
    }
}
