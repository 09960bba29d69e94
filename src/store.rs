//! SQLite persistence: the queue engine. Owns every SQL statement and every queue rule that needs
//! the stored state (docs/semantics.md §6): sends with delay and deduplication, receives with
//! visibility timeouts and FIFO group blocking, receipt-handle checks, redrive to dead-letter
//! queues, retention, purge. Knows nothing about HTTP, invocation or metrics: it reports what
//! happened as [`StoreEvent`]s to the [`Observer`] its owner gives it.
//!
//! Calls go one way: this handle → `wait` (long polls, with `wake`) → `writer` (the group-commit
//! task and its `plan`) → `sql` (statements grouped by operation: send, claim, settle,
//! retention, fifo, queues, mappings, moves). `queues` holds the queue operations of this
//! handle, `mappings` the API's event source mappings, `moves` message move tasks (a
//! dead-letter queue's redrive), `events` the Invoke API's asynchronous invocations, `peek` peek and explain. `open` opens the file, `rows` maps
//! columns, `cache` keeps the request path's queue rows, `error` classifies database faults,
//! `report` carries events.
//!
//! Shape: one write connection (SQLite has one writer anyway; a single connection means writes
//! queue in tokio instead of spinning on `SQLITE_BUSY`) and a small read pool, both opened with
//! typed `SqliteConnectOptions` (WAL, `synchronous` from the config, busy timeout). Every write
//! is one short `BEGIN IMMEDIATE` transaction; nothing slow ever runs inside one. Time comes from
//! the injected [`Clock`] and is bound into SQL as a parameter.
//!
//! Waking: every change that can make a message receivable wakes about one waiting long poll or
//! poller per ten such messages (`wake.rs`), so they react at once instead of re-querying on a
//! timer; a message that becomes visible by the passage of time is waited for with a timer on
//! its `visible_at`.

mod cache;
mod contract;
mod error;
mod events;
mod facade;
mod health;
mod hidden;
mod mappings;
mod migrate;
mod moves;
mod open;
mod peek;
mod postgres;
mod queues;
mod report;
mod reserve;
mod rows;
mod sql;
mod tally;
pub mod transfer;
mod types;
mod wait;
mod wake;
mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::domain::message::{Message, NewMessage, SendReceipt};
use crate::domain::queue::QueueName;

pub use contract::QueueStore;
pub use error::{DbFault, StoreError};
pub use events::AsyncEvent;
pub use facade::{MappingSlot, Store};
pub use mappings::MappingChange;
pub use moves::{MoveRequest, MoveStatus, MoveStep, MoveTask};
pub use open::OpenError;
pub use peek::{Explained, Fate, MessageState, Peeked, Receiver, Tombstone};
pub use postgres::{PgOptions, PgSlot, PgStore};
pub use report::{Observer, StoreEvent};
pub use types::{EntryResults, QueueCounts, QueueInfo, WriterFault};

/// The SQLite backend: a cheap, cloneable handle on the database file. The rest of esmd holds
/// the [`Store`] facade, which dispatches to it or to PostgreSQL (`facade.rs`).
#[derive(Clone, Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    clock: Clock,
    wake: wake::Wakers,
    observer: Observer,
    ops: writer::Handle,
    queues: cache::QueueCache,
    health: health::Health,
    /// Messages per queue, kept as writes commit.
    tally: tally::Tally,
    /// `storage.max_queues`: CreateQueue past it is refused.
    max_queues: u64,
    /// The disk reserve, given up when the disk is full so that space can be freed.
    reserve: std::sync::Arc<reserve::Reserve>,
    /// Receivers' names and their numbers in receipt tokens (`peek.rs`).
    receivers: peek::Receivers,
    /// `storage.tombstone_retention`, and the send limit in pages, for the sweep.
    sweep_policy: sql::retention::SweepPolicy,
    /// Raised on every start and cancel of a message move task (`moves.rs`).
    moves: moves::MoveSignal,
    /// Raised on every change of an asynchronous invocation (`events.rs`).
    events: events::EventSignal,
    /// The full in-flight and delayed counts of queues too deep to count at each scrape.
    hidden: hidden::HiddenCap,
    /// The owner's tracker, for the background recounts of `hidden`.
    tasks: TaskTracker,
}

/// How a store is run, beyond its configuration.
#[derive(Debug, Default)]
pub struct StoreOptions {
    /// Receives every [`StoreEvent`] (the daemon records metrics from them).
    pub observer: Observer,
    /// Where the writer task runs; its owner awaits the tracker after [`Store::close`]. A
    /// tracker of its own when `None`.
    pub tasks: Option<TaskTracker>,
    /// Cancelling it stops the writer as [`Store::close`] does (a child of the owner's root
    /// token); a token of its own when `None`.
    pub stop: Option<CancellationToken>,
    /// A failure to inject into the writer (tests of the daemon's supervision only).
    #[doc(hidden)]
    pub writer_fault: Option<WriterFault>,
    /// The configured default region (`server.region`): queues stored under that region's
    /// name, created while another region was the default, become the default region's at
    /// open (docs/architecture.md §2.2). `None` leaves every row as stored.
    pub default_region: Option<String>,
}

impl SqliteStore {
    /// The clock this store reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The clock's now, as stored.
    fn now(&self) -> i64 {
        self.clock.now().as_millis()
    }

    /// Logs and reports a database fault of an operation that does not go through the writer
    /// (which logs its own), once.
    fn reported<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        if let Err(StoreError::Database { fault, source }) = &r {
            error::log_fault(*fault, source, 1);
            self.observer.emit(StoreEvent::Refused {
                fault: *fault,
                operations: 1,
            });
        }
        r
    }

    /// Runs a queue change and empties the request path's copy of the queue rows.
    async fn changing<T>(
        &self,
        change: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        if let Some(reason) = self.health.check() {
            return Err(StoreError::writer_stopped(&reason));
        }
        let done = change.await;
        self.queues.forget();
        self.reported(done)
    }

    /// Runs a change that frees space (a purge, a queue deletion): when the disk itself is full,
    /// the disk reserve is given up and the change runs once more, so that space can always be
    /// freed, as the writer does for receives and deletes.
    async fn freeing<T, F, Fut>(&self, change: F) -> Result<T, StoreError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        match self.changing(change()).await {
            Err(StoreError::Database { source, .. })
                if writer::room::release_reserve(&self.reserve, &source) =>
            {
                self.changing(change()).await
            }
            done => done,
        }
    }

    /// Message counts by state: from the messages kept per queue as writes commit, and the
    /// in-flight and delayed ones read on an index (`tally.rs`), so the cost does not grow with
    /// the visible backlog.
    pub async fn counts(&self, name: &QueueName) -> Result<QueueCounts, StoreError> {
        let q = self.queue(name).await?;
        let now = self.now();
        let (in_flight, delayed, oldest) =
            self.reported(sql::retention::hidden_of(&self.reader, q.id, now).await)?;
        Ok(self.kept(name.as_str(), in_flight, delayed, oldest))
    }

    fn kept(
        &self,
        queue: &str,
        in_flight: u64,
        delayed: u64,
        oldest_sent_at: Option<crate::domain::Timestamp>,
    ) -> QueueCounts {
        let total = self.tally.total(queue);
        QueueCounts {
            visible: total.saturating_sub(in_flight + delayed),
            in_flight,
            delayed,
            oldest_sent_at,
        }
    }

    /// Every queue's counts, sorted by name (what `/metrics` shows): one read whose cost is the
    /// number of queues, each read up to a cap; a queue over it shows a full count at most a
    /// few seconds old (`hidden.rs`).
    pub async fn all_counts(&self) -> Result<Vec<(QueueName, QueueCounts)>, StoreError> {
        let now = self.now();
        let rows =
            self.reported(sql::retention::hidden(&self.reader, now, self.hidden.cap()).await)?;
        let big: Vec<i64> = rows
            .iter()
            .filter(|r| self.hidden.reached(r.in_flight, r.delayed))
            .map(|r| r.id)
            .collect();
        let keys: HashMap<i64, String> = rows
            .iter()
            .filter(|r| big.contains(&r.id))
            .map(|r| (r.id, r.key.clone()))
            .collect();
        let store = self.clone();
        let count: hidden::Count = Arc::new(move |id| {
            let (store, key) = (store.clone(), keys.get(&id).cloned().unwrap_or_default());
            Box::pin(async move { store.count_hidden(id, &key).await })
        });
        let kept = self
            .hidden
            .figures(&big, now, count, |task| {
                self.tasks.spawn(task);
            })
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let counts = match kept.get(&r.id) {
                    Some(full) => QueueCounts {
                        visible: full.total.saturating_sub(full.in_flight + full.delayed),
                        in_flight: full.in_flight,
                        delayed: full.delayed,
                        oldest_sent_at: r.oldest,
                    },
                    None => self.kept(&r.key, r.in_flight, r.delayed, r.oldest),
                };
                QueueName::from_key(&r.key).ok().map(|q| (q, counts))
            })
            .collect())
    }

    /// Sets how many index entries a `/metrics` read counts at most per queue and state before
    /// the queue's figures come from a full count (`hidden.rs`): tests make it small.
    #[doc(hidden)]
    pub fn set_scrape_cap(&self, cap: u64) {
        self.hidden.set_cap(cap);
    }

    /// A full count of queue `id`'s (`key`'s) messages in flight and delayed, with its total.
    async fn count_hidden(&self, id: i64, key: &str) -> Result<hidden::Full, StoreError> {
        let at = self.now();
        let (in_flight, delayed, _) =
            self.reported(sql::retention::hidden_of(&self.reader, id, at).await)?;
        Ok(hidden::Full {
            at,
            total: self.tally.total(key),
            in_flight,
            delayed,
        })
    }

    /// Message counts by state from a read of every row of the queue: what [`Store::counts`]
    /// must agree with (tests check it does).
    pub async fn counts_scanned(&self, name: &QueueName) -> Result<QueueCounts, StoreError> {
        let q = self.queue(name).await?;
        let now = self.now();
        self.reported(sql::retention::counts(&self.reader, &q, now).await)
    }

    /// Sends messages (one for SendMessage, up to ten for SendMessageBatch) in one transaction.
    /// Each entry is validated on its own; a rejected entry does not stop the others.
    pub async fn send(
        &self,
        queue: &QueueName,
        batch: Vec<NewMessage>,
    ) -> Result<EntryResults<SendReceipt>, StoreError> {
        let (reply, rx) = oneshot::channel();
        let op = writer::Op::Send {
            queue: queue.clone(),
            prepared: sql::send::prepare(&batch),
            batch,
            reply,
        };
        self.ops.submit(op, rx).await
    }

    /// The long-poll machinery for `receiver` (0: a client; see `peek.rs`).
    fn waiter_for(&self, receiver: u16) -> wait::Waiter<'_> {
        wait::Waiter {
            writer: &self.ops,
            wake: &self.wake,
            clock: &self.clock,
            receiver,
        }
    }

    /// Receives up to `max` messages now (a short poll), making them invisible for `visibility`
    /// (the queue's visibility timeout when `None`). Messages whose receive count would exceed the
    /// queue's `max_receive_count` are moved to the dead-letter queue instead of returned.
    pub async fn receive(
        &self,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
    ) -> Result<Vec<Message>, StoreError> {
        self.waiter_for(0)
            .receive_now(queue, max, visibility)
            .await?
            .into_messages()
    }

    /// Receives like [`Store::receive`], but if nothing is available waits up to `wait` for a
    /// message to become available (a send, a visibility timeout or delay running out, a
    /// visibility change) and returns as soon as one does.
    ///
    /// # Cancel safety
    /// Cancel safe: cancelled while waiting, it has claimed nothing; cancelled after it handed
    /// its claim to the writer, what the claim took is given back at once (see `writer.rs`).
    pub async fn receive_wait(
        &self,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Message>, StoreError> {
        self.waiter_for(0)
            .receive_wait(queue, max, visibility, wait)
            .await
    }

    /// Deletes messages by receipt handle, applying the stale-handle rules (standard: a handle
    /// whose visibility ran out still deletes; FIFO: it is refused), leaving tombstones.
    pub async fn delete(
        &self,
        queue: &QueueName,
        handles: &[String],
    ) -> Result<EntryResults<()>, StoreError> {
        self.delete_as(queue, handles, Fate::Deleted).await
    }

    /// Changes the visibility timeout of received messages, counted from now, within the 12-hour
    /// cap from their receive.
    pub async fn change_visibility(
        &self,
        queue: &QueueName,
        entries: &[(String, Duration)],
    ) -> Result<EntryResults<()>, StoreError> {
        let (reply, rx) = oneshot::channel();
        let op = writer::Op::ChangeVisibility {
            queue: queue.clone(),
            entries: entries.to_vec(),
            reply,
        };
        self.ops.submit(op, rx).await
    }

    /// Deletes messages past their queue's retention (leaving tombstones), expired deduplication
    /// entries and tombstones. Runs periodically; receives also skip expired messages, so
    /// retention holds between sweeps. Returns how many messages expired.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        if let Some(reason) = self.health.check() {
            return Err(StoreError::writer_stopped(&reason));
        }
        let swept = self
            .reported(sql::retention::sweep(&self.writer, self.now(), self.sweep_policy).await)?;
        for (queue, n) in &swept.lost {
            self.tally
                .add(queue, -i64::try_from(*n).unwrap_or(i64::MAX));
        }
        self.report_tombstones(&swept);
        Ok(swept.lost.values().sum())
    }

    /// Resolves with the cause once the store is broken: the writer task failed (a bug: it
    /// panicked), or the database file was deleted or replaced from under the daemon, or it
    /// cannot be written (`health.rs`). Every write is refused from then on; the owner should
    /// stop serving and exit non-zero. Never resolves while the store is healthy or after it
    /// closed on purpose.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn failed(&self) -> Arc<str> {
        tokio::select! {
            cause = self.ops.failed() => format!("the database writer failed: {cause}").into(),
            cause = self.health.failed() => cause,
        }
    }

    /// Checks that the database file is still the one opened (the daemon calls it every few
    /// seconds; the writer also checks before each commit). Returns the cause if broken.
    pub fn check_file(&self) -> Option<Arc<str>> {
        self.health.check()
    }

    /// Copies what the WAL holds into the database file where no reader needs it
    /// (`PRAGMA wal_checkpoint(PASSIVE)`), run periodically: SQLite's automatic checkpoints
    /// fail silently, and a WAL that is never copied back grows without bound. A checkpoint
    /// that fails because the file cannot be written breaks the store (see [`Store::failed`]);
    /// one that another process's lock held off is only reported.
    ///
    /// # Errors
    /// The database error, already logged.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        if let Some(reason) = self.health.check() {
            return Err(StoreError::writer_stopped(&reason));
        }
        let r = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&self.writer)
            .await
            .map_err(StoreError::from);
        if let Err(e @ StoreError::Database { fault, .. }) = &r {
            if *fault == DbFault::Other {
                self.health.fail(format!(
                    "a checkpoint of the database file {} failed: {}; the WAL would grow \
                     without bound",
                    self.health.path().display(),
                    crate::domain::error::chain(e)
                ));
                return r.map(|_| ());
            }
        }
        self.reported(r).map(|_| ())
    }

    /// The SQLite settings in force on the write connection: the journal mode (`wal`) and the
    /// `synchronous` level (2 = FULL, 1 = NORMAL).
    pub async fn storage_settings(&self) -> Result<(String, i64), StoreError> {
        let (mode,): (String,) = sqlx::query_as("PRAGMA journal_mode")
            .fetch_one(&self.writer)
            .await?;
        let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
            .fetch_one(&self.writer)
            .await?;
        Ok((mode, sync))
    }
}
