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

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::api::{self, AppState, Readiness};
use crate::clock::Clock;
use crate::config::{Config, LoadOptions};
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
    /// Parent of every mapping's cancel token.
    pollers_cancel: CancellationToken,
    /// Owns every poller worker, including those of mappings retired by a reload that are still
    /// finishing a batch.
    pollers: TaskTracker,
    /// Fired when the grace period ends: running invocations are dropped.
    abandon: CancellationToken,
    /// The running mappings and their own cancel tokens.
    mappings: BTreeMap<String, (Mapping, CancellationToken)>,
    invoker: Invoker,
    http_cancel: CancellationToken,
    background: TaskTracker,
    /// The configuration in force.
    config: Config,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReloadReport {
    /// Mappings started.
    pub started: Vec<String>,
    /// Mappings stopped (their in-flight batches finish).
    pub stopped: Vec<String>,
    /// Mappings restarted with new settings.
    pub restarted: Vec<String>,
    /// Settings that only take effect after a restart.
    pub needs_restart: Vec<&'static str>,
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
    let store = Store::open(&config.storage, clock)
        .await?
        .with_metrics(metrics.clone());
    for (name, settings) in &config.queues {
        store
            .ensure_queue(name, settings)
            .await
            .map_err(|source| DaemonError::Queue {
                queue: name.to_string(),
                source,
            })?;
    }
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

    let mut daemon = RunningDaemon {
        addr,
        store,
        metrics,
        readiness,
        grace: config.server.shutdown_grace,
        pollers_cancel: CancellationToken::new(),
        abandon: CancellationToken::new(),
        pollers: TaskTracker::new(),
        mappings: BTreeMap::new(),
        invoker: Invoker::new(),
        http_cancel,
        background,
        config: config.clone(),
    };
    daemon.start_mappings(&config).await?;
    daemon.readiness.set_ready();
    systemd::ready();
    tracing::info!(address = %addr, "esmd ready");
    Ok(daemon)
}

impl RunningDaemon {
    /// The mappings `config` asks for, resolved against the store.
    async fn desired(&self, config: &Config) -> Result<BTreeMap<String, Mapping>, DaemonError> {
        let mut out = BTreeMap::new();
        for (name, m) in config.mappings.iter().filter(|(_, m)| m.enabled) {
            let queue = self
                .store
                .queue(&m.queue)
                .await
                .map_err(|source| DaemonError::Queue {
                    queue: m.queue.to_string(),
                    source,
                })?;
            let mapping = Mapping {
                name: name.clone(),
                config: m.clone(),
                function_name: m.function.clone(),
                function: config.functions[&m.function].clone(),
                queue_arn: queue_arn(
                    &config.server.region,
                    &config.server.account_id,
                    m.queue.as_str(),
                ),
                region: config.server.region.clone(),
                queue_visibility_timeout: queue.settings.visibility_timeout,
            };
            out.insert(name.clone(), mapping);
        }
        Ok(out)
    }

    fn spawn_mapping(&mut self, mapping: Mapping) {
        let cancel = self.pollers_cancel.child_token();
        let name = mapping.name.clone();
        tracing::info!(mapping = %name, queue = %mapping.config.queue, function = %mapping.function_name, "mapping polling");
        Poller::new(
            mapping.clone(),
            self.store.clone(),
            self.invoker.clone(),
            self.metrics.clone(),
        )
        .spawn(&self.pollers, &cancel, &self.abandon);
        self.mappings.insert(name, (mapping, cancel));
    }

    async fn start_mappings(&mut self, config: &Config) -> Result<(), DaemonError> {
        for (_, mapping) in self.desired(config).await? {
            self.spawn_mapping(mapping);
        }
        Ok(())
    }

    /// Applies a new configuration without a restart: queues are created or updated, and
    /// mappings that were added, changed or removed are started, restarted or stopped. A stopped
    /// mapping's workers finish the batch they hold (nothing in flight is dropped). Listener,
    /// storage and identity changes need a restart and are reported.
    ///
    /// # Errors
    /// [`DaemonError::Queue`] if a queue cannot be created; the running mappings stay as they were.
    pub async fn reload(&mut self, config: Config) -> Result<ReloadReport, DaemonError> {
        let mut report = ReloadReport::default();
        for (name, settings) in &config.queues {
            self.store
                .ensure_queue(name, settings)
                .await
                .map_err(|source| DaemonError::Queue {
                    queue: name.to_string(),
                    source,
                })?;
        }
        let desired = self.desired(&config).await?;
        let running: Vec<String> = self.mappings.keys().cloned().collect();
        for name in running {
            let changed = match desired.get(&name) {
                None => true,
                Some(m) => self
                    .mappings
                    .get(&name)
                    .is_some_and(|(old, _)| !same_mapping(old, m)),
            };
            if changed {
                if let Some((_, cancel)) = self.mappings.remove(&name) {
                    cancel.cancel();
                }
                if desired.contains_key(&name) {
                    report.restarted.push(name);
                } else {
                    tracing::info!(mapping = %name, "mapping stopped by reload");
                    report.stopped.push(name);
                }
            }
        }
        for (name, mapping) in desired {
            if !self.mappings.contains_key(&name) {
                if !report.restarted.contains(&name) {
                    report.started.push(name.clone());
                }
                self.spawn_mapping(mapping);
            }
        }
        let (old, new) = (&self.config, &config);
        if old.server.listen != new.server.listen {
            report.needs_restart.push("server.listen");
        }
        if old.server.auth_token != new.server.auth_token {
            report.needs_restart.push("server.auth_token");
        }
        if old.server.region != new.server.region || old.server.account_id != new.server.account_id
        {
            report
                .needs_restart
                .push("server.region/server.account_id (queue URLs of the API)");
        }
        if old.storage != new.storage {
            report.needs_restart.push("storage");
        }
        if old.log != new.log {
            report.needs_restart.push("log");
        }
        self.grace = new.server.shutdown_grace;
        self.config = config;
        Ok(report)
    }

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
        self.pollers.close();
        let drained = tokio::time::timeout(self.grace, self.pollers.wait())
            .await
            .is_ok();
        if !drained {
            self.abandon.cancel();
            // Dropping the invocations kills their commands; give that a moment to finish.
            let _ = tokio::time::timeout(Duration::from_secs(2), self.pollers.wait()).await;
        }
        self.http_cancel.cancel();
        self.background.close();
        if tokio::time::timeout(HTTP_DRAIN, self.background.wait())
            .await
            .is_err()
        {
            tracing::warn!("http requests still running at shutdown were dropped");
        }
        self.store.close().await;
        tracing::info!("esmd stopped");
        drained
    }
}

/// Whether two resolved mappings are the same (a changed one is restarted on reload).
fn same_mapping(a: &Mapping, b: &Mapping) -> bool {
    a.config == b.config
        && a.function == b.function
        && a.function_name == b.function_name
        && a.queue_arn == b.queue_arn
        && a.region == b.region
        && a.queue_visibility_timeout == b.queue_visibility_timeout
}

/// Runs the daemon until SIGTERM or SIGINT, then shuts down cleanly. SIGHUP reloads the
/// configuration from the same place (`opts`); an invalid one is refused with a logged error
/// naming each key, and the running configuration stays.
///
/// # Errors
/// [`DaemonError`] if it cannot start.
pub async fn run(config: Config, opts: LoadOptions) -> Result<(), DaemonError> {
    let mut daemon = start(config, StartOptions::default()).await?;
    let watchdog = systemd::spawn_watchdog();
    let mut hup = signal::hangups();
    let sig = loop {
        tokio::select! {
            sig = shutdown_signal() => break sig,
            _ = hup.recv() => {
                systemd::reloading();
                match crate::config::load(&opts) {
                    Err(e) => tracing::error!(error = %e, "configuration reload refused; the running configuration stays"),
                    Ok(loaded) => match daemon.reload(loaded.config).await {
                        Ok(r) => tracing::info!(started = ?r.started, stopped = ?r.stopped, restarted = ?r.restarted, needs_restart = ?r.needs_restart, "configuration reloaded"),
                        Err(e) => tracing::error!(error = %e, "configuration reload failed"),
                    },
                }
                systemd::ready();
            }
        }
    };
    tracing::info!(signal = sig, "received shutdown signal");
    if let Some(w) = watchdog {
        w.abort();
    }
    daemon.shutdown().await;
    Ok(())
}
