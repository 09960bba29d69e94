//! The set of running mappings and the one way it changes ([`Supervisor::apply`]): the
//! configuration file's enabled mappings plus the enabled mappings created through Lambda's API
//! (stored in the database, named by their UUID) are resolved, compared with what runs, and
//! started, restarted or stopped. A reload applies a new configuration this way; a change made
//! through the API raises the catalog's signal, on which a watcher task applies the
//! configuration in force again, so the API's mappings survive reloads and take effect without
//! one. After acting, the supervisor settles each API mapping's state (`Creating` → `Enabled`,
//! `Disabling` → `Disabled`...) and removes the `Deleting` ones.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::DaemonError;
use crate::api::MappingCatalog;
use crate::config::Config;
use crate::domain::error::chain;
use crate::domain::esm::{EsmState, StoredEsm};
use crate::domain::event::arn_of;
use crate::invoke::Invoker;
use crate::metrics::Metrics;
use crate::poller::{Mapping, Poller};
use crate::store::Store;

/// What [`Supervisor::apply`] changed, by mapping name (an API mapping's is its UUID).
#[derive(Debug, Default)]
pub(super) struct Applied {
    pub(super) started: Vec<String>,
    pub(super) stopped: Vec<String>,
    pub(super) restarted: Vec<String>,
}

/// The running mappings and the configuration they were resolved against.
struct Running {
    config: Config,
    mappings: BTreeMap<String, (Mapping, CancellationToken)>,
}

/// Owns the running mappings; cloning shares them.
#[derive(Clone)]
pub(super) struct Supervisor {
    running: Arc<Mutex<Running>>,
    store: Store,
    /// Invokes functions; owns the runtime functions' execution environments.
    pub(super) invoker: Invoker,
    metrics: Arc<Metrics>,
    catalog: MappingCatalog,
    /// Where every poller's workers run.
    pub(super) pollers: TaskTracker,
    /// Parent of every mapping's cancel token.
    pub(super) pollers_cancel: CancellationToken,
    /// Fired when the shutdown grace period ends.
    pub(super) abandon: CancellationToken,
}

impl Supervisor {
    pub(super) fn new(
        config: Config,
        store: Store,
        metrics: Arc<Metrics>,
        catalog: MappingCatalog,
        invoker: Invoker,
        root: &CancellationToken,
    ) -> Self {
        Supervisor {
            running: Arc::new(Mutex::new(Running {
                config,
                mappings: BTreeMap::new(),
            })),
            store,
            invoker,
            metrics,
            catalog,
            pollers: TaskTracker::new(),
            pollers_cancel: root.child_token(),
            abandon: root.child_token(),
        }
    }

    /// Applies `config` (a reload), or the configuration in force again (`None`: an API change),
    /// together with the API's mappings.
    ///
    /// # Errors
    /// [`DaemonError::Queue`] if a file mapping's queue cannot be read; nothing changed then.
    pub(super) async fn apply(&self, config: Option<Config>) -> Result<Applied, DaemonError> {
        let mut running = self.running.lock().await;
        let reloaded = config.is_some();
        let config = config.unwrap_or_else(|| running.config.clone());
        let mut desired = self.file_mappings(&config).await?;
        let stored = match self.store.mappings().await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::error!(error = %chain(&e), "cannot read the API's event source mappings; they keep running as they were");
                running
                    .mappings
                    .iter()
                    .filter(|(name, _)| !config.mappings.contains_key(*name))
                    .for_each(|(name, (m, _))| {
                        desired.insert(name.clone(), m.clone());
                    });
                Vec::new()
            }
        };
        for esm in &stored {
            if esm.state != EsmState::Deleting && esm.settings.enabled {
                if let Some(m) = self.api_mapping(esm, &config).await {
                    desired.insert(esm.uuid.clone(), m);
                }
            }
        }
        let mut applied = Applied::default();
        let names: Vec<String> = running.mappings.keys().cloned().collect();
        for name in names {
            let changed = match desired.get(&name) {
                None => true,
                Some(m) => running
                    .mappings
                    .get(&name)
                    .is_some_and(|(old, _)| !same_mapping(old, m)),
            };
            if changed {
                if let Some((_, cancel)) = running.mappings.remove(&name) {
                    cancel.cancel();
                }
                if desired.contains_key(&name) {
                    applied.restarted.push(name);
                } else {
                    tracing::info!(mapping = %name, "mapping stopped");
                    applied.stopped.push(name);
                }
            }
        }
        for (name, mapping) in desired {
            if let std::collections::btree_map::Entry::Vacant(slot) =
                running.mappings.entry(name.clone())
            {
                if !applied.restarted.contains(&name) {
                    applied.started.push(name);
                }
                let cancel = self.spawn(mapping.clone());
                slot.insert((mapping, cancel));
            }
        }
        if reloaded {
            // The file's mappings show the reload's time as their LastModified.
            self.catalog.set_config(&config, self.store.clock().now());
        }
        // Runtime functions whose configuration changed get new execution environments.
        self.invoker.reconfigure(&config.functions);
        running.config = config;
        drop(running);
        self.settle(&stored).await;
        Ok(applied)
    }

    /// Starts `mapping`'s poller; its own cancel token.
    fn spawn(&self, mapping: Mapping) -> CancellationToken {
        let cancel = self.pollers_cancel.child_token();
        match &mapping.config.remote {
            Some(r) => {
                tracing::info!(mapping = %mapping.name, queue_url = %r.url, endpoint = r.endpoint.as_deref().unwrap_or("(the SDK's)"), region = %r.region, function = %mapping.function_name, "mapping polling a remote queue");
            }
            None => {
                tracing::info!(mapping = %mapping.name, queue = %mapping.config.queue, function = %mapping.function_name, "mapping polling");
            }
        }
        Poller::new(
            mapping,
            self.store.clone(),
            self.invoker.clone(),
            self.metrics.clone(),
        )
        .spawn(&self.pollers, &cancel, &self.abandon);
        cancel
    }

    /// The enabled mappings of the file, resolved against the store.
    async fn file_mappings(
        &self,
        config: &Config,
    ) -> Result<BTreeMap<String, Mapping>, DaemonError> {
        let mut out = BTreeMap::new();
        for (name, m) in config.mappings.iter().filter(|(_, m)| m.enabled) {
            if m.remote.is_some() {
                // A remote queue's visibility timeout is asked of it by its poller.
                if let Some(mapping) = Mapping::from_config(name, config, Duration::ZERO) {
                    out.insert(name.clone(), mapping);
                }
                continue;
            }
            let queue = self
                .store
                .queue(&m.queue)
                .await
                .map_err(|source| DaemonError::Queue {
                    queue: m.queue.to_string(),
                    source,
                })?;
            let mapping = Mapping::from_config(name, config, queue.settings.visibility_timeout);
            if let Some(mapping) = mapping {
                out.insert(name.clone(), mapping);
            }
        }
        Ok(out)
    }

    /// An API mapping resolved against `config` and the store; `None` (logged) when its function
    /// is no longer configured or its queue was deleted: it does not run until they are back.
    async fn api_mapping(&self, esm: &StoredEsm, config: &Config) -> Option<Mapping> {
        let s = &esm.settings;
        let Some(function) = config.functions.get(&s.function) else {
            tracing::warn!(uuid = %esm.uuid, function = %s.function, "event source mapping not started: its function is not in the configuration");
            return None;
        };
        let queue = match self.store.queue(&s.queue).await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(uuid = %esm.uuid, queue = %s.queue, error = %chain(&e), "event source mapping not started: its queue cannot be read");
                return None;
            }
        };
        let mapping_config = match crate::config::mapping_from_api(s) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(uuid = %esm.uuid, error = %e, "event source mapping not started: a stored filter does not compile");
                return None;
            }
        };
        Some(Mapping {
            name: esm.uuid.clone(),
            config: mapping_config,
            function_name: s.function.clone(),
            function: function.clone(),
            queue_arn: arn_of(&s.queue, &config.server.region, &config.server.account_id),
            region: s.queue.region_or(&config.server.region).to_owned(),
            queue_visibility_timeout: queue.settings.visibility_timeout,
        })
    }

    /// Settles the state of each API mapping the last apply acted on; removes deleted ones.
    async fn settle(&self, stored: &[StoredEsm]) {
        for esm in stored.iter().filter(|e| e.state.is_transitional()) {
            let done = if esm.state == EsmState::Deleting {
                self.store.remove_mapping(&esm.uuid, esm.version).await
            } else {
                let to = EsmState::settled(esm.settings.enabled);
                self.store
                    .set_mapping_state(&esm.uuid, esm.version, esm.state, to)
                    .await
            };
            // A row changed meanwhile is the next apply's: the API raised the signal again.
            if let Err(e) = done {
                tracing::warn!(uuid = %esm.uuid, error = %chain(&e), "cannot settle the event source mapping's state");
            }
        }
    }

    /// Applies the configuration in force again each time the API changes a mapping, until
    /// `cancel` fires.
    pub(super) fn watch(&self, tasks: &TaskTracker, cancel: CancellationToken) {
        let me = self.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = me.catalog.changed() => {}
                }
                if let Err(e) = me.apply(None).await {
                    tracing::error!(error = %chain(&e), "event source mappings not applied");
                }
            }
        });
    }
}

/// Whether two resolved mappings are the same (a changed one is restarted).
fn same_mapping(a: &Mapping, b: &Mapping) -> bool {
    a.config == b.config
        && a.function == b.function
        && a.function_name == b.function_name
        && a.queue_arn == b.queue_arn
        && a.region == b.region
        && a.queue_visibility_timeout == b.queue_visibility_timeout
}
