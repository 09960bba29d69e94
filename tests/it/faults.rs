//! Faults (issue #7 points 2, 3, 4 and 6), each against the real thing: the `esmd` binary as a
//! child process with its log captured (JSON lines), real HTTP on loopback, real SQLite files in
//! temporary directories, real processes for functions and for the lock holder.
//!
//! - Function faults: a hang (killed with its child at the timeout), a crash, garbage and
//!   endless output, a silent and a refusing HTTP endpoint: each is a function error with a log
//!   line and a metric, its message stays queued, and a healthy mapping keeps flowing meanwhile.
//! - Storage faults: a full database (`storage.max_size`) refuses sends with a retriable 503
//!   saying so, keeps every acknowledged message, and takes sends again once space is freed,
//!   without a restart; a database locked by another process makes writes wait out the busy
//!   timeout and then refuses them clearly, and esmd recovers when the lock goes, with the file
//!   intact; a corrupt, truncated, foreign or newer-schema file stops `esmd run` with exit 1 and
//!   one line naming it, and is left byte for byte as it was.
//! - Hostile requests: oversized, deeply nested, invalid UTF-8 and thousand-attribute requests
//!   get a 4xx and the server keeps serving.
//! - Secrets: neither `server.auth_token` nor a SigV4 signature or Authorization header ever
//!   reaches a log line, even at `RUST_LOG=trace`, on refused requests and on refused reloads.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_sqs::config::retry::RetryConfig;
use aws_sdk_sqs::config::{
    BehaviorVersion, ConfigBag, Credentials, Intercept, Region, RuntimeComponents,
};
use aws_sdk_sqs::error::{BoxError, ProvideErrorMetadata as _};
use esmd::clock::Clock;
use esmd::config::{StorageConfig, Synchronous};
use esmd::domain::message::NewMessage;
use esmd::store::Store;
use nix::sys::signal::Signal;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use sqlx::Connection as _;
use tempfile::TempDir;

use crate::common::api::{TestApi, ACCOUNT};
use crate::common::process::{self, EsmdProcess};
use crate::common::{q, within};

// ---------------------------------------------------------------------------------------------
// The binary as a process
// ---------------------------------------------------------------------------------------------

/// The metrics text of the daemon at `url`.
async fn metrics_text(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

/// A port on 127.0.0.1 that refuses connections for as long as the returned socket lives: bound,
/// so nothing else can take it, and not listening, so a connection attempt is refused.
fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("bind 127.0.0.1:0");
    let port = socket.local_addr().expect("its address").port();
    (socket, port)
}

/// Polls `check` until it yields a value, for at most `limit`: the condition is another
/// process's state, which nothing here can be notified of.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {limit:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(25)).await; // sleep-ok: polling another process
    }
}

/// The sum of the series of `name` carrying every label of `labels` in a Prometheus text.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// visible + inFlight + delayed of a queue, from the REST shim.
async fn stored(url: &str, queue: &str) -> u64 {
    let v: Value = reqwest::get(format!("{url}/queues/{queue}"))
        .await
        .expect("GET queue")
        .json()
        .await
        .expect("queue JSON");
    ["visible", "inFlight", "delayed"]
        .iter()
        .map(|k| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}")))
        .sum()
}

/// An SDK client for `url` making at most `attempts` attempts per call, quickly, and counting
/// them in `counter`.
fn sdk(url: &str, secret: &str, attempts: u32, counter: Option<Recorder>) -> aws_sdk_sqs::Client {
    let retry = RetryConfig::standard()
        .with_max_attempts(attempts)
        .with_initial_backoff(Duration::from_millis(50))
        .with_max_backoff(Duration::from_millis(200));
    let mut conf = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDFAULTS", secret, None, None, "test"))
        .endpoint_url(url)
        .retry_config(retry);
    if let Some(c) = counter {
        conf = conf.interceptor(c);
    }
    aws_sdk_sqs::Client::from_conf(conf.build())
}

/// Records each attempt an SDK client makes and the Authorization header it signed.
#[derive(Debug, Clone, Default)]
struct Recorder {
    attempts: Arc<AtomicUsize>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "Recorder"
    }

    fn read_before_transmit(
        &self,
        ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(a) = ctx.request().headers().get("authorization") {
            self.authorizations.lock().expect("lock").push(a.to_owned());
        }
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _ctx: &BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

fn queue_url(url: &str, queue: &str) -> String {
    format!("{url}/{ACCOUNT}/{queue}")
}

/// Receives everything `queue` holds (with a long visibility timeout, so nothing comes twice);
/// returns the bodies.
async fn drain_bodies(sqs: &aws_sdk_sqs::Client, url: &str, queue: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let r = sqs
            .receive_message()
            .queue_url(queue_url(url, queue))
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .send()
            .await
            .unwrap_or_else(|e| panic!("receive from {queue}: {e:?}"));
        let got = r.messages.unwrap_or_default();
        if got.is_empty() {
            return bodies;
        }
        bodies.extend(got.into_iter().filter_map(|m| m.body));
    }
}

/// `PRAGMA integrity_check` on a database no process has open.
async fn integrity_check(path: &Path) -> String {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .expect("open the database for integrity_check");
    let rows: Vec<(String,)> = sqlx::query_as("PRAGMA integrity_check")
        .fetch_all(&mut conn)
        .await
        .expect("integrity_check");
    conn.close().await.expect("close");
    rows.into_iter()
        .map(|(r,)| r)
        .collect::<Vec<_>>()
        .join("; ")
}

// ---------------------------------------------------------------------------------------------
// Point 2: function faults
// ---------------------------------------------------------------------------------------------

/// The faulty mappings of [`FUNCTION_FAULTS`] (each with its own queue and function of the same
/// name), the outcome label their invocations are counted under, and what their log line says.
const FAULTS: &[(&str, &str, &str)] = &[
    ("hang", "timeout", "function timed out"),
    ("crash", "error", "killed by signal"),
    ("garbage", "error", "malformed batchItemFailures response"),
    ("endless", "error", "response too large"),
    ("silent-http", "timeout", "function timed out"),
    ("refused-http", "error", "request failed"),
];

const FUNCTION_FAULTS: &str = r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "1s"
[storage]
path = "@DIR@/esmd.db"
[log]
format = "json"

[queues.healthy]
[queues.hang]
visibility_timeout = "60s"
[queues.crash]
visibility_timeout = "60s"
[queues.garbage]
visibility_timeout = "60s"
[queues.endless]
visibility_timeout = "60s"
[queues.silent-http]
visibility_timeout = "60s"
[queues.refused-http]
visibility_timeout = "60s"

[functions.log]
type = "log"
[functions.hang]
type = "command"
command = ["sh", "@DIR@/hang.sh"]
timeout = "6s"
[functions.crash]
type = "command"
command = ["sh", "-c", "cat > /dev/null; kill -SEGV $$"]
[functions.garbage]
type = "command"
command = ["sh", "-c", "cat > /dev/null; head -c 3000 /dev/urandom"]
[functions.endless]
type = "command"
command = ["sh", "-c", "cat > /dev/null; exec cat /dev/zero"]
timeout = "30s"
[functions.silent-http]
type = "http"
url = "http://127.0.0.1:@SILENT@/2015-03-31/functions/silent/invocations"
timeout = "6s"
[functions.refused-http]
type = "http"
url = "http://127.0.0.1:@REFUSED@/2015-03-31/functions/refused/invocations"

[mappings.healthy]
queue = "healthy"
function = "log"
[mappings.hang]
queue = "hang"
function = "hang"
[mappings.crash]
queue = "crash"
function = "crash"
[mappings.garbage]
queue = "garbage"
function = "garbage"
report_batch_item_failures = true
[mappings.endless]
queue = "endless"
function = "endless"
[mappings.silent-http]
queue = "silent-http"
function = "silent-http"
[mappings.refused-http]
queue = "refused-http"
function = "refused-http"
"#;

/// A hanging function: it starts a child that would sleep for ever, records both pids, and
/// waits for the child.
const HANG_SCRIPT: &str = r#"cat > /dev/null
sleep 1000 &
echo $! >> "@DIR@/hang.pids"
echo $$ >> "@DIR@/hang.pids"
wait
"#;

/// An HTTP endpoint that accepts connections and never answers; they stay open until the test
/// ends.
fn silent_endpoint() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().map_while(Result::ok) {
            held.push(stream);
        }
    });
    port
}

/// A process is gone when /proc has no entry for it or shows it as a zombie.
fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => matches!(
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next()),
            Some('Z' | 'X' | 'x')
        ),
    }
}

#[tokio::test]
async fn function_faults_are_errors_with_a_log_line_and_a_metric_and_lose_nothing_while_other_mappings_flow(
) {
    let dir = TempDir::new().expect("temp dir");
    std::fs::write(
        dir.path().join("hang.sh"),
        HANG_SCRIPT.replace("@DIR@", &dir.path().display().to_string()),
    )
    .expect("write hang.sh");
    let (_refusing, refused) = refusing_port();
    let config = FUNCTION_FAULTS
        .replace("@SILENT@", &silent_endpoint().to_string())
        .replace("@REFUSED@", &refused.to_string());
    let esmd = EsmdProcess::start(dir.path(), &config, &[]).await;
    let url = esmd.url();
    let http = reqwest::Client::new();
    let send = |queue: &str, body: &str| {
        let req = http
            .post(format!("{}/queues/{queue}/messages", url))
            .body(body.to_owned());
        async move {
            let r = req.send().await.expect("send");
            assert_eq!(r.status().as_u16(), 201, "send to a queue");
        }
    };
    for (queue, _, _) in FAULTS {
        send(queue, &format!("{{\"for\":\"{queue}\"}}")).await;
    }

    // While the hang and the silent endpoint hold their invocations, the healthy mapping flows.
    eventually(
        Duration::from_secs(10),
        "both slow invocations to start",
        || async {
            let m = metrics_text(&url).await;
            let held = |mapping| metric(&m, "esmd_invocations_in_flight", &[("mapping", mapping)]);
            (held("hang") == 1.0 && held("silent-http") == 1.0).then_some(())
        },
    )
    .await
    .unwrap();
    let started = Instant::now();
    for i in 0..20 {
        send("healthy", &format!("healthy-{i}")).await;
    }
    eventually(
        Duration::from_secs(10),
        "the healthy queue to drain",
        || async { (stored(&url, "healthy").await == 0).then_some(()) },
    )
    .await
    .unwrap();
    let m = metrics_text(&url).await;
    let held = |mapping| metric(&m, "esmd_invocations_in_flight", &[("mapping", mapping)]);
    assert!(
        held("hang") == 1.0 && held("silent-http") == 1.0,
        "the healthy mapping drained ({:?}) while the hang and the silent endpoint still held \
         their invocations:\n{m}",
        started.elapsed()
    );
    assert_eq!(
        metric(
            &m,
            "esmd_mapping_events_total",
            &[("mapping", "healthy"), ("event", "deleted")]
        ),
        20.0
    );

    // Every fault ends as a failed invocation with its outcome counted and a log line naming
    // the mapping and what went wrong.
    let m = eventually(
        Duration::from_secs(20),
        "every fault to be counted",
        || async {
            let m = metrics_text(&url).await;
            FAULTS
                .iter()
                .all(|(mapping, outcome, _)| {
                    metric(
                        &m,
                        "esmd_invocations_total",
                        &[("mapping", mapping), ("outcome", outcome)],
                    ) >= 1.0
                })
                .then_some(m)
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}:\n{}", esmd.lines().join("\n")));
    let log = esmd.json_lines();
    for (mapping, _, says) in FAULTS {
        assert!(
            metric(
                &m,
                "esmd_mapping_events_total",
                &[("mapping", mapping), ("event", "failed_invoke")]
            ) >= 1.0,
            "{mapping}: failed_invoke counted:\n{m}"
        );
        assert_eq!(
            metric(
                &m,
                "esmd_mapping_events_total",
                &[("mapping", mapping), ("event", "deleted")]
            ),
            0.0,
            "{mapping}: nothing deleted"
        );
        let line = log.iter().find(|l| {
            l["mapping"] == *mapping
                && ["WARN", "ERROR"].contains(&l["level"].as_str().unwrap_or_default())
                && l.to_string().contains(says)
        });
        assert!(
            line.is_some(),
            "{mapping}: a warning saying {says:?}; log:\n{}",
            esmd.lines().join("\n")
        );
        // Nothing is lost: the message is still there (in flight until its visibility timeout).
        assert_eq!(stored(&url, mapping).await, 1, "{mapping}: message kept");
    }
    let refused_line = log
        .iter()
        .find(|l| l["mapping"] == "refused-http" && l.to_string().contains("request failed"))
        .expect("the refused line");
    assert!(
        refused_line.to_string().to_lowercase().contains("refused"),
        "{refused_line}"
    );

    // The hang was killed at its timeout together with its child.
    let pids = std::fs::read_to_string(dir.path().join("hang.pids")).expect("hang.pids");
    let pids: Vec<&str> = pids.split_whitespace().collect();
    assert_eq!(pids.len(), 2, "one hanging invocation: {pids:?}");
    eventually(
        Duration::from_secs(10),
        "the hang and its child to be gone",
        || async { pids.iter().all(|p| process_gone(p)).then_some(()) },
    )
    .await
    .unwrap();
    esmd.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Point 3: a full database
// ---------------------------------------------------------------------------------------------

const FULL: &str = r#"
[server]
listen = "127.0.0.1:0"
[storage]
path = "@DIR@/esmd.db"
max_size = "1MiB"
[log]
format = "json"
[queues.keep]
[queues.ballast]
"#;

fn body(prefix: &str, i: usize) -> String {
    let mut b = format!("{prefix}-{i:05}-");
    b.push_str(&"x".repeat(3000));
    b
}

#[tokio::test]
async fn a_full_database_refuses_sends_retriably_keeps_every_acknowledged_message_and_recovers_without_a_restart(
) {
    let dir = TempDir::new().expect("temp dir");
    let esmd = EsmdProcess::start(dir.path(), FULL, &[]).await;
    let url = esmd.url();
    let once = sdk(&url, "x", 1, None);
    let send = |queue: &'static str, b: String| {
        let req = once
            .send_message()
            .queue_url(queue_url(&url, queue))
            .message_body(b);
        async move { req.send().await }
    };

    // Ballast, then the queue that is kept, until the database is full.
    for i in 0..80 {
        send("ballast", body("ballast", i))
            .await
            .expect("ballast fits in 1 MiB");
    }
    let mut acked = BTreeSet::new();
    let err = loop {
        let b = body("keep", acked.len());
        match send("keep", b.clone()).await {
            Ok(_) => {
                acked.insert(b);
            }
            Err(e) => break e,
        }
        assert!(acked.len() < 1000, "1 MiB never filled up");
    };
    assert!(acked.len() > 50, "only {} messages fitted", acked.len());
    let status = err.raw_response().map(|r| r.status().as_u16());
    assert_eq!(status, Some(503), "{err:?}");
    assert_eq!(err.code(), Some("ServiceUnavailable"), "{err:?}");
    let message = err.message().unwrap_or_default().to_owned();
    assert!(
        message.contains("database is full") && message.contains("nothing was stored"),
        "{message}"
    );

    // The REST shim says the same, with Retry-After for generic clients.
    let r = reqwest::Client::new()
        .post(format!("{}/queues/keep/messages", url))
        .body(body("rest", 0))
        .send()
        .await
        .expect("REST send");
    assert_eq!(r.status().as_u16(), 503);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    let v: Value = r.json().await.expect("JSON error");
    assert_eq!(v["error"], "ServiceUnavailable", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("database is full"),
        "{v}; log:\n{}",
        esmd.lines().join("\n")
    );
    // ... and the refusals are counted by cause.
    let m = reqwest::get(format!("{}/metrics", url))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metric(&m, "esmd_store_errors_total", &[("kind", "full")]) >= 2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "esmd_store_errors_total", &[("kind", "locked")]),
        0.0
    );

    // A client with the SDK's ordinary retries keeps retrying the 503 ...
    let recorder = Recorder::default();
    let retrying = sdk(&url, "x", 100, Some(recorder.clone()));
    let late = body("late", 0);
    let pending = tokio::spawn({
        let req = retrying
            .send_message()
            .queue_url(queue_url(&url, "keep"))
            .message_body(late.clone());
        async move { req.send().await }
    });
    eventually(Duration::from_secs(10), "the SDK to retry", || async {
        (recorder.attempts.load(Ordering::SeqCst) >= 2).then_some(())
    })
    .await
    .unwrap();
    assert!(!pending.is_finished(), "the send is still being retried");

    // ... and succeeds once space is freed (purging the ballast), with no restart.
    once.purge_queue()
        .queue_url(queue_url(&url, "ballast"))
        .send()
        .await
        .expect("purge works on a full database");
    let sent = within(Duration::from_secs(20), "the retried send", pending)
        .await
        .expect("join");
    sent.expect("the retried send succeeds once space is freed");
    acked.insert(late);
    for i in 0..5 {
        let b = body("after", i);
        send("keep", b.clone()).await.expect("sends work again");
        acked.insert(b);
    }

    // Every acknowledged message is there, exactly once, and nothing refused was stored.
    let bodies = drain_bodies(&once, &url, "keep").await;
    assert_eq!(bodies.len(), acked.len(), "no duplicates, nothing extra");
    let got: BTreeSet<String> = bodies.into_iter().collect();
    assert_eq!(got, acked);
    assert!(
        esmd.json_lines()
            .iter()
            .any(|l| l["level"] == "WARN" && l.to_string().contains("database is full")),
        "a warning says the database is full:\n{}",
        esmd.lines().join("\n")
    );
    esmd.stop().await;
    assert_eq!(integrity_check(&dir.path().join("esmd.db")).await, "ok");
}

// ---------------------------------------------------------------------------------------------
// Point 3: a database locked by another process
// ---------------------------------------------------------------------------------------------

/// Holds the database locked (`BEGIN EXCLUSIVE`) until a line arrives on stdin.
const LOCK_HOLDER: &str = r#"
import sqlite3, sys
con = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
con.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
con.execute("COMMIT")
con.close()
print("released", flush=True)
"#;

/// A python process holding `db` locked.
struct Lock {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Lock {
    async fn take(db: &Path) -> Lock {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(LOCK_HOLDER)
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut lock = Lock { child, out };
        lock.expect_line("locked").await;
        lock
    }

    async fn expect_line(&mut self, want: &str) {
        let mut line = String::new();
        let out = &mut self.out;
        tokio::task::block_in_place(|| out.read_line(&mut line)).expect("read the lock holder");
        assert_eq!(line.trim(), want);
    }

    async fn release(mut self) {
        let stdin = self.child.stdin.as_mut().expect("stdin");
        stdin.write_all(b"\n").expect("tell the lock holder");
        stdin.flush().expect("flush");
        self.expect_line("released").await;
        let status = tokio::task::block_in_place(|| self.child.wait()).expect("wait");
        assert!(status.success());
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const LOCKED: &str = r#"
[server]
listen = "127.0.0.1:0"
[storage]
path = "@DIR@/esmd.db"
[log]
format = "json"
[queues.q]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_locked_by_another_process_delays_then_refuses_writes_clearly_and_recovers() {
    let dir = TempDir::new().expect("temp dir");
    let db = dir.path().join("esmd.db");
    let esmd = EsmdProcess::start(dir.path(), LOCKED, &[]).await;
    let url = esmd.url();
    let http = reqwest::Client::new();
    let rest_send = |b: &str| {
        let req = http
            .post(format!("{}/queues/q/messages", url))
            .body(b.to_owned());
        async move { req.send().await.expect("REST send") }
    };
    assert_eq!(rest_send("before").await.status().as_u16(), 201);

    // A short hold: the send waits for the lock and succeeds once it is released.
    let lock = Lock::take(&db).await;
    let started = Instant::now();
    let waiting = tokio::spawn(rest_send("during"));
    tokio::time::sleep(Duration::from_millis(1000)).await; // sleep-ok: the other process holds the lock for a while; the send must wait it out.
    assert!(!waiting.is_finished(), "the send waits for the lock");
    lock.release().await;
    let r = within(Duration::from_secs(10), "the waiting send", waiting)
        .await
        .expect("join");
    assert_eq!(r.status().as_u16(), 201);
    assert!(started.elapsed() >= Duration::from_millis(1000));

    // A long hold: past the busy timeout, writes are refused with a clear retriable error,
    // while reads and health go on.
    let lock = Lock::take(&db).await;
    let once = sdk(&url, "x", 1, None);
    let sdk_send = once
        .send_message()
        .queue_url(queue_url(&url, "q"))
        .message_body("refused-sdk")
        .send();
    let (rest, sdk_result, queue) = tokio::join!(
        rest_send("refused-rest"),
        sdk_send,
        reqwest::get(format!("{}/queues/q", url))
    );
    assert_eq!(
        queue.expect("GET queue").status().as_u16(),
        200,
        "reads go on"
    );
    assert_eq!(rest.status().as_u16(), 503);
    let v: Value = rest.json().await.expect("JSON error");
    assert!(
        v["message"]
            .as_str()
            .unwrap_or_default()
            .contains("locked by another process"),
        "{v}"
    );
    let err = sdk_result.expect_err("refused while locked");
    assert_eq!(err.code(), Some("ServiceUnavailable"), "{err:?}");
    assert!(
        err.message()
            .unwrap_or_default()
            .contains("locked by another process"),
        "{err:?}"
    );
    let health = reqwest::get(format!("{}/healthz", url))
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    lock.release().await;

    // Recovered: writes work again, and exactly the acknowledged messages are there.
    assert_eq!(rest_send("after").await.status().as_u16(), 201);
    let mut bodies = drain_bodies(&once, &url, "q").await;
    bodies.sort();
    assert_eq!(bodies, ["after", "before", "during"]);
    assert!(
        esmd.json_lines()
            .iter()
            .any(|l| l["level"] == "WARN" && l.to_string().contains("locked by another process")),
        "a warning says the database is locked:\n{}",
        esmd.lines().join("\n")
    );
    esmd.stop().await;
    assert_eq!(integrity_check(&db).await, "ok");
}

/// A reload that cannot create a queue because another process holds the database says why
/// (issue 14 point 9d): the log line carries the cause, not just "cannot create queue".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_blocked_by_a_lock_logs_the_cause() {
    let dir = TempDir::new().expect("temp dir");
    let db = dir.path().join("esmd.db");
    let mut esmd = EsmdProcess::start(dir.path(), LOCKED, &[]).await;
    let lock = Lock::take(&db).await;
    let text = std::fs::read_to_string(esmd.config()).expect("config");
    std::fs::write(esmd.config(), format!("{text}[queues.added]\n")).expect("write");
    esmd.signal(Signal::SIGHUP);
    let line = esmd
        .wait_for_line(Duration::from_secs(30), "the failed reload", |l| {
            l.contains("configuration reload failed")
        })
        .await;
    lock.release().await;
    assert!(
        line.contains("cannot create queue added") && line.contains("locked by another process"),
        "{line}"
    );
    esmd.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Point 3: files esmd must refuse
// ---------------------------------------------------------------------------------------------

/// A real esmd database with a queue of 300 messages of 2 KiB, closed cleanly.
async fn real_database(path: &Path) {
    let cfg = StorageConfig {
        postgres: None,
        path: path.to_owned(),
        synchronous: Synchronous::Full,
        max_size: None,
        max_queues: 1000,
        tombstone_retention: std::time::Duration::from_secs(3600),
    };
    let store = Store::open(&cfg, Clock::System).await.expect("open");
    store
        .ensure_queue(&q("orders"), &Default::default())
        .await
        .expect("queue");
    for chunk in 0..30 {
        let batch = (0..10)
            .map(|i| NewMessage::body(format!("{chunk}-{i}-{}", "m".repeat(2000))))
            .collect();
        store.send(&q("orders"), batch).await.expect("send");
    }
    store.close().await;
    drop(store);
    checkpoint(path).await;
}

/// Copies everything in the WAL into the database file and empties the WAL, so that the file's
/// bytes alone are the database (a copy or a truncation of it means what it says).
async fn checkpoint(path: &Path) {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
        .await
        .expect("reopen");
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut conn)
        .await
        .expect("checkpoint");
    assert_eq!(busy, 0, "the checkpoint completed");
    conn.close().await.expect("close");
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    assert!(
        std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) == 0,
        "everything is in the main file"
    );
}

fn sha256(path: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(path).expect("read database")).to_vec()
}

/// Runs `esmd run` on `db` (inside `dir`) and expects exit 1 with one stderr line that names
/// the file and contains `says`; checks that the file's bytes did not change.
async fn refuses(dir: &Path, says: &str) {
    let db = dir.join("esmd.db");
    let before = sha256(&db);
    let mut esmd = EsmdProcess::spawn(
        dir,
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"@DIR@/esmd.db\"\n[queues.q]\n",
        &[],
    );
    let code = esmd.wait_exit(Duration::from_secs(30)).await;
    let lines = esmd.lines();
    let stderr = lines.join("\n");
    assert_eq!(code, Some(1), "{says}: exit code; stderr:\n{stderr}");
    assert_eq!(lines.len(), 1, "{says}: one line; stderr:\n{stderr}");
    assert!(
        lines[0].starts_with("esmd: ")
            && lines[0].contains(&db.display().to_string())
            && lines[0].contains(says)
            && lines[0].contains("left it untouched"),
        "{says}: {}",
        lines[0]
    );
    assert_eq!(sha256(&db), before, "{says}: the file is unchanged");
}

#[tokio::test]
async fn a_corrupt_truncated_or_foreign_database_is_refused_and_left_untouched() {
    let base = TempDir::new().expect("temp dir");
    let good = base.path().join("good.db");
    real_database(&good).await;
    let good_bytes = std::fs::read(&good).expect("read");
    assert!(good_bytes.len() > 200_000, "a database of many pages");
    let page = 4096;

    // Each case: a name, the bytes to put in esmd.db, and what the line must say.
    let mut garbage = vec![0u8; 64 * 1024];
    let mut x: u32 = 0x9e37_79b9;
    for b in garbage.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x.to_le_bytes()[0];
    }
    let mut overwritten = good_bytes.clone();
    overwritten[20 * page..21 * page].copy_from_slice(&garbage[..page]);
    let mut second_page = good_bytes.clone();
    second_page[page..2 * page].copy_from_slice(&garbage[..page]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "garbage",
            garbage.clone(),
            "corrupt or not an SQLite database",
        ),
        (
            "truncated at a page boundary",
            good_bytes[..good_bytes.len() / 2 / page * page].to_vec(),
            "corrupt or not an SQLite database",
        ),
        (
            "truncated mid-page",
            good_bytes[..good_bytes.len() / 2 + 123].to_vec(),
            "corrupt or not an SQLite database",
        ),
        (
            "cut inside the header",
            good_bytes[..60].to_vec(),
            "corrupt or not an SQLite database",
        ),
        (
            "a page overwritten",
            overwritten,
            "corrupt or not an SQLite database",
        ),
        (
            "the second page overwritten",
            second_page,
            "corrupt or not an SQLite database",
        ),
    ];
    for (name, bytes, says) in cases {
        let dir = TempDir::new().expect("temp dir");
        std::fs::write(dir.path().join("esmd.db"), &bytes).expect("write");
        eprintln!("case: {name}");
        refuses(dir.path(), says).await;
    }

    // Another program's SQLite database.
    let dir = TempDir::new().expect("temp dir");
    let foreign = dir.path().join("esmd.db");
    {
        let mut conn =
            sqlx::SqliteConnection::connect(&format!("sqlite:{}?mode=rwc", foreign.display()))
                .await
                .expect("create");
        sqlx::query("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
            .execute(&mut conn)
            .await
            .expect("table");
        conn.close().await.expect("close");
    }
    refuses(dir.path(), "not esmd's").await;
}

#[tokio::test]
async fn a_database_from_a_newer_esmd_is_refused_and_left_untouched() {
    let dir = TempDir::new().expect("temp dir");
    let db = dir.path().join("esmd.db");
    real_database(&db).await;
    {
        // What a newer esmd's next migration would leave behind.
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
            .await
            .expect("open");
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (29991231000000, 'from the future', 1, x'00', 1)",
        )
        .execute(&mut conn)
        .await
        .expect("insert a future migration");
        conn.close().await.expect("close");
    }
    checkpoint(&db).await;
    refuses(
        dir.path(),
        "was written by a newer esmd (schema version 29991231000000",
    )
    .await;

    // The library says the same to an embedder.
    let cfg = StorageConfig {
        postgres: None,
        path: db.clone(),
        synchronous: Synchronous::Full,
        max_size: None,
        max_queues: 1000,
        tombstone_retention: std::time::Duration::from_secs(3600),
    };
    let before = sha256(&db);
    let err = Store::open(&cfg, Clock::System)
        .await
        .expect_err("a newer schema is refused");
    assert!(
        matches!(
            err,
            esmd::store::OpenError::Newer {
                version: 29_991_231_000_000,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(sha256(&db), before);
}

// ---------------------------------------------------------------------------------------------
// Point 4: hostile requests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn oversized_deeply_nested_invalid_utf8_and_thousand_attribute_requests_get_4xx() {
    let api = TestApi::start().await;
    let url = api.create("hostile").await;
    let sqs = |action: &str, body: Vec<u8>| {
        let req = api
            .http
            .post(format!("{}/", api.url))
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(body);
        async move {
            let r = req.send().await.expect("an answer");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let thousand_attrs: serde_json::Map<String, Value> = (0..1000)
        .map(|i| {
            (
                format!("a{i}"),
                json!({"DataType": "String", "StringValue": "v"}),
            )
        })
        .collect();
    let entries: Vec<Value> = (0..1000)
        .map(|i| json!({"Id": format!("e{i}"), "MessageBody": "b"}))
        .collect();
    let tags: serde_json::Map<String, Value> =
        (0..1000).map(|i| (format!("t{i}"), json!("v"))).collect();
    let mut invalid_utf8 = br#"{"QueueUrl":""#.to_vec();
    invalid_utf8.extend_from_slice(url.as_bytes());
    invalid_utf8.extend_from_slice(b"\",\"MessageBody\":\"\xff\xfe\xc3\x28\"}");
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("nested arrays", "SendMessage", deep(100_000).into_bytes()),
        (
            "a nested member",
            "SendMessage",
            format!(r#"{{"QueueUrl":"{url}","MessageBody":{}}}"#, deep(50_000)).into_bytes(),
        ),
        (
            "nested objects",
            "CreateQueue",
            format!("{}{}", "{\"a\":".repeat(20_000), "}".repeat(20_000)).into_bytes(),
        ),
        ("invalid UTF-8", "SendMessage", invalid_utf8),
        (
            "a thousand message attributes",
            "SendMessage",
            json!({"QueueUrl": url, "MessageBody": "b", "MessageAttributes": thousand_attrs})
                .to_string()
                .into_bytes(),
        ),
        (
            "a thousand batch entries",
            "SendMessageBatch",
            json!({"QueueUrl": url, "Entries": entries}).to_string().into_bytes(),
        ),
        (
            "a thousand tags",
            "CreateQueue",
            json!({"QueueName": "tagged", "tags": tags}).to_string().into_bytes(),
        ),
        (
            "a thousand queue attributes",
            "SetQueueAttributes",
            json!({"QueueUrl": url, "Attributes": (0..1000).map(|i| (format!("A{i}"), json!("1"))).collect::<serde_json::Map<_, _>>()})
                .to_string()
                .into_bytes(),
        ),
        ("2 MiB", "SendMessage", vec![b' '; 2 * 1024 * 1024]),
    ];
    for (name, action, body) in cases {
        let (status, text) = sqs(action, body).await;
        assert!(
            (400..500).contains(&status),
            "{name}: {status} {}",
            &text[..text.len().min(300)]
        );
    }

    // The REST shim.
    let rest = |query: String, body: Vec<u8>| {
        let req = api
            .http
            .post(format!("{}/queues/hostile/messages{query}", api.url))
            .body(body);
        async move { req.send().await.expect("an answer").status().as_u16() }
    };
    let attrs: String = (0..1000)
        .map(|i| format!("attr=a{i}=String:v"))
        .collect::<Vec<_>>()
        .join("&");
    let rest_cases: Vec<(&str, String, Vec<u8>)> = vec![
        (
            "invalid UTF-8 body",
            String::new(),
            b"\xff\xfe\xfd".to_vec(),
        ),
        ("a thousand attributes", format!("?{attrs}"), b"b".to_vec()),
        ("2 MiB", String::new(), vec![b'a'; 2 * 1024 * 1024]),
        (
            "a huge delay",
            "?delay=99999999999999999999s".to_owned(),
            b"b".to_vec(),
        ),
    ];
    for (name, query, body) in rest_cases {
        let status = rest(query, body).await;
        assert!((400..500).contains(&status), "{name}: {status}");
    }

    // Still serving, and nothing hostile was stored.
    let health = api
        .http
        .get(format!("{}/healthz", api.url))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 200);
    let counts = api.store.counts(&q("hostile")).await.expect("counts");
    assert_eq!(
        counts.visible + counts.delayed,
        0,
        "nothing stored: {counts:?}"
    );
    api.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Point 6: no secret in the log
// ---------------------------------------------------------------------------------------------

const TOKEN: &str = "tok-S3CR3T-3c1f9a";
const WRONG_BEARER: &str = "wrong-S3CR3T-777";
const WRONG_SECRET: &str = "wrong-S3CR3T-888";
const FAKE_SIGNATURE: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

const AUTHED: &str = r#"
[server]
listen = "127.0.0.1:0"
auth_token = "tok-S3CR3T-3c1f9a"
[storage]
path = "@DIR@/esmd.db"
[queues.q]
[functions.log]
type = "log"
[mappings.q]
queue = "q"
function = "log"
"#;

#[tokio::test]
async fn no_secret_reaches_a_log_line_even_at_trace_level() {
    let dir = TempDir::new().expect("temp dir");
    let mut esmd = EsmdProcess::start(dir.path(), AUTHED, &[("RUST_LOG", "trace")]).await;
    let url = esmd.url();
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("{url}/readyz"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(ready.status().as_u16(), 200, "ready, with the right token");

    // Bearer: right and wrong.
    let r = http
        .post(format!("{url}/queues/q/messages"))
        .bearer_auth(TOKEN)
        .body("with the right token")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 201);
    let r = http
        .get(format!("{url}/queues"))
        .bearer_auth(WRONG_BEARER)
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 401);

    // SigV4: the right secret, a wrong one, and a forged signature.
    let recorder = Recorder::default();
    let right = sdk(&url, TOKEN, 1, Some(recorder.clone()));
    right
        .send_message()
        .queue_url(queue_url(&url, "q"))
        .message_body("signed")
        .send()
        .await
        .expect("a signed send");
    right.list_queues().send().await.expect("a signed list");
    let wrong = sdk(&url, WRONG_SECRET, 1, Some(recorder.clone()));
    let err = wrong
        .list_queues()
        .send()
        .await
        .expect_err("a wrong secret is refused");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(403));
    // Dated now, so that it is the signature that is refused, not an expired date.
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace(['-', ':'], "");
    let forged = format!(
        "AWS4-HMAC-SHA256 Credential=AKIDFAULTS/{}/us-east-1/sqs/aws4_request, \
         SignedHeaders=host;x-amz-date, Signature={FAKE_SIGNATURE}",
        &now[..8]
    );
    let r = http
        .post(format!("{url}/"))
        .header("x-amz-target", "AmazonSQS.ListQueues")
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-date", &now)
        .header("authorization", &forged)
        .body("{}")
        .send()
        .await
        .expect("forged");
    assert_eq!(r.status().as_u16(), 403);
    let code = r.headers()["x-amzn-query-error"].to_str().expect("ascii");
    assert_eq!(code, "SignatureDoesNotMatch;Sender");
    let body = r.text().await.expect("body");
    assert!(body.contains("does not match"), "{body}");

    // Reloads: a syntax error on the token's line, then a changed token.
    let text = std::fs::read_to_string(esmd.config()).expect("config");
    let broken = text.replace(&format!("\"{TOKEN}\""), &format!("\"{TOKEN}"));
    std::fs::write(esmd.config(), &broken).expect("write");
    esmd.signal(Signal::SIGHUP);
    esmd.wait_for_line(Duration::from_secs(10), "the refused reload", |l| {
        l.contains("reload refused")
    })
    .await;
    std::fs::write(esmd.config(), text.replace(TOKEN, "tok-S3CR3T-NEW-5d2e")).expect("write");
    esmd.signal(Signal::SIGHUP);
    esmd.wait_for_line(Duration::from_secs(10), "the reload", |l| {
        l.contains("configuration reloaded")
    })
    .await;
    // check-config on the broken file reports the error without the token too.
    std::fs::write(esmd.config(), &broken).expect("write");
    let check = process::command(dir.path())
        .arg("check-config")
        .arg("--config")
        .arg(esmd.config())
        .output()
        .await
        .expect("check-config");
    assert_eq!(check.status.code(), Some(78));
    let check_err = String::from_utf8_lossy(&check.stderr).into_owned();
    assert!(check_err.contains("line 4"), "{check_err}");

    // The message arrived through the mapping, so the log is a real one.
    esmd.wait_for_line(Duration::from_secs(10), "the batch", |l| {
        l.contains("with the right token")
    })
    .await;
    let signatures: Vec<String> = recorder
        .authorizations
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|a| a.split("Signature=").nth(1).map(str::to_owned))
        .collect();
    assert_eq!(signatures.len(), 3, "three signed requests");
    let lines = esmd.lines();
    esmd.stop().await;
    assert!(lines.len() > 30, "a trace-level log: {} lines", lines.len());
    let mut secrets = vec![
        TOKEN.to_owned(),
        "tok-S3CR3T-NEW-5d2e".to_owned(),
        WRONG_BEARER.to_owned(),
        WRONG_SECRET.to_owned(),
        FAKE_SIGNATURE.to_owned(),
        "S3CR3T".to_owned(),
        "Signature=".to_owned(),
        "Bearer ".to_owned(),
        "Credential=".to_owned(),
    ];
    secrets.extend(signatures);
    for line in lines.iter().chain(std::iter::once(&check_err)) {
        for s in &secrets {
            assert!(!line.contains(s.as_str()), "{s:?} in a log line: {line}");
        }
        assert!(
            !line.to_lowercase().contains("authorization:"),
            "an Authorization header in a log line: {line}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Issue 14 point 1: a full database still drains
// ---------------------------------------------------------------------------------------------

/// The gate function: fails (leaving the batch queued) until `DIR/go` exists, then appends each
/// record's body to `DIR/got` and succeeds.
const GATE: &str = r#"
import json, os, sys
event = json.load(sys.stdin)
d = sys.argv[1]
if not os.path.exists(os.path.join(d, "go")):
    sys.exit(1)
with open(os.path.join(d, "got"), "a") as f:
    for r in event["Records"]:
        f.write(r["body"] + "\n")
"#;

const DRAIN: &str = r#"
[server]
listen = "127.0.0.1:0"
[storage]
path = "@DIR@/esmd.db"
max_size = "1MiB"
[log]
format = "json"
[queues.sdk]
[queues.mapped]
visibility_timeout = "5s"
[functions.gate]
type = "command"
command = ["python3", "@DIR@/gate.py", "@DIR@"]
timeout = "3s"
[mappings.drain]
queue = "mapped"
function = "gate"
"#;

#[tokio::test]
async fn a_full_database_drains_through_a_mapping_and_receive_plus_delete_batch_then_takes_sends_again(
) {
    let dir = TempDir::new().expect("temp dir");
    std::fs::write(dir.path().join("gate.py"), GATE).expect("write gate.py");
    let esmd = EsmdProcess::start(dir.path(), DRAIN, &[]).await;
    let url = esmd.url();
    let sqs = sdk(&url, "x", 1, None);
    let send = |queue: &'static str, b: String| {
        let req = sqs
            .send_message()
            .queue_url(queue_url(&url, queue))
            .message_body(b);
        async move { req.send().await }
    };

    // Fill both queues until sends are refused, then with ever smaller bodies, so that the
    // database is full to the last page.
    let mut acked: [BTreeSet<String>; 2] = Default::default();
    let queues = ["sdk", "mapped"];
    let mut refused = None;
    for size in [200, 20, 1] {
        'fill: loop {
            for (k, queue) in queues.iter().enumerate() {
                let mut b = body(queue, acked[k].len());
                b.truncate(12 + size);
                match send(queue, b.clone()).await {
                    Ok(_) => {
                        acked[k].insert(b);
                    }
                    Err(e) => {
                        refused = Some(e);
                        break 'fill;
                    }
                }
            }
            assert!(acked[0].len() < 20_000, "1 MiB never filled up");
        }
    }
    let err = refused.expect("a refusal");
    assert_eq!(
        err.raw_response().map(|r| r.status().as_u16()),
        Some(503),
        "{err:?}"
    );
    assert!(
        acked[0].len() > 20,
        "only {} messages fitted",
        acked[0].len()
    );

    // Receive + DeleteMessageBatch drain `sdk` while sends are refused: everything is received
    // first (each receive moves its messages in the claim index), then deleted in batches.
    let mut drained = BTreeSet::new();
    let mut handles = Vec::new();
    loop {
        let r = sqs
            .receive_message()
            .queue_url(queue_url(&url, "sdk"))
            .max_number_of_messages(10)
            .visibility_timeout(600)
            .send()
            .await
            .unwrap_or_else(|e| panic!("receive on a full database: {e:?}\n{}", esmd.tail(20)));
        let got = r.messages.unwrap_or_default();
        if got.is_empty() {
            break;
        }
        for m in got {
            handles.push(m.receipt_handle.expect("receipt handle"));
            drained.insert(m.body.expect("body"));
        }
    }
    for chunk in handles.chunks(10) {
        let mut batch = sqs.delete_message_batch().queue_url(queue_url(&url, "sdk"));
        for (i, h) in chunk.iter().enumerate() {
            batch = batch.entries(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .build()
                    .expect("entry"),
            );
        }
        let deleted = batch
            .send()
            .await
            .unwrap_or_else(|e| panic!("DeleteMessageBatch on a full database: {e:?}"));
        assert!(deleted.failed.is_empty(), "{:?}", deleted.failed);
    }
    assert_eq!(
        drained, acked[0],
        "receive + delete took every acknowledged message"
    );

    // The mapping drains `mapped` once its function succeeds.
    std::fs::write(dir.path().join("go"), "").expect("open the gate");
    eventually(
        Duration::from_secs(60),
        "the mapping to drain its queue",
        || async { (stored(&url, "mapped").await == 0).then_some(()) },
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", esmd.tail(30)));
    let got: BTreeSet<String> = std::fs::read_to_string(dir.path().join("got"))
        .expect("the function's record")
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        got, acked[1],
        "the mapping delivered every acknowledged message"
    );

    // Sends succeed again, with no restart.
    for i in 0..20 {
        send("sdk", body("again", i))
            .await
            .expect("sends work again once the database drained");
    }
    assert_eq!(stored(&url, "sdk").await, 20);
    // The deletes on the full database left no tombstones (they would have taken the room the
    // drain and the sends need), and were counted so.
    let m = metrics_text(&url).await;
    assert!(
        metric(&m, "esmd_tombstones_total", &[("event", "skipped")]) > 0.0,
        "{m}"
    );
    esmd.stop().await;
    assert_eq!(integrity_check(&dir.path().join("esmd.db")).await, "ok");
}
