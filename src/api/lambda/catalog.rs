//! What the mapping API and the Invoke API know beyond the database, shared with the daemon: the
//! configured functions and the configuration file's mappings, replaced on start and on
//! every reload; and the signal the API raises after each change of an API mapping, on which
//! the daemon starts, restarts or stops pollers. The API never reaches the pollers itself.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;

use crate::config::{Config, FunctionConfig, MappingConfig};
use crate::domain::Timestamp;

/// The configuration's part of the mapping API, as of the last start or reload.
#[derive(Debug, Default)]
pub(crate) struct Known {
    /// `[functions.NAME]`: each function's configuration (its timeout for the mapping API; all
    /// of it for the Invoke API and the asynchronous runner).
    pub(crate) functions: BTreeMap<String, FunctionConfig>,
    /// `[mappings.NAME]` on a queue of this esmd (not those with `queue_url`), by the UUID the
    /// API shows for each ([`file_uuid`]).
    pub(crate) file: BTreeMap<String, (String, MappingConfig)>,
    /// When the configuration was applied (the file mappings' `LastModified`).
    pub(crate) loaded_at: Timestamp,
}

/// The shared catalog. Cloning shares it.
#[derive(Clone, Debug, Default)]
pub struct MappingCatalog {
    known: Arc<RwLock<Arc<Known>>>,
    changed: Arc<Notify>,
}

impl MappingCatalog {
    /// An empty catalog (no function, no file mapping).
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the functions and mappings of `config`, applied at `now` (start and reload).
    pub fn set_config(&self, config: &Config, now: Timestamp) {
        let known = Known {
            functions: config
                .functions
                .iter()
                .map(|(name, f)| (name.clone(), f.clone()))
                .collect(),
            // A mapping on a remote queue is not shown: the API speaks of this esmd's queues.
            file: config
                .mappings
                .iter()
                .filter(|(_, m)| m.remote.is_none())
                .map(|(name, m)| (file_uuid(name), (name.clone(), m.clone())))
                .collect(),
            loaded_at: now,
        };
        *self.known.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(known);
    }

    /// The catalog as it is now.
    pub(crate) fn known(&self) -> Arc<Known> {
        self.known.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The configured function `name`, as of the last start or reload.
    pub fn function(&self, name: &str) -> Option<FunctionConfig> {
        self.known().functions.get(name).cloned()
    }

    /// Tells the daemon that API mappings changed.
    pub(crate) fn notify(&self) {
        self.changed.notify_one();
    }

    /// Resolves after the API changed a mapping since the last call (a change made while nobody
    /// waited is kept until the next call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }
}

/// The UUID the API shows for the file's mapping `name`: the same on every run (a version 8
/// UUID from the SHA-256 of the name), so scripts can address it.
pub fn file_uuid(name: &str) -> String {
    let digest = Sha256::digest(format!("esmd mappings.{name}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_mapping_has_the_same_uuid_every_time_and_its_own() {
        let a = file_uuid("orders-to-log");
        assert_eq!(a, file_uuid("orders-to-log"));
        assert_ne!(a, file_uuid("orders-to-log2"));
        let parsed = uuid::Uuid::parse_str(&a).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 8);
    }
}
