//! The composition root: opens the store, creates the configured queues, binds the listener,
//! starts the API, the sweeper and one poller per enabled mapping, and tears them down in a
//! written order (docs/interface.md §1).
//!
//! # One supervision tree
//!
//! ```text
//! root token (RunningDaemon::root)
//! ├── pollers   child token; every mapping a child of it; workers on the `pollers` tracker
//! ├── abandon   child token; fired when the shutdown grace period ends
//! ├── serving   child token; the HTTP server, the sweeper, the message move tasks
//! │             (`moves.rs`) and the asynchronous invocations (`events.rs`), on the
//! │             `services` tracker
//! └── core      child token; the store's writer and the systemd watchdog, on the `core` tracker
//! ```
//!
//! Every task esmd starts is on one of the three trackers, and [`RunningDaemon::shutdown`]
//! awaits all three. The order:
//!
//! 1. not ready (`/readyz` answers 503) and systemd is told STOPPING;
//! 2. the pollers stop claiming; in-flight invocations get `server.shutdown_grace` to finish and
//!    be settled; one still running at the deadline is abandoned (a command is killed with its
//!    children) and its messages come back after their visibility timeout;
//! 3. the HTTP server, the sweeper and the message move tasks stop (long polls return empty at
//!    once; a move task stops between two commits and resumes at the next start);
//!    Then every runtime function's execution environment is killed with its process group;
//! 4. the store's writer answers what is queued and stops, and the database is closed;
//!
//! On PostgreSQL (`storage.backend = "postgres"`) the HTTP API answers before the database is
//! connected: `/readyz` and every request answer 503 until it is (the store retries, logging),
//! and again whenever it goes away while running; the configured queues and mappings are set up
//! once it is there. A database that is down never stops the daemon.
//! 5. the watchdog stops (it is fed until the very end, so a long drain is not killed).
//!
//! If the store breaks (its writer failed, a bug: it panicked; or the database file was deleted
//! or replaced from under the daemon, or cannot be written: see [`Store::failed`]), the daemon is
//! not healthy whatever else runs: the store refuses every write, `/readyz` turns 503 with the
//! cause, an ERROR line says it, and [`run`] shuts down and returns
//! [`DaemonError::StoreFailed`] so that the process exits non-zero and systemd restarts it.

mod events;
mod mappings;
mod moves;
mod reload;
mod signal;
mod systemd;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState, MappingCatalog, Readiness};
use crate::clock::Clock;
use crate::config::{Config, LoadOptions};
use crate::domain::error::chain;
use crate::invoke::Invoker;
use crate::metrics::Metrics;
use crate::store::{Observer, OpenError, Store, StoreError, StoreEvent, StoreOptions};

/// `esmd copy-storage`: an SQLite file into an empty PostgreSQL database.
pub use crate::store::transfer::{copy_to_postgres as copy_storage, CopyReport, TransferError};
pub use crate::store::WriterFault;
pub use reload::ReloadReport;
pub use signal::{Received, Signals};

/// How often the database file's identity is checked when no write does it (the writer checks
/// before every commit).
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Every how many checks expired messages and deduplication entries are swept and the WAL is
/// checkpointed (every 5 s).
const SWEEP_EVERY: u32 = 5;
/// How long the HTTP server may take to finish its requests after the pollers are done.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// A configured queue could not be created.
    #[error("cannot create queue {queue}")]
    Queue {
        /// The queue.
        queue: String,
        /// The cause.
        #[source]
        source: StoreError,
    },
    /// The listen address could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// `server.listen`.
        address: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The signal handlers could not be installed.
    #[error("cannot install the signal handlers")]
    Signals(#[source] std::io::Error),
    /// The store broke while running (its writer failed, or the database file was deleted,
    /// replaced or cannot be written); the daemon stopped so that it can be restarted.
    #[error("the store is broken ({cause}); esmd stopped so that it can be restarted")]
    StoreFailed {
        /// What the store reported.
        cause: String,
    },
}

/// A started daemon.
pub struct RunningDaemon {
    addr: SocketAddr,
    store: Store,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    grace: Duration,
    /// The root of the cancellation tree (see the module docs).
    root: CancellationToken,
    /// The running mappings (the file's and the API's), their trackers and tokens.
    supervisor: mappings::Supervisor,
    /// Stops the HTTP server and the sweeper.
    serving: CancellationToken,
    /// Owns the HTTP server and the sweeper.
    services: TaskTracker,
    /// Stops the watchdog (the writer stops through [`Store::close`]).
    core_cancel: CancellationToken,
    /// Owns the store's writer and the watchdog.
    core: TaskTracker,
    /// The configuration in force.
    config: Config,
}

/// Options for [`start`] that tests change.
#[derive(Debug, Default)]
pub struct StartOptions {
    /// A listener to serve on instead of binding `server.listen` (tests pass port 0).
    pub listener: Option<TcpListener>,
    /// The clock (system clock when `None`).
    pub clock: Option<Clock>,
    /// A writer failure to inject (tests of the supervision only).
    #[doc(hidden)]
    pub writer_fault: Option<WriterFault>,
}

/// The store's events, recorded as metrics (the daemon's observer; tests that serve the API
/// without a daemon use it too).
pub fn metrics_observer(metrics: &Arc<Metrics>) -> Observer {
    let m = metrics.clone();
    Observer::new(move |event| match event {
        StoreEvent::Sent { queue, n } => m.messages_sent(queue, n),
        StoreEvent::Received { queue, n } => m.messages_received(queue, n),
        StoreEvent::Deleted { queue, n } => m.messages_deleted(queue, n),
        StoreEvent::DeadLettered { queue, n } => m.messages_dead_lettered(queue, n),
        StoreEvent::QueueCreated { queue } => m.register_queue(queue),
        StoreEvent::QueueDeleted { queue } => m.remove_queue(queue),
        StoreEvent::Refused { fault, .. } => m.store_error(fault.label()),
        StoreEvent::Committed { operations } => m.store_committed(operations),
        StoreEvent::Tombstones {
            written,
            skipped,
            swept,
        } => m.tombstones(written, skipped, swept),
    })
}

/// Creates the configured queues, or sets their settings from the file (at start and on reload).
async fn ensure_queues(store: &Store, config: &Config) -> Result<(), DaemonError> {
    for (name, settings) in &config.queues {
        store
            .ensure_queue(name, settings)
            .await
            .map_err(|source| DaemonError::Queue {
                queue: name.to_string(),
                source,
            })?;
    }
    Ok(())
}

/// Starts everything and returns once every enabled mapping is polling.
///
/// # Errors
/// [`DaemonError`] if the database cannot be opened, a queue cannot be created, or the address
/// cannot be bound.
pub async fn start(config: Config, opts: StartOptions) -> Result<RunningDaemon, DaemonError> {
    let clock = opts.clock.unwrap_or(Clock::System);
    let metrics = Arc::new(Metrics::new());
    let root = CancellationToken::new();
    let core = TaskTracker::new();
    let core_cancel = root.child_token();
    let store_opts = StoreOptions {
        observer: metrics_observer(&metrics),
        tasks: Some(core.clone()),
        stop: Some(root.child_token()),
        writer_fault: opts.writer_fault,
        default_region: Some(config.server.region.clone()),
    };
    let store = Store::open_with(&config.storage, clock, store_opts).await?;
    systemd::spawn_watchdog(&core, core_cancel.clone());
    let listener = match opts.listener {
        Some(l) => l,
        None => TcpListener::bind(&config.server.listen)
            .await
            .map_err(|source| DaemonError::Bind {
                address: config.server.listen.clone(),
                source,
            })?,
    };
    let addr = listener.local_addr().map_err(|source| DaemonError::Bind {
        address: config.server.listen.clone(),
        source,
    })?;
    let readiness = Readiness::new();
    let services = TaskTracker::new();
    let serving = root.child_token();
    let catalog = MappingCatalog::new();
    let invoker = Invoker::with_runtimes(metrics.runtime(), root.child_token());
    catalog.set_config(&config, store.clock().now());
    let state = AppState {
        store: store.clone(),
        server: Arc::new(config.server.clone()),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        mappings: catalog.clone(),
        receive_attempts: api::ReceiveAttempts::default(),
        invoker: invoker.clone(),
    };
    let router = api::router(state);
    let cancel = serving.clone();
    let server = config.server.clone();
    services.spawn(async move {
        if let Err(e) = api::serve(listener, router, &server, cancel).await {
            tracing::error!(error = %chain(&e), "http server failed");
        }
    });
    // The API answers from here on: `/readyz` 503 and every request 503 while PostgreSQL is
    // not connected yet (`Store::unavailable`); SQLite is ready at once.
    if store.unavailable().is_some() {
        tracing::info!(address = %addr, "listening; waiting for the database before creating the configured queues");
    }
    store.connected().await;
    loop {
        match ensure_queues(&store, &config).await {
            Ok(()) => break,
            // PostgreSQL went away again before the queues were set up: wait it out too.
            Err(DaemonError::Queue { source, .. })
                if store.is_postgres() && !matches!(source, StoreError::Rejected(_)) =>
            {
                tracing::warn!(error = %chain(&source), "cannot create the configured queues yet; retrying");
                tokio::time::sleep(CHECK_INTERVAL).await;
            }
            Err(e) => {
                root.cancel();
                return Err(e);
            }
        }
    }
    // Queues created at run time by an earlier run: their series appear from the start too.
    if let Ok(queues) = store.queues().await {
        queues
            .iter()
            .for_each(|q| metrics.register_queue(q.name.as_str()));
    }
    let sweeper = store.clone();
    let cancel = serving.clone();
    services.spawn(async move {
        for tick in 1u32.. {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(CHECK_INTERVAL) => {}
            }
            // A broken store is acted on by `run_with`'s supervision; nothing more to do here.
            // A database that is down is waited out (`Store::unavailable`).
            if sweeper.check_file().is_some()
                || sweeper.unavailable().is_some()
                || tick % SWEEP_EVERY != 0
            {
                continue;
            }
            if let Err(e) = sweeper.sweep().await {
                tracing::warn!(error = %chain(&e), "retention sweep failed");
            }
            // A failure is logged by the store (and breaks it if the file cannot be written).
            let _ = sweeper.checkpoint().await;
        }
    });

    moves::spawn(store.clone(), &services, serving.child_token());
    events::spawn(
        events::Runner {
            store: store.clone(),
            invoker: invoker.clone(),
            catalog: catalog.clone(),
            metrics: metrics.clone(),
            server: Arc::new(config.server.clone()),
        },
        &services,
        serving.child_token(),
    );

    let supervisor = mappings::Supervisor::new(
        config.clone(),
        store.clone(),
        metrics.clone(),
        catalog,
        invoker,
        &root,
    );
    if let Err(e) = supervisor.apply(None).await {
        root.cancel();
        return Err(e);
    }
    supervisor.watch(&services, supervisor.pollers_cancel.clone());
    let daemon = RunningDaemon {
        addr,
        store,
        metrics,
        readiness,
        grace: config.server.shutdown_grace,
        root,
        supervisor,
        serving,
        services,
        core_cancel,
        core,
        config: config.clone(),
    };
    daemon.readiness.set_ready();
    systemd::ready();
    tracing::info!(address = %addr, "esmd ready");
    Ok(daemon)
}

impl RunningDaemon {
    /// The address the HTTP API is listening on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store (for tests and embedding).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Marks the daemon not ready with `reason` (`/readyz` answers 503 with it).
    pub fn set_not_ready(&self, reason: &str) {
        self.readiness.set_not_ready(reason);
    }

    /// Shuts down in the order of this module's docs. Returns whether every in-flight
    /// invocation finished within the grace period.
    pub async fn shutdown(self) -> bool {
        if self.readiness.is_ready() {
            self.readiness.set_not_ready("shutting down");
        }
        systemd::stopping();
        tracing::info!(grace = ?self.grace, "shutting down: mappings stop claiming");
        let pollers = &self.supervisor.pollers;
        self.supervisor.pollers_cancel.cancel();
        pollers.close();
        let drained = tokio::time::timeout(self.grace, pollers.wait())
            .await
            .is_ok();
        if !drained {
            self.supervisor.abandon.cancel();
            // Dropping the invocations kills their commands; give that a moment to finish.
            let _ = tokio::time::timeout(Duration::from_secs(2), pollers.wait()).await;
        }
        self.serving.cancel();
        self.services.close();
        if tokio::time::timeout(HTTP_DRAIN, self.services.wait())
            .await
            .is_err()
        {
            tracing::warn!("http requests still running at shutdown were dropped");
        }
        // Every runtime function's execution environment, with its whole process group.
        self.supervisor.invoker.shutdown();
        self.store.close().await;
        self.core_cancel.cancel();
        self.core.close();
        self.core.wait().await;
        self.root.cancel();
        tracing::info!("esmd stopped");
        drained
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then shuts down cleanly. SIGHUP reloads the
/// configuration from the same place (`opts`); an invalid one is refused with a logged error
/// naming each key, and the running configuration stays. A signal that arrives during a reload
/// is acted on once the reload is done: the handlers are installed once, before the loop, so
/// none is lost between turns.
///
/// # Errors
/// [`DaemonError`] if it cannot start, or [`DaemonError::StoreFailed`] after a clean shutdown
/// forced by the store breaking.
pub async fn run(config: Config, opts: LoadOptions) -> Result<(), DaemonError> {
    run_with(config, opts, StartOptions::default()).await
}

/// [`run`] with [`StartOptions`] (tests inject a writer failure through them).
///
/// # Errors
/// As [`run`].
pub async fn run_with(
    config: Config,
    opts: LoadOptions,
    start_opts: StartOptions,
) -> Result<(), DaemonError> {
    let mut signals = Signals::install().map_err(DaemonError::Signals)?;
    // A start may wait for PostgreSQL for as long as it is down: a shutdown signal meanwhile
    // ends it (nothing was acknowledged before the daemon was ready, so nothing is lost).
    let starting = start(config, start_opts);
    tokio::pin!(starting);
    let mut daemon = loop {
        tokio::select! {
            started = &mut starting => break started?,
            received = signals.next() => match received {
                signal::Received::Shutdown(sig) => {
                    tracing::info!(signal = sig, "received shutdown signal before esmd was ready; stopping");
                    return Ok(());
                }
                signal::Received::Reload => {
                    tracing::info!("a reload before esmd was ready is ignored: the configuration is being applied");
                }
            },
        }
    };
    let store = daemon.store.clone();
    let store_failed = store.failed();
    tokio::pin!(store_failed);
    let failure = loop {
        tokio::select! {
            received = signals.next() => match received {
                signal::Received::Shutdown(sig) => {
                    tracing::info!(signal = sig, "received shutdown signal");
                    break None;
                }
                signal::Received::Reload => daemon.reload_from(&opts).await,
            },
            cause = &mut store_failed => {
                tracing::error!(
                    cause = %cause,
                    "the store is broken: esmd is not ready and stops; systemd restarts it"
                );
                daemon.set_not_ready(&format!("the store is broken: {cause}"));
                break Some(cause.to_string());
            }
        }
    };
    daemon.shutdown().await;
    match failure {
        None => Ok(()),
        Some(cause) => Err(DaemonError::StoreFailed { cause }),
    }
}
