//! The daemon fixture: a whole esmd started in-process from a TOML text ([`TestDaemon`]), and a
//! fake Lambda function that records what the mappings send it ([`FunctionServer`]).
//!
//! [`TestDaemon::start`] writes the TOML into its own temporary directory, loads it with
//! `config::load` (an empty environment, so the developer's `ESMD__*` variables never leak in;
//! the directory as the working directory, so the default `storage.path` lands in it), binds
//! `127.0.0.1:0` and calls `daemon::start` with the system clock. [`TestDaemon::halt`] shuts it
//! down and keeps the directory, so that [`StoppedDaemon::restart`] can open the same database.
//! [`TestDaemon::start_with_clock`] takes a manual clock instead, for the tests that must
//! decide exactly when a visibility timeout runs out. [`TestDaemon::stepper`] gives such a test a
//! [`Poller`] for a disabled mapping (so no background worker competes for its queue) on the
//! daemon's store and metrics, which the test drives one [`Poller::poll_once`] at a time.
//!
//! [`FunctionServer`] is an axum server on `127.0.0.1:0` for `type = "http"` functions. It keeps
//! every call (raw bytes, JSON, and the event as `aws_lambda_events` reads it), answers as the
//! test programs it (status, headers, body, a delay, or holding until a [`Gate`] opens), counts
//! concurrent calls and notices two in-flight calls holding the same FIFO message group. Tests
//! wait on it through a watch channel bumped on every change: never by sleeping and polling.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::Router;
use esmd::clock::Clock;
use esmd::config::{self, Config, LoadOptions};
use esmd::daemon::{self, RunningDaemon, StartOptions};
use esmd::domain::message::{Message, NewMessage, SendReceipt};
use esmd::invoke::Invoker;
use esmd::metrics::Metrics;
use esmd::poller::{Mapping, PollReport, Poller};
use esmd::store::{QueueCounts, Store};
use serde_json::Value;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::q;

/// The name of the configuration file inside a daemon's directory.
pub const CONFIG_FILE: &str = "esmd.toml";

// ---------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------

/// A running esmd on `127.0.0.1:<port>` with its database in a temporary directory.
pub struct TestDaemon {
    daemon: RunningDaemon,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// The loaded configuration.
    pub config: Config,
    clock: Clock,
    dir: TempDir,
}

/// A daemon that was shut down; its directory (configuration and database) is kept.
pub struct StoppedDaemon {
    dir: TempDir,
    clock: Clock,
}

impl TestDaemon {
    /// Starts esmd with `toml` as its configuration file and the system clock.
    pub async fn start(toml: &str) -> Self {
        Self::start_with_clock(toml, Clock::System).await
    }

    /// Starts esmd with `toml` and `clock` (a manual clock moves queue time, visibility
    /// timeouts included, only when the test says so; function timeouts stay real).
    pub async fn start_with_clock(toml: &str, clock: Clock) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for the daemon");
        write_config(&dir, toml);
        Self::boot(dir, clock).await
    }

    async fn boot(dir: TempDir, clock: Clock) -> Self {
        let config = load_config(dir.path());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the daemon");
        let addr = listener
            .local_addr()
            .expect("the daemon listener's address");
        let opts = StartOptions {
            listener: Some(listener),
            clock: Some(clock.clone()),
            ..Default::default()
        };
        let daemon = daemon::start(config.clone(), opts)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the daemon should start: {}",
                    esmd::domain::error::chain(&e)
                )
            });
        assert_eq!(
            daemon.addr(),
            addr,
            "the daemon serves on the listener it was given"
        );
        TestDaemon {
            daemon,
            url: format!("http://{addr}"),
            config,
            clock,
            dir,
        }
    }

    /// Rewrites the configuration file with `toml` and applies it as SIGHUP would.
    pub async fn reload(&mut self, toml: &str) -> esmd::daemon::ReloadReport {
        write_config(&self.dir, toml);
        let config = load_config(self.dir.path());
        let report = self
            .daemon
            .reload(config.clone())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the reload should apply: {}",
                    esmd::domain::error::chain(&e)
                )
            });
        self.config = config;
        report
    }

    /// The clock the daemon reads.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The queue engine.
    pub fn store(&self) -> &Store {
        self.daemon.store()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        self.daemon.metrics()
    }

    /// The daemon's directory (configuration file and database).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database file.
    pub fn db_path(&self) -> &Path {
        &self.config.storage.path
    }

    /// A poller for mapping `name` of the configuration, driven by the test one step at a time
    /// ([`TestDaemon::poll_once`]) on the daemon's store and metrics. The mapping must be
    /// disabled (`enabled = false`): the daemon starts no workers for it, so nothing but the
    /// test claims from its queue.
    pub async fn stepper(&self, name: &str) -> Poller {
        let m = self
            .config
            .mappings
            .get(name)
            .unwrap_or_else(|| panic!("no mapping {name} in the configuration"));
        assert!(
            !m.enabled,
            "mapping {name} must be disabled, or its workers would compete with the test's steps"
        );
        let queue = self
            .store()
            .queue(&m.queue)
            .await
            .unwrap_or_else(|e| panic!("the queue of mapping {name}: {e}"));
        let mapping = Mapping::from_config(name, &self.config, queue.settings.visibility_timeout)
            .unwrap_or_else(|| panic!("mapping {name} resolves against the configuration"));
        Poller::new(
            mapping,
            self.store().clone(),
            Invoker::new(),
            self.metrics().clone(),
        )
    }

    /// One [`Poller::poll_once`] of `poller`, bounded (a function's own timeout included).
    pub async fn poll_once(&self, poller: &Poller) -> PollReport {
        let name = &poller.mapping().name;
        super::within(
            Duration::from_secs(60),
            &format!("one poll of mapping {name}"),
            poller.poll_once(),
        )
        .await
        .unwrap_or_else(|e| panic!("poll mapping {name}: {e}"))
    }

    /// Shuts down; returns whether every in-flight invocation finished within the grace period.
    pub async fn stop(self) -> bool {
        self.halt().await.0
    }

    /// Shuts down like [`TestDaemon::stop`] and keeps the directory for a restart.
    pub async fn halt(self) -> (bool, StoppedDaemon) {
        let TestDaemon {
            daemon, dir, clock, ..
        } = self;
        let drained = super::within(
            Duration::from_secs(60),
            "the daemon to shut down",
            daemon.shutdown(),
        )
        .await;
        (drained, StoppedDaemon { dir, clock })
    }

    /// Sends `messages` to `queue` in one atomic store call; panics if any is rejected.
    pub async fn send(&self, queue: &str, messages: Vec<NewMessage>) -> Vec<SendReceipt> {
        let results = self
            .store()
            .send(&q(queue), messages)
            .await
            .unwrap_or_else(|e| panic!("send to {queue}: {e}"));
        results
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                r.unwrap_or_else(|e| panic!("message {i} sent to {queue} was rejected: {e}"))
            })
            .collect()
    }

    /// Sends one message per body to `queue` in one atomic store call; returns the message ids.
    pub async fn send_bodies(&self, queue: &str, bodies: &[&str]) -> Vec<String> {
        let messages = bodies.iter().map(|b| NewMessage::body(*b)).collect();
        self.send(queue, messages)
            .await
            .into_iter()
            .map(|r| r.message_id)
            .collect()
    }

    /// Sends FIFO messages `(group, body)` in one atomic store call (content-based
    /// deduplication must be on); returns the message ids.
    pub async fn send_fifo(&self, queue: &str, messages: &[(&str, &str)]) -> Vec<String> {
        let messages = messages
            .iter()
            .map(|(group, body)| NewMessage {
                group_id: Some((*group).to_owned()),
                ..NewMessage::body(*body)
            })
            .collect();
        self.send(queue, messages)
            .await
            .into_iter()
            .map(|r| r.message_id)
            .collect()
    }

    /// The message counts of `queue`.
    pub async fn counts(&self, queue: &str) -> QueueCounts {
        self.store()
            .counts(&q(queue))
            .await
            .unwrap_or_else(|e| panic!("count the messages of {queue}: {e}"))
    }

    /// Waits until `queue`'s counts satisfy `done`, for at most `limit`; returns them.
    ///
    /// The store notifies receivers of new messages, but nothing of deletions, so this re-reads
    /// the counts between short pauses: it waits for a condition, bounded by `limit`, never for
    /// an amount of time.
    pub async fn wait_counts(
        &self,
        queue: &str,
        limit: Duration,
        what: &str,
        done: impl Fn(&QueueCounts) -> bool,
    ) -> QueueCounts {
        let deadline = Instant::now() + limit;
        loop {
            let counts = self.counts(queue).await;
            if done(&counts) {
                return counts;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what} on queue {queue}; counts are {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await; // sleep-ok: a pause between two reads of the counts (deletions have no notification).
        }
    }

    /// Waits until the metric `name` (summed over the series carrying `labels`) satisfies
    /// `done`, reading it at most every 10 ms (a gauge has no notification), for at most `limit`.
    pub async fn wait_metric(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        limit: Duration,
        done: impl Fn(f64) -> bool,
    ) -> f64 {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.metric(name, labels);
            if done(value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {name}{labels:?}; it is {value}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await; // sleep-ok: a pause between two reads of a gauge (it has no notification)
        }
    }

    /// Waits until `/readyz` answers 503: the shutdown has begun and the mappings were told to
    /// stop claiming (both happen together, before the shutdown first waits). Polls, bounded by
    /// `limit`, as a client of the daemon would.
    pub async fn wait_not_ready(url: &str, limit: Duration) {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + limit;
        loop {
            let status = http
                .get(format!("{url}/readyz"))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if status.as_ref().is_ok_and(|s| *s == 503) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "/readyz did not turn 503 within {limit:?}: {status:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await; // sleep-ok: a pause between two readiness checks.
        }
    }

    /// Waits until `queue` holds no message in any state (everything was deleted).
    pub async fn wait_empty(&self, queue: &str, limit: Duration) {
        self.wait_counts(queue, limit, "every message to be deleted", |c| {
            total(c) == 0
        })
        .await;
    }

    /// Receives from `queue` (a queue no mapping polls, such as a dead-letter queue) until `n`
    /// messages were received or `limit` passed; panics with what it got if fewer arrived.
    pub async fn receive_n(&self, queue: &str, n: usize, limit: Duration) -> Vec<Message> {
        let deadline = Instant::now() + limit;
        let mut got: Vec<Message> = Vec::new();
        while got.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out after {limit:?} receiving {n} messages from {queue}; got {:?}",
                got.iter().map(|m| &m.body).collect::<Vec<_>>()
            );
            let want = u32::try_from(n - got.len()).expect("a small count");
            // Bounded here too: with a manual clock the store's own wait never runs out.
            let batch = match tokio::time::timeout(
                left,
                self.store().receive_wait(&q(queue), want, None, left),
            )
            .await
            {
                Ok(received) => received.unwrap_or_else(|e| panic!("receive from {queue}: {e}")),
                Err(_) => Vec::new(),
            };
            got.extend(batch);
        }
        got
    }

    /// The sum of the series of metric `name` (with labels or without) that carry every label of
    /// `labels`, read from the metrics text (0 when there is none).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics().render();
        text.lines()
            .filter(|l| {
                l.starts_with(name)
                    && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' '))
            })
            .filter(|l| {
                labels
                    .iter()
                    .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl StoppedDaemon {
    /// Starts esmd again with the same configuration and clock on the same database file.
    pub async fn restart(self) -> TestDaemon {
        TestDaemon::boot(self.dir, self.clock).await
    }

    /// Starts esmd again on the same directory (so the same default database file) with a new
    /// configuration.
    pub async fn restart_with(self, toml: &str) -> TestDaemon {
        write_config(&self.dir, toml);
        TestDaemon::boot(self.dir, self.clock).await
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

fn write_config(dir: &TempDir, toml: &str) {
    let path = dir.path().join(CONFIG_FILE);
    std::fs::write(&path, toml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Loads `<dir>/esmd.toml` with an empty environment and `dir` as the working directory.
pub fn load_config(dir: &Path) -> Config {
    let opts = LoadOptions {
        config_path: Some(dir.join(CONFIG_FILE)),
        env: Some(HashMap::new()),
        cwd: Some(dir.to_owned()),
    };
    let loaded = config::load(&opts)
        .unwrap_or_else(|e| panic!("the test configuration should be valid:\n{e}"));
    loaded.config
}

/// Visible + in flight + delayed.
pub fn total(c: &QueueCounts) -> u64 {
    c.visible + c.in_flight + c.delayed
}

// ---------------------------------------------------------------------------------------------
// The function server
// ---------------------------------------------------------------------------------------------

/// A gate that held calls wait on until the test opens it.
#[derive(Clone, Debug)]
pub struct Gate(Arc<watch::Sender<bool>>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Gate(Arc::new(watch::channel(false).0))
    }

    /// Opens the gate: every call waiting on it (and every later one) goes on.
    pub fn open(&self) {
        self.0.send_replace(true);
    }

    async fn pass(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|open| *open).await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

/// How the server answers one call.
#[derive(Clone, Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// Response body.
    pub body: String,
    /// Wait this long before answering (the function "working").
    pub delay: Option<Duration>,
    /// Wait for this gate to open before answering (when `delay` is set too, the gate first).
    pub hold: Option<Gate>,
}

impl Reply {
    /// 200 with an empty body: a function that returned nothing.
    pub fn ok() -> Self {
        Reply {
            status: 200,
            headers: Vec::new(),
            body: String::new(),
            delay: None,
            hold: None,
        }
    }

    /// 200 with `body`.
    pub fn body(body: impl Into<String>) -> Self {
        Reply {
            body: body.into(),
            ..Reply::ok()
        }
    }

    /// `{"batchItemFailures":[{"itemIdentifier": id}...]}`.
    pub fn failures<S: AsRef<str>>(ids: &[S]) -> Self {
        let items: Vec<Value> = ids
            .iter()
            .map(|id| serde_json::json!({ "itemIdentifier": id.as_ref() }))
            .collect();
        Reply::body(serde_json::json!({ "batchItemFailures": items }).to_string())
    }

    /// A status with an error body.
    pub fn status(status: u16) -> Self {
        Reply {
            status,
            body: r#"{"errorMessage":"boom"}"#.into(),
            ..Reply::ok()
        }
    }

    /// 200 with `X-Amz-Function-Error: Unhandled`, as the Invoke API reports a handler's throw.
    pub fn function_error() -> Self {
        Reply::status(200).header("X-Amz-Function-Error", "Unhandled")
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Answers after `d`.
    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }

    /// Answers once `gate` opens.
    pub fn held(mut self, gate: &Gate) -> Self {
        self.hold = Some(gate.clone());
        self
    }
}

/// One call the server received.
#[derive(Clone, Debug)]
pub struct Call {
    /// 0 for the first call the server received, and so on.
    pub index: usize,
    /// When it arrived.
    pub at: Instant,
    /// The request body, exactly as received.
    pub raw: Bytes,
    /// The body as JSON.
    pub json: Value,
    /// The body as a Lambda handler written for AWS reads it.
    pub event: SqsEvent,
}

impl Call {
    /// The records.
    pub fn records(&self) -> &[SqsMessage] {
        &self.event.records
    }

    /// The message ids, in record order.
    pub fn ids(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| r.message_id.clone().unwrap_or_default())
            .collect()
    }

    /// The bodies, in record order.
    pub fn bodies(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| r.body.clone().unwrap_or_default())
            .collect()
    }

    /// The record with body `body`, if any.
    pub fn record(&self, body: &str) -> Option<&SqsMessage> {
        self.records()
            .iter()
            .find(|r| r.body.as_deref() == Some(body))
    }

    /// The queue name (the last field of the records' `eventSourceARN`).
    pub fn queue(&self) -> String {
        let arn = self
            .records()
            .first()
            .and_then(|r| r.event_source_arn.clone())
            .unwrap_or_default();
        arn.rsplit(':').next().unwrap_or_default().to_owned()
    }

    /// The distinct `MessageGroupId`s, in first-appearance order.
    pub fn groups(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in self.records() {
            if let Some(g) = r.attributes.get("MessageGroupId") {
                if !out.contains(g) {
                    out.push(g.clone());
                }
            }
        }
        out
    }
}

/// `ApproximateReceiveCount` of a record, as a number.
pub fn receive_count(r: &SqsMessage) -> u32 {
    let raw = r
        .attributes
        .get("ApproximateReceiveCount")
        .unwrap_or_else(|| panic!("record without ApproximateReceiveCount: {r:?}"));
    raw.parse()
        .unwrap_or_else(|e| panic!("ApproximateReceiveCount {raw:?} is not a number: {e}"))
}

/// Everything the server has seen so far.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every call, in arrival order.
    pub calls: Vec<Call>,
    /// Calls being answered now.
    pub in_flight: usize,
    /// The most calls ever answered at once.
    pub max_in_flight: usize,
    /// Groups that arrived while another in-flight call held them (FIFO ordering violations).
    pub group_overlaps: Vec<String>,
    /// Calls the server could not read as an SQS event, or with no records.
    pub problems: Vec<String>,
    groups_in_flight: BTreeMap<String, usize>,
    cursor: usize,
}

impl Seen {
    /// Total records over all calls.
    pub fn records(&self) -> usize {
        self.calls.iter().map(|c| c.records().len()).sum()
    }

    /// Whether every body of `bodies` arrived at least once.
    pub fn has_bodies(&self, bodies: &[&str]) -> bool {
        bodies
            .iter()
            .all(|b| self.calls.iter().any(|c| c.record(b).is_some()))
    }

    /// The calls holding a record with body `body`, in arrival order.
    pub fn deliveries_of(&self, body: &str) -> Vec<&Call> {
        self.calls
            .iter()
            .filter(|c| c.record(body).is_some())
            .collect()
    }

    fn summary(&self) -> String {
        let mut s = format!(
            "{} calls, {} in flight (max {}), overlaps {:?}, problems {:?}",
            self.calls.len(),
            self.in_flight,
            self.max_in_flight,
            self.group_overlaps,
            self.problems
        );
        for c in &self.calls {
            let recs: Vec<String> = c
                .records()
                .iter()
                .map(|r| {
                    format!(
                        "{}#{}",
                        r.body.as_deref().unwrap_or("?"),
                        r.attributes
                            .get("ApproximateReceiveCount")
                            .map_or("?", |v| v)
                    )
                })
                .collect();
            let _ = write!(
                s,
                "\n  call {} ({} bytes) from {}: {}",
                c.index,
                c.raw.len(),
                c.queue(),
                recs.join(", ")
            );
        }
        s
    }
}

/// How the server picks a [`Reply`] for a call.
type Responder = Arc<dyn Fn(&Call) -> Reply + Send + Sync>;

struct Shared {
    seen: Mutex<Seen>,
    responder: Mutex<Responder>,
    /// Bumped on every change of `seen`; waiters re-check their condition on each bump.
    version: watch::Sender<u64>,
}

impl Shared {
    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }
}

/// Marks a call finished when dropped, whether answered or abandoned by esmd.
struct InFlight {
    shared: Arc<Shared>,
    groups: Vec<String>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut seen = self.shared.seen();
            seen.in_flight -= 1;
            for g in &self.groups {
                if let Some(n) = seen.groups_in_flight.get_mut(g) {
                    *n -= 1;
                }
            }
        }
        self.shared.bump();
    }
}

/// A fake Lambda Invoke API endpoint on `127.0.0.1:<port>`. Stops when dropped.
pub struct FunctionServer {
    /// The URL to put into an `http` function.
    pub url: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FunctionServer {
    /// Starts a server that answers every call with [`Reply::ok`].
    pub async fn start() -> Self {
        let shared = Arc::new(Shared {
            seen: Mutex::new(Seen::default()),
            responder: Mutex::new(Arc::new(|_: &Call| Reply::ok())),
            version: watch::channel(0).0,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the function server");
        let addr = listener
            .local_addr()
            .expect("the function server's address");
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                panic!("the function server failed: {e}");
            }
        });
        FunctionServer {
            url: format!("http://{addr}/2015-03-31/functions/fn/invocations"),
            shared,
            task,
        }
    }

    /// Sets how every later call is answered. `f` runs while the server's record is locked, so
    /// it must not call back into the server.
    pub fn respond(&self, f: impl Fn(&Call) -> Reply + Send + Sync + 'static) {
        *self
            .shared
            .responder
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(f);
    }

    /// Waits until `check` returns `Some` for what the server has seen, for at most `limit`.
    /// Panics if the server saw a call that is not a valid, non-empty SQS event.
    pub async fn wait_for<T>(
        &self,
        limit: Duration,
        what: &str,
        mut check: impl FnMut(&Seen) -> Option<T>,
    ) -> T {
        let mut rx = self.shared.version.subscribe();
        let waiting = async {
            loop {
                rx.borrow_and_update();
                {
                    let seen = self.shared.seen();
                    assert!(
                        seen.problems.is_empty(),
                        "the function server got bad events: {}",
                        seen.summary()
                    );
                    if let Some(out) = check(&seen) {
                        return out;
                    }
                }
                rx.changed()
                    .await
                    .expect("the server's state outlives its waiters");
            }
        };
        match tokio::time::timeout(limit, waiting).await {
            Ok(out) => out,
            Err(_) => panic!(
                "timed out after {limit:?} waiting for {what}; the server saw {}",
                self.shared.seen().summary()
            ),
        }
    }

    /// Waits until at least `n` calls arrived; returns all calls so far.
    pub async fn wait_calls(&self, n: usize, limit: Duration) -> Vec<Call> {
        self.wait_for(limit, &format!("{n} calls"), |s| {
            (s.calls.len() >= n).then(|| s.calls.clone())
        })
        .await
    }

    /// Waits for the next `n` calls after those already returned by `next`; returns exactly them.
    pub async fn next(&self, n: usize, limit: Duration) -> Vec<Call> {
        let calls = self
            .wait_for(limit, &format!("{n} more calls"), |s| {
                (s.calls.len() >= s.cursor + n).then(|| s.calls[s.cursor..s.cursor + n].to_vec())
            })
            .await;
        self.shared.seen().cursor += n;
        calls
    }

    /// Waits until every body of `bodies` arrived at least once; returns all calls so far.
    pub async fn wait_bodies(&self, bodies: &[&str], limit: Duration) -> Vec<Call> {
        self.wait_for(limit, &format!("the bodies {bodies:?}"), |s| {
            s.has_bodies(bodies).then(|| s.calls.clone())
        })
        .await
    }

    /// Waits until at least `n` calls are in flight at once.
    pub async fn wait_in_flight(&self, n: usize, limit: Duration) {
        self.wait_for(limit, &format!("{n} concurrent calls"), |s| {
            (s.in_flight >= n).then_some(())
        })
        .await
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.seen().calls.clone()
    }

    /// Runs `f` on what the server has seen.
    pub fn with_seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.shared.seen())
    }
}

impl Drop for FunctionServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    let (json, event, problem) = match serde_json::from_slice::<Value>(&raw) {
        Ok(json) => match serde_json::from_value::<SqsEvent>(json.clone()) {
            Ok(event) if event.records.is_empty() => {
                (json, event, Some("an event with no records".to_owned()))
            }
            Ok(event) => (json, event, None),
            Err(e) => (
                json,
                SqsEvent::default(),
                Some(format!("not an SQS event: {e}")),
            ),
        },
        Err(e) => (
            Value::Null,
            SqsEvent::default(),
            Some(format!("not JSON: {e}")),
        ),
    };
    let responder = shared
        .responder
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let (reply, guard) = {
        let mut locked = shared.seen();
        let seen = &mut *locked;
        let call = Call {
            index: seen.calls.len(),
            at: Instant::now(),
            raw,
            json,
            event,
        };
        if let Some(p) = problem {
            seen.problems.push(format!("call {}: {p}", call.index));
        }
        let groups = call.groups();
        for g in &groups {
            let n = seen.groups_in_flight.entry(g.clone()).or_default();
            if *n > 0 {
                seen.group_overlaps.push(g.clone());
            }
            *n += 1;
        }
        seen.in_flight += 1;
        seen.max_in_flight = seen.max_in_flight.max(seen.in_flight);
        let reply = responder(&call);
        seen.calls.push(call);
        (
            reply,
            InFlight {
                shared: shared.clone(),
                groups,
            },
        )
    };
    shared.bump();
    if let Some(gate) = &reply.hold {
        gate.pass().await;
    }
    if let Some(d) = reply.delay {
        tokio::time::sleep(d).await; // sleep-ok: The function "working": a sleep inside the function under test.
    }
    let mut response = Response::builder()
        .status(reply.status)
        .header("content-type", "application/json");
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    let response = response
        .body(Body::from(reply.body))
        .expect("a valid programmed response");
    drop(guard);
    response
}

/// The `[functions.fn]` table for an `http` function at `url` with `timeout`.
pub fn http_function(url: &str, timeout: &str) -> String {
    format!("[functions.fn]\ntype = \"http\"\nurl = \"{url}\"\ntimeout = \"{timeout}\"\n")
}
