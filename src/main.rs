//! The `esmd` binary: parses the command line, loads the configuration, installs logging, runs
//! the daemon or a client command, and maps failures to exit codes (docs/interface.md §1): 0 after a
//! clean shutdown, 78 for a bad configuration (before any port is bound or the database is
//! touched), 1 for anything else, with one line on stderr naming the cause.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// mimalloc instead of glibc's malloc: the hot path allocates per message (rows, JSON), and
/// glibc's allocator was a fifth of the CPU under load (BENCHMARKS.md, profile).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use esmd::config::{self, Config, ConfigError, LoadOptions};
use esmd::domain::error::chain;

/// EX_CONFIG from sysexits.h.
const EX_CONFIG: u8 = 78;

#[derive(Parser)]
#[command(
    name = "esmd",
    version,
    about = "AWS Lambda's SQS event source mapping on your own machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the daemon in the foreground until SIGTERM or SIGINT.
    Run {
        /// Configuration file (default: $ESMD_CONFIG, then ./config/esmd.toml, then built-in defaults).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validates the configuration and prints the effective configuration (secrets masked).
    CheckConfig {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print server.auth_token as it is instead of "***".
        #[arg(long)]
        show_secrets: bool,
    },
    /// Sends one message to a running daemon and prints its message id.
    Send {
        /// The queue.
        #[arg(long)]
        queue: String,
        /// MessageGroupId (FIFO queues).
        #[arg(long)]
        group: Option<String>,
        /// MessageDeduplicationId (FIFO queues).
        #[arg(long)]
        dedup: Option<String>,
        /// Delay, e.g. 5s.
        #[arg(long, value_parser = humantime::parse_duration)]
        delay: Option<Duration>,
        /// A message attribute, NAME=TYPE:VALUE (repeatable; Binary values in base64).
        #[arg(long = "attr")]
        attrs: Vec<String>,
        /// The daemon's URL (default: from the configuration's server.listen).
        #[arg(long)]
        endpoint: Option<String>,
        /// Configuration file (for the endpoint and auth token).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The body, or - to read it from stdin.
        body: String,
    },
    /// Lists the first messages of a queue with where each stands, without receiving them.
    Peek {
        /// The queue.
        #[arg(long)]
        queue: String,
        /// How many messages, oldest first (1 to 1000).
        #[arg(long, default_value_t = 10)]
        limit: u32,
        /// The daemon's URL (default: from the configuration's server.listen).
        #[arg(long)]
        endpoint: Option<String>,
        /// Configuration file (for the endpoint and auth token).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Says where one message stands (visible, delayed, in flight, blocked...) or what became of
    /// it (deleted, filtered out, expired, dead-lettered), without receiving it.
    Explain {
        /// The queue.
        #[arg(long)]
        queue: String,
        /// The daemon's URL (default: from the configuration's server.listen).
        #[arg(long)]
        endpoint: Option<String>,
        /// Configuration file (for the endpoint and auth token).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The message id.
        message_id: String,
    },
    /// Moves the messages of a dead-letter queue back to their source queues (or to --to) on a
    /// running daemon, showing the progress; exit 0 once every message is moved.
    Redrive {
        /// The dead-letter queue to empty.
        #[arg(long)]
        from: String,
        /// Where to move them (default: each message's original source queue).
        #[arg(long)]
        to: Option<String>,
        /// At most this many messages per second (1 to 500; default: as fast as possible).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=500))]
        rate: Option<u32>,
        /// The daemon's URL (default: from the configuration's server.listen).
        #[arg(long)]
        endpoint: Option<String>,
        /// Configuration file (for the endpoint and auth token).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Copies everything an SQLite database holds (queues, messages in every state,
    /// deduplication entries, tombstones, mappings, move tasks, asynchronous invocations) into an
    /// empty PostgreSQL database, to move to storage.backend = "postgres". Stop the daemon first.
    CopyStorage {
        /// The PostgreSQL database: postgres://user@host:port/db (the password in the URL or in
        /// PGPASSWORD).
        #[arg(long)]
        to: String,
        /// The SQLite file (default: the configuration's storage.path).
        #[arg(long)]
        from: Option<PathBuf>,
        /// Configuration file (for storage.path).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Lists the queues of a running daemon.
    Queues {
        /// The daemon's URL (default: from the configuration's server.listen).
        #[arg(long)]
        endpoint: Option<String>,
        /// Configuration file (for the endpoint and auth token).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run { config } => {
            let opts = LoadOptions {
                config_path: config.clone(),
                ..Default::default()
            };
            let cfg = match load(config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            esmd::telemetry::init(&cfg.log);
            // Every send, receive and delete waits for the writer's commit, and each of the
            // writer's statements resumes it from SQLite's own thread, which lands in the
            // runtime's shared queue. Tokio looks there only every 61st task by default, so
            // under load the writer waited behind the HTTP tasks at every statement; looking
            // there first made end-to-end throughput 4-8% higher (BENCHMARKS.md, issue 13).
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .global_queue_interval(1)
                .build()
            {
                Ok(r) => r,
                Err(e) => return fail(&e),
            };
            let start = esmd::daemon::StartOptions {
                writer_fault: test_writer_fault(),
                ..Default::default()
            };
            let result = runtime.block_on(esmd::daemon::run_with(cfg, opts, start));
            // Abandoned invocations (past the grace period) must not hold the process open.
            runtime.shutdown_timeout(Duration::from_secs(1));
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => fail(&e),
            }
        }
        Command::CheckConfig {
            config,
            show_secrets,
        } => match load(config) {
            Ok(mut cfg) => {
                if !show_secrets {
                    cfg.mask_secrets();
                }
                print!("{}", config::render(&cfg));
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Command::Send {
            queue,
            group,
            dedup,
            delay,
            attrs,
            endpoint,
            config,
            body,
        } => {
            let (endpoint, auth_token) = match client_target(endpoint, config) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let body = if body == "-" {
                let mut s = String::new();
                if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                    return fail(&e);
                }
                s
            } else {
                body
            };
            let args = esmd::client::SendArgs {
                queue,
                body,
                group,
                dedup,
                delay,
                attrs,
                auth_token,
            };
            client(async { esmd::client::send(&endpoint, args).await })
        }
        Command::Peek {
            queue,
            limit,
            endpoint,
            config,
        } => {
            let (endpoint, auth_token) = match client_target(endpoint, config) {
                Ok(t) => t,
                Err(code) => return code,
            };
            client(async {
                esmd::client::peek(&endpoint, &queue, limit, auth_token.as_deref()).await
            })
        }
        Command::Explain {
            queue,
            endpoint,
            config,
            message_id,
        } => {
            let (endpoint, auth_token) = match client_target(endpoint, config) {
                Ok(t) => t,
                Err(code) => return code,
            };
            client(async {
                esmd::client::explain(&endpoint, &queue, &message_id, auth_token.as_deref()).await
            })
        }
        Command::Redrive {
            from,
            to,
            rate,
            endpoint,
            config,
        } => {
            let (endpoint, auth_token) = match client_target(endpoint, config) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let args = esmd::client::RedriveArgs {
                from,
                to,
                rate,
                auth_token,
            };
            client(async { esmd::client::redrive(&endpoint, args).await })
        }
        Command::CopyStorage { to, from, config } => {
            let mut storage = match load(config) {
                Ok(cfg) => cfg.storage,
                Err(code) => return code,
            };
            if let Some(from) = from {
                storage.path = from;
            }
            if !storage.path.is_file() {
                eprintln!(
                    "esmd: {} is not a file: nothing to copy (give the SQLite database with --from)",
                    storage.path.display()
                );
                return ExitCode::FAILURE;
            }
            client(async {
                let report = esmd::daemon::copy_storage(&storage, &to).await?;
                let mut out = format!("copied {} into PostgreSQL:\n", storage.path.display());
                for (table, rows) in &report.tables {
                    out.push_str(&format!("  {table}: {rows} rows\n"));
                }
                Ok::<_, esmd::daemon::TransferError>(out)
            })
        }
        Command::Queues { endpoint, config } => {
            let (endpoint, auth_token) = match client_target(endpoint, config) {
                Ok(t) => t,
                Err(code) => return code,
            };
            client(async {
                esmd::client::queues_with_token(&endpoint, auth_token.as_deref()).await
            })
        }
    }
}

/// Debug (test) builds only: `ESMD_TEST_WRITER_PANIC_QUEUE=<queue>` makes the store's writer
/// panic on an operation for that queue, so that tests can check with the real binary that a
/// dead writer stops the daemon with a non-zero exit. Release builds never read it.
fn test_writer_fault() -> Option<esmd::daemon::WriterFault> {
    if !cfg!(debug_assertions) {
        return None;
    }
    let queue = std::env::var("ESMD_TEST_WRITER_PANIC_QUEUE").ok()?;
    esmd::domain::queue::QueueName::parse(&queue)
        .ok()
        .map(esmd::daemon::WriterFault::PanicOnQueue)
}

fn load(config_path: Option<PathBuf>) -> Result<Config, ExitCode> {
    match config::load(&LoadOptions {
        config_path,
        ..Default::default()
    }) {
        Ok(loaded) => Ok(loaded.config),
        Err(e) => {
            match &e {
                ConfigError::Invalid { problems } => {
                    eprintln!(
                        "esmd: invalid configuration ({} problem{}):",
                        problems.len(),
                        if problems.len() == 1 { "" } else { "s" }
                    );
                    for p in problems {
                        eprintln!("  {p}");
                    }
                }
                other => eprintln!("esmd: {}", chain(other)),
            }
            Err(ExitCode::from(EX_CONFIG))
        }
    }
}

/// The endpoint and token a client command uses: `--endpoint`, else `server.listen` from the
/// configuration (a wildcard address is reached through loopback).
fn client_target(
    endpoint: Option<String>,
    config_path: Option<PathBuf>,
) -> Result<(String, Option<String>), ExitCode> {
    let cfg = load(config_path)?;
    let endpoint = endpoint.unwrap_or_else(|| {
        let listen = cfg
            .server
            .listen
            .replace("0.0.0.0:", "127.0.0.1:")
            .replace("[::]:", "[::1]:");
        format!("http://{listen}")
    });
    Ok((endpoint, cfg.server.auth_token))
}

fn client<E: std::error::Error>(
    fut: impl std::future::Future<Output = Result<String, E>>,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    match runtime.block_on(fut) {
        Ok(out) => {
            println!("{}", out.trim_end());
            ExitCode::SUCCESS
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &dyn std::error::Error) -> ExitCode {
    eprintln!("esmd: {}", chain(e));
    ExitCode::FAILURE
}
