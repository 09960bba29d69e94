//! [`Store`]: the one store handle the api, the pollers and the daemon hold, on either backend
//! (`storage.backend`, docs/postgres.md): the SQLite [`SqliteStore`] or PostgreSQL through a
//! [`PgLink`](link) (a [`PgStore`](super::PgStore) that is connected, watched and reconnected
//! in the background). Every public method dispatches to the backend; the macros below keep
//! that to one line per method.
//!
//! On PostgreSQL, what `PgStore` does not have yet is answered here, in one place each:
//! - **waiting** for a `PgStore` method of the same name and signature (mappings created
//!   through the API, move tasks, asynchronous invocations, tags, peek and explain): refused
//!   as `UnsupportedOperation`, or an empty list where a list is asked for (none can have been
//!   created), see [`WAITING`];
//! - **interim** answers from the queue contract: a mapping's long poll is a plain long poll
//!   (no receiver recorded for peek), a filtered delete a plain delete (no tombstone),
//!   `all_counts` one `counts` per queue, `counts_scanned` is `counts`, dead-letter sources are
//!   read from the queue list.
//!
//! Switching such an arm to `pg.method(...)` once `PgStore` has it is a one-line change.

mod link;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use self::link::PgLink;
use super::{
    AsyncEvent, EntryResults, Explained, MappingChange, MoveRequest, MoveStep, MoveTask, OpenError,
    Peeked, QueueCounts, QueueInfo, QueueStore as _, SqliteStore, StoreError, StoreEvent,
    StoreOptions,
};
use crate::clock::Clock;
use crate::config::{Password, StorageConfig};
use crate::domain::esm::{EsmSettings, EsmState, StoredEsm};
use crate::domain::message::{Message, NewMessage, SendReceipt};
use crate::domain::queue::{QueueName, QueueSettings};
use crate::domain::{RejectCode, Rejection, Timestamp};

/// The store methods that still wait for a `PgStore` method of the same name (docs/postgres.md
/// lists them too). On PostgreSQL they are refused, or answer an empty list.
pub const WAITING: &[&str] = &[
    "create_mapping",
    "update_mapping",
    "set_mapping_state",
    "remove_mapping",
    "mapping",
    "mappings",
    "enqueue_event",
    "pending_events",
    "event_attempt",
    "postpone_event",
    "remove_event",
    "event_signal",
    "start_move_task",
    "move_tasks",
    "active_move_tasks",
    "cancel_move_task",
    "move_step",
    "move_signal",
    "tag",
    "untag",
    "peek",
    "explain",
    "dead_letter_sources",
    "receive_wait_for_mapping",
    "delete_filtered",
    "all_counts",
    "counts_scanned",
];

/// A cheap, cloneable handle on the database, whichever backend holds it.
#[derive(Clone, Debug)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone, Debug)]
enum Backend {
    Sqlite(SqliteStore),
    Postgres(PgLink),
}

/// The refusal of an operation PostgreSQL cannot do yet.
fn not_yet(operation: &str) -> StoreError {
    StoreError::Rejected(Rejection::new(
        RejectCode::UnsupportedOperation,
        format!("{operation} is not available on PostgreSQL yet (storage.backend = \"postgres\"; see docs/postgres.md)"),
    ))
}

fn ok_count<T>(r: &EntryResults<T>) -> u64 {
    r.iter().filter(|e| e.is_ok()).count() as u64
}

/// Methods both backends have (PostgreSQL's from the store contract); `$seen` reports a
/// PostgreSQL success to the observer (the SQLite store reports its own).
macro_rules! both {
    ($($(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty, $seen:expr;)*) => {$(
        $(#[$doc])*
        pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
            match &self.backend {
                Backend::Sqlite(s) => s.$name($($arg),*).await,
                Backend::Postgres(l) => {
                    let r = l.store()?.$name($($arg),*).await;
                    l.observed(r, $seen)
                }
            }
        }
    )*};
}

/// Methods only the SQLite store has yet: on PostgreSQL `$pg` (a refusal or an empty answer).
macro_rules! waiting {
    ($($(#[$doc:meta])* fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty, $pg:expr;)*) => {$(
        $(#[$doc])*
        pub async fn $name(&self $(, $arg: $ty)*) -> Result<$ret, StoreError> {
            match &self.backend {
                Backend::Sqlite(s) => s.$name($($arg),*).await,
                Backend::Postgres(l) => {
                    l.store()?;
                    $(let _ = $arg;)*
                    $pg
                }
            }
        }
    )*};
}

impl Store {
    /// Opens the backend `cfg` names (see [`Store::open_with`]).
    ///
    /// # Errors
    /// As [`Store::open_with`].
    pub async fn open(cfg: &StorageConfig, clock: Clock) -> Result<Store, OpenError> {
        Self::open_with(cfg, clock, StoreOptions::default()).await
    }

    /// Opens the SQLite file (and migrates it), or starts connecting to PostgreSQL in the
    /// background (`storage.backend`); [`Store::connected`] resolves once it is.
    ///
    /// # Errors
    /// [`OpenError`] if the SQLite file cannot be opened, is not an SQLite database or is
    /// damaged, is another program's, or carries a schema this build does not know (the file is
    /// never modified then); or if `storage.url` gives no connect options.
    pub async fn open_with(
        cfg: &StorageConfig,
        clock: Clock,
        opts: StoreOptions,
    ) -> Result<Store, OpenError> {
        let backend = match &cfg.postgres {
            None => Backend::Sqlite(SqliteStore::open_with(cfg, clock, opts).await?),
            Some(pg) => Backend::Postgres(PgLink::open(cfg, pg, clock, opts)?),
        };
        Ok(Store { backend })
    }

    /// Resolves once the database can be used: at once on SQLite; on PostgreSQL once the first
    /// connection succeeded (it is retried until then).
    pub async fn connected(&self) {
        if let Backend::Postgres(l) = &self.backend {
            l.connected().await;
        }
    }

    /// Why the database cannot be used now (PostgreSQL down or not connected yet), if it
    /// cannot; `/readyz` answers 503 with it. Always `None` on SQLite, whose breaking is
    /// [`Store::failed`].
    pub fn unavailable(&self) -> Option<Arc<str>> {
        match &self.backend {
            Backend::Sqlite(_) => None,
            Backend::Postgres(l) => l.unavailable(),
        }
    }

    /// Gives a new `storage.password_file` password to new PostgreSQL connections (a reload);
    /// nothing on SQLite.
    pub fn set_password(&self, password: Option<&Password>) {
        if let Backend::Postgres(l) = &self.backend {
            l.set_password(password);
        }
    }

    /// Whether this store is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The clock this store reads.
    pub fn clock(&self) -> &Clock {
        match &self.backend {
            Backend::Sqlite(s) => s.clock(),
            Backend::Postgres(l) => l.clock(),
        }
    }

    /// Closes the store: SQLite's writer answers what is queued and the file is checkpointed;
    /// PostgreSQL's pool is closed.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(s) => s.close().await,
            Backend::Postgres(l) => l.close().await,
        }
    }

    /// Resolves with the cause once the store is broken (SQLite: the writer failed, or the
    /// file was deleted, replaced or cannot be written). Never on PostgreSQL: a database that
    /// is down is waited out ([`Store::unavailable`]), not a reason to exit.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn failed(&self) -> Arc<str> {
        match &self.backend {
            Backend::Sqlite(s) => s.failed().await,
            Backend::Postgres(_) => std::future::pending().await,
        }
    }

    /// Checks that the SQLite file is still the one opened; `None` on PostgreSQL.
    pub fn check_file(&self) -> Option<Arc<str>> {
        match &self.backend {
            Backend::Sqlite(s) => s.check_file(),
            Backend::Postgres(_) => None,
        }
    }

    /// Checkpoints SQLite's WAL; nothing to do on PostgreSQL (it checkpoints itself).
    ///
    /// # Errors
    /// The database error, already logged.
    pub async fn checkpoint(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.checkpoint().await,
            Backend::Postgres(_) => Ok(()),
        }
    }

    /// SQLite's journal mode and `synchronous` level; on PostgreSQL `("postgres", n)` with
    /// `n` = 2 when `synchronous_commit` is on (or stricter), 1 for `local`, 0 for `off`.
    pub async fn storage_settings(&self) -> Result<(String, i64), StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.storage_settings().await,
            Backend::Postgres(l) => {
                let (level,): (String,) = sqlx::query_as("SHOW synchronous_commit")
                    .fetch_one(l.store()?.pool())
                    .await?;
                let n = match level.as_str() {
                    "off" => 0,
                    "local" => 1,
                    _ => 2,
                };
                Ok(("postgres".into(), n))
            }
        }
    }

    /// Raised on every start and cancel of a message move task (never on PostgreSQL yet).
    pub fn move_signal(&self) -> watch::Receiver<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.move_signal(),
            Backend::Postgres(l) => l.signals().0.subscribe(),
        }
    }

    /// Raised on every change of an asynchronous invocation (never on PostgreSQL yet).
    pub fn event_signal(&self) -> watch::Receiver<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.event_signal(),
            Backend::Postgres(l) => l.signals().1.subscribe(),
        }
    }

    both! {
        /// Creates a queue, or returns the existing one unchanged; the `bool` says whether it
        /// was created.
        fn create_queue(&self, name: &QueueName, settings: &QueueSettings, tags: &BTreeMap<String, String>) -> (QueueInfo, bool),
            |(_, created), o| if *created { o.emit(StoreEvent::QueueCreated { queue: name.as_str() }) };
        /// Creates the queue or overwrites its settings (the configuration file's queues).
        fn ensure_queue(&self, name: &QueueName, settings: &QueueSettings) -> QueueInfo,
            |_, o| o.emit(StoreEvent::QueueCreated { queue: name.as_str() });
        /// Replaces a queue's settings.
        fn set_settings(&self, name: &QueueName, settings: &QueueSettings) -> QueueInfo, |_, _| {};
        /// One queue; `Rejected(QueueDoesNotExist)` for an unknown name.
        fn queue(&self, name: &QueueName) -> QueueInfo, |_, _| {};
        /// Every queue, sorted by region and name.
        fn queues(&self) -> Vec<QueueInfo>, |_, _| {};
        /// Deletes a queue and all its messages.
        fn delete_queue(&self, name: &QueueName) -> (),
            |_, o| o.emit(StoreEvent::QueueDeleted { queue: name.as_str() });
        /// Deletes every message of a queue.
        fn purge(&self, name: &QueueName) -> (), |_, _| {};
        /// Sends messages in one transaction; each entry is validated on its own.
        fn send(&self, queue: &QueueName, batch: Vec<NewMessage>) -> EntryResults<SendReceipt>,
            |r, o| o.emit(StoreEvent::Sent { queue: queue.as_str(), n: ok_count(r) });
        /// Receives up to `max` messages now.
        fn receive(&self, queue: &QueueName, max: u32, visibility: Option<Duration>) -> Vec<Message>,
            |m, o| o.emit(StoreEvent::Received { queue: queue.as_str(), n: m.len() as u64 });
        /// Receives, waiting up to `wait` for a message when none is receivable.
        fn receive_wait(&self, queue: &QueueName, max: u32, visibility: Option<Duration>, wait: Duration) -> Vec<Message>,
            |m, o| o.emit(StoreEvent::Received { queue: queue.as_str(), n: m.len() as u64 });
        /// Deletes messages by receipt handle, with the stale-handle rules.
        fn delete(&self, queue: &QueueName, handles: &[String]) -> EntryResults<()>,
            |r, o| o.emit(StoreEvent::Deleted { queue: queue.as_str(), n: ok_count(r) });
        /// Changes the visibility timeout of received messages.
        fn change_visibility(&self, queue: &QueueName, entries: &[(String, Duration)]) -> EntryResults<()>, |_, _| {};
        /// Message counts by state.
        fn counts(&self, name: &QueueName) -> QueueCounts, |_, _| {};
        /// Deletes what is past retention; returns how many messages expired.
        fn sweep(&self) -> u64, |_, _| {};
    }

    waiting! {
        /// Stores a mapping created through Lambda's API.
        fn create_mapping(&self, uuid: &str, settings: &EsmSettings) -> MappingChange, Err(not_yet("CreateEventSourceMapping"));
        /// Changes a stored mapping.
        fn update_mapping(&self, uuid: &str, version: i64, settings: &EsmSettings, state: EsmState) -> MappingChange,
            Err(not_yet("UpdateEventSourceMapping"));
        /// Settles a mapping's state.
        fn set_mapping_state(&self, uuid: &str, version: i64, from: EsmState, to: EsmState) -> bool, Err(not_yet("event source mappings of the API"));
        /// Removes a stored mapping.
        fn remove_mapping(&self, uuid: &str, version: i64) -> bool, Err(not_yet("DeleteEventSourceMapping"));
        /// One stored mapping (none on PostgreSQL yet).
        fn mapping(&self, uuid: &str) -> Option<StoredEsm>, Ok(None);
        /// Every stored mapping (none on PostgreSQL yet).
        fn mappings(&self) -> Vec<StoredEsm>, Ok(Vec::new());
        /// Stores an asynchronous invocation.
        fn enqueue_event(&self, request_id: &str, function: &str, payload: Vec<u8>, client_context: Option<String>, trace_id: Option<String>) -> AsyncEvent,
            Err(not_yet("asynchronous invocation (InvocationType Event)"));
        /// The stored asynchronous invocations (none on PostgreSQL yet).
        fn pending_events(&self) -> Vec<AsyncEvent>, Ok(Vec::new());
        /// Counts an attempt of an asynchronous invocation.
        fn event_attempt(&self, request_id: &str) -> Option<u32>, Ok(None);
        /// Postpones an asynchronous invocation.
        fn postpone_event(&self, request_id: &str, due_at: Timestamp) -> (), Ok(());
        /// Forgets an asynchronous invocation.
        fn remove_event(&self, request_id: &str) -> (), Ok(());
        /// Starts a message move task.
        fn start_move_task(&self, req: &MoveRequest) -> MoveTask, Err(not_yet("StartMessageMoveTask"));
        /// A source queue's move tasks (none on PostgreSQL yet).
        fn move_tasks(&self, source: &QueueName, limit: u32) -> Vec<MoveTask>, Ok(Vec::new());
        /// The running move tasks (none on PostgreSQL yet).
        fn active_move_tasks(&self) -> Vec<MoveTask>, Ok(Vec::new());
        /// Cancels a move task.
        fn cancel_move_task(&self, source: &QueueName, task_id: &str) -> Option<MoveTask>, Err(not_yet("CancelMessageMoveTask"));
        /// One durable chunk of a move task.
        fn move_step(&self, task_id: &str, max: u32) -> MoveStep, Err(not_yet("message move tasks"));
        /// Adds or changes queue tags.
        fn tag(&self, name: &QueueName, tags: &BTreeMap<String, String>) -> (), Err(not_yet("TagQueue"));
        /// Removes queue tags.
        fn untag(&self, name: &QueueName, keys: &[String]) -> (), Err(not_yet("UntagQueue"));
        /// Reads messages without receiving them.
        fn peek(&self, queue: &QueueName, limit: u32) -> Vec<Peeked>, Err(not_yet("peek"));
        /// Where one message stands, or what became of it.
        fn explain(&self, queue: &QueueName, message_id: &str) -> Explained, Err(not_yet("explain"));
    }

    /// A mapping's long poll (the receiver recorded for peek). Interim on PostgreSQL: a plain
    /// long poll.
    pub async fn receive_wait_for_mapping(
        &self,
        mapping: &str,
        queue: &QueueName,
        max: u32,
        visibility: Option<Duration>,
        wait: Duration,
    ) -> Result<Vec<Message>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => {
                s.receive_wait_for_mapping(mapping, queue, max, visibility, wait)
                    .await
            }
            Backend::Postgres(l) => {
                let r = l.store()?.receive_wait(queue, max, visibility, wait).await;
                l.observed(r, |m, o| {
                    o.emit(StoreEvent::Received {
                        queue: queue.as_str(),
                        n: m.len() as u64,
                    })
                })
            }
        }
    }

    /// Deletes the records a mapping's filters dropped. Interim on PostgreSQL: a plain delete.
    pub async fn delete_filtered(
        &self,
        queue: &QueueName,
        handles: &[String],
    ) -> Result<EntryResults<()>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.delete_filtered(queue, handles).await,
            Backend::Postgres(l) => {
                let r = l.store()?.delete(queue, handles).await;
                l.observed(r, |_, _| {})
            }
        }
    }

    /// Every queue's counts, sorted by name (`/metrics`). Interim on PostgreSQL: one count per
    /// queue.
    pub async fn all_counts(&self) -> Result<Vec<(QueueName, QueueCounts)>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.all_counts().await,
            Backend::Postgres(l) => {
                let pg = l.store()?;
                let mut all = Vec::new();
                for q in l.observed(pg.queues().await, |_, _| {})? {
                    match pg.counts(&q.name).await {
                        Ok(c) => all.push((q.name, c)),
                        Err(StoreError::Rejected(_)) => {} // deleted meanwhile
                        Err(e) => return l.observed(Err(e), |_, _| {}),
                    }
                }
                all.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
                Ok(all)
            }
        }
    }

    /// Counts from a read of every row. Interim on PostgreSQL: [`Store::counts`].
    pub async fn counts_scanned(&self, name: &QueueName) -> Result<QueueCounts, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.counts_scanned(name).await,
            Backend::Postgres(l) => l.observed(l.store()?.counts(name).await, |_, _| {}),
        }
    }

    /// The queues whose redrive policy names `name` as their dead-letter queue. Interim on
    /// PostgreSQL: read from the queue list.
    pub async fn dead_letter_sources(
        &self,
        name: &QueueName,
    ) -> Result<Vec<QueueName>, StoreError> {
        match &self.backend {
            Backend::Sqlite(s) => s.dead_letter_sources(name).await,
            Backend::Postgres(l) => {
                let pg = l.store()?;
                pg.queue(name).await?;
                let queues = l.observed(pg.queues().await, |_, _| {})?;
                let mut sources: Vec<QueueName> = queues
                    .into_iter()
                    .filter(|q| {
                        q.name.region() == name.region()
                            && q.settings
                                .redrive
                                .as_ref()
                                .is_some_and(|r| r.dead_letter_queue.name() == name.name())
                    })
                    .map(|q| q.name)
                    .collect();
                sources.sort_by(|a, b| a.name().cmp(b.name()));
                Ok(sources)
            }
        }
    }
}
