//! Configuration: the typed, validated [`Config`] and [`load`], which layers built-in defaults <
//! the TOML file < `ESMD__` environment variables (docs/interface.md §2) and checks every rule before
//! anything starts. Every problem names its full key.
//!
//! Lower modules take their own section (`&StorageConfig`, `&FunctionConfig`...), never the whole
//! `Config`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::backoff::Backoff;
use crate::domain::filter::Filters;
use crate::domain::queue::{QueueName, QueueSettings};

mod asynchronous;
mod command;
mod env;
mod function;
mod load;
mod mapping;
mod postgres;
mod raw;
mod read;
mod remote;
mod render;
mod runtime;
mod validate;

pub use asynchronous::AsyncConfig;
pub use load::{load, ConfigError, LoadOptions, Loaded};
pub use mapping::from_api as mapping_from_api;
pub(crate) use mapping::{
    MAX_BATCHING_WINDOW, MAX_BATCH_SIZE_FIFO, MAX_BATCH_SIZE_WITHOUT_WINDOW, MIN_MAX_FILTERS,
};
pub use postgres::{Password, PasswordSource, PostgresConfig};
pub use render::{render, MASKED};

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[storage]`
    pub storage: StorageConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[queues.NAME]`, by name.
    pub queues: BTreeMap<QueueName, QueueSettings>,
    /// `[functions.NAME]`, by name.
    pub functions: BTreeMap<String, FunctionConfig>,
    /// `[mappings.NAME]`, by name.
    pub mappings: BTreeMap<String, MappingConfig>,
}

/// `[server]`: the HTTP listener and the identity used in URLs and ARNs.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// `listen`: address to bind, e.g. `127.0.0.1:9324`.
    pub listen: String,
    /// `region`: used in ARNs and events' `awsRegion`.
    pub region: String,
    /// `account_id`: used in queue URLs and ARNs.
    pub account_id: String,
    /// `auth_token`: when set, required on every request but `/healthz`. Read from
    /// `auth_token_file` when that is set.
    pub auth_token: Option<String>,
    /// `auth_token_file`: the file the token was read from (at start and on every reload),
    /// resolved against the working directory; `None` when the token is given inline or not at
    /// all.
    pub auth_token_file: Option<PathBuf>,
    /// `allow_unauthenticated`: lets a non-loopback `listen` start without a token.
    pub allow_unauthenticated: bool,
    /// `shutdown_grace`: how long in-flight invocations may run on after SIGTERM.
    pub shutdown_grace: Duration,
    /// `header_timeout`: how long a connection may take to deliver a complete request head,
    /// counted from when it starts waiting for one (a new connection, or a kept-alive one after
    /// its last response; so this is also the idle keep-alive timeout).
    pub header_timeout: Duration,
    /// `body_timeout`: how long a request's body may take to arrive, from its head.
    pub body_timeout: Duration,
    /// `max_connections`: the most connections served at once; `None`: the soft descriptor
    /// limit (`RLIMIT_NOFILE`) less a margin for the database, functions and pipes.
    pub max_connections: Option<u32>,
}

/// `[storage]`: the SQLite file, or the PostgreSQL database.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// `backend = "postgres"` with its `url` and password; `None`: SQLite (`backend =
    /// "sqlite"`, the default), whose file and settings are the fields below.
    pub postgres: Option<PostgresConfig>,
    /// `path`, already resolved against `$STATE_DIRECTORY` when relative.
    pub path: PathBuf,
    /// `synchronous`.
    pub synchronous: Synchronous,
    /// `max_size`: the most bytes the database file may hold (SQLite's `max_page_count`); once
    /// reached, writes that need a new page are refused as retriable until space is freed.
    /// `None`: only the disk limits it.
    pub max_size: Option<u64>,
    /// `max_queues`: the most queues there may be; CreateQueue past it is refused with
    /// `OverLimit` (queues of the configuration file are always created).
    pub max_queues: u64,
    /// `tombstone_retention`: how long what became of a deleted, filtered, expired or
    /// dead-lettered message is kept for explain (`GET /queues/{name}/messages/{id}`); zero
    /// keeps none.
    pub tombstone_retention: Duration,
}

/// SQLite's `synchronous` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// An acknowledged write survives power loss.
    #[default]
    Full,
    /// An acknowledged write survives a crash of esmd, not of the machine.
    Normal,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `level`: an EnvFilter directive (`info`, `esmd=debug`); `RUST_LOG` overrides it.
    pub level: String,
    /// `format`.
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[functions.NAME]`
#[derive(Debug, Clone, PartialEq)]
pub struct FunctionConfig {
    /// `timeout`: an invocation still running after this is a function error (default 3s, as
    /// Lambda's).
    pub timeout: Duration,
    /// What to invoke.
    pub target: FunctionTarget,
    /// How Event (asynchronous) invocations of this function are retried and where their
    /// outcomes go; the same keys in every function type.
    pub async_config: AsyncConfig,
}

/// How a function is invoked (docs/interface.md §4).
#[derive(Debug, Clone, PartialEq)]
pub enum FunctionTarget {
    /// `type = "http"`: POST the event to `url`.
    Http {
        /// `url`
        url: String,
    },
    /// `type = "command"`: run `argv` with the event on stdin.
    Command {
        /// `command`: program and arguments, never run through a shell.
        argv: Vec<String>,
        /// `env`: extra environment variables.
        env: BTreeMap<String, String>,
        /// `working_dir`
        working_dir: Option<PathBuf>,
    },
    /// `type = "log"`: built in; logs each record and succeeds.
    Log,
    /// `type = "runtime"`: a Lambda runtime (awslambdaric, `lambda_runtime`, a custom
    /// `bootstrap`) run in execution environments and served the Runtime API.
    Runtime(RuntimeConfig),
}

/// `type = "runtime"` (docs/interface.md §4.4).
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeConfig {
    /// `command`: the bootstrap's argv, never run through a shell.
    pub argv: Vec<String>,
    /// `handler`: exported as `_HANDLER`.
    pub handler: Option<String>,
    /// `working_dir`: the process's cwd, exported as `LAMBDA_TASK_ROOT`.
    pub working_dir: Option<PathBuf>,
    /// `environment`: more environment variables.
    pub env: BTreeMap<String, String>,
    /// `memory_size`, in MB: exported as `AWS_LAMBDA_FUNCTION_MEMORY_SIZE` (128..=10240).
    pub memory_size: u32,
    /// `init_timeout`: how long a new environment may take to reach its first `/next`.
    pub init_timeout: Duration,
    /// `max_environments`: at most this many execution environments at once (1..=1000).
    pub max_environments: u32,
    /// `idle_timeout`: a warm environment idle this long is shut down.
    pub idle_timeout: Duration,
}

/// A mapping's remote SQS queue: `queue_url`, `endpoint` and `region` of `[mappings.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteQueue {
    /// `queue_url`, as written.
    pub url: String,
    /// `endpoint`: where the SDK sends requests; `None` for the SDK's own resolution (the
    /// `AWS_ENDPOINT_URL_SQS`/`AWS_ENDPOINT_URL` variables, else AWS's endpoint for `region`).
    pub endpoint: Option<String>,
    /// `region`: as given, else the `sqs.<region>.amazonaws.com` host's, else `server.region`.
    pub region: String,
    /// The account: the segment before the queue's name in the URL's path.
    pub account_id: String,
}

/// `[mappings.NAME]`: one event source mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct MappingConfig {
    /// `queue`: the queue polled. For a remote queue (`remote` is set), its name as its URL
    /// gives it: it names no queue of this esmd, but says whether the queue is FIFO.
    pub queue: QueueName,
    /// `queue_url` (with `endpoint` and `region`): the mapping polls this remote SQS queue
    /// instead of a queue of this esmd.
    pub remote: Option<RemoteQueue>,
    /// `function`: the function invoked (a key of `functions`).
    pub function: String,
    /// `enabled`
    pub enabled: bool,
    /// `batch_size`: 1..10000 standard, 1..10 FIFO (default 10).
    pub batch_size: u32,
    /// `batching_window`: 0..300s, none on FIFO (default 0).
    pub batching_window: Duration,
    /// `max_payload`: invocation payload cap in bytes, whole event included (default 6 MiB).
    pub max_payload: u64,
    /// `max_concurrency`: 2..1000 (default 5).
    pub max_concurrency: u32,
    /// `report_batch_item_failures` (default false).
    pub report_batch_item_failures: bool,
    /// `filters`: Lambda's filter patterns, compiled; a record no pattern matches is deleted
    /// without being invoked. Empty: every record is invoked.
    pub filters: Filters,
    /// `max_filters`: how many patterns `filters` may hold (5, as Lambda's quota; up to 10).
    pub max_filters: u32,
    /// `retry_backoff`: when set, failed messages return after a growing delay instead of the
    /// queue's visibility timeout (an esmd extension; off by default).
    pub retry_backoff: Option<Backoff>,
}
