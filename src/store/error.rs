//! The one error type of the store and the one place database faults are classified: a full
//! database (`storage.max_size` or the disk), a lock held by another process past the busy
//! timeout, and everything else. The store logs each fault once, where it happens (the writer
//! for message operations, [`Store`](super::Store) for the rest); callers map the class to an
//! answer and never log it again.

use std::sync::Arc;

use crate::domain::error::chain;
use crate::domain::Rejection;

/// What a store operation can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The request broke an SQS rule; the rejection says which.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The database could not do the work; nothing of it was stored, and it may be retried.
    #[error("{}", fault.describe())]
    Database {
        /// What kind of trouble it is.
        fault: DbFault,
        /// The database's error.
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// The database cannot be reached (PostgreSQL is down, or not connected yet); nothing was
    /// done, and it may be retried.
    #[error("the database is unavailable ({reason})")]
    Unavailable {
        /// Why, e.g. "PostgreSQL at postgres://esmd@db:5432/esmd is unreachable: ...".
        reason: Arc<str>,
    },
    /// The writer task is not running: the store is closing, or the writer failed (the daemon
    /// then stops and systemd restarts it).
    #[error("the database writer is not running ({reason})")]
    WriterStopped {
        /// Why: "the store is closing", or the writer's failure.
        reason: Arc<str>,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database {
            fault: DbFault::of(&e),
            source: Arc::new(e),
        }
    }
}

/// What kind of trouble a database error is, as far as a client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbFault {
    /// `SQLITE_FULL`: `storage.max_size` is reached or the disk is full. Nothing of the refused
    /// work was stored; deleting messages (or freeing disk space) lets writes succeed again.
    Full,
    /// `SQLITE_BUSY`/`SQLITE_LOCKED`: another process held the database past the busy timeout.
    Locked,
    /// Anything else (I/O errors, a damaged file, the store closing).
    Other,
}

impl DbFault {
    /// Classifies an error from SQLite by its primary result code, or from PostgreSQL by its
    /// SQLSTATE (`53100` disk full; `55P03` lock not available).
    pub fn of(e: &sqlx::Error) -> DbFault {
        if let sqlx::Error::Database(d) = e {
            if d.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                .is_some()
            {
                return match d.code().as_deref() {
                    Some("53100") => DbFault::Full,
                    Some("55P03") => DbFault::Locked,
                    _ => DbFault::Other,
                };
            }
        }
        const SQLITE_BUSY: i64 = 5;
        const SQLITE_LOCKED: i64 = 6;
        const SQLITE_FULL: i64 = 13;
        let code = match e {
            sqlx::Error::Database(d) => d.code().and_then(|c| c.parse::<i64>().ok()),
            _ => None,
        };
        match code.map(|c| c & 0xff) {
            Some(SQLITE_FULL) => DbFault::Full,
            Some(SQLITE_BUSY | SQLITE_LOCKED) => DbFault::Locked,
            _ => DbFault::Other,
        }
    }

    /// A few words for a log line or an error message.
    pub fn describe(self) -> &'static str {
        match self {
            DbFault::Full => "the database is full (storage.max_size or the disk)",
            DbFault::Locked => "the database is locked by another process",
            DbFault::Other => "the database could not do the work",
        }
    }

    /// The metric label of this class (`esmd_store_errors_total{kind}`).
    pub fn label(self) -> &'static str {
        match self {
            DbFault::Full => "full",
            DbFault::Locked => "locked",
            DbFault::Other => "other",
        }
    }
}

impl StoreError {
    /// The class of a database fault; `None` for a rejection or a stopped writer.
    pub fn fault(&self) -> Option<DbFault> {
        match self {
            StoreError::Database { fault, .. } => Some(*fault),
            StoreError::Rejected(_)
            | StoreError::WriterStopped { .. }
            | StoreError::Unavailable { .. } => None,
        }
    }

    /// Whether this is the database being full (`storage.max_size` reached, or the disk):
    /// nothing of the refused work was stored, and it succeeds again once space is freed.
    pub fn is_database_full(&self) -> bool {
        self.fault() == Some(DbFault::Full)
    }

    /// Whether another process held the database locked past the busy timeout.
    pub fn is_database_locked(&self) -> bool {
        self.fault() == Some(DbFault::Locked)
    }

    /// The writer is not running (closing, or failed).
    pub(super) fn writer_stopped(reason: &Arc<str>) -> StoreError {
        StoreError::WriterStopped {
            reason: reason.clone(),
        }
    }
}

/// Logs a database fault once, in words that say what happened and that nothing was stored.
/// `operations` is how many requests it refused.
pub(super) fn log_fault(fault: DbFault, e: &sqlx::Error, operations: usize) {
    let error = chain(e);
    match fault {
        DbFault::Full => tracing::warn!(
            %error, operations,
            "{}: the writes were refused and rolled back, nothing acknowledged is lost; they succeed again once messages are deleted or space is freed",
            fault.describe()
        ),
        DbFault::Locked => tracing::warn!(
            %error, operations,
            "{} (held past the busy timeout): the writes were refused and may be retried",
            fault.describe()
        ),
        DbFault::Other => tracing::warn!(
            %error, operations,
            "database operation failed; the requests were refused and may be retried"
        ),
    }
}
