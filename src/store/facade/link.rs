//! The daemon's link to PostgreSQL (`storage.backend = "postgres"`, docs/postgres.md): what
//! the [`Store`](super::Store) facade adds around a [`PgStore`] so that a database that is
//! down is a fault to wait out, not a reason to exit.
//!
//! - **Connecting.** [`PgLink::open`] returns at once; a task connects (with the migrations
//!   and the LISTEN connection, `PgStore::connect`), retrying with a growing wait up to
//!   [`MAX_RETRY_WAIT`] and logging each failure, until it succeeds or the store is closed.
//!   Until then every operation is refused as [`StoreError::Unavailable`] (503, retriable).
//! - **Watching.** Once connected, the same task asks the database `SELECT 1` every
//!   [`PING_EVERY`]; an operation failing on the connection marks the link down at once. While
//!   down, operations are refused at once (nothing is stored, nothing acknowledged), and
//!   [`PgLink::unavailable`] says why (`/readyz` answers 503 with it). The pool reconnects by
//!   itself (every connection is tested before use), the LISTEN connection too
//!   (`postgres/listen.rs`, which wakes every waiter when it is back), and the next good ping
//!   clears the mark.
//! - **Reporting.** PgStore reports nothing; the link emits the [`StoreEvent`]s its results
//!   show (sent, received, deleted, queues created and deleted, refused), so the metrics hold on
//!   PostgreSQL too, and logs each database fault once.
//! - **The password** can change on a reload (`storage.password_file`): new connections use it.
//!
//! The connect options hold the password: they are never logged or shown by `Debug`; only the
//! URL without its password is.

use std::str::FromStr as _;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use sqlx::postgres::PgConnectOptions;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::super::error::log_fault;
use super::super::{Observer, OpenError, PgOptions, PgStore, StoreError, StoreEvent, StoreOptions};
use crate::clock::Clock;
use crate::config::{Password, PostgresConfig, StorageConfig};
use crate::domain::error::chain;

/// How often a connected link asks the database whether it is there.
pub(super) const PING_EVERY: Duration = Duration::from_secs(1);
/// How long a ping may take before the database counts as unreachable.
const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest wait between two connection attempts at start.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// A cheap, cloneable link to one PostgreSQL database.
#[derive(Clone)]
pub(super) struct PgLink {
    inner: Arc<Inner>,
}

struct Inner {
    /// `storage.url` without its password: what logs and errors name.
    url: String,
    clock: Clock,
    observer: Observer,
    /// Set once connected.
    store: OnceLock<PgStore>,
    /// Raised once connected.
    connected: watch::Sender<bool>,
    /// Why the database cannot be used now; `None` when it can.
    down: RwLock<Option<Arc<str>>>,
    /// The options new connections use (the password changes on a reload).
    connect: Mutex<PgConnectOptions>,
    /// Stops the connecting and watching task.
    stop: CancellationToken,
    /// Raised on move task changes and asynchronous invocations (none on PostgreSQL yet).
    moves: watch::Sender<u64>,
    events: watch::Sender<u64>,
}

impl std::fmt::Debug for PgLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLink")
            .field("url", &self.inner.url)
            .field("down", &self.unavailable())
            .finish_non_exhaustive()
    }
}

/// The connect options of `pg`: its URL, its password, and esmd's application name.
fn connect_options(pg: &PostgresConfig) -> Result<PgConnectOptions, sqlx::Error> {
    let mut options = PgConnectOptions::from_str(&pg.url)?.application_name("esmd");
    if let Some(pw) = &pg.password {
        options = options.password(pw.expose());
    }
    Ok(options)
}

impl PgLink {
    /// Starts connecting to the database `cfg.postgres` names, in the background (see the
    /// module doc); the task runs on `opts.tasks` and stops with `opts.stop` or [`PgLink::close`].
    ///
    /// # Errors
    /// [`OpenError::Postgres`] when the URL cannot be turned into connect options (the
    /// configuration's validation prevents it).
    pub(super) fn open(
        cfg: &StorageConfig,
        pg: &PostgresConfig,
        clock: Clock,
        opts: StoreOptions,
    ) -> Result<PgLink, OpenError> {
        let connect = connect_options(pg).map_err(|source| OpenError::Postgres {
            url: pg.url.clone(),
            source,
        })?;
        let inner = Arc::new(Inner {
            url: pg.url.clone(),
            clock,
            observer: opts.observer,
            store: OnceLock::new(),
            connected: watch::Sender::new(false),
            down: RwLock::new(Some(
                format!("not connected to PostgreSQL at {} yet", pg.url).into(),
            )),
            connect: Mutex::new(connect),
            stop: opts.stop.unwrap_or_default(),
            moves: watch::Sender::new(0),
            events: watch::Sender::new(0),
        });
        let link = PgLink { inner };
        let options = PgOptions {
            max_queues: cfg.max_queues,
            tombstone_retention: cfg.tombstone_retention,
            ..PgOptions::default()
        };
        let task = link.clone();
        opts.tasks
            .unwrap_or_default()
            .spawn(async move { task.run(options).await });
        Ok(link)
    }

    /// The connected store, unless the database is down or not connected yet.
    pub(super) fn store(&self) -> Result<&PgStore, StoreError> {
        if let Some(reason) = self.unavailable() {
            return Err(StoreError::Unavailable { reason });
        }
        self.inner
            .store
            .get()
            .ok_or_else(|| StoreError::Unavailable {
                reason: "not connected to PostgreSQL yet".into(),
            })
    }

    /// Why the database cannot be used now, if it cannot.
    pub(super) fn unavailable(&self) -> Option<Arc<str>> {
        self.inner
            .down
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The move task and asynchronous invocation signals: the connected store's, passed on.
    pub(super) fn signals(&self) -> (&watch::Sender<u64>, &watch::Sender<u64>) {
        (&self.inner.moves, &self.inner.events)
    }

    pub(super) fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Resolves once connected (never, if the store is closed first).
    pub(super) async fn connected(&self) {
        let mut rx = self.inner.connected.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// New connections log in with `password` from now on (a reload read a new one).
    pub(super) fn set_password(&self, password: Option<&Password>) {
        let mut connect = self
            .inner
            .connect
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(pw) = password {
            *connect = connect.clone().password(pw.expose());
        }
        if let Some(store) = self.inner.store.get() {
            store.pool().set_connect_options(connect.clone());
        }
    }

    /// Stops the task and closes the pool.
    pub(super) async fn close(&self) {
        self.inner.stop.cancel();
        if let Some(store) = self.inner.store.get() {
            store.close().await;
        }
    }

    /// Emits what `r` shows (`seen`, on success), or logs and reports its database fault; a
    /// fault of the connection marks the link down until the next good ping.
    pub(super) fn observed<T>(
        &self,
        r: Result<T, StoreError>,
        seen: impl FnOnce(&T, &Observer),
    ) -> Result<T, StoreError> {
        match &r {
            Ok(v) => seen(v, &self.inner.observer),
            Err(StoreError::Database { fault, source }) => {
                log_fault(*fault, source, 1);
                self.inner.observer.emit(StoreEvent::Refused {
                    fault: *fault,
                    operations: 1,
                });
                if is_connection_fault(source) {
                    self.set_down(format!(
                        "PostgreSQL at {} is unreachable: {}",
                        self.inner.url,
                        chain(&**source)
                    ));
                }
            }
            Err(_) => {}
        }
        r
    }

    fn set_down(&self, reason: String) {
        let mut down = self
            .inner
            .down
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if down.is_none() {
            tracing::warn!(%reason, "the database is unavailable: requests are answered 503 and esmd is not ready until it is back");
        }
        *down = Some(reason.into());
    }

    fn set_up(&self) {
        let mut down = self
            .inner
            .down
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if down.take().is_some() {
            tracing::info!(url = %self.inner.url, "PostgreSQL is reachable: esmd serves again");
        }
    }

    /// Connects (retrying), then watches the database until stopped.
    async fn run(self, options: PgOptions) {
        let stop = self.inner.stop.clone();
        let mut wait = Duration::from_millis(250);
        let store = loop {
            let connect = self
                .inner
                .connect
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let attempt = tokio::select! {
                () = stop.cancelled() => return,
                r = PgStore::connect(connect, self.inner.clock.clone(), options.clone()) => r,
            };
            match attempt {
                Ok(store) => break store,
                Err(e) => {
                    let reason = format!(
                        "cannot connect to PostgreSQL at {}: {}",
                        self.inner.url,
                        chain(&e)
                    );
                    tracing::warn!(%reason, retry_in = ?wait, "esmd waits for the database and is not ready meanwhile");
                    *self
                        .inner
                        .down
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = Some(reason.into());
                    tokio::select! {
                        () = stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(MAX_RETRY_WAIT);
                }
            }
        };
        let _ = self.inner.store.set(store.clone());
        tracing::info!(url = %self.inner.url, "connected to PostgreSQL");
        // The runners subscribed to the link's signals before there was a store: pass the
        // store's on (other instances' changes too), and raise both once so that they look.
        for (mut from, to) in [
            (store.move_signal(), self.inner.moves.clone()),
            (store.event_signal(), self.inner.events.clone()),
        ] {
            to.send_modify(|n| *n = n.wrapping_add(1));
            let stop = stop.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        changed = from.changed() => if changed.is_err() { return },
                    }
                    to.send_modify(|n| *n = n.wrapping_add(1));
                }
            });
        }
        self.set_up();
        self.inner.connected.send_replace(true);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(PING_EVERY) => {}
            }
            let ping = sqlx::query("SELECT 1").execute(store.pool());
            match tokio::time::timeout(PING_TIMEOUT, ping).await {
                Ok(Ok(_)) => self.set_up(),
                Ok(Err(e)) => self.set_down(format!(
                    "PostgreSQL at {} is unreachable: {}",
                    self.inner.url,
                    chain(&e)
                )),
                Err(_) => self.set_down(format!(
                    "PostgreSQL at {} did not answer within {PING_TIMEOUT:?}",
                    self.inner.url
                )),
            }
        }
    }
}

/// Whether an error says the connection (not the statement) failed.
fn is_connection_fault(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_) => true,
        // Class 08 (connection exception) and 57P01..57P03 (the server shutting down or
        // starting).
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}
