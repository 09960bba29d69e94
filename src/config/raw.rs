//! The serde mirror of the TOML configuration (docs/interface.md §2) and the ONE place where defaults
//! are written. Every table is `deny_unknown_fields`; durations are humantime strings and sizes
//! are bytes or strings such as `"256KiB"`.
//!
//! Reading the layered tree into these structs is `read`'s job, checking values against each
//! other `validate`'s.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::domain::queue::QueueSettings;

/// Every default of a scalar setting. Queue settings default to AWS's, which the domain owns
/// (`QueueSettings::default()`).
pub(super) mod default {
    use std::time::Duration;

    /// `server.listen`
    pub const LISTEN: &str = "127.0.0.1:9324";
    /// `server.region`
    pub const REGION: &str = "us-east-1";
    /// `server.account_id`
    pub const ACCOUNT_ID: &str = "000000000000";
    /// `server.shutdown_grace`
    pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
    /// `server.header_timeout`
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(60);
    /// `server.body_timeout`
    pub const BODY_TIMEOUT: Duration = Duration::from_secs(60);
    /// `storage.backend`
    pub const BACKEND: &str = "sqlite";
    /// `storage.path`
    pub const STORAGE_PATH: &str = "esmd.db";
    /// `storage.synchronous`
    pub const SYNCHRONOUS: &str = "full";
    pub const MAX_QUEUES: u64 = 1000;
    /// `storage.tombstone_retention`: long enough to ask why a message was not delivered, short
    /// enough that a busy queue's history stays small (each tombstone is a row until swept).
    pub const TOMBSTONE_RETENTION: Duration = Duration::from_secs(300);
    /// `log.level`
    pub const LOG_LEVEL: &str = "info";
    /// `log.format`
    pub const LOG_FORMAT: &str = "text";
    /// `functions.NAME.timeout`: Lambda's default.
    pub const FUNCTION_TIMEOUT: Duration = Duration::from_secs(3);
    /// `functions.NAME.init_timeout`: Lambda's on-demand Init limit.
    pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
    /// `functions.NAME.memory_size`, in MB: Lambda's default.
    pub const MEMORY_SIZE: u32 = 128;
    /// `functions.NAME.max_environments`
    pub const MAX_ENVIRONMENTS: u32 = 10;
    /// `functions.NAME.idle_timeout`
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
    /// `functions.NAME.max_retry_attempts`: Lambda's default.
    pub const MAX_RETRY_ATTEMPTS: u32 = 2;
    /// `functions.NAME.max_event_age`: Lambda's default (and maximum).
    pub const MAX_EVENT_AGE: Duration = Duration::from_secs(6 * 3600);
    /// `functions.NAME.retry_backoff`: the first wait before retrying an Event invocation.
    pub const RETRY_BACKOFF: Duration = Duration::from_secs(1);
    /// `mappings.NAME.batch_size`
    pub const BATCH_SIZE: u32 = 10;
    /// `mappings.NAME.max_payload`: Lambda's synchronous invocation payload limit.
    pub const MAX_PAYLOAD: u64 = 6_291_456;
    /// `mappings.NAME.max_concurrency`
    pub const MAX_CONCURRENCY: u32 = 5;
    /// `mappings.NAME.max_filters`: Lambda's default quota of filters per mapping.
    pub const MAX_FILTERS: u32 = 5;
    /// `mappings.NAME.retry_backoff.initial`
    pub const BACKOFF_INITIAL: Duration = Duration::from_secs(1);
    /// `mappings.NAME.retry_backoff.max`
    pub const BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);
    /// `mappings.NAME.retry_backoff.multiplier`
    pub const BACKOFF_MULTIPLIER: f64 = 2.0;
    /// `mappings.NAME.retry_backoff.jitter`
    pub const BACKOFF_JITTER: bool = true;

    /// The built-in demo, used only when no configuration file is found (docs/interface.md §1): a
    /// standard queue `default` mapped to a built-in function that logs each batch.
    pub const DEMO: &str = r#"
[queues.default]

[functions.log]
type = "log"

[mappings.default]
queue = "default"
function = "log"
"#;

    // serde's `default = "..."` needs functions.
    pub fn function_timeout() -> Duration {
        FUNCTION_TIMEOUT
    }
    pub fn init_timeout() -> Duration {
        INIT_TIMEOUT
    }
    pub fn memory_size() -> u32 {
        MEMORY_SIZE
    }
    pub fn max_environments() -> u32 {
        MAX_ENVIRONMENTS
    }
    pub fn idle_timeout() -> Duration {
        IDLE_TIMEOUT
    }
    pub fn max_retry_attempts() -> u32 {
        MAX_RETRY_ATTEMPTS
    }
    pub fn max_event_age() -> Duration {
        MAX_EVENT_AGE
    }
    pub fn retry_backoff() -> Duration {
        RETRY_BACKOFF
    }
    pub fn enabled() -> bool {
        true
    }
    pub fn batch_size() -> u32 {
        BATCH_SIZE
    }
    pub fn max_payload() -> super::Size {
        super::Size(MAX_PAYLOAD)
    }
    pub fn max_concurrency() -> u32 {
        MAX_CONCURRENCY
    }
    pub fn max_filters() -> u32 {
        MAX_FILTERS
    }
    pub fn backoff_initial() -> Duration {
        BACKOFF_INITIAL
    }
    pub fn backoff_max() -> Duration {
        BACKOFF_MAX
    }
    pub fn backoff_multiplier() -> f64 {
        BACKOFF_MULTIPLIER
    }
    pub fn backoff_jitter() -> bool {
        BACKOFF_JITTER
    }
}

/// The top-level sections, in the order they are documented.
pub(super) const SECTIONS: [&str; 6] = [
    "server",
    "storage",
    "log",
    "queues",
    "functions",
    "mappings",
];

/// The whole file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub storage: RawStorage,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub queues: BTreeMap<String, RawQueue>,
    #[serde(default)]
    pub functions: BTreeMap<String, RawFunction>,
    #[serde(default)]
    pub mappings: BTreeMap<String, RawMapping>,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawServer {
    pub listen: String,
    pub region: String,
    pub account_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auth_token_file: Option<String>,
    pub allow_unauthenticated: bool,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: default::LISTEN.into(),
            region: default::REGION.into(),
            account_id: default::ACCOUNT_ID.into(),
            auth_token: None,
            auth_token_file: None,
            allow_unauthenticated: false,
            shutdown_grace: default::SHUTDOWN_GRACE,
            header_timeout: default::HEADER_TIMEOUT,
            body_timeout: default::BODY_TIMEOUT,
            max_connections: None,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawStorage {
    /// `"sqlite"` or `"postgres"`, checked by `validate` (`postgres.rs`).
    pub backend: String,
    /// `postgres://user@host:port/db`, with `backend = "postgres"` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A file holding the PostgreSQL password.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_file: Option<String>,
    /// A string rather than a `PathBuf` so that rendering never fails.
    pub path: String,
    /// `"full"` or `"normal"`, checked by `validate`.
    pub synchronous: String,
    /// Optional cap on the database file's size, checked by `validate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_size: Option<Size>,
    /// The most queues CreateQueue may make, checked by `validate`.
    pub max_queues: u64,
    /// How long tombstones are kept, checked by `validate`.
    #[serde(with = "humantime_serde")]
    pub tombstone_retention: Duration,
}

impl Default for RawStorage {
    fn default() -> Self {
        RawStorage {
            backend: default::BACKEND.into(),
            url: None,
            password_file: None,
            path: default::STORAGE_PATH.into(),
            synchronous: default::SYNCHRONOUS.into(),
            max_size: None,
            max_queues: default::MAX_QUEUES,
            tombstone_retention: default::TOMBSTONE_RETENTION,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawLog {
    pub level: String,
    /// `"text"` or `"json"`, checked by `validate`.
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            level: default::LOG_LEVEL.into(),
            format: default::LOG_FORMAT.into(),
        }
    }
}

/// `[queues.NAME]`. The FIFO-only settings are optional so that a standard queue renders without
/// them; absent means AWS's default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(super) struct RawQueue {
    #[serde(with = "humantime_serde")]
    pub visibility_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    pub max_message_size: Size,
    #[serde(with = "humantime_serde")]
    pub receive_wait: Duration,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_receive_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redrive_allow_policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_based_deduplication: Option<bool>,
    /// `"queue"` or `"messageGroup"`, parsed by the domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deduplication_scope: Option<String>,
    /// `"perQueue"` or `"perMessageGroupId"`, parsed by the domain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fifo_throughput_limit: Option<String>,
}

impl Default for RawQueue {
    fn default() -> Self {
        let aws = QueueSettings::default();
        RawQueue {
            visibility_timeout: aws.visibility_timeout,
            delay: aws.delay,
            retention: aws.retention,
            max_message_size: Size(u64::from(aws.max_message_size)),
            receive_wait: aws.receive_wait,
            dead_letter_queue: None,
            max_receive_count: None,
            redrive_allow_policy: None,
            content_based_deduplication: None,
            deduplication_scope: None,
            fifo_throughput_limit: None,
        }
    }
}

mod function;

pub(super) use function::{
    RawCommand, RawDestinations, RawFunction, RawHttp, RawLogFunction, RawRuntime, FUNCTION_TYPES,
};

/// `[mappings.NAME]`: `function` and one of `queue` (a queue of this esmd) or `queue_url` (a
/// remote SQS queue, with optional `endpoint` and `region`) are required; everything else has a
/// default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub function: String,
    #[serde(default = "default::enabled")]
    pub enabled: bool,
    #[serde(default = "default::batch_size")]
    pub batch_size: u32,
    #[serde(default, with = "humantime_serde")]
    pub batching_window: Duration,
    #[serde(default = "default::max_payload")]
    pub max_payload: Size,
    #[serde(default = "default::max_concurrency")]
    pub max_concurrency: u32,
    #[serde(default)]
    pub report_batch_item_failures: bool,
    /// Lambda's `FilterCriteria.Filters[].Pattern` strings.
    #[serde(default)]
    pub filters: Vec<String>,
    #[serde(default = "default::max_filters")]
    pub max_filters: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff: Option<RawBackoff>,
}

/// `[mappings.NAME.retry_backoff]`: present means on; every key has a default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackoff {
    #[serde(default = "default::backoff_initial", with = "humantime_serde")]
    pub initial: Duration,
    #[serde(default = "default::backoff_max", with = "humantime_serde")]
    pub max: Duration,
    #[serde(default = "default::backoff_multiplier")]
    pub multiplier: f64,
    #[serde(default = "default::backoff_jitter")]
    pub jitter: bool,
}

/// A size in bytes, written as an integer (`1048576`) or a string with a unit (`"1MiB"`,
/// `"256KiB"`, `"6MB"`: `K`/`KB`/`M`/`MB` are decimal, `KiB`/`MiB` binary, units are
/// case-insensitive, as the `bytesize` crate parses them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Size(pub u64);

impl Size {
    /// Parses a size string (`"20"`, `"256KiB"`).
    pub fn parse(s: &str) -> Result<Size, String> {
        let s = s.trim();
        if let Ok(n) = s.parse::<u64>() {
            return Ok(Size(n));
        }
        // bytesize accepts an empty number as zero ("KiB"); a size must start with a digit.
        if !s.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(format!(
                "{s:?} is not a size such as 1048576, \"256KiB\" or \"6MB\""
            ));
        }
        s.parse::<bytesize::ByteSize>()
            .map(|b| Size(b.as_u64()))
            .map_err(|e| format!("{s:?} is not a size such as 1048576, \"256KiB\" or \"6MB\": {e}"))
    }
}

impl Serialize for Size {
    /// Whole KiB and MiB are written with their unit, anything else as bytes.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * 1024;
        match self.0 {
            0 => s.serialize_u64(0),
            n if n % MIB == 0 => s.serialize_str(&format!("{}MiB", n / MIB)),
            n if n % KIB == 0 => s.serialize_str(&format!("{}KiB", n / KIB)),
            n => s.serialize_u64(n),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size in bytes or a string such as \"256KiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map(Size)
                    .map_err(|_| E::custom(format!("{v} is negative; a size must be at least 0")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Size, E> {
                Size::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_like_bytesize() {
        assert_eq!(Size::parse("20"), Ok(Size(20)));
        assert_eq!(Size::parse("256KiB"), Ok(Size(262_144)));
        assert_eq!(Size::parse("1MiB"), Ok(Size(1_048_576)));
        assert_eq!(Size::parse("6MB"), Ok(Size(6_000_000)));
        assert_eq!(Size::parse("6 MiB"), Ok(Size(6_291_456)));
        assert!(Size::parse("KiB").is_err());
        assert!(Size::parse("-1").is_err());
        assert!(Size::parse("lots").is_err());
        assert!(Size::parse("6 parsecs").is_err());
    }

    #[test]
    fn sizes_render_with_binary_units_when_exact() {
        let render = |n| toml::Value::try_from(Size(n)).map(|v| v.to_string());
        assert_eq!(render(6_291_456).as_deref(), Ok("\"6MiB\""));
        assert_eq!(render(1024).as_deref(), Ok("\"1KiB\""));
        assert_eq!(render(1000).as_deref(), Ok("1000"));
    }
}
