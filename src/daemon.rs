//! The composition root: opens the store, creates the configured queues, binds the listener,
//! starts the API, the sweeper and one poller per enabled mapping under one cancellation tree,
//! and tears them down in a written order (interface.md §1, issue 4 point 7):
//!
//! 1. not ready (`/readyz` answers 503) and systemd is told STOPPING;
//! 2. the pollers stop claiming; in-flight invocations get `server.shutdown_grace` to finish and
//!    be settled; one still running at the deadline is abandoned (a command is killed with its
//!    children) and its messages come back after their visibility timeout;
//! 3. the HTTP server stops (long polls return empty at once);
//! 4. the database is closed.

mod signal;
mod systemd;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState, Readiness};
use crate::clock::Clock;
use crate::config::Config;
use crate::domain::event::queue_arn;
use crate::invoke::Invoker;
use crate::metrics::Metrics;
use crate::poller::{Mapping, Poller};
use crate::store::{OpenError, Store, StoreError};

pub use signal::shutdown_signal;

/// How often expired messages and deduplication entries are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);
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
}

/// A started daemon.
pub struct RunningDaemon {
    addr: SocketAddr,
    store: Store,
    metrics: Arc<Metrics>,
    readiness: Readiness,
    grace: Duration,
    pollers_cancel: CancellationToken,
    pollers: TaskTracker,
    http_cancel: CancellationToken,
    background: TaskTracker,
}

/// Options for [`start`] that tests change.
#[derive(Debug, Default)]
pub struct StartOptions {
    /// A listener to serve on instead of binding `server.listen` (tests pass port 0).
    pub listener: Option<TcpListener>,
    /// The clock (system clock when `None`).
    pub clock: Option<Clock>,
}

/// Starts everything and returns once every enabled mapping is polling.
///
/// # Errors
/// [`DaemonError`] if the database cannot be opened, a queue cannot be created, or the address
/// cannot be bound.
pub async fn start(config: Config, opts: StartOptions) -> Result<RunningDaemon, DaemonError> {
    let clock = opts.clock.unwrap_or(Clock::System);
    let metrics = Arc::new(Metrics::new());
    let store = Store::open(&config.storage, clock).await?.with_metrics(metrics.clone());
    for (name, settings) in &config.queues {
        store
            .ensure_queue(name, settings)
            .await
            .map_err(|source| DaemonError::Queue { queue: name.to_string(), source })?;
    }
    let listener = match opts.listener {
        Some(l) => l,
        None => TcpListener::bind(&config.server.listen)
            .await
            .map_err(|source| DaemonError::Bind { address: config.server.listen.clone(), source })?,
    };
    let addr = listener.local_addr().map_err(|source| DaemonError::Bind { address: config.server.listen.clone(), source })?;
    let readiness = Readiness::new();
    let background = TaskTracker::new();
    let http_cancel = CancellationToken::new();
    let state = AppState {
        store: store.clone(),
        server: Arc::new(config.server.clone()),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
    };
    let router = api::router(state);
    let cancel = http_cancel.clone();
    background.spawn(async move {
        if let Err(e) = api::serve(listener, router, cancel).await {
            tracing::error!(error = %e, "http server failed");
        }
    });
    let sweeper = store.clone();
    let cancel = http_cancel.clone();
    background.spawn(async move {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            }
            if let Err(e) = sweeper.sweep().await {
                tracing::warn!(error = %e, "retention sweep failed");
            }
        }
    });

    let pollers = TaskTracker::new();
    let pollers_cancel = CancellationToken::new();
    let invoker = Invoker::new();
    for (name, m) in config.mappings.iter().filter(|(_, m)| m.enabled) {
        let function = config.functions[&m.function].clone();
        let queue = store
            .queue(&m.queue)
            .await
            .map_err(|source| DaemonError::Queue { queue: m.queue.to_string(), source })?;
        let mapping = Mapping {
            name: name.clone(),
            config: m.clone(),
            function_name: m.function.clone(),
            function,
            queue_arn: queue_arn(&config.server.region, &config.server.account_id, m.queue.as_str()),
            region: config.server.region.clone(),
            queue_visibility_timeout: queue.settings.visibility_timeout,
        };
        Poller::new(mapping, store.clone(), invoker.clone(), metrics.clone()).spawn(&pollers, &pollers_cancel);
        tracing::info!(mapping = %name, queue = %m.queue, function = %m.function, "mapping polling");
    }
    pollers.close();
    readiness.set_ready();
    systemd::ready();
    tracing::info!(address = %addr, "esmd ready");
    Ok(RunningDaemon {
        addr,
        store,
        metrics,
        readiness,
        grace: config.server.shutdown_grace,
        pollers_cancel,
        pollers,
        http_cancel,
        background,
    })
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

    /// Shuts down in the order of this module's docs. Returns whether every in-flight
    /// invocation finished within the grace period.
    pub async fn shutdown(self) -> bool {
        self.readiness.set_not_ready("shutting down");
        systemd::stopping();
        tracing::info!(grace = ?self.grace, "shutting down: mappings stop claiming");
        self.pollers_cancel.cancel();
        let drained = tokio::time::timeout(self.grace, self.pollers.wait()).await.is_ok();
        if !drained {
            tracing::warn!(
                "invocations still running after the shutdown grace period were abandoned; their messages return after their visibility timeout"
            );
        }
        self.http_cancel.cancel();
        self.background.close();
        if tokio::time::timeout(HTTP_DRAIN, self.background.wait()).await.is_err() {
            tracing::warn!("http requests still running at shutdown were dropped");
        }
        self.store.close().await;
        tracing::info!("esmd stopped");
        drained
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then shuts down cleanly.
///
/// # Errors
/// [`DaemonError`] if it cannot start.
pub async fn run(config: Config) -> Result<(), DaemonError> {
    let daemon = start(config, StartOptions::default()).await?;
    let watchdog = systemd::spawn_watchdog();
    let sig = shutdown_signal().await;
    tracing::info!(signal = sig, "received shutdown signal");
    if let Some(w) = watchdog {
        w.abort();
    }
    daemon.shutdown().await;
    Ok(())
}
