//! Reloading the configuration without a restart (SIGHUP): queues are created or updated, and
//! mappings that were added, changed or removed are started, restarted or stopped; what needs a
//! restart is reported.

use std::collections::BTreeMap;

use super::{systemd, DaemonError, RunningDaemon};
use crate::config::{Config, LoadOptions};
use crate::domain::error::chain;
use crate::domain::event::queue_arn;
use crate::poller::Mapping;

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

impl RunningDaemon {
    /// The mappings `config` asks for, resolved against the store.
    pub(super) async fn desired(
        &self,
        config: &Config,
    ) -> Result<BTreeMap<String, Mapping>, DaemonError> {
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

    /// Applies a new configuration without a restart: queues are created or updated, and
    /// mappings that were added, changed or removed are started, restarted or stopped. A stopped
    /// mapping's workers finish the batch they hold (nothing in flight is dropped). Listener,
    /// storage and identity changes need a restart and are reported.
    ///
    /// # Errors
    /// [`DaemonError::Queue`] if a queue cannot be created; the running mappings stay as they were.
    pub async fn reload(&mut self, config: Config) -> Result<ReloadReport, DaemonError> {
        let mut report = ReloadReport::default();
        super::ensure_queues(&self.store, &config).await?;
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

    /// Reloads the configuration from where it was loaded (SIGHUP), logging the outcome.
    pub(super) async fn reload_from(&mut self, opts: &LoadOptions) {
        systemd::reloading();
        match crate::config::load(opts) {
            Err(e) => {
                tracing::error!(error = %chain(&e), "configuration reload refused; the running configuration stays")
            }
            Ok(loaded) => match self.reload(loaded.config).await {
                Ok(r) => {
                    tracing::info!(started = ?r.started, stopped = ?r.stopped, restarted = ?r.restarted, needs_restart = ?r.needs_restart, "configuration reloaded")
                }
                Err(e) => tracing::error!(error = %chain(&e), "configuration reload failed"),
            },
        }
        systemd::ready();
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
