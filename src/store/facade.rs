//! [`Store`]: the one store handle the api, the pollers and the daemon hold, on either backend
//! (`storage.backend`, docs/postgres.md): the SQLite [`SqliteStore`] or PostgreSQL through a
//! [`PgLink`](link) (a [`PgStore`](super::PgStore) that is connected, watched and reconnected
//! in the background). Every public method dispatches to the backend; the macros below keep
//! that to one line per method.
//!
//! `PgStore` has every method of the SQLite store under the same name and signature (the
//! contract's through [`QueueStore`](super::QueueStore), the rest as its own), so each arm is one
//! line; what is SQLite's alone (the file's health, checkpoints) is answered here.

mod link;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use self::link::PgLink;
use super::{
    AsyncEvent, EntryResults, Explained, MappingChange, MoveRequest, MoveStep, MoveTask, OpenError,
    Peeked, PgSlot, QueueCounts, QueueInfo, QueueStore as _, SqliteStore, StoreError, StoreEvent,
    StoreOptions,
};
use crate::clock::Clock;
use crate::config::{Password, StorageConfig};
use crate::domain::esm::{EsmSettings, EsmState, StoredEsm};
use crate::domain::message::{Message, NewMessage, SendReceipt};
use crate::domain::queue::{QueueName, QueueSettings};
use crate::domain::Timestamp;

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

fn ok_count<T>(r: &EntryResults<T>) -> u64 {
    r.iter().filter(|e| e.is_ok()).count() as u64
}

/// Methods both backends have; `$seen` reports a PostgreSQL success to the observer (the SQLite
/// store reports its own).
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

    /// Sets how many index entries a `/metrics` read counts at most per queue and state
    /// (`hidden.rs`; tests make it small). On PostgreSQL it holds until a reconnect.
    #[doc(hidden)]
    pub fn set_scrape_cap(&self, cap: u64) {
        match &self.backend {
            Backend::Sqlite(s) => s.set_scrape_cap(cap),
            Backend::Postgres(l) => {
                if let Ok(s) = l.store() {
                    s.set_scrape_cap(cap);
                }
            }
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

    /// Raised on every start and cancel of a message move task (on PostgreSQL, any instance's).
    pub fn move_signal(&self) -> watch::Receiver<u64> {
        match &self.backend {
            Backend::Sqlite(s) => s.move_signal(),
            Backend::Postgres(l) => l.signals().0.subscribe(),
        }
    }

    /// Raised on every change of an asynchronous invocation (on PostgreSQL, any instance's).
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

    both! {
        /// Stores a mapping created through Lambda's API.
        fn create_mapping(&self, uuid: &str, settings: &EsmSettings) -> MappingChange, |_, _| {};
        /// Changes a stored mapping.
        fn update_mapping(&self, uuid: &str, version: i64, settings: &EsmSettings, state: EsmState) -> MappingChange, |_, _| {};
        /// Settles a mapping's state.
        fn set_mapping_state(&self, uuid: &str, version: i64, from: EsmState, to: EsmState) -> bool, |_, _| {};
        /// Removes a stored mapping.
        fn remove_mapping(&self, uuid: &str, version: i64) -> bool, |_, _| {};
        /// One stored mapping.
        fn mapping(&self, uuid: &str) -> Option<StoredEsm>, |_, _| {};
        /// Every stored mapping.
        fn mappings(&self) -> Vec<StoredEsm>, |_, _| {};
        /// Stores an asynchronous invocation.
        fn enqueue_event(&self, request_id: &str, function: &str, payload: Vec<u8>, client_context: Option<String>, trace_id: Option<String>) -> AsyncEvent, |_, _| {};
        /// The stored asynchronous invocations.
        fn pending_events(&self) -> Vec<AsyncEvent>, |_, _| {};
        /// Counts an attempt of an asynchronous invocation (`None` on PostgreSQL while another
        /// instance runs it).
        fn event_attempt(&self, request_id: &str) -> Option<u32>, |_, _| {};
        /// Postpones an asynchronous invocation.
        fn postpone_event(&self, request_id: &str, due_at: Timestamp) -> (), |_, _| {};
        /// Forgets an asynchronous invocation.
        fn remove_event(&self, request_id: &str) -> (), |_, _| {};
        /// Starts a message move task.
        fn start_move_task(&self, req: &MoveRequest) -> MoveTask, |_, _| {};
        /// A source queue's move tasks.
        fn move_tasks(&self, source: &QueueName, limit: u32) -> Vec<MoveTask>, |_, _| {};
        /// The running move tasks (on PostgreSQL, those no other instance runs).
        fn active_move_tasks(&self) -> Vec<MoveTask>, |_, _| {};
        /// Cancels a move task.
        fn cancel_move_task(&self, source: &QueueName, task_id: &str) -> Option<MoveTask>, |_, _| {};
        /// One durable chunk of a move task.
        fn move_step(&self, task_id: &str, max: u32) -> MoveStep, |_, _| {};
        /// Adds or changes queue tags.
        fn tag(&self, name: &QueueName, tags: &BTreeMap<String, String>) -> (), |_, _| {};
        /// Removes queue tags.
        fn untag(&self, name: &QueueName, keys: &[String]) -> (), |_, _| {};
        /// Reads messages without receiving them.
        fn peek(&self, queue: &QueueName, limit: u32) -> Vec<Peeked>, |_, _| {};
        /// Where one message stands, or what became of it.
        fn explain(&self, queue: &QueueName, message_id: &str) -> Explained, |_, _| {};
        /// A mapping's long poll (the mapping recorded as the receiver, for peek).
        fn receive_wait_for_mapping(&self, mapping: &str, queue: &QueueName, max: u32, visibility: Option<Duration>, wait: Duration) -> Vec<Message>,
            |m, o| o.emit(StoreEvent::Received { queue: queue.as_str(), n: m.len() as u64 });
        /// Deletes the records a mapping's filters dropped (their tombstones say so).
        fn delete_filtered(&self, queue: &QueueName, handles: &[String]) -> EntryResults<()>,
            |r, o| o.emit(StoreEvent::Deleted { queue: queue.as_str(), n: ok_count(r) });
        /// Every queue's counts, sorted by name (`/metrics`), at the cost of the number of
        /// queues.
        fn all_counts(&self) -> Vec<(QueueName, QueueCounts)>, |_, _| {};
        /// Counts from a read of every row (to check the kept ones).
        fn counts_scanned(&self, name: &QueueName) -> QueueCounts, |_, _| {};
        /// The queues whose redrive policy names `name` as their dead-letter queue.
        fn dead_letter_sources(&self, name: &QueueName) -> Vec<QueueName>, |_, _| {};
    }

    /// One of the `max` invocation slots of a mapping, held until the returned value is
    /// dropped, waiting until one is free; `None` once `cancel` fires. On SQLite the daemon is
    /// the only instance and its own semaphore is the bound, so this answers at once; on
    /// PostgreSQL the slots are shared by every instance (`postgres/slots.rs`), so that
    /// `max_concurrency` bounds the mapping across all of them together. `ttl` must outlive an
    /// invocation: a killed instance's slots come free when it runs out.
    ///
    /// # Errors
    /// The database's error, or `Unavailable`.
    pub async fn mapping_slot(
        &self,
        mapping: &str,
        max: u32,
        ttl: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<MappingSlot>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(MappingSlot { held: None })),
            Backend::Postgres(l) => {
                let r = l.store()?.mapping_slot(mapping, max, ttl, cancel).await;
                Ok(l.observed(r, |_, _| {})?
                    .map(|s| MappingSlot { held: Some(s) }))
            }
        }
    }
}

/// A mapping's invocation slot from [`Store::mapping_slot`], given back when dropped.
#[derive(Debug)]
pub struct MappingSlot {
    /// PostgreSQL's leased slot, given back by its own `Drop`; none on SQLite.
    held: Option<PgSlot>,
}

impl MappingSlot {
    /// Whether the slot is a row shared with other instances (PostgreSQL), whose taking and
    /// giving back cost a transaction each.
    pub fn is_shared(&self) -> bool {
        self.held.is_some()
    }
}
