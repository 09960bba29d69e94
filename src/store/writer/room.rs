//! The send limit: with `storage.max_size` set, sends are refused once the pages in use reach
//! the cap minus a reserve, while SQLite's own hard limit (`max_page_count`) sits at the cap.
//! The reserve is what lets receives, deletes, visibility changes, purges and queue deletions
//! go on when the database is full for sends, so that a full database can always be drained.
//!
//! The check runs inside the group's transaction after each queue's send statement, on two
//! cheap pragmas (`page_count`, read from the header, and `freelist_count`): a send whose rows
//! took the database past the limit is refused as `SQLITE_FULL` and rolled back with the
//! statement, like one that hit the hard limit, and so the reserve is never spent on sends.
//! The same refusal stands while the disk reserve file is missing (`reserve.rs`).

use std::borrow::Cow;
use std::error::Error as StdError;

use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::SqliteConnection;

use super::super::reserve::{Reserve, RESERVE_BYTES};

/// SQLite's `SQLITE_FULL` primary result code, which classifies the refusal as a full database.
const SQLITE_FULL: &str = "13";

/// The reserve kept for the operations that free space: an eighth of `storage.max_size`, at
/// most 8 MiB, in pages.
pub(in crate::store) fn send_limit(max_pages: u64, page_size: u64) -> u64 {
    const MAX_RESERVE_BYTES: u64 = 8 * 1024 * 1024;
    let reserve = (max_pages / 8).min(MAX_RESERVE_BYTES / page_size.max(512));
    max_pages - reserve
}

/// A send refused by the send limit, as SQLite would refuse it at its hard limit.
#[derive(Debug, thiserror::Error)]
#[error("database or disk is full (the send limit: storage.max_size less the reserve for deletes and receives)")]
struct SendLimit;

impl DatabaseError for SendLimit {
    fn message(&self) -> &str {
        "database or disk is full (the send limit: storage.max_size less the reserve for deletes and receives)"
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(SQLITE_FULL))
    }

    fn as_error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn StdError + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn StdError + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}

/// Whether `e` is this module's refusal rather than SQLite's own `SQLITE_FULL`.
pub(super) fn is_send_limit(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.try_downcast_ref::<SendLimit>().is_some())
}

/// Refuses (as `SQLITE_FULL`) while the disk reserve is missing and cannot be written again
/// (`reserve.rs`), or when the pages in use exceed `limit` (`None`: no limit).
pub(super) async fn check(
    conn: &mut SqliteConnection,
    limit: Option<u64>,
    reserve: &Reserve,
) -> Result<(), sqlx::Error> {
    if !reserve.ensure() {
        // The disk is full: sends may still use free pages inside the file, as long as a
        // reserve's worth of them is left for the others.
        let (free,): (i64,) = sqlx::query_as("PRAGMA freelist_count")
            .fetch_one(&mut *conn)
            .await?;
        let (page_size,): (i64,) = sqlx::query_as("PRAGMA page_size")
            .fetch_one(&mut *conn)
            .await?;
        let free_bytes = u64::try_from(free.saturating_mul(page_size)).unwrap_or(0);
        if free_bytes < RESERVE_BYTES {
            return Err(sqlx::Error::Database(Box::new(SendLimit)));
        }
    }
    let Some(limit) = limit else { return Ok(()) };
    let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count")
        .fetch_one(&mut *conn)
        .await?;
    let (free,): (i64,) = sqlx::query_as("PRAGMA freelist_count")
        .fetch_one(&mut *conn)
        .await?;
    if u64::try_from(pages - free).unwrap_or(0) > limit {
        return Err(sqlx::Error::Database(Box::new(SendLimit)));
    }
    Ok(())
}

/// On the disk's own `SQLITE_FULL`, deletes the disk reserve so that the group can run again in
/// its room (sends are refused until it is back); whether it did.
pub(in crate::store) fn release_reserve(reserve: &Reserve, e: &sqlx::Error) -> bool {
    use super::super::error::DbFault;
    if DbFault::of(e) != DbFault::Full || is_send_limit(e) {
        return false;
    }
    let released = reserve.release();
    if released {
        tracing::warn!("the disk is full: deleted the disk reserve so that receives, deletes and purges go on; sends are refused until the disk has room again");
    }
    released
}

/// SQLite never lowers `max_page_count` below the file's current size: say so when the file is
/// already at or over `storage.max_size`, since new messages will be refused until some are
/// deleted.
pub(in crate::store) async fn warn_if_over(
    writer: &sqlx::SqlitePool,
    path: &std::path::Path,
    max_pages: u64,
    page_size: u64,
) {
    let counts: Result<((i64,), (i64,)), sqlx::Error> = async {
        let pages = sqlx::query_as("PRAGMA page_count")
            .fetch_one(writer)
            .await?;
        let free = sqlx::query_as("PRAGMA freelist_count")
            .fetch_one(writer)
            .await?;
        Ok((pages, free))
    }
    .await;
    if let Ok(((pages,), (free,))) = counts {
        let used = u64::try_from(pages - free).unwrap_or(0);
        if used >= max_pages {
            tracing::warn!(
                path = %path.display(),
                used_bytes = used * page_size,
                max_size = max_pages * page_size,
                "the database is already full (storage.max_size); sends are refused until messages are deleted"
            );
        }
    }
}
