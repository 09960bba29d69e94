//! Shared pieces of the benchmarks: configuration knobs, a daemon on a temporary database, the
//! `http` function server that counts deliveries by message id, a minimal SQS JSON client over
//! reqwest, and measurement helpers (percentiles, RSS, CPU time).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use axum::Router;
use esmd::config::{load, LoadOptions};
use esmd::daemon::{start, RunningDaemon, StartOptions};
use serde::Deserialize;
use serde_json::{json, Value};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::Notify;

// ---------------------------------------------------------------------------------------------
// Knobs

/// An environment variable parsed as `T`, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a valid value")),
        Err(_) => default,
    }
}

/// `ESMD_BENCH_SECONDS`: how long each timed phase runs (default 60; 5 for a quick run).
pub fn seconds() -> u64 {
    env_or("ESMD_BENCH_SECONDS", 60)
}

/// `ESMD_BENCH_SYNC`: `full` (default) or `normal`.
pub fn synchronous() -> String {
    env_or("ESMD_BENCH_SYNC", "full".to_owned())
}

/// A message body of about 128 bytes, distinct per `n`.
pub fn body(n: u64) -> String {
    format!(
        "{{\"order\":{n:>12},\"customer\":\"c-{:06}\",\"payload\":\"{}\"}}",
        n % 1_000_000,
        "x".repeat(70)
    )
}

// ---------------------------------------------------------------------------------------------
// The daemon

/// What the daemon's configuration file contains besides `[server]` and `[storage]`.
pub struct Setup {
    /// `[queues.bench]` visibility timeout.
    pub visibility_timeout: &'static str,
    /// The mapping, if any: (function URL, batch size, batching window, max concurrency).
    pub mapping: Option<MappingSetup>,
}

/// One mapping from `bench` to the `sink` function.
pub struct MappingSetup {
    /// The function URL.
    pub url: String,
    /// `batch_size`
    pub batch_size: u32,
    /// `batching_window`, humantime.
    pub window: String,
    /// `max_concurrency`
    pub max_concurrency: u32,
}

/// A running daemon on a fresh database in a temporary directory (on the normal disk, not
/// tmpfs: `ESMD_BENCH_DIR`, default the target directory).
pub struct Daemon {
    pub daemon: RunningDaemon,
    pub dir: TempDir,
}

/// The queue every benchmark uses.
pub const QUEUE: &str = "bench";

/// Where temporary databases go: `ESMD_BENCH_DIR`, else `target/bench-tmp` under the crate.
pub fn temp_dir() -> TempDir {
    let base = std::env::var("ESMD_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target")
                .join("bench-tmp")
        });
    std::fs::create_dir_all(&base).expect("create the bench directory");
    tempfile::tempdir_in(base).expect("temp dir")
}

impl Daemon {
    pub async fn start(setup: Setup) -> Daemon {
        let dir = temp_dir();
        let mut toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n\n[storage]\npath = \"{}\"\nsynchronous = \"{}\"\n\n\
             [log]\nlevel = \"warn\"\n\n[queues.{QUEUE}]\nvisibility_timeout = \"{}\"\n",
            dir.path().join("esmd.db").display(),
            synchronous(),
            setup.visibility_timeout,
        );
        if let Some(m) = &setup.mapping {
            toml.push_str(&format!(
                "\n[functions.sink]\ntype = \"http\"\nurl = \"{}\"\ntimeout = \"30s\"\n\n[mappings.bench]\nqueue = \"{QUEUE}\"\n\
                 function = \"sink\"\nbatch_size = {}\nbatching_window = \"{}\"\nmax_concurrency = {}\n",
                m.url, m.batch_size, m.window, m.max_concurrency
            ));
        }
        let path = dir.path().join("esmd.toml");
        std::fs::write(&path, &toml).expect("write config");
        let loaded = load(&LoadOptions {
            config_path: Some(path),
            env: Some(HashMap::new()),
            cwd: Some(dir.path().to_owned()),
        })
        .unwrap_or_else(|e| panic!("bench config rejected: {e}\n{toml}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let daemon = start(
            loaded.config,
            StartOptions {
                listener: Some(listener),
                ..Default::default()
            },
        )
        .await
        .expect("daemon starts");
        Daemon { daemon, dir }
    }

    pub fn queue_url(&self) -> String {
        format!("http://{}/000000000000/{QUEUE}", self.daemon.addr())
    }

    pub fn queue_name(&self) -> esmd::domain::queue::QueueName {
        esmd::domain::queue::QueueName::parse(QUEUE).expect("valid")
    }

    /// visible + in flight + delayed.
    pub async fn stored(&self) -> u64 {
        let c = self
            .daemon
            .store()
            .counts(&self.queue_name())
            .await
            .expect("counts");
        c.visible + c.in_flight + c.delayed
    }

    pub async fn stop(self) {
        self.daemon.shutdown().await;
        drop(self.dir);
    }
}

// ---------------------------------------------------------------------------------------------
// The function: an axum server answering 200 `{}`, counting deliveries by message id

/// What the function server has seen.
#[derive(Default)]
pub struct Sink {
    /// Deliveries per message id (a UUID as u128).
    pub seen: Mutex<HashMap<u128, u32>>,
    /// When each message id first arrived (only when `record_times`).
    pub arrived: Mutex<HashMap<u128, Instant>>,
    pub record_times: bool,
    /// Records received, duplicates included.
    pub records: AtomicU64,
    /// Invocations received.
    pub invocations: AtomicU64,
    /// Woken on every invocation.
    pub notify: Notify,
}

#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "Records", borrow)]
    records: Vec<Record<'a>>,
}

#[derive(Deserialize)]
struct Record<'a> {
    #[serde(rename = "messageId")]
    message_id: &'a str,
}

/// A message id as a number (they are UUIDs).
pub fn id_num(id: &str) -> u128 {
    uuid::Uuid::parse_str(id)
        .unwrap_or_else(|_| panic!("message id {id} is not a UUID"))
        .as_u128()
}

async fn invoke(State(sink): State<Arc<Sink>>, body: Bytes) -> &'static str {
    let now = Instant::now();
    let event: Event<'_> =
        serde_json::from_slice(&body).expect("the function receives an SQS event");
    let ids: Vec<u128> = event.records.iter().map(|r| id_num(r.message_id)).collect();
    if sink.record_times {
        let mut arrived = sink.arrived.lock().expect("lock");
        for id in &ids {
            arrived.entry(*id).or_insert(now);
        }
    }
    {
        let mut seen = sink.seen.lock().expect("lock");
        for id in &ids {
            *seen.entry(*id).or_insert(0) += 1;
        }
    }
    sink.records.fetch_add(ids.len() as u64, Ordering::Relaxed);
    sink.invocations.fetch_add(1, Ordering::Relaxed);
    sink.notify.notify_waiters();
    "{}"
}

/// Starts the function server on 127.0.0.1:0; returns the sink and its invocation URL.
pub async fn function_server(record_times: bool) -> (Arc<Sink>, String) {
    let sink = Arc::new(Sink {
        record_times,
        ..Sink::default()
    });
    let app = Router::new()
        .route("/2015-03-31/functions/sink/invocations", post(invoke))
        .with_state(sink.clone());
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind function");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("function server") });
    (
        sink,
        format!("http://{addr}/2015-03-31/functions/sink/invocations"),
    )
}

// ---------------------------------------------------------------------------------------------
// A minimal SQS JSON protocol client (what boto3 sends, minus the signature)

#[derive(Clone)]
pub struct Sqs {
    pub http: reqwest::Client,
    pub endpoint: String,
    pub queue_url: String,
}

impl Sqs {
    pub fn new(addr: SocketAddr, queue_url: String) -> Sqs {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .build()
            .expect("client");
        Sqs {
            http,
            endpoint: format!("http://{addr}/"),
            queue_url,
        }
    }

    pub async fn call(&self, action: &str, body: &Value) -> Value {
        let resp = self
            .http
            .post(&self.endpoint)
            .header("X-Amz-Target", format!("AmazonSQS.{action}"))
            .header("Content-Type", "application/x-amz-json-1.0")
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        assert!(
            status.is_success(),
            "{action} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).expect("JSON answer")
    }

    /// SendMessageBatch of `bodies`; returns the message ids (every entry must succeed).
    pub async fn send_batch(&self, bodies: &[String]) -> Vec<u128> {
        let entries: Vec<Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| json!({"Id": i.to_string(), "MessageBody": b}))
            .collect();
        let out = self
            .call(
                "SendMessageBatch",
                &json!({"QueueUrl": self.queue_url, "Entries": entries}),
            )
            .await;
        let failed = out
            .get("Failed")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        assert_eq!(failed, 0, "SendMessageBatch entries failed: {out}");
        out["Successful"]
            .as_array()
            .expect("Successful")
            .iter()
            .map(|e| id_num(e["MessageId"].as_str().expect("MessageId")))
            .collect()
    }

    /// SendMessage; returns the message id.
    pub async fn send(&self, body: &str) -> u128 {
        let out = self
            .call(
                "SendMessage",
                &json!({"QueueUrl": self.queue_url, "MessageBody": body}),
            )
            .await;
        id_num(out["MessageId"].as_str().expect("MessageId"))
    }
}

// ---------------------------------------------------------------------------------------------
// Measurement

/// Percentile `p` (0..=100) of sorted values (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// A field of /proc/self/status in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    text.lines()
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) of this process so far, from /proc/self/stat (clock ticks of 10 ms).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command (which is in parentheses and may contain spaces).
    let rest = &stat[stat.rfind(')').expect("stat") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here (0-based, after
    // the pid and the command).
    let ticks: u64 = f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Prints a line to stdout and flushes, so that progress shows under `cargo bench`.
#[macro_export]
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        println!($($t)*);
        let _ = std::io::stdout().flush();
    }};
}

/// Rate per second.
pub fn per_sec(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}
