//! The ceiling: raw SQLite (sqlx, one connection, the same pragmas and schema as esmd) inserting
//! rows of the same shape as esmd's sends and deleting them, in transactions as large as esmd's
//! group commit makes them; and, in the same run, esmd's store doing send(10) -> receive(10) ->
//! delete(10) cycles from concurrent clients. Reports esmd's throughput as a ratio of the raw one.
//!
//! Also measures the disk's fsync rate and how many single SendMessage calls per second
//! concurrent clients get through the HTTP API (group commit: with N clients, many sends must
//! share one fsync to exceed the fsync rate).

use std::str::FromStr as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use esmd::domain::message::NewMessage;
use md5::{Digest as _, Md5};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions as _, SqliteConnection};

use crate::harness::{self, body, cpu_time, env_or, per_sec, Daemon, Setup, Sqs};
use crate::say;

const SCHEMA: &str = include_str!("../../migrations/0001_init.sql");

pub struct Outcome {
    pub roundtrip_us: f64,
    pub raw_multirow_rate: f64,
    pub raw_group: usize,
    pub raw_rate: f64,
    pub raw_update_rate: f64,
    pub raw_rate_unbatched: f64,
    pub store_rate: f64,
    pub store_cpu_us: f64,
    pub ratio: f64,
}

pub fn ceiling_seconds() -> u64 {
    env_or("ESMD_BENCH_CEILING_SECONDS", harness::seconds().min(20))
}

async fn raw_connection(dir: &std::path::Path) -> SqliteConnection {
    let sync = if harness::synchronous() == "normal" {
        SqliteSynchronous::Normal
    } else {
        SqliteSynchronous::Full
    };
    let mut conn = SqliteConnectOptions::from_str("sqlite:")
        .expect("options")
        .filename(dir.join("raw.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        .pragma("cache_size", "-16384")
        .pragma("temp_store", "memory")
        .connect()
        .await
        .expect("raw connect");
    sqlx::raw_sql(SCHEMA)
        .execute(&mut conn)
        .await
        .expect("schema");
    sqlx::query(
        "INSERT INTO queues (id, name, fifo, visibility_timeout_ms, delay_ms, retention_ms, max_message_size, receive_wait_ms, \
         content_based_dedup, dedup_scope, fifo_throughput_limit, created_at, last_modified_at) \
         VALUES (1, 'bench', 0, 30000, 0, 345600000, 1048576, 0, 0, 'queue', 'perQueue', 0, 0)",
    )
    .execute(&mut conn)
    .await
    .expect("queue row");
    conn
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Raw insert-then-delete of `group` rows per transaction for `secs`: messages/s.
/// With `update`, each row is also claimed (as a receive does) in a transaction between.
async fn raw(conn: &mut SqliteConnection, group: usize, update: bool, secs: u64) -> f64 {
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let now = now_ms();
        let mut ids = Vec::with_capacity(group);
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .expect("begin");
        for _ in 0..group {
            let b = body(n);
            let id = sqlx::query(
                "INSERT INTO messages (queue_id, message_id, body, attributes, md5_of_body, md5_of_attributes, \
                 trace_header, group_id, dedup_id, sequence_number, sent_at, retain_from, visible_at, is_head) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(1i64)
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&b)
            .bind(None::<String>)
            .bind(hex::encode(Md5::digest(b.as_bytes())))
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(None::<String>)
            .bind(now)
            .bind(now)
            .bind(now)
            .bind(false)
            .execute(&mut *conn)
            .await
            .expect("insert")
            .last_insert_rowid();
            ids.push(id);
            n += 1;
        }
        sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .expect("commit");
        if update {
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut *conn)
                .await
                .expect("begin");
            for id in &ids {
                sqlx::query(
                    "UPDATE messages SET visible_at = ?1, in_flight = 1, receive_count = receive_count + 1, \
                     first_receive_at = COALESCE(first_receive_at, ?2), received_at = ?2, receipt = ?3 WHERE id = ?4",
                )
                .bind(now + 30_000)
                .bind(now)
                .bind(7i64)
                .bind(id)
                .execute(&mut *conn)
                .await
                .expect("update");
            }
            sqlx::query("COMMIT")
                .execute(&mut *conn)
                .await
                .expect("commit");
        }
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .expect("begin");
        for id in &ids {
            sqlx::query("DELETE FROM messages WHERE id = ?")
                .bind(id)
                .execute(&mut *conn)
                .await
                .expect("delete");
        }
        sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .expect("commit");
    }
    per_sec(n, t0.elapsed())
}

/// Like [`raw`] without `update`, but with few statements: each 10 rows are one multi-row
/// INSERT (as a SendMessageBatch could be), and the whole group is deleted by one statement.
async fn raw_multirow(conn: &mut SqliteConnection, group: usize, secs: u64) -> f64 {
    let row = "(?, ?, ?, NULL, ?, NULL, NULL, NULL, NULL, NULL, ?, ?, ?, 0)";
    let sql = format!(
        "INSERT INTO messages (queue_id, message_id, body, attributes, md5_of_body, md5_of_attributes, \
         trace_header, group_id, dedup_id, sequence_number, sent_at, retain_from, visible_at, is_head) VALUES {} RETURNING id",
        [row; 10].join(", ")
    );
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(secs);
    let mut n = 0u64;
    while Instant::now() < deadline {
        let now = now_ms();
        let mut ids: Vec<i64> = Vec::with_capacity(group);
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .expect("begin");
        for _ in 0..group.div_ceil(10) {
            let mut q = sqlx::query_scalar::<_, i64>(&sql);
            for _ in 0..10 {
                let b = body(n);
                let md5 = hex::encode(Md5::digest(b.as_bytes()));
                q = q
                    .bind(1i64)
                    .bind(uuid::Uuid::new_v4().to_string())
                    .bind(b)
                    .bind(md5)
                    .bind(now)
                    .bind(now)
                    .bind(now);
                n += 1;
            }
            ids.extend(q.fetch_all(&mut *conn).await.expect("insert"));
        }
        sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .expect("commit");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .expect("begin");
        sqlx::query("DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))")
            .bind(serde_json::to_string(&ids).expect("ids"))
            .execute(&mut *conn)
            .await
            .expect("delete");
        sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .expect("commit");
    }
    per_sec(n, t0.elapsed())
}

/// Mean time of one trivial statement (`SELECT 1`) through sqlx: the fixed cost every
/// statement pays (a hop to sqlx's connection thread and back).
async fn roundtrip(conn: &mut SqliteConnection) -> f64 {
    for _ in 0..200 {
        sqlx::query("SELECT 1")
            .execute(&mut *conn)
            .await
            .expect("select");
    }
    let n = 5000;
    let t0 = Instant::now();
    for _ in 0..n {
        sqlx::query("SELECT 1")
            .execute(&mut *conn)
            .await
            .expect("select");
    }
    t0.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// esmd's store: `clients` concurrent send(10) -> receive(10) -> delete cycles for `secs`.
/// Returns (messages deleted per second, CPU µs per message).
async fn store_cycles(clients: usize, secs: u64) -> (f64, f64) {
    let d = Daemon::start(Setup {
        visibility_timeout: "300s",
        mapping: None,
    })
    .await;
    let store = d.daemon.store().clone();
    let q = d.queue_name();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (store, q, done, stop) = (store.clone(), q.clone(), done.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = (c as u64) << 40;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<NewMessage> =
                    (0..10).map(|i| NewMessage::body(body(n + i))).collect();
                n += 10;
                store.send(&q, batch).await.expect("send");
                let got = store.receive(&q, 10, None).await.expect("receive");
                let handles: Vec<String> = got.into_iter().map(|m| m.receipt_handle).collect();
                store.delete(&q, &handles).await.expect("delete");
                done.fetch_add(handles.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client");
    }
    let elapsed = t0.elapsed();
    let cpu = cpu_time() - cpu0;
    let n = done.load(Ordering::Relaxed);
    d.stop().await;
    (
        per_sec(n, elapsed),
        cpu.as_secs_f64() * 1e6 / n.max(1) as f64,
    )
}

pub async fn run() -> Outcome {
    let secs = ceiling_seconds();
    let clients: usize = env_or("ESMD_BENCH_CEILING_CLIENTS", 32);
    let group: usize = env_or("ESMD_BENCH_CEILING_GROUP", clients * 10);
    say!("ceiling: {secs}s per phase; raw SQLite transactions of {group} rows (= {clients} clients x 10, what one esmd group commit holds); synchronous={}", harness::synchronous());
    let dir = harness::temp_dir();
    let mut conn = raw_connection(dir.path()).await;
    let roundtrip_us = roundtrip(&mut conn).await;
    say!("ceiling: one trivial statement (SELECT 1) through sqlx takes {roundtrip_us:.1} us (idle process)");
    let raw_rate = raw(&mut conn, group, false, secs).await;
    say!(
        "ceiling: raw SQLite insert-then-delete, {group} rows per transaction: {raw_rate:.0} msg/s"
    );
    let raw_update_rate = raw(&mut conn, group, true, secs).await;
    say!("ceiling: raw SQLite insert-claim-delete (3 transactions like send/receive/delete), {group} rows per transaction: {raw_update_rate:.0} msg/s");
    let raw_rate_unbatched = raw(&mut conn, 10, false, secs.min(10)).await;
    say!("ceiling: raw SQLite insert-then-delete, 10 rows per transaction (no group commit): {raw_rate_unbatched:.0} msg/s");
    let raw_multirow_rate = raw_multirow(&mut conn, group, secs).await;
    say!("ceiling: raw SQLite insert-then-delete, {group} rows per transaction in multi-row statements (10-row INSERTs, one DELETE): {raw_multirow_rate:.0} msg/s");
    drop(conn);
    drop(dir);
    let (store_rate, store_cpu_us) = store_cycles(clients, secs).await;
    let ratio = store_rate / raw_rate;
    say!(
        "ceiling: esmd store, {clients} clients x send(10)/receive(10)/delete(10): {store_rate:.0} msg/s ({store_cpu_us:.1} CPU us/msg); \
         ratio to raw insert-then-delete {ratio:.2} (target >= 0.5); to raw insert-claim-delete {:.2}",
        store_rate / raw_update_rate
    );
    Outcome {
        roundtrip_us,
        raw_multirow_rate,
        raw_group: group,
        raw_rate,
        raw_update_rate,
        raw_rate_unbatched,
        store_rate,
        store_cpu_us,
        ratio,
    }
}

pub struct GroupCommit {
    pub fsyncs_per_sec: f64,
    /// (clients, single sends per second)
    pub rows: Vec<(usize, f64)>,
}

/// How many `write(4 KiB) + fdatasync` the disk does per second, where the databases live.
fn fsync_rate(dir: &std::path::Path, secs: f64) -> f64 {
    use std::io::Write as _;
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).expect("probe file");
    let buf = [0u8; 4096];
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed().as_secs_f64() < secs {
        f.write_all(&buf).expect("write");
        f.sync_data().expect("fdatasync");
        n += 1;
    }
    let _ = std::fs::remove_file(path);
    per_sec(n, t0.elapsed())
}

/// Single SendMessage calls over HTTP from 1, 4, 16 and 64 concurrent clients
/// (`ESMD_BENCH_GC_CLIENTS`).
pub async fn group_commit() -> GroupCommit {
    let secs: u64 = env_or("ESMD_BENCH_GC_SECONDS", harness::seconds().min(10));
    let dir = harness::temp_dir();
    let fsyncs_per_sec = fsync_rate(dir.path(), 3.0);
    drop(dir);
    say!(
        "groupcommit: the disk does {fsyncs_per_sec:.0} write+fdatasync per second ({:.2} ms each)",
        1e3 / fsyncs_per_sec
    );
    let mut rows = Vec::new();
    let counts: Vec<usize> = env_or("ESMD_BENCH_GC_CLIENTS", "1,4,16,64".to_owned())
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .expect("ESMD_BENCH_GC_CLIENTS: comma-separated numbers")
        })
        .collect();
    for clients in counts {
        let d = Daemon::start(Setup {
            visibility_timeout: "300s",
            mapping: None,
        })
        .await;
        let sqs = Sqs::new(d.daemon.addr(), d.queue_url());
        let count = Arc::new(AtomicU64::new(0));
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for c in 0..clients {
            let (sqs, count) = (sqs.clone(), count.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = (c as u64) << 40;
                while Instant::now() < deadline {
                    sqs.send(&body(n)).await;
                    n += 1;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for t in tasks {
            t.await.expect("client");
        }
        let rate = per_sec(count.load(Ordering::Relaxed), t0.elapsed());
        say!(
            "groupcommit: {clients:>2} clients x SendMessage: {rate:>7.0} sends/s = {:.1}x the disk's fsync rate",
            rate / fsyncs_per_sec
        );
        rows.push((clients, rate));
        d.stop().await;
    }
    GroupCommit {
        fsyncs_per_sec,
        rows,
    }
}
