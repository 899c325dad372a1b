//! The PostgreSQL archive of scent's records, exactly-once capable.
//!
//! # Tables (`deploy/migrations/0001_archive.sql`)
//!
//! | table | one row per | natural key (idempotency) |
//! |---|---|---|
//! | `reading` | reading of the readings topic | `(source_topic, source_partition, source_offset)` |
//! | `action` | decision the engine produced; `payload` is the whole [`Action`] | `action_id` (and its own coordinates in `scent.actions`, when known) |
//! | `dead_letter` | rejected record, original bytes untouched, with stage and reason code | `(dlq_topic, dlq_partition, dlq_offset)`; without DLQ coordinates `(source coordinates, stage, reason_code)` |
//! | `archive_offset` | consumer, topic and partition | `(consumer, topic, partition)`: the next offset to archive |
//!
//! `reading`, `action` and `dead_letter` are append-only records: the archive inserts with
//! `ON CONFLICT DO NOTHING` and never updates or deletes them, which is what the GMP audit
//! trail (a later migration) builds on. Every row has `archived_at`, the server clock of the
//! archiving transaction.
//!
//! # Transaction boundary and exactly-once
//!
//! [`Archive::commit`] writes one [`ArchiveBatch`] (readings via COPY into a staging table,
//! actions, dead letters, and the consumers' next offsets) in ONE database transaction.
//! Because the offsets are committed with the rows they cover, a consumer that starts by
//! reading [`Archive::offsets`] and assigns its partitions at those offsets neither loses
//! nor duplicates a record across crashes: whatever was not committed is read again, and
//! whatever was committed is not; nothing is committed to Kafka. Replays are harmless even without that discipline: every record table has a
//! natural key, so committing the same batch twice inserts nothing new, and offsets only move
//! forward. See [`mod@write`] for the statements and [`read`] for the readers.
//!
//! # Operational notes
//!
//! - A failed commit changes nothing. [`ArchiveError::is_retryable`] says whether retrying
//!   the same batch can help; a [`ArchiveError::Data`] error fails the same way every time,
//!   so the caller must split the batch or set the offending record aside, never loop.
//! - Each pooled connection owns a temporary staging table (created on connect), so the
//!   archive needs session-level connections: not PgBouncer in transaction mode.
//!
//! ```no_run
//! # async fn example(batch: scent::archive::ArchiveBatch) -> Result<(), scent::archive::ArchiveError> {
//! use scent::archive::Archive;
//!
//! let archive = Archive::connect("postgres://scent:scent@127.0.0.1:15432/scent").await?;
//! archive.migrate().await?;
//! let resume_at = archive.offsets("archiver").await?; // assign() partitions here
//! # let _ = resume_at;
//! let stats = archive.commit(&batch).await?; // rows and offsets, atomically
//! # let _ = stats;
//! # Ok(())
//! # }
//! ```

mod csv;
mod error;
pub mod read;
pub mod write;

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use scent_operators::model::{Action, DeadLetter, Reading, SourceCoord};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Executor;

pub use error::ArchiveError;

/// The embedded migrations of `deploy/migrations`, checked and applied by
/// [`Archive::migrate`].
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./deploy/migrations");

/// Connections of the archive pool: the archiver commits from one task, the API reads.
const MAX_CONNECTIONS: u32 = 4;
/// How long to wait for a pooled connection before reporting the database unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Connections are recycled after this long.
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// A handle on the archive database: a small connection pool. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Archive {
    pool: PgPool,
}

/// Everything archived by one [`Archive::commit`], atomically.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArchiveBatch {
    /// Readings, each with where it was read from.
    pub readings: Vec<(Reading, SourceCoord)>,
    /// Actions, each with its own coordinates in `scent.actions` when archived from Kafka.
    pub actions: Vec<(Action, Option<SourceCoord>)>,
    /// Dead letters.
    pub dead_letters: Vec<ArchivedDeadLetter>,
    /// Where each consumer resumes once this batch is committed.
    pub offsets: Vec<ConsumerOffset>,
}

impl ArchiveBatch {
    /// Whether the batch holds nothing at all (then `commit` does not touch the database).
    pub fn is_empty(&self) -> bool {
        self.readings.is_empty()
            && self.actions.is_empty()
            && self.dead_letters.is_empty()
            && self.offsets.is_empty()
    }
}

/// A dead letter as archived.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArchivedDeadLetter {
    /// The original record (with its source coordinates) and its rejection.
    pub dead_letter: DeadLetter,
    /// Where the dead letter sits in the DLQ topic, when it was read from there.
    pub dlq_coord: Option<SourceCoord>,
}

/// The next Kafka offset a consumer archives from one partition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConsumerOffset {
    /// Name of the archiving consumer (one per pipeline, stable across restarts).
    pub consumer: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The offset of the first record not yet archived.
    pub next_offset: i64,
}

/// What one [`Archive::commit`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Readings inserted.
    pub readings: u64,
    /// Readings skipped because they were already archived (or repeated in the batch).
    pub readings_skipped: u64,
    /// Actions inserted.
    pub actions: u64,
    /// Actions skipped as already archived.
    pub actions_skipped: u64,
    /// Dead letters inserted.
    pub dead_letters: u64,
    /// Dead letters skipped as already archived.
    pub dead_letters_skipped: u64,
    /// Offset rows created or moved forward.
    pub offsets_advanced: u64,
    /// Time in the readings' COPY and staging insert (inside the transaction).
    pub readings_elapsed: Duration,
    /// Time of the whole commit, encoding included.
    pub elapsed: Duration,
}

/// A dead letter as stored, with the raw names of stream, stage and reason code, so rows
/// written by a newer engine can still be listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRow {
    /// Archive id (`dead_letter.id`), in archiving order.
    pub id: i64,
    /// Input stream name (`readings`, `batches`).
    pub stream: String,
    /// Where the rejected record came from.
    pub source: SourceCoord,
    /// Stage that rejected it.
    pub stage: String,
    /// Stable reason code.
    pub reason_code: String,
    /// Detail text.
    pub reason: String,
    /// The record key, untouched.
    pub record_key: Option<Vec<u8>>,
    /// The record value, untouched.
    pub payload: Vec<u8>,
    /// Where the dead letter sits in the DLQ topic, if known.
    pub dlq: Option<SourceCoord>,
    /// When it was archived (server clock).
    pub archived_at: DateTime<Utc>,
}

impl Archive {
    /// Connects to the archive at `url` (`postgres://user:pass@host:port/db`) and checks
    /// that one connection can be opened within the acquire timeout (5 s).
    ///
    /// The pool is small (4 connections, none kept open when idle) and every connection
    /// gets the temporary staging table the COPY path needs. A bad URL is
    /// [`ArchiveError::Config`]; an unreachable server is the retryable
    /// [`ArchiveError::Unavailable`].
    pub async fn connect(url: &str) -> Result<Archive, ArchiveError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| ArchiveError::from_sqlx("connect", e))?
            .application_name("scent-archive");
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(IDLE_TIMEOUT)
            .max_lifetime(MAX_LIFETIME)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(write::CREATE_STAGING).await?;
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(|e| ArchiveError::from_sqlx("connect", e))?;
        Ok(Archive { pool })
    }

    /// Applies the embedded migrations that are not applied yet; a no-op when the schema is
    /// current. Fails if an applied migration was changed or is missing from this build.
    pub async fn migrate(&self) -> Result<(), ArchiveError> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(ArchiveError::Migrate)
    }

    /// The connection pool, for readers elsewhere (the API).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Closes every connection; later calls fail with [`ArchiveError::Unavailable`].
    pub async fn close(&self) {
        self.pool.close().await;
    }
}
