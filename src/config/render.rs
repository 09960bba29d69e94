//! The effective configuration as TOML (`esmd check-config`): the typed [`Config`] turned back
//! into the raw mirror and serialized, so that the output loads back to the same `Config`.

use super::asynchronous::{self, RawAsync};
use super::raw::{
    RawBackoff, RawCommand, RawConfig, RawFunction, RawHttp, RawLog, RawLogFunction, RawMapping,
    RawQueue, RawRuntime, RawServer, RawStorage, Size,
};
use super::{
    Config, FunctionConfig, FunctionTarget, LogFormat, MappingConfig, PasswordSource,
    StorageConfig, Synchronous,
};
use crate::domain::queue::{QueueName, QueueSettings};

/// What `esmd check-config` prints in place of `server.auth_token` unless `--show-secrets`.
pub const MASKED: &str = "***";

/// Renders `config` as TOML with every default filled in. Loading the output (with no `ESMD__`
/// variables set) gives back an equal `Config`; the storage path is written resolved.
pub fn render(config: &Config) -> String {
    let raw = to_raw(config);
    match toml::to_string(&raw) {
        Ok(text) => format!("# esmd: effective configuration (defaults filled in)\n\n{text}"),
        // Unreachable in practice: every raw value is a string, number, bool, array or table.
        Err(e) => format!("# the configuration could not be rendered as TOML: {e}\n"),
    }
}

/// `[storage]`: on PostgreSQL, SQLite's keys at their defaults (anything else is refused).
fn storage(s: &StorageConfig) -> RawStorage {
    let Some(pg) = &s.postgres else {
        return RawStorage {
            path: s.path.to_string_lossy().into_owned(),
            synchronous: match s.synchronous {
                Synchronous::Full => "full",
                Synchronous::Normal => "normal",
            }
            .to_owned(),
            max_size: s.max_size.map(Size),
            max_queues: s.max_queues,
            tombstone_retention: s.tombstone_retention,
            ..RawStorage::default()
        };
    };
    RawStorage {
        backend: "postgres".into(),
        url: Some(super::postgres::render_url(pg)),
        password_file: match &pg.password_from {
            PasswordSource::File(path) => Some(path.to_string_lossy().into_owned()),
            _ => None,
        },
        max_queues: s.max_queues,
        tombstone_retention: s.tombstone_retention,
        ..RawStorage::default()
    }
}

fn to_raw(config: &Config) -> RawConfig {
    let server = &config.server;
    RawConfig {
        server: RawServer {
            listen: server.listen.clone(),
            region: server.region.clone(),
            account_id: server.account_id.clone(),
            // A token read from a file is rendered as the file, never as its contents.
            auth_token: match server.auth_token_file {
                Some(_) => None,
                None => server.auth_token.clone(),
            },
            auth_token_file: server
                .auth_token_file
                .as_ref()
                .map(|p| p.to_string_lossy().into_owned()),
            allow_unauthenticated: server.allow_unauthenticated,
            shutdown_grace: server.shutdown_grace,
            header_timeout: server.header_timeout,
            body_timeout: server.body_timeout,
            max_connections: server.max_connections,
        },
        storage: storage(&config.storage),
        log: RawLog {
            level: config.log.level.clone(),
            format: match config.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
            .to_owned(),
        },
        queues: config
            .queues
            .iter()
            .map(|(n, s)| (n.to_string(), queue(n, s)))
            .collect(),
        functions: config
            .functions
            .iter()
            .map(|(n, f)| (n.clone(), function(f)))
            .collect(),
        mappings: config
            .mappings
            .iter()
            .map(|(n, m)| (n.clone(), mapping(m)))
            .collect(),
    }
}

/// FIFO-only settings are written for FIFO queues only.
fn queue(name: &QueueName, s: &QueueSettings) -> RawQueue {
    let fifo = name.is_fifo();
    RawQueue {
        visibility_timeout: s.visibility_timeout,
        delay: s.delay,
        retention: s.retention,
        max_message_size: Size(u64::from(s.max_message_size)),
        receive_wait: s.receive_wait,
        dead_letter_queue: s.redrive.as_ref().map(|r| r.dead_letter_queue.to_string()),
        max_receive_count: s.redrive.as_ref().map(|r| r.max_receive_count),
        redrive_allow_policy: s.redrive_allow_policy.clone(),
        content_based_deduplication: fifo.then_some(s.content_based_deduplication),
        deduplication_scope: fifo.then(|| s.deduplication_scope.as_str().to_owned()),
        fifo_throughput_limit: fifo.then(|| s.fifo_throughput_limit.as_str().to_owned()),
    }
}

fn function(f: &FunctionConfig) -> RawFunction {
    let timeout = f.timeout;
    let RawAsync {
        max_retry_attempts,
        max_event_age,
        destinations,
        retry_backoff,
    } = asynchronous::render(&f.async_config);
    match &f.target {
        FunctionTarget::Http { url } => RawFunction::Http(RawHttp {
            url: url.clone(),
            timeout,
            max_retry_attempts,
            max_event_age,
            destinations,
            retry_backoff,
        }),
        FunctionTarget::Command {
            argv,
            env,
            working_dir,
        } => RawFunction::Command(RawCommand {
            command: argv.clone(),
            env: env.clone(),
            working_dir: working_dir
                .as_ref()
                .map(|d| d.to_string_lossy().into_owned()),
            timeout,
            max_retry_attempts,
            max_event_age,
            destinations,
            retry_backoff,
        }),
        FunctionTarget::Log => RawFunction::Log(RawLogFunction {
            timeout,
            max_retry_attempts,
            max_event_age,
            destinations,
            retry_backoff,
        }),
        FunctionTarget::Runtime(r) => RawFunction::Runtime(RawRuntime {
            command: r.argv.clone(),
            handler: r.handler.clone(),
            working_dir: r
                .working_dir
                .as_ref()
                .map(|d| d.to_string_lossy().into_owned()),
            environment: r.env.clone(),
            memory_size: r.memory_size,
            timeout,
            init_timeout: r.init_timeout,
            max_environments: r.max_environments,
            idle_timeout: r.idle_timeout,
            max_retry_attempts,
            max_event_age,
            destinations,
            retry_backoff,
        }),
    }
}

fn mapping(m: &MappingConfig) -> RawMapping {
    RawMapping {
        queue: m.remote.is_none().then(|| m.queue.to_string()),
        queue_url: m.remote.as_ref().map(|r| r.url.clone()),
        endpoint: m.remote.as_ref().and_then(|r| r.endpoint.clone()),
        region: m.remote.as_ref().map(|r| r.region.clone()),
        function: m.function.clone(),
        enabled: m.enabled,
        batch_size: m.batch_size,
        batching_window: m.batching_window,
        max_payload: Size(m.max_payload),
        max_concurrency: m.max_concurrency,
        report_batch_item_failures: m.report_batch_item_failures,
        filters: m.filters.sources().map(str::to_owned).collect(),
        max_filters: m.max_filters,
        retry_backoff: m.retry_backoff.map(|b| RawBackoff {
            initial: b.initial,
            max: b.max,
            multiplier: b.multiplier,
            jitter: b.jitter,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, LoadOptions};

    /// The rendered text parses as the raw mirror too (every key known, nothing lost).
    #[test]
    fn rendered_demo_is_valid_raw_toml() {
        let dir = std::env::temp_dir();
        let opts = LoadOptions {
            config_path: None,
            env: Some(Default::default()),
            cwd: Some(dir.join("esmd-render-test-no-such-dir")),
        };
        let loaded = load(&opts).expect("the built-in defaults load");
        let text = render(&loaded.config);
        let raw: RawConfig = toml::from_str(&text).expect("rendered TOML parses");
        assert_eq!(raw, to_raw(&loaded.config));
    }
}
