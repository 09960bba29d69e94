//! Tombstones: what became of a message that is no longer stored (deleted, filtered out,
//! expired, moved to a dead-letter queue), written by the same transaction as the delete, with
//! one `INSERT … SELECT` over the same rows just before the `DELETE` (so a delete of many
//! invocations stays one pair of statements), kept for `storage.tombstone_retention` and swept
//! with the expired messages.
//!
//! A tombstone never stands in the way of a delete. It is not written when the database is
//! near full (pages in use above three quarters of the send limit, `writer/room.rs`), so that
//! tombstones neither eat the reserve kept for draining nor keep sends refused once a full
//! database was drained; and should its insert hit `SQLITE_FULL` anyway (a full disk), the
//! writer runs the group again without tombstones ([`Tombs::failed`]).

use sqlx::{QueryBuilder, Sqlite};

use super::super::error::{DbFault, StoreError};
use super::Tx;

/// What became of a message, as stored in `tombstones.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Deleted by receipt handle (a consumer, or a mapping after a successful invocation).
    Deleted = 1,
    /// Deleted by a mapping because none of its filters matched it.
    FilteredOut = 2,
    /// Past its queue's retention.
    Expired = 3,
    /// Moved to the queue's dead-letter queue.
    DeadLettered = 4,
}

impl Fate {
    /// The stored code's fate; `None` for a code this build does not know.
    pub fn from_code(code: i64) -> Option<Fate> {
        Some(match code {
            1 => Fate::Deleted,
            2 => Fate::FilteredOut,
            3 => Fate::Expired,
            4 => Fate::DeadLettered,
            _ => return None,
        })
    }
}

/// One transaction's tombstone policy and tally.
#[derive(Debug)]
pub(crate) struct Tombs {
    /// Whether tombstones are wanted at all (`storage.tombstone_retention` > 0, and not turned
    /// off to retry a group that ran out of room).
    keep: bool,
    /// Pages in use past which no tombstone is written (`None`: no `storage.max_size`).
    limit: Option<u64>,
    /// Whether there is room, once looked at in this transaction.
    room: Option<bool>,
    /// A tombstone insert hit `SQLITE_FULL`: the caller retries without tombstones.
    pub failed: bool,
    /// Tombstones written.
    pub written: u64,
    /// Messages deleted without a tombstone for lack of room.
    pub skipped: u64,
}

impl Tombs {
    /// The policy: `keep` when tombstones are kept, `send_limit` the pages in use past which
    /// sends are refused (`None` without `storage.max_size`).
    pub(crate) fn new(keep: bool, send_limit: Option<u64>) -> Tombs {
        Tombs {
            keep,
            limit: send_limit.map(|l| l / 4 * 3),
            room: None,
            failed: false,
            written: 0,
            skipped: 0,
        }
    }

    /// Tombstones wanted but not written, for the run of a group again after a tombstone
    /// insert found the database full: its deletes are counted as [`Tombs::skipped`].
    pub(crate) fn no_room() -> Tombs {
        Tombs {
            room: Some(false),
            ..Tombs::new(true, None)
        }
    }

    /// Whether this transaction may write tombstones: wanted, and room (looked at once per
    /// transaction, on two cheap pragmas).
    async fn allowed(&mut self, tx: &mut Tx<'_>) -> Result<bool, StoreError> {
        if !self.keep {
            return Ok(false);
        }
        if let Some(room) = self.room {
            return Ok(room);
        }
        let room = match self.limit {
            None => true,
            Some(limit) => {
                let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count")
                    .fetch_one(&mut *tx)
                    .await?;
                let (free,): (i64,) = sqlx::query_as("PRAGMA freelist_count")
                    .fetch_one(&mut *tx)
                    .await?;
                u64::try_from(pages - free).unwrap_or(0) < limit
            }
        };
        if !room {
            tracing::debug!("the database is near full: deletes leave no tombstones");
        }
        self.room = Some(room);
        Ok(room)
    }

    /// Writes a tombstone for each row of `messages` that `rows` selects (it pushes the
    /// condition after `WHERE`), before the caller deletes the same rows. Returns whether it
    /// wrote (else the caller reports what it deleted through [`Tombs::missed`]).
    pub(crate) async fn record<'q>(
        &mut self,
        tx: &mut Tx<'_>,
        fate: Fate,
        now: i64,
        dead_letter_queue: Option<&'q str>,
        rows: impl FnOnce(&mut QueryBuilder<'q, Sqlite>),
    ) -> Result<bool, StoreError> {
        if !self.allowed(tx).await? {
            return Ok(false);
        }
        let mut insert = QueryBuilder::<Sqlite>::new("");
        self.push_insert(&mut insert, fate, now, dead_letter_queue);
        rows(&mut insert);
        match insert.build().execute(&mut *tx).await {
            Ok(done) => {
                self.written += done.rows_affected();
                Ok(true)
            }
            Err(e) => Err(self.failing(e.into())),
        }
    }

    /// Deletes the rows of `messages` that `rows(b, k)` selects for each `k` below `lists` (it
    /// pushes the condition after `WHERE`), with a tombstone of `fate` for each row when
    /// allowed: every tombstone insert and delete go to SQLite as one statement list, one round
    /// trip to its thread. Returns how many rows were deleted. Each insert selects the rows its
    /// delete then deletes, and SQLite counts one change per tombstone inserted (a replaced one
    /// included) and per row deleted, so the deleted rows are half the changes. A full database
    /// met by the list is taken as the tombstones' ([`Tombs::failed`]): the group runs again
    /// without them.
    pub(crate) async fn delete<'q>(
        &mut self,
        tx: &mut Tx<'_>,
        fate: Fate,
        now: i64,
        lists: usize,
        rows: impl Fn(&mut QueryBuilder<'q, Sqlite>, usize),
    ) -> Result<u64, StoreError> {
        let mut b = QueryBuilder::<Sqlite>::new("");
        let wanted = self.allowed(tx).await?;
        for k in 0..lists {
            if k > 0 {
                b.push("; ");
            }
            if wanted {
                self.push_insert(&mut b, fate, now, None);
                rows(&mut b, k);
                b.push("; ");
            }
            b.push("DELETE FROM messages WHERE ");
            rows(&mut b, k);
        }
        let changes = match b.build().execute(&mut *tx).await {
            Ok(done) => done.rows_affected(),
            Err(e) => return Err(self.failing(e.into())),
        };
        if !wanted {
            self.missed(changes);
            return Ok(changes);
        }
        debug_assert!(changes % 2 == 0, "a tombstone per deleted row");
        self.written += changes / 2;
        Ok(changes / 2)
    }

    /// Pushes the tombstone insert up to its `WHERE`.
    fn push_insert<'q>(
        &self,
        b: &mut QueryBuilder<'q, Sqlite>,
        fate: Fate,
        now: i64,
        dead_letter_queue: Option<&'q str>,
    ) {
        // The receive that moves a message to the dead-letter queue does not count (as in the
        // dead-letter queue itself): the tombstone says after how many receives it went.
        let count = if fate == Fate::DeadLettered {
            "receive_count - 1"
        } else {
            "receive_count"
        };
        b.push(
            "INSERT OR REPLACE INTO tombstones (at, queue_id, message_id, state, receive_count, receipt, \
             dead_letter_queue) SELECT ",
        )
        .push_bind(now)
        .push(", queue_id, message_id, ")
        .push_bind(fate as i64)
        .push(format!(", {count}, receipt, "))
        .push_bind(dead_letter_queue)
        .push(" FROM messages WHERE ");
    }

    /// A tombstone statement's error, marking a full database as the tombstones' failure.
    fn failing(&mut self, e: StoreError) -> StoreError {
        if matches!(
            &e,
            StoreError::Database {
                fault: DbFault::Full,
                ..
            }
        ) {
            self.failed = true;
        }
        e
    }

    /// `n` messages were deleted after [`Tombs::record`] wrote nothing for them.
    pub(crate) fn missed(&mut self, n: u64) {
        if self.keep {
            self.skipped += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use crate::clock::Clock;
    use crate::config::{StorageConfig, Synchronous};
    use crate::domain::message::NewMessage;
    use crate::domain::queue::{QueueName, QueueSettings};
    use crate::domain::Timestamp;
    use crate::store::{Observer, SqliteStore as Store, StoreEvent, StoreOptions};

    /// The writer's own retry, which no configuration can reach from outside (`storage.max_size`
    /// keeps tombstones away from the cap): a file capped at the pages it has, where the
    /// tombstones of a delete need a new page. The delete still deletes everything.
    #[tokio::test]
    async fn a_delete_whose_tombstones_do_not_fit_still_deletes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let cfg = StorageConfig {
            postgres: None,
            path: dir.path().join("esmd.db"),
            synchronous: Synchronous::Full,
            max_size: None,
            max_queues: 10,
            tombstone_retention: std::time::Duration::from_secs(3600),
        };
        let (written, skipped) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (w, s) = (written.clone(), skipped.clone());
        let observer = Observer::new(move |e| {
            if let StoreEvent::Tombstones {
                written, skipped, ..
            } = e
            {
                w.fetch_add(written, Ordering::SeqCst);
                s.fetch_add(skipped, Ordering::SeqCst);
            }
        });
        let opts = StoreOptions {
            observer,
            ..Default::default()
        };
        let clock = Clock::manual(Timestamp::from_millis(1_767_225_600_000));
        let store = Store::open_with(&cfg, clock, opts).await.expect("open");
        let q = QueueName::parse("q").expect("name");
        let settings = QueueSettings::default();
        store
            .create_queue(&q, &settings, &BTreeMap::new())
            .await
            .expect("queue");
        let mut handles = Vec::new();
        for _ in 0..40 {
            let batch = (0..10).map(|i| NewMessage::body(format!("m{i}"))).collect();
            store.send(&q, batch).await.expect("send");
            for m in store.receive(&q, 10, None).await.expect("receive") {
                handles.push(m.receipt_handle);
            }
        }
        assert_eq!(handles.len(), 400);
        let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count")
            .fetch_one(&store.writer)
            .await
            .expect("page_count");
        let (free,): (i64,) = sqlx::query_as("PRAGMA freelist_count")
            .fetch_one(&store.writer)
            .await
            .expect("freelist_count");
        assert_eq!(free, 0, "no free page the tombstones could take");
        sqlx::query(&format!("PRAGMA max_page_count = {pages}"))
            .execute(&store.writer)
            .await
            .expect("cap the file");
        let results = store
            .delete(&q, &handles)
            .await
            .expect("the delete goes through");
        assert!(results.iter().all(Result::is_ok));
        assert_eq!(store.counts_scanned(&q).await.expect("counts").visible, 0);
        assert_eq!(store.counts_scanned(&q).await.expect("counts").in_flight, 0);
        assert_eq!(written.load(Ordering::SeqCst), 0, "no tombstone fitted");
        assert_eq!(
            skipped.load(Ordering::SeqCst),
            400,
            "every delete was counted as skipped"
        );
        store.close().await;
    }
}
