//! The handlers' shared state: a bundle of cheap, cloneable handles (the store, the server
//! settings, the metrics registry, the readiness flag, the Lambda APIs' catalog of
//! functions and mappings, the invoker). No lock wraps
//! it; the database is the shared truth.

use std::sync::{Arc, RwLock};

use super::attempts::ReceiveAttempts;
use super::lambda::MappingCatalog;
use crate::config::ServerConfig;
use crate::invoke::Invoker;
use crate::metrics::Metrics;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// The queue engine.
    pub store: Store,
    /// `[server]`: account id and region for URLs and ARNs, the listen address, the auth token.
    pub server: Arc<ServerConfig>,
    /// Where `/metrics` renders from.
    pub metrics: Arc<Metrics>,
    /// What `/readyz` reports.
    pub readiness: Readiness,
    /// The functions and file mappings the mapping API knows, and its signal to the daemon.
    pub mappings: MappingCatalog,
    /// FIFO receives by `ReceiveRequestAttemptId`, for retries.
    pub receive_attempts: ReceiveAttempts,
    /// Runs the Invoke API's synchronous invocations (the same invoker, and so the same
    /// environments, as the mappings and the asynchronous runner).
    pub invoker: Invoker,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("store", &self.store)
            .field("server", &self.server.listen)
            .field("readiness", &self.readiness)
            .finish_non_exhaustive()
    }
}

/// Whether the daemon is ready to serve (`/readyz`), and if not, why. Starts not ready with the
/// reason "starting". Cloning shares the flag.
#[derive(Clone, Debug)]
pub struct Readiness {
    /// `None` when ready, else the reason it is not.
    not_ready: Arc<RwLock<Option<String>>>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            not_ready: Arc::new(RwLock::new(Some("starting".to_owned()))),
        }
    }
}

impl Readiness {
    /// A flag that is not ready, with the reason "starting".
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the daemon ready.
    pub fn set_ready(&self) {
        *self.not_ready.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Marks the daemon not ready, saying why (e.g. "shutting down").
    pub fn set_not_ready(&self, reason: &str) {
        *self.not_ready.write().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
    }

    /// `None` when ready, else why not.
    pub fn not_ready_reason(&self) -> Option<String> {
        self.not_ready
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the daemon is ready.
    pub fn is_ready(&self) -> bool {
        self.not_ready_reason().is_none()
    }
}
