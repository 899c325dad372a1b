//! Errors of the archive, classified by what a caller can do about them.
//!
//! | variant | cause | retry helps? |
//! |---|---|---|
//! | [`ArchiveError::Config`] | bad database URL or options | no: fix the configuration |
//! | [`ArchiveError::Unavailable`] | cannot reach or lost the database: I/O, TLS, pool timeout, server shutting down or out of connections (SQLSTATE classes 08, 53, 57P) | yes, after a backoff |
//! | [`ArchiveError::Query`] | a statement failed; `transient` for serialization failures, deadlocks, lock timeouts and cancellations (40001, 40P01, 55P03, 57014) | only if `transient` |
//! | [`ArchiveError::Migrate`] | a migration could not be applied, or the applied ones differ from the embedded ones | only if the database was unavailable |
//! | [`ArchiveError::Data`] | a record cannot be stored: it fails to encode (NUL in text, non-finite float in JSON, timestamp out of range) or the database refused it (SQLSTATE classes 22 and 23, e.g. a CHECK constraint) | no: the same batch fails the same way |
//!
//! Because a commit is one transaction, any error leaves the database as it was before the
//! commit: retrying a retryable error with the same batch is always safe.

use std::borrow::Cow;

/// Everything that can go wrong in the archive.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The database URL or connection options are invalid.
    #[error("invalid archive database configuration: {0}")]
    Config(#[source] sqlx::Error),

    /// The database cannot be reached, or the connection was lost.
    #[error("archive database unavailable during {context}: {source}")]
    Unavailable {
        /// What the archive was doing.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },

    /// A statement failed for a reason other than the data or the connection.
    #[error("archive {context} failed: {source}")]
    Query {
        /// What the archive was doing.
        context: &'static str,
        /// Whether the failure is transient (serialization failure, deadlock, lock
        /// timeout, cancellation), so that retrying the whole commit can succeed.
        transient: bool,
        /// The underlying error.
        #[source]
        source: sqlx::Error,
    },

    /// Applying the embedded migrations failed.
    #[error("archive migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),

    /// A record cannot be stored as it is: it failed to encode, or the database refused it.
    #[error("cannot archive {context}: {detail}")]
    Data {
        /// Which record or statement.
        context: Cow<'static, str>,
        /// What is wrong, with the SQLSTATE and constraint when the database refused it.
        detail: String,
        /// The database error, when the database refused the data.
        #[source]
        source: Option<sqlx::Error>,
    },
}

impl ArchiveError {
    /// Whether retrying the same operation later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ArchiveError::Unavailable { .. } => true,
            ArchiveError::Query { transient, .. } => *transient,
            ArchiveError::Migrate(err) => match err {
                sqlx::migrate::MigrateError::Execute(source)
                | sqlx::migrate::MigrateError::ExecuteMigration(source, _) => {
                    is_unavailable(source) || is_transient(source)
                }
                _ => false,
            },
            ArchiveError::Config(_) | ArchiveError::Data { .. } => false,
        }
    }

    /// The SQLSTATE of the database error behind this one, if any.
    pub fn sqlstate(&self) -> Option<&str> {
        self.database_error().map(|db| db.code())
    }

    /// The constraint the database reported as violated, if any.
    pub fn constraint(&self) -> Option<&str> {
        self.database_error().and_then(|db| db.constraint())
    }

    fn database_error(&self) -> Option<&sqlx::postgres::PgDatabaseError> {
        let source = match self {
            ArchiveError::Unavailable { source, .. } | ArchiveError::Query { source, .. } => source,
            ArchiveError::Data {
                source: Some(source),
                ..
            } => source,
            ArchiveError::Migrate(
                sqlx::migrate::MigrateError::Execute(source)
                | sqlx::migrate::MigrateError::ExecuteMigration(source, _),
            ) => source,
            _ => return None,
        };
        source
            .as_database_error()
            .and_then(|db| db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
    }

    /// A record that cannot be encoded, refused before it reaches the database.
    pub(crate) fn data(context: impl Into<Cow<'static, str>>, detail: impl Into<String>) -> Self {
        ArchiveError::Data {
            context: context.into(),
            detail: detail.into(),
            source: None,
        }
    }

    /// Classifies a sqlx error raised while doing `context`.
    pub(crate) fn from_sqlx(context: &'static str, source: sqlx::Error) -> Self {
        if matches!(source, sqlx::Error::Configuration(_)) {
            return ArchiveError::Config(source);
        }
        if is_unavailable(&source) {
            return ArchiveError::Unavailable { context, source };
        }
        if matches!(source, sqlx::Error::Encode(_)) {
            let detail = source.to_string();
            return ArchiveError::Data {
                context: context.into(),
                detail,
                source: Some(source),
            };
        }
        if let Some(db) = pg_error(&source) {
            let class = db.code().get(..2).unwrap_or_default();
            if class == "22" || class == "23" {
                let mut detail = format!("{} (sqlstate {}", db.message(), db.code());
                if let Some(constraint) = db.constraint() {
                    detail.push_str(", constraint ");
                    detail.push_str(constraint);
                }
                detail.push(')');
                return ArchiveError::Data {
                    context: context.into(),
                    detail,
                    source: Some(source),
                };
            }
        }
        let transient = is_transient(&source);
        ArchiveError::Query {
            context,
            transient,
            source,
        }
    }
}

fn pg_error(source: &sqlx::Error) -> Option<&sqlx::postgres::PgDatabaseError> {
    source
        .as_database_error()
        .and_then(|db| db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>())
}

/// Connection-level failures: the database is down, unreachable, restarting or full.
fn is_unavailable(source: &sqlx::Error) -> bool {
    match source {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_)
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(_) => pg_error(source).is_some_and(|db| {
            let code = db.code();
            // 08: connection exception; 53: insufficient resources (too many connections,
            // disk full); 57P01-57P05: admin/crash shutdown, cannot connect now, ...
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
        }),
        _ => false,
    }
}

/// Statement-level failures that a retry of the whole transaction can overcome.
fn is_transient(source: &sqlx::Error) -> bool {
    pg_error(source).is_some_and(|db| {
        matches!(
            db.code(),
            // serialization_failure, deadlock_detected, lock_not_available, query_canceled
            "40001" | "40P01" | "55P03" | "57014"
        )
    })
}
