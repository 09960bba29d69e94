//! Crash test (issue #7 point 1): the real `esmd` binary runs as a child process while senders
//! push acknowledged messages through a standard and a FIFO queue and their mappings; it is
//! killed with SIGKILL at random moments and restarted on the same database each time.
//!
//! The function is an HTTP server inside this test, outside the esmd process, so it survives the
//! kills: it records every delivery (message id, body, and what it answered) and fails some calls
//! (whole-batch 500s and partial batch failures), so retries and the short visibility timeouts are
//! always in play. Senders count a send as acknowledged only on a 200/201; a connection error
//! during a kill is "not acknowledged" (a standard sender moves on to a new message, a FIFO sender
//! sends the same message again with the same deduplication id). Right after each restart a few
//! acknowledged FIFO messages are sent again with their deduplication ids.
//!
//! At the end, after a bounded drain, the test checks:
//! - every acknowledged message was delivered and answered with success, and the queues are empty
//!   (nothing acknowledged is missing);
//! - no message is gone after a failed delivery: the last delivery of every message was answered
//!   with success (a failure or a timeout must bring the message back);
//! - for each FIFO group, the order in which bodies were first delivered is their send order;
//! - deduplication held across the restarts: a resent FIFO message was answered with its original
//!   message id, and no FIFO body ever reached the function under a second message id (the same
//!   id again is crash redelivery, which at-least-once allows);
//! - no delivery carries a body nobody sent, esmd logged no error and no panic, the database
//!   passes `PRAGMA integrity_check`, and esmd still exits 0 on SIGTERM.
//!
//! Knobs: `ESMD_CRASH_KILLS` (default 5: about 20 s of load, what CI runs) and `ESMD_CRASH_SEED`
//! (default: from the clock; printed at the start and in every failure). Long version:
//! `ESMD_CRASH_KILLS=50 cargo test --release --test it crash:: -- --nocapture`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::Router;
use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _};
use tokio::task::JoinHandle;

use crate::common::process::EsmdProcess;

const STD: &str = "std";
const FIFO: &str = "events.fifo";
const ACCOUNT: &str = "000000000000";
/// Standard-queue senders and FIFO message groups (one sender each).
const STD_SENDERS: usize = 2;
const FIFO_GROUPS: usize = 4;
/// Acknowledged FIFO messages sent again right after each restart.
const RESENDS_PER_RESTART: usize = 4;
/// Deduplication lasts 5 minutes; resends pick messages acknowledged well within that.
const RESEND_MAX_AGE: Duration = Duration::from_secs(240);

/// Runs a test step that must finish within `limit`.
async fn bounded<T>(limit: Duration, what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A 64-bit mix (splitmix64 finaliser): the function's decisions as a pure function of the seed
/// and the call number.
fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn env_u64(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    Some(
        raw.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={raw:?} is not a number: {e}")),
    )
}

// ---------------------------------------------------------------------------------------------
// The function: an HTTP server in this process that records every delivery
// ---------------------------------------------------------------------------------------------

/// One record of one invocation, and what the function answered for it.
#[derive(Clone, Debug)]
struct Delivery {
    /// Arrival order of the call (0, 1, ...).
    call: u64,
    /// Position of the record in the call.
    pos: usize,
    queue: String,
    message_id: String,
    body: String,
    success: bool,
}

#[derive(Default)]
struct FnLog {
    calls: u64,
    failed_calls: u64,
    partial_calls: u64,
    in_flight: u64,
    deliveries: Vec<Delivery>,
    problems: Vec<String>,
}

struct Function {
    seed: u64,
    log: Mutex<FnLog>,
}

struct CallGuard(Arc<Function>);

impl Drop for CallGuard {
    fn drop(&mut self) {
        lock(&self.0.log).in_flight -= 1;
    }
}

/// Answers an SQS event: about 7% of calls fail whole (500), about 7% fail one record (and, on
/// a FIFO queue, every later record of its group, as a correct FIFO handler must), the rest
/// succeed; a quarter of the calls take up to 60 ms.
async fn function(State(f): State<Arc<Function>>, raw: Bytes) -> Response {
    let records: Vec<(String, String, String, Option<String>)> =
        match serde_json::from_slice::<Value>(&raw) {
            Ok(v) => v["Records"]
                .as_array()
                .map(|rs| {
                    rs.iter()
                        .map(|r| {
                            let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                            let arn = s(&r["eventSourceARN"]);
                            (
                                arn.rsplit(':').next().unwrap_or_default().to_owned(),
                                s(&r["messageId"]),
                                s(&r["body"]),
                                r["attributes"]["MessageGroupId"]
                                    .as_str()
                                    .map(str::to_owned),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            Err(_) => Vec::new(),
        };
    let (status, answer, delay) = {
        let mut log = lock(&f.log);
        let call = log.calls;
        log.calls += 1;
        if records.is_empty() {
            log.problems
                .push(format!("call {call}: not an SQS event with records"));
        }
        let r = mix(f.seed, call);
        let mut failed = vec![false; records.len()];
        let whole = r % 100 < 7;
        if whole {
            failed.iter_mut().for_each(|x| *x = true);
            log.failed_calls += 1;
        } else if r % 100 < 14 && !records.is_empty() {
            let i = ((r >> 8) as usize) % records.len();
            let group = records[i].3.clone();
            for (j, rec) in records.iter().enumerate() {
                if j == i || (j > i && group.is_some() && rec.3 == group) {
                    failed[j] = true;
                }
            }
            log.partial_calls += 1;
        }
        for (pos, (queue, id, body, _)) in records.iter().enumerate() {
            log.deliveries.push(Delivery {
                call,
                pos,
                queue: queue.clone(),
                message_id: id.clone(),
                body: body.clone(),
                success: !failed[pos],
            });
        }
        log.in_flight += 1;
        let delay = ((r >> 20) % 4 == 0).then(|| Duration::from_millis((r >> 24) % 60));
        let answer = if whole {
            json!({"errorMessage": "injected failure"})
        } else {
            let items: Vec<Value> = records
                .iter()
                .zip(&failed)
                .filter(|(_, f)| **f)
                .map(|(r, _)| json!({"itemIdentifier": r.1}))
                .collect();
            json!({ "batchItemFailures": items })
        };
        (if whole { 500 } else { 200 }, answer, delay)
    };
    let _guard = CallGuard(f.clone());
    if let Some(d) = delay {
        tokio::time::sleep(d).await; // sleep-ok: the function "working", so that some kills land while invocations run.
    }
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(answer.to_string()))
        .expect("a valid response")
}

async fn start_function(seed: u64) -> (Arc<Function>, String, JoinHandle<()>) {
    let f = Arc::new(Function {
        seed,
        log: Mutex::new(FnLog::default()),
    });
    let app = Router::new().fallback(function).with_state(f.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the function server");
    let addr = listener.local_addr().expect("function address");
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .await
            .expect("the function server runs");
    });
    (
        f,
        format!("http://{addr}/2015-03-31/functions/fn/invocations"),
        task,
    )
}

// ---------------------------------------------------------------------------------------------
// The esmd process
// ---------------------------------------------------------------------------------------------

/// `esmd run` ([`EsmdProcess`]), restarted on the same directory (and database) after each
/// kill. Each incarnation listens on port 0 and reports the port it got; the senders read the
/// current URL before every send.
struct Esmd {
    process: Option<EsmdProcess>,
    dir: tempfile::TempDir,
    function_url: String,
    url: Arc<RwLock<String>>,
    /// The log lines of the incarnations that ended, each prefixed with its number.
    history: Vec<String>,
    incarnation: u32,
}

impl Esmd {
    fn new(function_url: String) -> Esmd {
        Esmd {
            process: None,
            dir: tempfile::tempdir().expect("temp dir"),
            function_url,
            url: Arc::new(RwLock::new(String::new())),
            history: Vec::new(),
            incarnation: 0,
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.path().join("esmd.db")
    }

    fn url(&self) -> String {
        self.url.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Starts the next incarnation and waits until it is ready (the fixture panics with the
    /// log if it exits first).
    async fn start(&mut self) {
        assert!(self.process.is_none(), "esmd is already running");
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"
[storage]
path = "{db}"
synchronous = "normal"
[log]
format = "json"
[queues.{STD}]
visibility_timeout = "2s"
[queues."{FIFO}"]
visibility_timeout = "2s"
[functions.fn]
type = "http"
url = "{function}"
timeout = "1s"
[mappings.std]
queue = "{STD}"
function = "fn"
batch_size = 10
max_concurrency = 3
report_batch_item_failures = true
[mappings.fifo]
queue = "{FIFO}"
function = "fn"
batch_size = 10
max_concurrency = 3
report_batch_item_failures = true
"#,
            db = self.db().display(),
            function = self.function_url,
        );
        let process = EsmdProcess::start(self.dir.path(), &config, &[]).await;
        *self.url.write().unwrap_or_else(|p| p.into_inner()) = process.url();
        self.process = Some(process);
        self.incarnation += 1;
    }

    /// Moves the running incarnation's log into the history.
    fn ended(&mut self, process: &EsmdProcess) {
        let n = self.incarnation - 1;
        self.history
            .extend(process.lines().into_iter().map(|l| format!("[{n}] {l}")));
    }

    /// SIGKILL, reaped, its log kept.
    async fn kill(&mut self) {
        let mut process = self.process.take().expect("running");
        process.kill().await;
        self.ended(&process);
    }

    /// SIGTERM; returns the exit code (panics if it does not exit within `limit`).
    async fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let mut process = self.process.take().expect("running");
        process.signal(Signal::SIGTERM);
        let code = process.wait_exit(limit).await;
        self.ended(&process);
        code
    }

    /// Every log line so far, of every incarnation.
    fn lines(&self) -> Vec<String> {
        let mut lines = self.history.clone();
        if let Some(p) = &self.process {
            let n = self.incarnation - 1;
            lines.extend(p.lines().into_iter().map(|l| format!("[{n}] {l}")));
        }
        lines
    }

    fn tail(&self, n: usize) -> String {
        let lines = self.lines();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

// ---------------------------------------------------------------------------------------------
// Senders
// ---------------------------------------------------------------------------------------------

/// What the senders know.
#[derive(Default)]
struct Ledger {
    /// Every standard body ever sent (acknowledged or not).
    std_attempted: HashSet<String>,
    /// Acknowledged standard bodies and their message ids.
    std_acked: HashMap<String, String>,
    /// Per FIFO group, by sequence: the acknowledged message id and when.
    fifo_acked: Vec<Vec<(String, Instant)>>,
    /// Per FIFO group: how many sequence numbers were ever sent.
    fifo_attempted: Vec<usize>,
    /// Sends that were not acknowledged (connection errors during kills).
    not_acked: u64,
    /// Answers that were neither an acknowledgement nor a connection error.
    refused: Vec<String>,
    /// Resends of acknowledged FIFO messages right after restarts.
    resends: Vec<Resend>,
}

#[derive(Debug)]
struct Resend {
    body: String,
    original: String,
    answer: Option<String>,
}

enum Sent {
    Acked(String),
    /// The daemon could not be reached or the connection broke: unknown whether it was stored.
    Lost,
    /// An HTTP answer that is not an acknowledgement.
    Refused(String),
}

fn fifo_body(group: usize, seq: usize) -> String {
    format!("fifo-g{group}-{seq:06}")
}

/// `(group, seq)` of a FIFO body.
fn parse_fifo_body(body: &str) -> Option<(usize, usize)> {
    let rest = body.strip_prefix("fifo-g")?;
    let (g, s) = rest.split_once('-')?;
    Some((g.parse().ok()?, s.parse().ok()?))
}

/// Sends one message through the REST shim or the SQS JSON protocol.
async fn send(
    http: &reqwest::Client,
    base: &str,
    queue: &str,
    body: &str,
    fifo: Option<(&str, &str)>,
    via_sqs: bool,
) -> Sent {
    let request = if via_sqs {
        let mut input = json!({
            "QueueUrl": format!("{base}/{ACCOUNT}/{queue}"),
            "MessageBody": body,
        });
        if let Some((group, dedup)) = fifo {
            input["MessageGroupId"] = group.into();
            input["MessageDeduplicationId"] = dedup.into();
        }
        http.post(base)
            .header("x-amz-target", "AmazonSQS.SendMessage")
            .header("content-type", "application/x-amz-json-1.0")
            .body(input.to_string())
    } else {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some((group, dedup)) = fifo {
            query.push(("group", group));
            query.push(("dedup", dedup));
        }
        http.post(format!("{base}/queues/{queue}/messages"))
            .query(&query)
            .body(body.to_owned())
    };
    let response = match request.send().await {
        Ok(r) => r,
        Err(_) => return Sent::Lost,
    };
    let status = response.status().as_u16();
    let text = match response.text().await {
        Ok(t) => t,
        Err(_) => return Sent::Lost,
    };
    let key = if via_sqs { "MessageId" } else { "messageId" };
    match (status, serde_json::from_str::<Value>(&text)) {
        (200 | 201, Ok(v)) if v[key].is_string() => {
            Sent::Acked(v[key].as_str().unwrap_or_default().to_owned())
        }
        _ => Sent::Refused(format!("{queue} {body}: {status} {text}")),
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// A standard-queue sender: a new body for every attempt, acknowledged or not.
async fn std_sender(
    n: usize,
    url: Arc<RwLock<String>>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let http = http_client();
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let body = format!("std-{n}-{i:06}");
        lock(&ledger).std_attempted.insert(body.clone());
        let base = url.read().unwrap_or_else(|p| p.into_inner()).clone();
        match send(&http, &base, STD, &body, None, i % 2 == 0).await {
            Sent::Acked(id) => {
                lock(&ledger).std_acked.insert(body, id);
            }
            Sent::Lost => {
                lock(&ledger).not_acked += 1;
                tokio::time::sleep(Duration::from_millis(30)).await; // sleep-ok: back off while esmd is down.
            }
            Sent::Refused(why) => lock(&ledger).refused.push(why),
        }
        i += 1;
        tokio::time::sleep(Duration::from_millis(20)).await; // sleep-ok: pacing the offered load (about 50 sends a second per sender).
    }
}

/// A FIFO sender for one group: each message is sent again, with the same deduplication id,
/// until it is acknowledged; then the next one.
async fn fifo_sender(
    group: usize,
    url: Arc<RwLock<String>>,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
) {
    let http = http_client();
    let group_id = format!("g{group}");
    let mut seq = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let body = fifo_body(group, seq);
        let dedup = format!("dd-{body}");
        lock(&ledger).fifo_attempted[group] = seq + 1;
        let mut attempt = 0usize;
        loop {
            let base = url.read().unwrap_or_else(|p| p.into_inner()).clone();
            let via_sqs = (seq + attempt) % 2 == 0;
            match send(
                &http,
                &base,
                FIFO,
                &body,
                Some((&group_id, &dedup)),
                via_sqs,
            )
            .await
            {
                Sent::Acked(id) => {
                    let mut l = lock(&ledger);
                    assert_eq!(l.fifo_acked[group].len(), seq, "FIFO acks come in order");
                    l.fifo_acked[group].push((id, Instant::now()));
                    break;
                }
                Sent::Lost => lock(&ledger).not_acked += 1,
                Sent::Refused(why) => lock(&ledger).refused.push(why),
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(30)).await; // sleep-ok: back off while esmd is down.
        }
        seq += 1;
        tokio::time::sleep(Duration::from_millis(40)).await; // sleep-ok: pacing the offered load (about 25 sends a second per group).
    }
}

/// Right after a restart: sends a few acknowledged FIFO messages again, same group, body and
/// deduplication id. Each must be answered with the original message id and never delivered
/// under a new one.
async fn resend_some(http: &reqwest::Client, base: &str, ledger: &Mutex<Ledger>, rng: &mut StdRng) {
    let candidates: Vec<(usize, usize, String)> = {
        let l = lock(ledger);
        l.fifo_acked
            .iter()
            .enumerate()
            .flat_map(|(g, acks)| {
                acks.iter()
                    .enumerate()
                    .filter(|(_, (_, at))| at.elapsed() < RESEND_MAX_AGE)
                    .map(move |(s, (id, _))| (g, s, id.clone()))
            })
            .collect()
    };
    if candidates.is_empty() {
        return;
    }
    for _ in 0..RESENDS_PER_RESTART {
        let (g, s, original) = candidates[rng.random_range(0..candidates.len())].clone();
        let body = fifo_body(g, s);
        let dedup = format!("dd-{body}");
        let group_id = format!("g{g}");
        let via_sqs = rng.random_bool(0.5);
        let answer = match send(http, base, FIFO, &body, Some((&group_id, &dedup)), via_sqs).await {
            Sent::Acked(id) => Some(id),
            Sent::Lost => None,
            Sent::Refused(why) => {
                lock(ledger).refused.push(why);
                None
            }
        };
        lock(ledger).resends.push(Resend {
            body,
            original,
            answer,
        });
    }
}

/// `(visible, in flight, delayed)` of a queue, from the REST shim.
async fn queue_counts(http: &reqwest::Client, base: &str, queue: &str) -> Option<(u64, u64, u64)> {
    let v: Value = http
        .get(format!("{base}/queues/{queue}"))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let n = |k: &str| v[k].as_u64();
    Some((n("visible")?, n("inFlight")?, n("delayed")?))
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let kills = env_u64("ESMD_CRASH_KILLS").unwrap_or(5).max(1);
    let seed = env_u64("ESMD_CRASH_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64
    });
    let repro = format!("ESMD_CRASH_SEED={seed} ESMD_CRASH_KILLS={kills}");
    eprintln!("crash test: {repro} (rerun: {repro} cargo test --test it crash:: -- --nocapture)");
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();

    let (function, function_url, function_task) = start_function(seed).await;
    let http = http_client();
    let mut esmd = Esmd::new(function_url);
    esmd.start().await;

    let ledger = Arc::new(Mutex::new(Ledger {
        fifo_acked: vec![Vec::new(); FIFO_GROUPS],
        fifo_attempted: vec![0; FIFO_GROUPS],
        ..Ledger::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for n in 0..STD_SENDERS {
        senders.push(tokio::spawn(std_sender(
            n,
            esmd.url.clone(),
            ledger.clone(),
            stop.clone(),
        )));
    }
    for g in 0..FIFO_GROUPS {
        senders.push(tokio::spawn(fifo_sender(
            g,
            esmd.url.clone(),
            ledger.clone(),
            stop.clone(),
        )));
    }

    // The kills: each at a random moment 0.2 to 4 s after esmd became ready.
    let mut in_flight_at_kills = Vec::new();
    for k in 0..kills {
        let run = Duration::from_millis(rng.random_range(200..4000));
        tokio::time::sleep(run).await; // sleep-ok: the random moment of the next kill.
        let base = esmd.url();
        let mut in_flight = 0;
        for q in [STD, FIFO] {
            if let Some((_, f, _)) = queue_counts(&http, &base, q).await {
                in_flight += f;
            }
        }
        let invoking = lock(&function.log).in_flight;
        esmd.kill().await;
        in_flight_at_kills.push(in_flight);
        eprintln!(
            "kill {}/{kills} at {:.1}s after {run:?} up: {in_flight} messages in flight, {invoking} invocations running",
            k + 1,
            started.elapsed().as_secs_f64()
        );
        if rng.random_bool(0.5) {
            let down = Duration::from_millis(rng.random_range(0..500));
            tokio::time::sleep(down).await; // sleep-ok: esmd stays down a little while
        }
        esmd.start().await;
        resend_some(&http, &esmd.url(), &ledger, &mut rng).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await; // sleep-ok: a little more load on the last incarnation before the senders stop.
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        bounded(Duration::from_secs(30), "the senders to stop", s)
            .await
            .expect("a sender panicked");
    }
    let load_done = started.elapsed();

    // Drain: bounded wait until both queues are empty and every acknowledged message had a
    // successful delivery.
    let (acked_ids, acked_count) = {
        let l = lock(&ledger);
        let mut ids: HashSet<String> = l.std_acked.values().cloned().collect();
        ids.extend(l.fifo_acked.iter().flatten().map(|(id, _)| id.clone()));
        let n = ids.len();
        (ids, n)
    };
    let drain_limit = Duration::from_secs(120);
    let drain_deadline = Instant::now() + drain_limit;
    let base = esmd.url();
    loop {
        let missing: Vec<String> = {
            let log = lock(&function.log);
            let ok: HashSet<&str> = log
                .deliveries
                .iter()
                .filter(|d| d.success)
                .map(|d| d.message_id.as_str())
                .collect();
            acked_ids
                .iter()
                .filter(|id| !ok.contains(id.as_str()))
                .cloned()
                .collect()
        };
        let mut counts = Vec::new();
        for q in [STD, FIFO] {
            counts.push((q, queue_counts(&http, &base, q).await));
        }
        let empty = counts.iter().all(|(_, c)| *c == Some((0, 0, 0)));
        if missing.is_empty() && empty {
            break;
        }
        assert!(
            Instant::now() < drain_deadline,
            "[{repro}] after {drain_limit:?} of draining, {} acknowledged messages never had a successful delivery \
             (first: {:?}); queue counts (visible, in flight, delayed): {counts:?}\nlog tail:\n{}",
            missing.len(),
            &missing[..missing.len().min(10)],
            esmd.tail(30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await; // sleep-ok: polling another process's queues (deletions have no notification).
    }
    let drained = started.elapsed();

    let code = esmd.terminate(Duration::from_secs(30)).await;
    function_task.abort();
    let integrity = integrity_check(esmd.db()).await;

    // The verdict.
    let l = lock(&ledger);
    let fl = lock(&function.log);
    let mut violations: Vec<String> = Vec::new();
    violations.extend(fl.problems.iter().cloned());
    violations.extend(l.refused.iter().map(|r| format!("a send was refused: {r}")));

    // Per message id: deliveries in arrival order.
    let mut by_id: BTreeMap<&str, Vec<&Delivery>> = BTreeMap::new();
    for d in &fl.deliveries {
        by_id.entry(&d.message_id).or_default().push(d);
    }
    let mut ids_of_body: HashMap<&str, HashSet<&str>> = HashMap::new();
    for d in &fl.deliveries {
        ids_of_body
            .entry(&d.body)
            .or_default()
            .insert(&d.message_id);
    }
    // Nothing acknowledged is missing, and nothing is gone after a failed delivery.
    for id in &acked_ids {
        if !by_id.contains_key(id.as_str()) {
            violations.push(format!("acknowledged message {id} was never delivered"));
        }
    }
    for (id, ds) in &by_id {
        let last = ds.last().expect("at least one delivery");
        if !last.success {
            violations.push(format!(
                "message {id} ({}) is gone from the queue but its last delivery (call {}) was answered with failure; deliveries: {:?}",
                last.body,
                last.call,
                ds.iter().map(|d| (d.call, d.success)).collect::<Vec<_>>()
            ));
        }
    }
    // Every delivered body was sent, to the queue it came from; one id per body.
    for (body, ids) in &ids_of_body {
        let queue_ok = fl
            .deliveries
            .iter()
            .filter(|d| d.body == *body)
            .all(|d| d.queue == if body.starts_with("fifo-") { FIFO } else { STD });
        let sent = match parse_fifo_body(body) {
            Some((g, s)) => g < FIFO_GROUPS && s < l.fifo_attempted[g],
            None => l.std_attempted.contains(*body),
        };
        if !sent || !queue_ok {
            violations.push(format!(
                "delivered body {body:?} was never sent to that queue"
            ));
        }
        if ids.len() > 1 {
            violations.push(format!(
                "body {body:?} reached the function under {} message ids {ids:?}: a duplicate send was stored twice",
                ids.len()
            ));
        }
    }
    for (body, id) in &l.std_acked {
        if ids_of_body
            .get(body.as_str())
            .is_some_and(|ids| !ids.contains(id.as_str()))
        {
            violations.push(format!(
                "{body:?} was acknowledged as {id} but delivered under another id"
            ));
        }
    }
    for (g, acks) in l.fifo_acked.iter().enumerate() {
        for (s, (id, _)) in acks.iter().enumerate() {
            let body = fifo_body(g, s);
            if ids_of_body
                .get(body.as_str())
                .is_some_and(|ids| !ids.contains(id.as_str()))
            {
                violations.push(format!(
                    "{body:?} was acknowledged as {id} but delivered under another id"
                ));
            }
        }
    }
    // FIFO: first deliveries in send order, per group.
    let mut first_seen: HashSet<&str> = HashSet::new();
    let mut last_seq: Vec<Option<usize>> = vec![None; FIFO_GROUPS];
    let mut fifo_deliveries: Vec<&Delivery> =
        fl.deliveries.iter().filter(|d| d.queue == FIFO).collect();
    fifo_deliveries.sort_by_key(|d| (d.call, d.pos));
    for d in fifo_deliveries {
        if !first_seen.insert(&d.body) {
            continue;
        }
        let Some((g, s)) = parse_fifo_body(&d.body) else {
            continue;
        };
        if g >= FIFO_GROUPS {
            continue;
        }
        let expected = last_seq[g].map_or(0, |p| p + 1);
        if s != expected {
            violations.push(format!(
                "group g{g}: {:?} was first delivered (call {}) after seq {:?}; expected seq {expected} next",
                d.body, d.call, last_seq[g]
            ));
        }
        last_seq[g] = Some(last_seq[g].map_or(s, |p| p.max(s)));
    }
    // Deduplication across restarts.
    let resends_answered = l.resends.iter().filter(|r| r.answer.is_some()).count();
    for r in &l.resends {
        if let Some(answer) = &r.answer {
            if *answer != r.original {
                violations.push(format!(
                    "resent {:?} (same deduplication id, within 5 minutes) was answered with a new message id {answer} instead of {}",
                    r.body, r.original
                ));
            }
        }
    }
    if resends_answered == 0 {
        violations
            .push("no resend after a restart was answered: deduplication was not exercised".into());
    }
    // The process's own account.
    let lines = esmd.lines();
    let bad_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("panicked") || l.contains(r#""level":"ERROR""#))
        .collect();
    if !bad_lines.is_empty() {
        violations.push(format!(
            "esmd logged errors or panics:\n{}",
            bad_lines
                .iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    if code != Some(0) {
        violations.push(format!(
            "esmd exited with {code:?} on SIGTERM after the drain"
        ));
    }
    if integrity != "ok" {
        violations.push(format!("PRAGMA integrity_check: {integrity}"));
    }

    let redelivered = by_id.values().filter(|ds| ds.len() > 1).count();
    eprintln!(
        "crash test: {kills} kills over {:.1}s of load (in flight at the kills: {in_flight_at_kills:?}), drained at {:.1}s; \
         {acked_count} acknowledged ({} standard, {} FIFO), {} sends not acknowledged; {} calls ({} failed whole, {} partially), \
         {} deliveries, {redelivered} messages delivered more than once; {resends_answered} of {} resends answered; {} log lines",
        load_done.as_secs_f64(),
        drained.as_secs_f64(),
        l.std_acked.len(),
        l.fifo_acked.iter().map(Vec::len).sum::<usize>(),
        l.not_acked,
        fl.calls,
        fl.failed_calls,
        fl.partial_calls,
        fl.deliveries.len(),
        l.resends.len(),
        lines.len(),
    );
    assert!(
        violations.is_empty(),
        "[{repro}] {} violations:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

/// `PRAGMA integrity_check` on the database file, after esmd has exited.
async fn integrity_check(path: PathBuf) -> String {
    let mut conn = SqliteConnectOptions::from_str("sqlite:")
        .expect("options")
        .filename(&path)
        .read_only(true)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
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
