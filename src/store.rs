//! SQLite persistence: the queue engine. Owns every SQL statement and every queue rule that needs
//! the stored state (semantics.md §6): sends with delay and deduplication, receives with
//! visibility timeouts and FIFO group blocking, receipt-handle checks, redrive to dead-letter
//! queues, retention, purge. Knows nothing about HTTP or invocation.
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
mod fault;
mod fifo;
mod messages;
mod open;
mod queues;
mod rows;
mod wake;
mod writer;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::SqlitePool;

use crate::clock::Clock;
use crate::domain::message::{Message, NewMessage, SendReceipt};
use crate::domain::queue::{QueueName, QueueSettings};
use crate::domain::{Rejection, Timestamp};
use crate::metrics::Metrics;

pub use open::OpenError;

/// A cheap, cloneable handle on the database.
#[derive(Clone, Debug)]
pub struct Store {
    writer: SqlitePool,
    reader: SqlitePool,
    clock: Clock,
    wake: wake::Wakers,
    metrics: Arc<Metrics>,
    ops: tokio::sync::mpsc::Sender<writer::Op>,
    queues: cache::QueueCache,
}

/// A queue as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueInfo {
    /// Internal id (appears inside receipt handles).
    pub id: i64,
    /// The name.
    pub name: QueueName,
    /// Every attribute.
    pub settings: QueueSettings,
    /// Queue tags.
    pub tags: BTreeMap<String, String>,
    /// `CreatedTimestamp`.
    pub created_at: Timestamp,
    /// `LastModifiedTimestamp`.
    pub last_modified_at: Timestamp,
}

/// How many messages a queue holds, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueCounts {
    /// Receivable now (`ApproximateNumberOfMessages`).
    pub visible: u64,
    /// Received and not yet visible again (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
    /// Waiting out a delay (`ApproximateNumberOfMessagesDelayed`).
    pub delayed: u64,
    /// When the oldest message still stored was sent (retention clock).
    pub oldest_sent_at: Option<Timestamp>,
}

/// What a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request broke an SQS rule; the rejection says which.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The database could not do the work (full disk, locked, I/O); retriable.
    #[error("the database is unavailable")]
    Unavailable(#[source] Arc<sqlx::Error>),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Unavailable(Arc::new(e))
    }
}

/// The writer task is gone: only while the store is closing.
fn writer_gone() -> StoreError {
    StoreError::Unavailable(Arc::new(sqlx::Error::PoolClosed))
}

/// Per-entry results of a batch operation, in request order.
pub type EntryResults<T> = Vec<Result<T, Rejection>>;

impl Store {
    /// The clock this store reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Creates a queue, or returns the existing one unchanged. The `bool` says whether it was
    /// created. The caller applies CreateQueue's attribute-comparison rule.
    ///
    /// # Errors
    /// `Rejected` if `settings` break a rule (e.g. the dead-letter queue does not exist).
    pub async fn create_queue(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
        tags: &BTreeMap<String, String>,
    ) -> Result<(QueueInfo, bool), StoreError> {
        let done = queues::create(self, name, settings, tags).await;
        self.queues.forget();
        done
    }

    /// Creates the queue or overwrites its settings (the configuration file wins over earlier
    /// runtime changes).
    pub async fn ensure_queue(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
    ) -> Result<QueueInfo, StoreError> {
        let done = queues::ensure(self, name, settings).await;
        self.queues.forget();
        done
    }

    /// Replaces a queue's settings (SetQueueAttributes after merging).
    pub async fn set_settings(
        &self,
        name: &QueueName,
        settings: &QueueSettings,
    ) -> Result<QueueInfo, StoreError> {
        let done = queues::set_settings(self, name, settings).await;
        self.queues.forget();
        done
    }

    /// One queue.
    ///
    /// # Errors
    /// `Rejected(QueueDoesNotExist)` for an unknown name.
    pub async fn queue(&self, name: &QueueName) -> Result<QueueInfo, StoreError> {
        let generation = match self.queues.get(name.as_str()) {
            Ok(info) => return Ok(info),
            Err(generation) => generation,
        };
        let info = queues::get(self, name).await?;
        self.queues.insert(generation, &info);
        Ok(info)
    }

    /// Every queue, sorted by name.
    pub async fn queues(&self) -> Result<Vec<QueueInfo>, StoreError> {
        queues::list(self).await
    }

    /// Deletes a queue and all its messages.
    pub async fn delete_queue(&self, name: &QueueName) -> Result<(), StoreError> {
        let done = queues::delete(self, name).await;
        self.queues.forget();
        done
    }

    /// Deletes every message of a queue in every state and clears FIFO deduplication.
    ///
    /// # Errors
    /// `Rejected(PurgeQueueInProgress)` within 60 s of the previous purge.
    pub async fn purge(&self, name: &QueueName) -> Result<(), StoreError> {
        let done = queues::purge(self, name).await;
        self.queues.forget();
        done
    }

    /// Adds or replaces tags.
    pub async fn tag(
        &self,
        name: &QueueName,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), StoreError> {
        let done = queues::tag(self, name, tags).await;
        self.queues.forget();
        done
    }

    /// Removes tags.
    pub async fn untag(&self, name: &QueueName, keys: &[String]) -> Result<(), StoreError> {
        let done = queues::untag(self, name, keys).await;
        self.queues.forget();
        done
    }

    /// Queues whose redrive policy names `name` as their dead-letter queue.
    pub async fn dead_letter_sources(
        &self,
        name: &QueueName,
    ) -> Result<Vec<QueueName>, StoreError> {
        queues::dead_letter_sources(self, name).await
    }

    /// Message counts by state.
    pub async fn counts(&self, name: &QueueName) -> Result<QueueCounts, StoreError> {
        messages::counts(self, name).await
    }

    /// Sends messages (one for SendMessage, up to ten for SendMessageBatch) in one transaction.
    /// Each entry is validated on its own; a rejected entry does not stop the others.
    pub async fn send(
        &self,
        queue: &QueueName,
        batch: Vec<NewMessage>,
    ) -> Result<EntryResults<SendReceipt>, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.submit(
            writer::Op::Send {
                queue: queue.clone(),
                prepared: messages::prepare(&batch),
                batch,
                reply,
            },
            rx,
        )
        .await
    }

    async fn submit<T>(
        &self,
        op: writer::Op,
        rx: tokio::sync::oneshot::Receiver<Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.ops.send(op).await.map_err(|_| writer_gone())?;
        rx.await.map_err(|_| writer_gone())?
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
        self.receive_next(queue, max, visibility)
            .await?
            .into_messages()
    }

    /// A short poll that, when it finds nothing, also says when the next message becomes
    /// receivable by the passage of time.
    async fn receive_next(
        &self,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
    ) -> Result<messages::Received, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.submit(
            writer::Op::Receive {
                queue: queue.clone(),
                max,
                visibility,
                reply,
            },
            rx,
        )
        .await
    }

    /// Receives like [`Store::receive`], but if nothing is available waits up to `wait` for a
    /// message to become available (a send, a visibility timeout or delay running out, a
    /// visibility change) and returns as soon as one does.
    ///
    /// # Cancel safety
    /// Cancel safe while waiting; a receive that has claimed messages returns them.
    pub async fn receive_wait(
        &self,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Message>, StoreError> {
        messages::receive_wait(self, queue, max, visibility, wait).await
    }

    /// Deletes messages by receipt handle, applying the stale-handle rules (standard: a handle
    /// whose visibility ran out still deletes; FIFO: it is refused).
    pub async fn delete(
        &self,
        queue: &QueueName,
        handles: &[String],
    ) -> Result<EntryResults<()>, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.submit(
            writer::Op::Delete {
                queue: queue.clone(),
                handles: handles.to_vec(),
                reply,
            },
            rx,
        )
        .await
    }

    /// Changes the visibility timeout of received messages, counted from now, within the 12-hour
    /// cap from their receive.
    pub async fn change_visibility(
        &self,
        queue: &QueueName,
        entries: &[(String, Duration)],
    ) -> Result<EntryResults<()>, StoreError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let op = writer::Op::ChangeVisibility {
            queue: queue.clone(),
            entries: entries.to_vec(),
            reply,
        };
        self.submit(op, rx).await
    }

    /// Deletes messages past their queue's retention and expired deduplication entries. Runs
    /// periodically; receives also skip expired messages, so retention holds between sweeps.
    pub async fn sweep(&self) -> Result<u64, StoreError> {
        messages::sweep(self).await
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
