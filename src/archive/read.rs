//! The read path: consumer offsets for restart, and whole-table reads for tests and the API.
//!
//! [`Archive::offsets`] is what makes the archive exactly-once: a consumer assigns each
//! partition at the stored `next_offset` (rows below it are committed, together with the
//! offset, in one transaction; see [`mod@super::write`]). The other readers rebuild the
//! engine's types from the stored rows (`Action` from the `payload` column, which is the
//! source of truth) and read whole tables in a fixed order (text compared byte-wise, `COLLATE
//! "C"`, like Rust's `Ord` for `String`); they suit tests and small archives, not unbounded
//! scans.
//!
//! Fidelity: reading values come back bit for bit (`double precision[]`, binary protocol).
//! Actions come back from `jsonb`, which stores numbers as `numeric`: every finite `f64` is
//! kept exactly except that -0.0 becomes 0.0, but serde_json parses them back exactly only
//! with its `float_roundtrip` feature (without it some 17-digit values come back one ulp
//! off).

use scent_operators::model::{
    Action, DeadLetter, InputStream, RawRecord, Reading, RejectReason, Rejection, SensorKind,
    SourceCoord, Stage,
};
use sqlx::types::Json;
use sqlx::Row;

use super::{Archive, ArchiveError, ArchivedDeadLetter, ConsumerOffset, DeadLetterRow};

impl Archive {
    /// Where `consumer` resumes: the next offset to archive per topic and partition,
    /// ordered by topic and partition. Partitions never committed are absent.
    pub async fn offsets(&self, consumer: &str) -> Result<Vec<ConsumerOffset>, ArchiveError> {
        let rows = sqlx::query(
            "SELECT consumer, topic, partition, next_offset FROM archive_offset \
             WHERE consumer = $1 ORDER BY topic COLLATE \"C\", partition",
        )
        .bind(consumer)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| ArchiveError::from_sqlx("offset read", e))?;
        rows.iter()
            .map(|row| {
                Ok(ConsumerOffset {
                    consumer: row.try_get("consumer")?,
                    topic: row.try_get("topic")?,
                    partition: row.try_get("partition")?,
                    next_offset: row.try_get("next_offset")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| ArchiveError::from_sqlx("offset read", e))
    }

    /// The number of archived readings.
    pub async fn count_readings(&self) -> Result<i64, ArchiveError> {
        sqlx::query_scalar("SELECT count(*) FROM reading")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| ArchiveError::from_sqlx("reading count", e))
    }

    /// Every archived reading with its source coordinates, ordered by coordinates.
    pub async fn readings(&self) -> Result<Vec<(Reading, SourceCoord)>, ArchiveError> {
        let rows = sqlx::query(
            "SELECT plant, line, sensor, kind, ts, seq, batch, product, \"values\", \
                    source_topic, source_partition, source_offset \
             FROM reading \
             ORDER BY source_topic COLLATE \"C\", source_partition, source_offset",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| ArchiveError::from_sqlx("reading read", e))?;
        let mut readings = Vec::with_capacity(rows.len());
        for row in &rows {
            let get = |e| ArchiveError::from_sqlx("reading read", e);
            let source = SourceCoord {
                topic: row.try_get("source_topic").map_err(get)?,
                partition: row.try_get("source_partition").map_err(get)?,
                offset: row.try_get("source_offset").map_err(get)?,
            };
            let kind: String = row.try_get("kind").map_err(get)?;
            let kind = SensorKind::parse(&kind).ok_or_else(|| {
                ArchiveError::data(
                    format!("reading at {source}"),
                    format!("unknown sensor kind {kind:?} in the archive"),
                )
            })?;
            let ts: chrono::DateTime<chrono::Utc> = row.try_get("ts").map_err(get)?;
            let seq: i64 = row.try_get("seq").map_err(get)?;
            let reading = Reading {
                plant: row.try_get("plant").map_err(get)?,
                line: row.try_get("line").map_err(get)?,
                sensor: row.try_get("sensor").map_err(get)?,
                kind,
                ts_ms: ts.timestamp_millis(),
                seq: u64::try_from(seq).map_err(|_| {
                    ArchiveError::data(
                        format!("reading at {source}"),
                        format!("negative seq {seq} in the archive"),
                    )
                })?,
                batch: row.try_get("batch").map_err(get)?,
                product: row.try_get("product").map_err(get)?,
                values: row.try_get("values").map_err(get)?,
            };
            readings.push((reading, source));
        }
        Ok(readings)
    }

    /// Every archived action, rebuilt from its `payload`, ordered by event time and id.
    pub async fn actions(&self) -> Result<Vec<Action>, ArchiveError> {
        let payloads: Vec<Json<Action>> =
            sqlx::query_scalar("SELECT payload FROM action ORDER BY ts, action_id COLLATE \"C\"")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| ArchiveError::from_sqlx("action read", e))?;
        Ok(payloads.into_iter().map(|Json(action)| action).collect())
    }

    /// Every archived dead letter as stored, ordered by id (archiving order).
    pub async fn dead_letters(&self) -> Result<Vec<DeadLetterRow>, ArchiveError> {
        let rows = sqlx::query(
            "SELECT id, stream, source_topic, source_partition, source_offset, stage, \
                    reason_code, reason, record_key, payload, dlq_topic, dlq_partition, \
                    dlq_offset, archived_at \
             FROM dead_letter ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| ArchiveError::from_sqlx("dead letter read", e))?;
        rows.iter()
            .map(|row| {
                let dlq_topic: Option<String> = row.try_get("dlq_topic")?;
                let dlq_partition: Option<i32> = row.try_get("dlq_partition")?;
                let dlq_offset: Option<i64> = row.try_get("dlq_offset")?;
                let dlq = match (dlq_topic, dlq_partition, dlq_offset) {
                    (Some(topic), Some(partition), Some(offset)) => Some(SourceCoord {
                        topic,
                        partition,
                        offset,
                    }),
                    _ => None,
                };
                Ok(DeadLetterRow {
                    id: row.try_get("id")?,
                    stream: row.try_get("stream")?,
                    source: SourceCoord {
                        topic: row.try_get("source_topic")?,
                        partition: row.try_get("source_partition")?,
                        offset: row.try_get("source_offset")?,
                    },
                    stage: row.try_get("stage")?,
                    reason_code: row.try_get("reason_code")?,
                    reason: row.try_get("reason")?,
                    record_key: row.try_get("record_key")?,
                    payload: row.try_get("payload")?,
                    dlq,
                    archived_at: row.try_get("archived_at")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(|e| ArchiveError::from_sqlx("dead letter read", e))
    }
}

impl DeadLetterRow {
    /// Rebuilds the dead letter as the engine produced it. Fails with
    /// [`ArchiveError::Data`] for a stream, stage or reason code this build does not know
    /// (archived by a newer engine).
    pub fn to_archived(&self) -> Result<ArchivedDeadLetter, ArchiveError> {
        let context = || format!("dead letter {}", self.id);
        // Serde names are the wire names (`as_str`), and stay right when variants are added.
        let name = |value: &str| serde_json::Value::String(value.to_owned());
        let stream: InputStream = serde_json::from_value(name(&self.stream)).map_err(|_| {
            ArchiveError::data(context(), format!("unknown stream {:?}", self.stream))
        })?;
        let stage: Stage = serde_json::from_value(name(&self.stage)).map_err(|_| {
            ArchiveError::data(context(), format!("unknown stage {:?}", self.stage))
        })?;
        let reason = RejectReason::parse(&self.reason_code).ok_or_else(|| {
            ArchiveError::data(
                context(),
                format!("unknown reason code {:?}", self.reason_code),
            )
        })?;
        Ok(ArchivedDeadLetter {
            dead_letter: DeadLetter {
                record: RawRecord {
                    stream,
                    source: self.source.clone(),
                    key: self.record_key.clone(),
                    payload: self.payload.clone(),
                },
                rejection: Rejection::new(stage, reason, self.reason.clone()),
            },
            dlq_coord: self.dlq.clone(),
        })
    }
}
