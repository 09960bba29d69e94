//! Reloading the configuration without a restart (SIGHUP): queues are created or updated, and
//! mappings that were added, changed or removed are started, restarted or stopped (through
//! `mappings.rs`, which keeps the API's mappings); what needs a restart is reported.

use super::{systemd, DaemonError, RunningDaemon};
use crate::config::{Config, LoadOptions};
use crate::domain::error::chain;

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
    /// Applies a new configuration without a restart: queues are created or updated, and
    /// mappings that were added, changed or removed are started, restarted or stopped; the
    /// mappings created through Lambda's API stay as they are. A stopped mapping's workers
    /// finish the batch they hold (nothing in flight is dropped). Listener, storage and identity
    /// changes need a restart and are reported; a new PostgreSQL password is applied to new
    /// connections.
    ///
    /// # Errors
    /// [`DaemonError::Queue`] if a queue cannot be created; the running mappings stay as they were.
    pub async fn reload(&mut self, config: Config) -> Result<ReloadReport, DaemonError> {
        super::ensure_queues(&self.store, &config).await?;
        let applied = self.supervisor.apply(Some(config.clone())).await?;
        let mut report = ReloadReport {
            started: applied.started,
            stopped: applied.stopped,
            restarted: applied.restarted,
            needs_restart: Vec::new(),
        };
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
        if old.storage.differs_beyond_password(&new.storage) {
            report.needs_restart.push("storage");
        } else if old.storage.password() != new.storage.password() {
            // A new `storage.password_file` password: new connections log in with it.
            self.store.set_password(new.storage.password());
            tracing::info!("the PostgreSQL password changed: new connections use it");
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
