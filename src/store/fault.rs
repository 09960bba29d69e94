//! What kind of trouble a database error is, as far as a client is told: a full database
//! (`storage.max_size` or the disk), a lock held by another process past the busy timeout, and
//! everything else; and the one log line and metric a refused write gets.

use super::StoreError;
use crate::metrics::Metrics;

/// What kind of trouble a database error is, as far as a client is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DbFault {
    /// `SQLITE_FULL`: `storage.max_size` is reached or the disk is full. Nothing of the refused
    /// work was stored; deleting messages (or freeing disk space) lets writes succeed again.
    Full,
    /// `SQLITE_BUSY`/`SQLITE_LOCKED`: another process held the database past the busy timeout.
    Locked,
    /// Anything else (I/O errors, a damaged file, the store closing).
    Other,
}

impl DbFault {
    /// Classifies an error from SQLite by its primary result code.
    pub(super) fn of(e: &sqlx::Error) -> DbFault {
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

    /// A few words for a log line.
    pub(super) fn describe(self) -> &'static str {
        match self {
            DbFault::Full => "the database is full (storage.max_size or the disk)",
            DbFault::Locked => "the database is locked by another process",
            DbFault::Other => "the database could not do the work",
        }
    }
}

impl StoreError {
    fn fault(&self) -> Option<DbFault> {
        match self {
            StoreError::Unavailable(e) => Some(DbFault::of(e)),
            StoreError::Rejected(_) => None,
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
}

/// Logs a refused group once, in words that say what happened and that nothing was stored.
pub(super) fn log_refused(metrics: &Metrics, e: &sqlx::Error, operations: usize) {
    let fault = DbFault::of(e);
    if !matches!(e, sqlx::Error::PoolClosed) {
        metrics.store_error(match fault {
            DbFault::Full => "full",
            DbFault::Locked => "locked",
            DbFault::Other => "other",
        });
    }
    match fault {
        DbFault::Full => tracing::warn!(
            error = %e, operations,
            "{}: the writes were refused and rolled back, nothing acknowledged is lost; they succeed again once messages are deleted or space is freed",
            fault.describe()
        ),
        DbFault::Locked => tracing::warn!(
            error = %e, operations,
            "{} (held past the busy timeout): the writes were refused and may be retried",
            fault.describe()
        ),
        DbFault::Other if matches!(e, sqlx::Error::PoolClosed) => {
            tracing::debug!(operations, "the store is closing; late writes were refused")
        }
        DbFault::Other => tracing::warn!(
            error = %e, operations,
            "database write failed; the requests were refused and may be retried"
        ),
    }
}
