//! Soak (issue #7 point 5): minutes of mixed traffic against the real `esmd` binary, measuring
//! the process's resident memory and the database file, and checking at the end that nothing
//! was lost.
//!
//! ```sh
//! cargo build --release --bin esmd
//! cargo run --release --example soak -- --minutes 10
//! ```
//!
//! The traffic, offered at `--rate` operations a second by four sender tasks: single sends
//! through the REST shim and through `SendMessage`, `SendMessageBatch` of five, to a standard
//! queue `work` and a FIFO queue `orders.fifo` (16 message groups), each mapped to an `http`
//! function served by this program, with a redrive policy (3 receives) to a dead-letter queue;
//! and sends to a queue `polled` that no mapping polls, consumed by two clients with 20-second
//! long polls (`ReceiveMessage`), `DeleteMessageBatch`, and now and then
//! `ChangeMessageVisibility` to 0. The function fails about 4% of calls whole (500) and about 4%
//! partially (`batchItemFailures`), and always fails "poison" messages (1% of `work`, 0.5% of
//! `orders.fifo`), which the redrive moves to the dead-letter queues; two more clients drain
//! those with long polls.
//!
//! Every `--sample-seconds` it records esmd's `VmRSS` (`/proc/<pid>/status`), the sizes of the
//! database file and its `-wal`, the database's `page_count` and `freelist_count`, and the queue
//! depths. After the load, a bounded drain waits for every queue to empty, then every
//! acknowledged message must have been processed: answered with success by the function, or
//! received from a dead-letter queue (poison messages, and the rare message that failed three
//! times by chance), or received and deleted by a long-poll client. Poison must never succeed,
//! and FIFO first deliveries must follow each group's send order.
//!
//! FIFO deduplication entries live 5 minutes (swept every 5 s), so with FIFO traffic the
//! database, and the SQLite page cache with it, grows for the first 5 minutes and then levels
//! off; `--warmup-seconds 360` measures resident growth after that window.
//!
//! `tests/it/soak.rs` includes this file as a module and runs a 20-second version that asserts
//! those correctness properties (not speed).

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::Router;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions as _, Connection as _, SqliteConnection};

const ACCOUNT: &str = "000000000000";
const WORK: &str = "work";
const WORK_DLQ: &str = "work-dlq";
const ORDERS: &str = "orders.fifo";
const ORDERS_DLQ: &str = "orders-dlq.fifo";
const POLLED: &str = "polled";
const QUEUES: [&str; 5] = [WORK, WORK_DLQ, ORDERS, ORDERS_DLQ, POLLED];
const SENDERS: usize = 4;
/// FIFO groups per sender (each group is sent to by one sender, so its send order is known).
const GROUPS_PER_SENDER: usize = 4;
const POLLERS: usize = 2;
/// Longest the drain after the load may take.
const DRAIN_LIMIT: Duration = Duration::from_secs(180);

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `esmd` executable.
    pub esmd: PathBuf,
    /// How long the traffic runs.
    pub duration: Duration,
    /// Samples before this are warm-up; resident growth is measured from the first one after.
    pub warmup: Duration,
    /// How often esmd is measured.
    pub sample_every: Duration,
    /// Send operations offered per second (all senders together).
    pub rate: u32,
    /// Seeds the traffic mix, the bodies and the function's failures.
    pub seed: u64,
    /// Print one line per sample while running.
    pub verbose: bool,
}

/// One measurement of the esmd process and its database.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Since the traffic started.
    pub at: Duration,
    /// Whether the traffic was still running (false: the drain).
    pub loading: bool,
    /// `VmRSS`, KiB.
    pub rss_kib: u64,
    /// The database file, bytes.
    pub db: u64,
    /// Its `-wal` file, bytes.
    pub wal: u64,
    /// `PRAGMA page_count` and `PRAGMA freelist_count`.
    pub pages: i64,
    /// Free pages (space of deleted rows waiting for reuse).
    pub free_pages: i64,
    /// Rows of the FIFO deduplication table (each kept 5 minutes).
    pub dedup_rows: i64,
    /// Messages stored in all queues, in every state.
    pub depth: u64,
    /// Messages acknowledged to the senders so far.
    pub acked: u64,
}

/// What a run measured and found.
#[derive(Debug, Default)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// Warm-up length.
    pub warmup: Duration,
    /// How long the traffic ran, and the drain after it.
    pub load: Duration,
    /// How long the drain took.
    pub drain: Duration,
    /// Acknowledged sends per queue.
    pub acked: HashMap<&'static str, u64>,
    /// Function calls, failed whole, failed partly, records delivered.
    pub calls: u64,
    /// Calls answered 500.
    pub failed_calls: u64,
    /// Calls answered with some batch item failures.
    pub partial_calls: u64,
    /// Records delivered to the function.
    pub deliveries: u64,
    /// Messages received from the dead-letter queues.
    pub dead_lettered: u64,
    /// Messages received and deleted by the long-poll clients.
    pub polled: u64,
    /// `ReceiveMessage` calls of the long-poll clients, and how many came back empty.
    pub receives: (u64, u64),
    /// Acknowledged messages that were never processed.
    pub lost: Vec<String>,
    /// Other broken rules (FIFO order, poison succeeding, refused sends...).
    pub violations: Vec<String>,
    /// ERROR lines and panics in esmd's log.
    pub error_lines: Vec<String>,
    /// WARN lines in esmd's log.
    pub warn_lines: u64,
    /// esmd's exit code after SIGTERM.
    pub exit_code: Option<i32>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn mix(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------------
// The function
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct FnState {
    calls: u64,
    failed_calls: u64,
    partial_calls: u64,
    deliveries: u64,
    /// Keys answered with success.
    succeeded: HashSet<String>,
    /// FIFO: per group, the highest sequence first delivered so far.
    fifo_next: HashMap<String, u64>,
    violations: Vec<String>,
}

struct Function {
    seed: u64,
    state: Mutex<FnState>,
}

/// A message's key: the first word of its body (`w:<sender>:<n>[:poison]`,
/// `o:<group>:<seq>[:poison]`, `p:<sender>:<n>`).
fn key(body: &str) -> &str {
    body.split(' ').next().unwrap_or_default()
}

async fn function(State(f): State<Arc<Function>>, raw: Bytes) -> Response {
    let event: Value = serde_json::from_slice(&raw).unwrap_or(Value::Null);
    let records: Vec<(String, String, Option<String>)> = event["Records"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    (
                        r["messageId"].as_str().unwrap_or_default().to_owned(),
                        key(r["body"].as_str().unwrap_or_default()).to_owned(),
                        r["attributes"]["MessageGroupId"]
                            .as_str()
                            .map(str::to_owned),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let (status, answer) = {
        let mut s = lock(&f.state);
        let call = s.calls;
        s.calls += 1;
        s.deliveries += records.len() as u64;
        if records.is_empty() {
            s.violations
                .push(format!("call {call} is not an SQS event with records"));
        }
        // FIFO first deliveries, per group, in send order.
        for (_, k, group) in &records {
            let (Some(group), Some(seq)) = (group, k.split(':').nth(2)) else {
                continue;
            };
            let Ok(seq) = seq.parse::<u64>() else {
                continue;
            };
            let expected = *s.fifo_next.get(group).unwrap_or(&0);
            if seq >= expected {
                if seq > expected {
                    s.violations.push(format!(
                        "group {group}: {k} first delivered while seq {expected} was expected"
                    ));
                }
                s.fifo_next.insert(group.clone(), seq + 1);
            }
        }
        let r = mix(f.seed, call);
        let whole = r % 100 < 4;
        let mut failed: Vec<bool> = records
            .iter()
            .map(|(_, k, _)| k.ends_with(":poison"))
            .collect();
        if whole {
            failed.iter_mut().for_each(|x| *x = true);
            s.failed_calls += 1;
        } else if r % 100 < 8 && !records.is_empty() {
            failed[((r >> 8) as usize) % records.len()] = true;
        }
        // A FIFO handler stops at the first failure of a group: the rest of the group fails too.
        let mut stopped: HashSet<&str> = HashSet::new();
        for (i, (_, _, group)) in records.iter().enumerate() {
            if let Some(g) = group {
                if stopped.contains(g.as_str()) {
                    failed[i] = true;
                } else if failed[i] {
                    stopped.insert(g);
                }
            }
        }
        if !whole && failed.iter().any(|x| *x) {
            s.partial_calls += 1;
        }
        for ((_, k, _), failed) in records.iter().zip(&failed) {
            if !failed {
                s.succeeded.insert(k.clone());
            }
        }
        let answer = if whole {
            json!({"errorMessage": "injected failure"})
        } else {
            let items: Vec<Value> = records
                .iter()
                .zip(&failed)
                .filter(|(_, f)| **f)
                .map(|((id, _, _), _)| json!({ "itemIdentifier": id }))
                .collect();
            json!({ "batchItemFailures": items })
        };
        (if whole { 500 } else { 200 }, answer)
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(answer.to_string()))
        .expect("a valid response")
}

// ---------------------------------------------------------------------------------------------
// The process
// ---------------------------------------------------------------------------------------------

fn config(db: &Path, function_url: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"
[storage]
path = "{db}"
[log]
format = "json"
[queues.{WORK}]
visibility_timeout = "2s"
dead_letter_queue = "{WORK_DLQ}"
max_receive_count = 3
[queues.{WORK_DLQ}]
[queues."{ORDERS}"]
visibility_timeout = "2s"
dead_letter_queue = "{ORDERS_DLQ}"
max_receive_count = 3
[queues."{ORDERS_DLQ}"]
[queues.{POLLED}]
visibility_timeout = "5s"
[functions.fn]
type = "http"
url = "{function_url}"
timeout = "1s"
[mappings.work]
queue = "{WORK}"
function = "fn"
batch_size = 10
max_concurrency = 4
report_batch_item_failures = true
[mappings.orders]
queue = "{ORDERS}"
function = "fn"
batch_size = 10
max_concurrency = 4
report_batch_item_failures = true
"#,
        db = db.display()
    )
}

struct Process {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/<pid>/status")
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn queue_url(&self, queue: &str) -> String {
        format!("{}/{ACCOUNT}/{queue}", self.base)
    }

    /// One SQS JSON protocol call; an error unless it answers 200.
    async fn sqs(&self, action: &str, input: Value) -> anyhow::Result<Value> {
        let r = self
            .http
            .post(&self.base)
            .header("x-amz-target", format!("AmazonSQS.{action}"))
            .header("content-type", "application/x-amz-json-1.0")
            .body(input.to_string())
            .send()
            .await?;
        let status = r.status().as_u16();
        let text = r.text().await?;
        if status != 200 {
            bail!("{action}: {status} {text}");
        }
        Ok(serde_json::from_str(&text)?)
    }

    /// `POST /queues/{queue}/messages`; the message id.
    async fn rest_send(
        &self,
        queue: &str,
        body: String,
        fifo: Option<(&str, &str)>,
    ) -> anyhow::Result<String> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some((group, dedup)) = fifo {
            query.push(("group", group));
            query.push(("dedup", dedup));
        }
        let r = self
            .http
            .post(format!("{}/queues/{queue}/messages", self.base))
            .query(&query)
            .body(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        let v: Value = r.json().await?;
        match v["messageId"].as_str() {
            Some(id) if status == 201 => Ok(id.to_owned()),
            _ => bail!("REST send to {queue}: {status} {v}"),
        }
    }

    /// `SendMessage`; the message id.
    async fn sqs_send(
        &self,
        queue: &str,
        body: String,
        fifo: Option<(&str, &str)>,
    ) -> anyhow::Result<String> {
        let mut input = json!({ "QueueUrl": self.queue_url(queue), "MessageBody": body });
        if let Some((group, dedup)) = fifo {
            input["MessageGroupId"] = group.into();
            input["MessageDeduplicationId"] = dedup.into();
        }
        let v = self.sqs("SendMessage", input).await?;
        v["MessageId"]
            .as_str()
            .map(str::to_owned)
            .context("SendMessage answer without MessageId")
    }

    /// `SendMessageBatch`; how many entries were accepted, and the failures.
    async fn sqs_send_batch(&self, queue: &str, bodies: &[String]) -> anyhow::Result<Vec<bool>> {
        let entries: Vec<Value> = bodies
            .iter()
            .enumerate()
            .map(|(i, b)| json!({ "Id": i.to_string(), "MessageBody": b }))
            .collect();
        let v = self
            .sqs(
                "SendMessageBatch",
                json!({ "QueueUrl": self.queue_url(queue), "Entries": entries }),
            )
            .await?;
        let ok: HashSet<&str> = v["Successful"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["Id"].as_str()).collect())
            .unwrap_or_default();
        Ok((0..bodies.len())
            .map(|i| ok.contains(i.to_string().as_str()))
            .collect())
    }

    /// A long poll of up to 10 messages: `(body, receipt handle)` pairs.
    async fn receive(&self, queue: &str, wait: u64) -> anyhow::Result<Vec<(String, String)>> {
        let v = self
            .sqs(
                "ReceiveMessage",
                json!({ "QueueUrl": self.queue_url(queue), "MaxNumberOfMessages": 10, "WaitTimeSeconds": wait }),
            )
            .await?;
        Ok(v["Messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|m| {
                        (
                            m["Body"].as_str().unwrap_or_default().to_owned(),
                            m["ReceiptHandle"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// `DeleteMessageBatch`: which entries were deleted.
    async fn delete_batch(&self, queue: &str, handles: &[&str]) -> anyhow::Result<Vec<bool>> {
        let entries: Vec<Value> = handles
            .iter()
            .enumerate()
            .map(|(i, h)| json!({ "Id": i.to_string(), "ReceiptHandle": h }))
            .collect();
        let v = self
            .sqs(
                "DeleteMessageBatch",
                json!({ "QueueUrl": self.queue_url(queue), "Entries": entries }),
            )
            .await?;
        let ok: HashSet<&str> = v["Successful"]
            .as_array()
            .map(|a| a.iter().filter_map(|e| e["Id"].as_str()).collect())
            .unwrap_or_default();
        Ok((0..handles.len())
            .map(|i| ok.contains(i.to_string().as_str()))
            .collect())
    }

    /// Messages stored in `queue`, in every state.
    async fn depth(&self, queue: &str) -> anyhow::Result<u64> {
        let v: Value = self
            .http
            .get(format!("{}/queues/{queue}", self.base))
            .send()
            .await?
            .json()
            .await?;
        let n = |k: &str| v[k].as_u64().context("queue counts");
        Ok(n("visible")? + n("inFlight")? + n("delayed")?)
    }
}

// ---------------------------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------------------------

/// What the senders and the long-poll clients know.
#[derive(Default)]
struct Ledger {
    /// Acknowledged keys per queue.
    acked: HashMap<&'static str, Vec<String>>,
    /// Keys received from a dead-letter queue.
    dead_lettered: HashSet<String>,
    /// Keys received from `polled` and deleted.
    polled: HashSet<String>,
    receives: u64,
    empty_receives: u64,
    violations: Vec<String>,
}

fn body(rng: &mut StdRng, key: &str) -> String {
    let pad = rng.random_range(64..2048);
    format!("{key} {}", "x".repeat(pad))
}

async fn sender(
    n: usize,
    opts: Options,
    client: Client,
    ledger: Arc<Mutex<Ledger>>,
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
) {
    let mut rng = StdRng::seed_from_u64(mix(opts.seed, 1000 + n as u64));
    let period = Duration::from_secs_f64(SENDERS as f64 / f64::from(opts.rate.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut i = 0u64;
    let mut seqs = [0u64; GROUPS_PER_SENDER];
    let ack = |queue: &'static str, k: String| {
        lock(&ledger).acked.entry(queue).or_default().push(k);
        acked.fetch_add(1, Ordering::Relaxed);
    };
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        i += 1;
        let roll = rng.random_range(0..100);
        let result: anyhow::Result<()> = async {
            if roll < 45 {
                let poison = rng.random_bool(0.01);
                let k = format!("w:{n}:{i}{}", if poison { ":poison" } else { "" });
                let b = body(&mut rng, &k);
                if roll < 25 {
                    client.rest_send(WORK, b, None).await?;
                } else {
                    client.sqs_send(WORK, b, None).await?;
                }
                ack(WORK, k);
            } else if roll < 55 {
                let keys: Vec<String> = (0..5).map(|j| format!("w:{n}:{i}.{j}")).collect();
                let bodies: Vec<String> = keys.iter().map(|k| body(&mut rng, k)).collect();
                let ok = client.sqs_send_batch(WORK, &bodies).await?;
                for (k, ok) in keys.into_iter().zip(ok) {
                    if ok {
                        ack(WORK, k);
                    } else {
                        bail!("SendMessageBatch refused {k}");
                    }
                }
            } else if roll < 85 {
                let g = rng.random_range(0..GROUPS_PER_SENDER);
                let group = format!("g{}", n * GROUPS_PER_SENDER + g);
                let seq = seqs[g];
                let poison = rng.random_bool(0.005);
                let k = format!("o:{group}:{seq}{}", if poison { ":poison" } else { "" });
                let dedup = format!("{group}-{seq}");
                let b = body(&mut rng, &k);
                if roll < 70 {
                    client.rest_send(ORDERS, b, Some((&group, &dedup))).await?;
                } else {
                    client.sqs_send(ORDERS, b, Some((&group, &dedup))).await?;
                }
                seqs[g] += 1;
                ack(ORDERS, k);
            } else {
                let k = format!("p:{n}:{i}");
                let b = body(&mut rng, &k);
                client.sqs_send(POLLED, b, None).await?;
                ack(POLLED, k);
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            lock(&ledger)
                .violations
                .push(format!("sender {n}: a send failed: {e:#}"));
            // A FIFO send that failed would leave its group's order unknown: stop this sender.
            return;
        }
    }
}

/// A client that long-polls `queue` and deletes what it receives; on `polled`, it gives about
/// 5% back with `ChangeMessageVisibility` to 0 instead.
async fn consumer(
    n: u64,
    seed: u64,
    queue: &'static str,
    client: Client,
    ledger: Arc<Mutex<Ledger>>,
) {
    let mut rng = StdRng::seed_from_u64(mix(seed, 2000 + n));
    loop {
        let got = match client.receive(queue, 20).await {
            Ok(got) => got,
            Err(e) => {
                lock(&ledger)
                    .violations
                    .push(format!("ReceiveMessage on {queue}: {e:#}"));
                return;
            }
        };
        {
            let mut l = lock(&ledger);
            l.receives += 1;
            l.empty_receives += u64::from(got.is_empty());
        }
        let mut delete: Vec<(&str, &str)> = Vec::new();
        for (body, handle) in &got {
            if queue == POLLED && rng.random_bool(0.05) {
                let r = client
                    .sqs(
                        "ChangeMessageVisibility",
                        json!({ "QueueUrl": client.queue_url(queue), "ReceiptHandle": handle, "VisibilityTimeout": 0 }),
                    )
                    .await;
                if let Err(e) = r {
                    lock(&ledger)
                        .violations
                        .push(format!("ChangeMessageVisibility on {queue}: {e:#}"));
                }
            } else {
                delete.push((key(body), handle));
            }
        }
        if delete.is_empty() {
            continue;
        }
        let handles: Vec<&str> = delete.iter().map(|(_, h)| *h).collect();
        match client.delete_batch(queue, &handles).await {
            Ok(ok) => {
                let mut l = lock(&ledger);
                for ((k, _), ok) in delete.iter().zip(ok) {
                    if !ok {
                        l.violations
                            .push(format!("DeleteMessageBatch on {queue} refused {k}"));
                    } else if queue == POLLED {
                        l.polled.insert((*k).to_owned());
                    } else {
                        l.dead_lettered.insert((*k).to_owned());
                    }
                }
            }
            Err(e) => lock(&ledger)
                .violations
                .push(format!("DeleteMessageBatch on {queue}: {e:#}")),
        }
    }
}

async fn sample(
    pid: u32,
    db: &Path,
    conn: &mut SqliteConnection,
    client: &Client,
    started: Instant,
    loading: bool,
    acked: u64,
) -> anyhow::Result<Sample> {
    let rss_kib = rss_kib(pid)?;
    let (pages,): (i64,) = sqlx::query_as("PRAGMA page_count")
        .fetch_one(&mut *conn)
        .await?;
    let (free_pages,): (i64,) = sqlx::query_as("PRAGMA freelist_count")
        .fetch_one(&mut *conn)
        .await?;
    let (dedup_rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM dedup")
        .fetch_one(&mut *conn)
        .await?;
    let mut depth = 0;
    for q in QUEUES {
        depth += client.depth(q).await?;
    }
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    Ok(Sample {
        at: started.elapsed(),
        loading,
        rss_kib,
        db: file_len(db),
        wal: file_len(Path::new(&wal)),
        pages,
        free_pages,
        dedup_rows,
        depth,
        acked,
    })
}

fn print_sample(s: &Sample) {
    println!(
        "{:>7.1}s {} rss {:>7} KiB  db {:>9} B  wal {:>9} B  pages {:>6} (free {:>6})  dedup {:>6}  stored {:>6}  acked {:>8}",
        s.at.as_secs_f64(),
        if s.loading { "load " } else { "drain" },
        s.rss_kib,
        s.db,
        s.wal,
        s.pages,
        s.free_pages,
        s.dedup_rows,
        s.depth,
        s.acked
    );
}

/// Runs the soak: starts esmd, offers the traffic for `opts.duration`, drains, checks, stops.
///
/// # Errors
/// When esmd cannot be started or measured; broken rules are in the report, not errors.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("esmd.db");
    let func = Arc::new(Function {
        seed: opts.seed,
        state: Mutex::new(FnState::default()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let function_url = format!(
        "http://{}/2015-03-31/functions/fn/invocations",
        listener.local_addr()?
    );
    let app = Router::new().fallback(function).with_state(func.clone());
    let function_task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let config_path = dir.path().join("esmd.toml");
    std::fs::write(&config_path, config(&db, &function_url))?;
    let mut child = Command::new(&opts.esmd)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .current_dir(dir.path())
        .env_remove("RUST_LOG")
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {}", opts.esmd.display()))?;
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().context("stderr")?;
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lock(&sink).push(line);
        }
    });
    let mut process = Process { child, log };
    let pid = process.child.id();
    // esmd listens on port 0 and reports the address it bound in its "esmd ready" line.
    let ready_by = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        // The log is JSON here: {"message":"esmd ready","address":"...",...}.
        let found = lock(&process.log).iter().find_map(|l| {
            let line: Value = serde_json::from_str(l).ok()?;
            (line["message"] == "esmd ready")
                .then(|| line["address"].as_str().map(str::to_owned))?
        });
        if let Some(addr) = found {
            break addr;
        }
        if let Some(status) = process.child.try_wait()? {
            bail!(
                "esmd exited with {status}: {}",
                lock(&process.log).join("\n")
            );
        }
        if Instant::now() > ready_by {
            bail!("esmd was not ready within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // sleep-ok: polling another process's log for its ready line.
    };
    let client = Client {
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?,
        base: format!("http://{addr}"),
    };
    let mut conn = SqliteConnectOptions::from_str("sqlite:")?
        .filename(&db)
        .connect()
        .await?;

    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut senders = Vec::new();
    for n in 0..SENDERS {
        senders.push(tokio::spawn(sender(
            n,
            opts.clone(),
            client.clone(),
            ledger.clone(),
            stop.clone(),
            acked.clone(),
        )));
    }
    let mut consumers = Vec::new();
    for n in 0..POLLERS {
        consumers.push(tokio::spawn(consumer(
            n as u64,
            opts.seed,
            POLLED,
            client.clone(),
            ledger.clone(),
        )));
    }
    for (n, q) in [(10, WORK_DLQ), (11, ORDERS_DLQ)] {
        consumers.push(tokio::spawn(consumer(
            n,
            opts.seed,
            q,
            client.clone(),
            ledger.clone(),
        )));
    }

    let mut report = Report {
        seed: opts.seed,
        warmup: opts.warmup,
        ..Report::default()
    };
    let mut tick = tokio::time::interval(opts.sample_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let load_end = started + opts.duration;
    let mut drain_started = None;
    loop {
        tick.tick().await;
        let loading = Instant::now() < load_end;
        if !loading && drain_started.is_none() {
            stop.store(true, Ordering::Relaxed);
            for s in senders.drain(..) {
                tokio::time::timeout(Duration::from_secs(60), s)
                    .await
                    .context("the senders did not stop within 60 s")??;
            }
            report.load = started.elapsed();
            drain_started = Some(Instant::now());
        }
        let s = sample(
            pid,
            &db,
            &mut conn,
            &client,
            started,
            loading,
            acked.load(Ordering::Relaxed),
        )
        .await?;
        if opts.verbose {
            print_sample(&s);
        }
        let depth = s.depth;
        report.samples.push(s);
        if let Some(t) = drain_started {
            if depth == 0 {
                report.drain = t.elapsed();
                break;
            }
            if t.elapsed() > DRAIN_LIMIT {
                report.violations.push(format!(
                    "{depth} messages still stored {DRAIN_LIMIT:?} after the traffic stopped"
                ));
                report.drain = t.elapsed();
                break;
            }
        }
    }
    for c in &consumers {
        c.abort();
    }
    conn.close().await?;

    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid)?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)?;
    let exit_by = Instant::now() + Duration::from_secs(30);
    report.exit_code = loop {
        if let Some(status) = process.child.try_wait()? {
            break status.code();
        }
        if Instant::now() > exit_by {
            report
                .violations
                .push("esmd did not exit within 30 s of SIGTERM".into());
            break None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // sleep-ok: polling a child process's exit.
    };
    function_task.abort();

    // Reconcile.
    let l = lock(&ledger);
    let f = lock(&func.state);
    report.violations.extend(l.violations.iter().cloned());
    report.violations.extend(f.violations.iter().cloned());
    for (queue, keys) in &l.acked {
        report.acked.insert(*queue, keys.len() as u64);
        for k in keys {
            let done = if *queue == POLLED {
                l.polled.contains(k)
            } else {
                f.succeeded.contains(k) || l.dead_lettered.contains(k)
            };
            if !done {
                report.lost.push(format!("{queue}: {k}"));
            }
            if k.ends_with(":poison") && f.succeeded.contains(k) {
                report
                    .violations
                    .push(format!("poison message {k} was answered with success"));
            }
            if f.succeeded.contains(k) && l.dead_lettered.contains(k) {
                report.violations.push(format!(
                    "{k} was processed successfully and still moved to the dead-letter queue"
                ));
            }
        }
    }
    report.calls = f.calls;
    report.failed_calls = f.failed_calls;
    report.partial_calls = f.partial_calls;
    report.deliveries = f.deliveries;
    report.dead_lettered = l.dead_lettered.len() as u64;
    report.polled = l.polled.len() as u64;
    report.receives = (l.receives, l.empty_receives);
    for line in lock(&process.log).iter() {
        if line.contains("panicked") || line.contains(r#""level":"ERROR""#) {
            report.error_lines.push(line.clone());
        } else if line.contains(r#""level":"WARN""#) {
            report.warn_lines += 1;
        }
    }
    Ok(report)
}

impl Report {
    /// Samples taken while the traffic ran, after the warm-up.
    pub fn steady(&self) -> Vec<&Sample> {
        self.loaded_from(self.warmup)
    }

    fn loaded_from(&self, from: Duration) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.loading && s.at >= from)
            .collect()
    }

    /// Resident memory after warm-up: `(first, last, max)` in KiB, and the growth from the first
    /// to the last in percent.
    pub fn rss(&self) -> Option<(u64, u64, u64, f64)> {
        self.rss_from(self.warmup)
    }

    /// [`Report::rss`] counted from the first sample at or after `from`.
    pub fn rss_from(&self, from: Duration) -> Option<(u64, u64, u64, f64)> {
        let steady = self.loaded_from(from);
        let first = steady.first()?.rss_kib;
        let last = steady.last()?.rss_kib;
        let max = steady.iter().map(|s| s.rss_kib).max()?;
        Some((
            first,
            last,
            max,
            (last as f64 - first as f64) * 100.0 / first as f64,
        ))
    }

    /// Database + WAL bytes: `(at the end of the warm-up, max over the whole run, at the end)`.
    pub fn file(&self) -> Option<(u64, u64, u64)> {
        let size = |s: &Sample| s.db + s.wal;
        let first = size(self.steady().first()?);
        let max = self.samples.iter().map(size).max()?;
        let last = size(self.samples.last()?);
        Some((first, max, last))
    }

    /// A human summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let acked: u64 = self.acked.values().sum();
        out += &format!(
            "seed {}; traffic {:.0} s, drain {:.1} s; acknowledged {acked} messages ({:.0}/s): work {}, orders.fifo {}, polled {}\n",
            self.seed,
            self.load.as_secs_f64(),
            self.drain.as_secs_f64(),
            acked as f64 / self.load.as_secs_f64().max(1e-9),
            self.acked.get(WORK).unwrap_or(&0),
            self.acked.get(ORDERS).unwrap_or(&0),
            self.acked.get(POLLED).unwrap_or(&0),
        );
        out += &format!(
            "function: {} calls ({} failed whole, {} partly), {} records; dead-lettered {}; long polls {} ({} empty), {} received and deleted\n",
            self.calls,
            self.failed_calls,
            self.partial_calls,
            self.deliveries,
            self.dead_lettered,
            self.receives.0,
            self.receives.1,
            self.polled
        );
        if let Some((first, last, max, growth)) = self.rss() {
            out += &format!(
                "VmRSS after {:.0} s warm-up: {first} KiB, at the end of the traffic {last} KiB ({growth:+.1}%), max {max} KiB ({:+.1}%)\n",
                self.warmup.as_secs_f64(),
                (max as f64 - first as f64) * 100.0 / first as f64
            );
        }
        // FIFO deduplication entries live 5 minutes: after that the database stops growing with
        // them, and so does the page cache that holds it.
        let window = Duration::from_secs(360);
        if self.warmup < window && self.load > window + Duration::from_secs(60) {
            if let Some((first, last, max, growth)) = self.rss_from(window) {
                out += &format!(
                    "VmRSS after the 5-minute deduplication window (from {:.0} s): {first} KiB, at the end {last} KiB ({growth:+.1}%), max {max} KiB\n",
                    window.as_secs_f64()
                );
            }
        }
        if let Some((first, max, last)) = self.file() {
            let end = self.samples.last().expect("a sample");
            out += &format!(
                "db+wal: {first} B after warm-up, max {max} B, {last} B at the end (db {} B, wal {} B; {} pages, {} free; {} deduplication rows)\n",
                end.db, end.wal, end.pages, end.free_pages, end.dedup_rows
            );
        }
        out += &format!(
            "lost {}, violations {}, error lines {}, warn lines {}, exit code {:?}",
            self.lost.len(),
            self.violations.len(),
            self.error_lines.len(),
            self.warn_lines,
            self.exit_code
        );
        out
    }

    /// One row per `every` (and the last sample): time, VmRSS, file sizes, pages, free pages,
    /// deduplication rows, stored messages.
    pub fn timeline(&self, every: Duration) -> String {
        let mut out = String::from("| t (s) | VmRSS (KiB) | db (B) | wal (B) | pages | free pages | dedup rows | stored |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n");
        let mut next = Duration::ZERO;
        for s in &self.samples {
            if s.at >= next || std::ptr::eq(s, self.samples.last().expect("a sample")) {
                out += &format!(
                    "| {:.0}{} | {} | {} | {} | {} | {} | {} | {} |\n",
                    s.at.as_secs_f64(),
                    if s.loading { "" } else { " (drain)" },
                    s.rss_kib,
                    s.db,
                    s.wal,
                    s.pages,
                    s.free_pages,
                    s.dedup_rows,
                    s.depth
                );
                next = s.at + every;
            }
        }
        out
    }
}

fn parse_args() -> anyhow::Result<Options> {
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/soak -> target/<profile>/esmd
    let default_esmd = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("esmd"))
        .context("no directory for the esmd binary")?;
    let mut opts = Options {
        esmd: default_esmd,
        duration: Duration::from_secs(600),
        warmup: Duration::from_secs(60),
        sample_every: Duration::from_secs(5),
        rate: 250,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
        verbose: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--minutes" => opts.duration = Duration::from_secs_f64(value()?.parse::<f64>()? * 60.0),
            "--seconds" => opts.duration = Duration::from_secs_f64(value()?.parse()?),
            "--warmup-seconds" => opts.warmup = Duration::from_secs_f64(value()?.parse()?),
            "--sample-seconds" => opts.sample_every = Duration::from_secs_f64(value()?.parse()?),
            "--rate" => opts.rate = value()?.parse()?,
            "--seed" => opts.seed = value()?.parse()?,
            "--esmd" => opts.esmd = value()?.into(),
            "--quiet" => opts.verbose = false,
            other => bail!(
                "unknown argument {other}; use --minutes N | --seconds N, --warmup-seconds N, \
                 --sample-seconds N, --rate OPS, --seed N, --esmd PATH, --quiet"
            ),
        }
    }
    if !opts.esmd.exists() {
        bail!(
            "{} does not exist: run `cargo build --release --bin esmd` first, or pass --esmd PATH",
            opts.esmd.display()
        );
    }
    Ok(opts)
}

fn main() -> std::process::ExitCode {
    match soak() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("soak: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn soak() -> anyhow::Result<()> {
    let opts = parse_args()?;
    println!(
        "soak: {} for {:?} at {} ops/s, warm-up {:?}, seed {}",
        opts.esmd.display(),
        opts.duration,
        opts.rate,
        opts.warmup,
        opts.seed
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(run(opts))?;
    println!("\n{}", report.timeline(Duration::from_secs(60)));
    println!("{}", report.summary());
    for v in report.violations.iter().take(20) {
        println!("violation: {v}");
    }
    for l in report.lost.iter().take(20) {
        println!("lost: {l}");
    }
    for e in report.error_lines.iter().take(20) {
        println!("error line: {e}");
    }
    if !(report.lost.is_empty() && report.violations.is_empty() && report.error_lines.is_empty()) {
        bail!("the soak found problems");
    }
    Ok(())
}
