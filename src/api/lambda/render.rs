//! `EventSourceMappingConfiguration` as Lambda answers it for an SQS mapping: `UUID`,
//! `BatchSize`, `MaximumBatchingWindowInSeconds`, `EventSourceArn`, `FunctionArn`,
//! `LastModified` (epoch seconds, a number), `State`, `StateTransitionReason`,
//! `FunctionResponseTypes`, `EventSourceMappingArn`, and `ScalingConfig` and `FilterCriteria`
//! when set. A mapping of the configuration file is shown the same way ([`Entry::File`]).

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::catalog::Known;
use crate::config::{MappingConfig, ServerConfig};
use crate::domain::esm::{EsmSettings, EsmState, StoredEsm};
use crate::domain::event::arn_of;
use crate::domain::Timestamp;

/// One mapping the API shows.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// Created through the API, stored in the database.
    Api(StoredEsm),
    /// `[mappings.NAME]` of the configuration file: read-only through the API.
    File {
        /// Its UUID (`catalog::file_uuid`).
        uuid: String,
        /// `NAME`.
        name: String,
        /// Its settings, as the API would have them.
        settings: EsmSettings,
        /// When the configuration was applied.
        loaded_at: Timestamp,
    },
}

impl Entry {
    /// The file's mappings of `known`, by UUID.
    pub(crate) fn file_entries(known: &Arc<Known>) -> impl Iterator<Item = Entry> + '_ {
        known
            .file
            .iter()
            .map(|(uuid, (name, m))| Entry::file(uuid, name, m, known.loaded_at))
    }

    /// The file's mapping `name` (whose UUID is `uuid`).
    pub(crate) fn file(uuid: &str, name: &str, m: &MappingConfig, loaded_at: Timestamp) -> Entry {
        Entry::File {
            uuid: uuid.to_owned(),
            name: name.to_owned(),
            settings: EsmSettings {
                function: m.function.clone(),
                queue: m.queue.clone(),
                enabled: m.enabled,
                batch_size: m.batch_size,
                batching_window_secs: u32::try_from(m.batching_window.as_secs()).unwrap_or(0),
                max_concurrency: Some(m.max_concurrency),
                report_batch_item_failures: m.report_batch_item_failures,
                filters: m.filters.sources().map(str::to_owned).collect(),
            },
            loaded_at,
        }
    }

    /// Its UUID.
    pub(crate) fn uuid(&self) -> &str {
        match self {
            Entry::Api(e) => &e.uuid,
            Entry::File { uuid, .. } => uuid,
        }
    }

    /// Its settings.
    pub(crate) fn settings(&self) -> &EsmSettings {
        match self {
            Entry::Api(e) => &e.settings,
            Entry::File { settings, .. } => settings,
        }
    }

    /// The answer's JSON.
    pub(crate) fn render(&self, server: &ServerConfig) -> Value {
        let s = self.settings();
        let (state, reason, modified) = match self {
            Entry::Api(e) => (e.state, "USER_INITIATED".to_owned(), e.last_modified),
            Entry::File {
                name, loaded_at, ..
            } => (
                EsmState::settled(s.enabled),
                format!("esmd configuration file: mappings.{name}"),
                *loaded_at,
            ),
        };
        let mut out = Map::new();
        out.insert("UUID".into(), json!(self.uuid()));
        out.insert("BatchSize".into(), json!(s.batch_size));
        out.insert(
            "MaximumBatchingWindowInSeconds".into(),
            json!(s.batching_window_secs),
        );
        out.insert(
            "EventSourceArn".into(),
            json!(arn_of(&s.queue, &server.region, &server.account_id)),
        );
        out.insert(
            "FunctionArn".into(),
            json!(super::resolve::function_arn(server, &s.function)),
        );
        // Lambda answers LastModified as epoch seconds with a fraction.
        out.insert(
            "LastModified".into(),
            json!(modified.as_millis() as f64 / 1000.0),
        );
        out.insert("State".into(), json!(state.as_str()));
        out.insert("StateTransitionReason".into(), json!(reason));
        if !s.filters.is_empty() {
            let filters: Vec<Value> = s.filters.iter().map(|p| json!({ "Pattern": p })).collect();
            out.insert("FilterCriteria".into(), json!({ "Filters": filters }));
        }
        let types: &[&str] = if s.report_batch_item_failures {
            &["ReportBatchItemFailures"]
        } else {
            &[]
        };
        out.insert("FunctionResponseTypes".into(), json!(types));
        if let Some(n) = s.max_concurrency {
            out.insert("ScalingConfig".into(), json!({ "MaximumConcurrency": n }));
        }
        out.insert(
            "EventSourceMappingArn".into(),
            json!(format!(
                "arn:aws:lambda:{}:{}:event-source-mapping:{}",
                server.region,
                server.account_id,
                self.uuid()
            )),
        );
        Value::Object(out)
    }
}
