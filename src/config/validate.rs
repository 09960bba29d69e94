//! From the raw mirror to the typed [`Config`]: every rule that looks at one value or at several
//! together (docs/semantics.md §1 and §6.1), checked before anything starts. Each problem is pushed
//! as one line that names its full key; checking goes on after a problem so that all of them are
//! reported at once.
//!
//! Ranges of queue settings are the domain's (`QueueSettings::problems`); this file adds what
//! needs the whole configuration (dead-letter targets) and the rules of the other sections. The
//! rules of `[mappings.NAME]` are in `mapping`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::raw::{RawConfig, RawLog, RawQueue, RawServer, RawStorage};
use super::read::{Problems, Skipped};
use super::{function, mapping};
use super::{Config, LogConfig, LogFormat, ServerConfig, StorageConfig, Synchronous};
use crate::domain::queue::{
    DedupScope, FifoThroughputLimit, QueueKind, QueueName, QueueSettings, Redrive,
    MAX_MESSAGE_SIZE, MIN_MESSAGE_SIZE,
};

/// Smallest `storage.max_size`: room for the schema and a useful number of messages.
const MIN_STORAGE_SIZE: u64 = 1024 * 1024;

/// Longest `storage.tombstone_retention`: SQS's longest message retention.
const MAX_TOMBSTONE_RETENTION: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);

/// Validates `raw` into a [`Config`], pushing every problem found. The returned `Config` is only
/// meaningful when no problem was pushed (entries with problems may be missing from it).
/// Relative storage paths are joined to `storage_base`.
pub(super) fn validate(
    raw: RawConfig,
    skipped: &Skipped,
    storage_base: &Path,
    problems: &mut Vec<String>,
) -> Config {
    let mut p = Problems::new(problems);
    let server = server(raw.server, &mut p);
    let storage = storage(raw.storage, storage_base, &mut p);
    let log = log(raw.log, &mut p);
    let queues = queues(&raw.queues, skipped, &mut p);
    let functions = function::functions(raw.functions, &mut p);
    let mappings = mapping::mappings(
        raw.mappings,
        &queues,
        &functions,
        &server.region,
        skipped,
        &mut p,
    );
    Config {
        server,
        storage,
        log,
        queues,
        functions,
        mappings,
    }
}

fn server(raw: RawServer, p: &mut Problems<'_>) -> ServerConfig {
    if !is_host_port(&raw.listen) {
        p.at(
            &["server", "listen"],
            format!("{:?} is not a host:port address", raw.listen),
        );
    }
    let region_ok = !raw.region.is_empty()
        && raw
            .region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        p.at(
            &["server", "region"],
            format!("{:?} is not a region name such as us-east-1", raw.region),
        );
    }
    if raw.account_id.len() != 12 || !raw.account_id.bytes().all(|b| b.is_ascii_digit()) {
        p.at(
            &["server", "account_id"],
            format!("{:?} is not a 12-digit account id", raw.account_id),
        );
    }
    for (key, d) in [
        ("header_timeout", raw.header_timeout),
        ("body_timeout", raw.body_timeout),
    ] {
        if d.is_zero() {
            p.at(&["server", key], "must be more than 0s");
        }
    }
    if raw.max_connections == Some(0) {
        p.at(&["server", "max_connections"], "must be at least 1");
    }
    if raw.auth_token.as_deref() == Some("") {
        p.at(&["server", "auth_token"], "must not be empty when set");
    }
    if raw.auth_token_file.as_deref() == Some("") {
        p.at(&["server", "auth_token_file"], "must not be empty when set");
    }
    if raw.auth_token.is_some() && raw.auth_token_file.is_some() {
        p.at(
            &["server", "auth_token_file"],
            "cannot be set together with server.auth_token: set one of them",
        );
    }
    let has_token = raw.auth_token.is_some() || raw.auth_token_file.is_some();
    if !has_token && !raw.allow_unauthenticated && !is_loopback(&raw.listen) {
        p.at(
            &["server", "listen"],
            format!(
                "{:?} is not a loopback address, and without server.auth_token (or \
                 server.auth_token_file) anyone who can reach it may send, receive and delete \
                 messages; set a token, or set server.allow_unauthenticated = true to accept that",
                raw.listen
            ),
        );
    }
    ServerConfig {
        listen: raw.listen,
        region: raw.region,
        account_id: raw.account_id,
        auth_token: raw.auth_token,
        auth_token_file: raw.auth_token_file.map(PathBuf::from),
        allow_unauthenticated: raw.allow_unauthenticated,
        shutdown_grace: raw.shutdown_grace,
        header_timeout: raw.header_timeout,
        body_timeout: raw.body_timeout,
        max_connections: raw.max_connections,
    }
}

/// Whether `listen` binds only loopback: a loopback IP (`127.0.0.0/8`, `::1`) or `localhost`.
/// An unparsable address is left to the host:port check.
fn is_loopback(listen: &str) -> bool {
    if let Ok(addr) = listen.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    match listen.rsplit_once(':') {
        Some((host, _)) => host.eq_ignore_ascii_case("localhost"),
        None => true,
    }
}

/// `host:port` with a numeric port: an IP socket address (`[::1]:9324`) or a host name.
fn is_host_port(s: &str) -> bool {
    if s.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && port.parse::<u16>().is_ok()
}

fn storage(raw: RawStorage, base: &Path, p: &mut Problems<'_>) -> StorageConfig {
    if raw.path.is_empty() {
        p.at(&["storage", "path"], "must not be empty");
    }
    let synchronous = match raw.synchronous.as_str() {
        "full" => Synchronous::Full,
        "normal" => Synchronous::Normal,
        other => {
            p.at(
                &["storage", "synchronous"],
                format!("{other:?} is not one of \"full\", \"normal\""),
            );
            Synchronous::default()
        }
    };
    let max_size = raw.max_size.map(|size| size.0);
    if let Some(size) = max_size.filter(|s| *s < MIN_STORAGE_SIZE) {
        p.at(
            &["storage", "max_size"],
            format!("{size} bytes is below the minimum of 1MiB ({MIN_STORAGE_SIZE} bytes)"),
        );
    }
    if raw.max_queues == 0 {
        p.at(&["storage", "max_queues"], "must be at least 1");
    }
    if raw.tombstone_retention > MAX_TOMBSTONE_RETENTION {
        p.at(
            &["storage", "tombstone_retention"],
            format!(
                "{} is above the maximum of 14days (SQS's longest retention)",
                humantime::format_duration(raw.tombstone_retention)
            ),
        );
    }
    StorageConfig {
        postgres: super::postgres::validate(&raw, p),
        path: base.join(PathBuf::from(raw.path)),
        synchronous,
        max_size,
        max_queues: raw.max_queues,
        tombstone_retention: raw.tombstone_retention,
    }
}

fn log(raw: RawLog, p: &mut Problems<'_>) -> LogConfig {
    if let Err(e) = tracing_subscriber::EnvFilter::try_new(&raw.level) {
        p.at(
            &["log", "level"],
            format!("{:?} is not a log filter such as \"info\": {e}", raw.level),
        );
    }
    let format = match raw.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            p.at(
                &["log", "format"],
                format!("{other:?} is not one of \"text\", \"json\""),
            );
            LogFormat::default()
        }
    };
    LogConfig {
        level: raw.level,
        format,
    }
}

fn queues(
    raw: &BTreeMap<String, RawQueue>,
    skipped: &Skipped,
    p: &mut Problems<'_>,
) -> BTreeMap<QueueName, QueueSettings> {
    let mut out = BTreeMap::new();
    for (name, q) in raw {
        let settings = queue_settings(name, q, raw, skipped, p);
        // The kind follows the name even when the name is otherwise invalid, so that the
        // settings are still checked.
        let kind = if name.ends_with(".fifo") {
            QueueKind::Fifo
        } else {
            QueueKind::Standard
        };
        for problem in settings.problems(kind) {
            p.at(&["queues", name, problem.key], problem.message);
        }
        match QueueName::parse(name) {
            Ok(queue) => {
                out.insert(queue, settings);
            }
            Err(e) => p.at(&["queues", name], format!("invalid queue name: {e}")),
        }
    }
    out
}

fn queue_settings(
    name: &str,
    q: &RawQueue,
    all: &BTreeMap<String, RawQueue>,
    skipped: &Skipped,
    p: &mut Problems<'_>,
) -> QueueSettings {
    let aws = QueueSettings::default();
    let max_message_size = u32::try_from(q.max_message_size.0).unwrap_or_else(|_| {
        p.at(
            &["queues", name, "max_message_size"],
            format!(
                "{} bytes is outside the range {MIN_MESSAGE_SIZE}..{MAX_MESSAGE_SIZE}",
                q.max_message_size.0
            ),
        );
        aws.max_message_size
    });
    let deduplication_scope = match &q.deduplication_scope {
        None => aws.deduplication_scope,
        Some(s) => DedupScope::parse(s).unwrap_or_else(|| {
            let allowed = [DedupScope::Queue, DedupScope::MessageGroup].map(DedupScope::as_str);
            p.at(
                &["queues", name, "deduplication_scope"],
                not_one_of(s, &allowed),
            );
            aws.deduplication_scope
        }),
    };
    let fifo_throughput_limit = match &q.fifo_throughput_limit {
        None => aws.fifo_throughput_limit,
        Some(s) => FifoThroughputLimit::parse(s).unwrap_or_else(|| {
            let allowed = [
                FifoThroughputLimit::PerQueue,
                FifoThroughputLimit::PerMessageGroupId,
            ]
            .map(FifoThroughputLimit::as_str);
            p.at(
                &["queues", name, "fifo_throughput_limit"],
                not_one_of(s, &allowed),
            );
            aws.fifo_throughput_limit
        }),
    };
    if let Some(policy) = &q.redrive_allow_policy {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(policy) {
            p.at(
                &["queues", name, "redrive_allow_policy"],
                format!("is not valid JSON: {e}"),
            );
        }
    }
    QueueSettings {
        visibility_timeout: q.visibility_timeout,
        delay: q.delay,
        retention: q.retention,
        max_message_size,
        receive_wait: q.receive_wait,
        redrive: redrive(name, q, all, skipped, p),
        redrive_allow_policy: q.redrive_allow_policy.clone(),
        content_based_deduplication: q
            .content_based_deduplication
            .unwrap_or(aws.content_based_deduplication),
        deduplication_scope,
        fifo_throughput_limit,
        ..QueueSettings::default()
    }
}

/// `dead_letter_queue` and `max_receive_count` go together, and the target must be configured.
/// Its kind and the count's range are the domain's checks.
fn redrive(
    name: &str,
    q: &RawQueue,
    all: &BTreeMap<String, RawQueue>,
    skipped: &Skipped,
    p: &mut Problems<'_>,
) -> Option<Redrive> {
    let dlq_key = ["queues", name, "dead_letter_queue"];
    match (&q.dead_letter_queue, q.max_receive_count) {
        (None, None) => None,
        (Some(_), None) => {
            p.at(
                &["queues", name, "max_receive_count"],
                "is required with dead_letter_queue",
            );
            None
        }
        (None, Some(_)) => {
            p.at(&dlq_key, "is required with max_receive_count");
            None
        }
        (Some(dlq), Some(max_receive_count)) => {
            let dead_letter_queue = match QueueName::parse(dlq) {
                Ok(n) => n,
                Err(e) => {
                    p.at(&dlq_key, format!("invalid queue name {dlq:?}: {e}"));
                    return None;
                }
            };
            if !all.contains_key(dlq) && !skipped.contains("queues", dlq) {
                p.at(&dlq_key, format!("no queue named {dlq:?} is configured"));
            }
            Some(Redrive {
                dead_letter_queue,
                max_receive_count,
            })
        }
    }
}

fn not_one_of(value: &str, allowed: &[&str]) -> String {
    let allowed: Vec<String> = allowed.iter().map(|a| format!("{a:?}")).collect();
    format!("{value:?} is not one of {}", allowed.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        for ok in [
            "127.0.0.1:9324",
            "0.0.0.0:0",
            "[::1]:9324",
            "localhost:9324",
            "esmd.internal:80",
        ] {
            assert!(is_host_port(ok), "{ok}");
        }
        for bad in [
            "",
            "9324",
            "localhost",
            ":9324",
            "localhost:99999",
            "::1:9324",
            "a b:1",
        ] {
            assert!(!is_host_port(bad), "{bad}");
        }
    }
}
