//! Scale: the per-message cost of send, receive and delete at queue depths of 1 thousand, 100
//! thousand and 1 million, and resident memory with the queue full. Each depth runs in a fresh
//! process (this binary re-executed as `scale-child DEPTH`) so that memory is not polluted by
//! earlier depths. The queue is prefilled through the store's `send` in batches of 10; then
//! concurrent clients run send(10) -> receive(10) -> delete(10) cycles through the store, which
//! keeps the depth constant: first one client at a time (each operation's own cost per message,
//! its commit's fsync included), then 16 concurrent clients (throughput and CPU per message).

use std::sync::Arc;
use std::time::{Duration, Instant};

use esmd::domain::message::NewMessage;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncBufReadExt as _;

use crate::harness::{self, body, cpu_time, env_or, percentile, status_kib, Daemon, Setup};
use crate::say;

#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct DepthResult {
    pub depth: u64,
    pub prefill_secs: f64,
    pub rss_after_prefill_kib: u64,
    pub hwm_after_prefill_kib: u64,
    /// After one counts() and one GET /metrics (full scans of the queue's rows).
    pub rss_after_scan_kib: u64,
    pub rss_end_kib: u64,
    pub hwm_end_kib: u64,
    pub db_bytes: u64,
    pub clients: usize,
    pub messages_cycled: u64,
    /// Mean µs per message of each operation (operation latency / 10).
    pub send_us: f64,
    pub receive_us: f64,
    pub delete_us: f64,
    /// p99 of each operation's latency, ms.
    pub send_p99_ms: f64,
    pub receive_p99_ms: f64,
    pub delete_p99_ms: f64,
    /// Wall time of the whole measured phase per message cycled.
    pub wall_us_per_msg: f64,
    /// CPU time of the process per message cycled.
    pub cpu_us_per_msg: f64,
    /// One `counts()` (what /metrics, GET /queues and GetQueueAttributes run), ms.
    pub counts_ms: f64,
    /// One GET /metrics over HTTP, ms.
    pub metrics_ms: f64,
}

pub fn depths() -> Vec<u64> {
    env_or("ESMD_BENCH_DEPTHS", "1000,100000,1000000".to_owned())
        .split(',')
        .map(|d| {
            d.trim()
                .parse()
                .expect("ESMD_BENCH_DEPTHS: comma-separated numbers")
        })
        .collect()
}

/// Runs every depth in its own process and returns the results.
pub async fn run() -> Vec<DepthResult> {
    let exe = std::env::current_exe().expect("current exe");
    let mut out = Vec::new();
    for depth in depths() {
        let mut child = tokio::process::Command::new(&exe)
            .arg("scale-child")
            .arg(depth.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn scale child");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut result = None;
        while let Some(line) = lines.next_line().await.expect("read child") {
            match line.strip_prefix("SCALE-RESULT ") {
                Some(json) => {
                    result = Some(serde_json::from_str::<DepthResult>(json).expect("child result"))
                }
                None => say!("{line}"),
            }
        }
        let status = child.wait().await.expect("child");
        match result {
            Some(r) if status.success() => out.push(r),
            _ => crate::fail(&format!("scale child for depth {depth} failed: {status}")),
        }
    }
    if !out.is_empty() {
        say!("scale: depth | prefill s | RSS after prefill MiB | after counts()+/metrics | send us/msg | receive us/msg | delete us/msg | wall us/msg | CPU us/msg | counts() ms | RSS end MiB (peak) | db MiB");
        for r in &out {
            say!(
                "scale: {:>8} | {:>6.1} | {:>6.1} | {:>6.1} | {:>7.1} | {:>7.1} | {:>7.1} | {:>6.1} | {:>6.1} | {:>8.1} | {:>6.1} ({:.1}) | {:.0}",
                r.depth,
                r.prefill_secs,
                r.rss_after_prefill_kib as f64 / 1024.0,
                r.rss_after_scan_kib as f64 / 1024.0,
                r.send_us,
                r.receive_us,
                r.delete_us,
                r.wall_us_per_msg,
                r.cpu_us_per_msg,
                r.counts_ms,
                r.rss_end_kib as f64 / 1024.0,
                r.hwm_end_kib as f64 / 1024.0,
                r.db_bytes as f64 / 1_048_576.0
            );
        }
        let ratio = |f: fn(&DepthResult) -> f64| {
            let v: Vec<f64> = out.iter().map(f).collect();
            v.iter().copied().fold(f64::MIN, f64::max) / v.iter().copied().fold(f64::MAX, f64::min)
        };
        say!(
            "scale: max/min across depths: send {:.2}x, receive {:.2}x, delete {:.2}x, wall {:.2}x, CPU {:.2}x (target <= 1.5x)",
            ratio(|r| r.send_us),
            ratio(|r| r.receive_us),
            ratio(|r| r.delete_us),
            ratio(|r| r.wall_us_per_msg),
            ratio(|r| r.cpu_us_per_msg)
        );
    }
    out
}

/// Operation latencies of send(10), receive(10) and delete; messages cycled.
async fn cycles_phase(
    store: &esmd::store::Store,
    q: &esmd::domain::queue::QueueName,
    clients: usize,
    cycles: usize,
) -> (Vec<Duration>, Vec<Duration>, Vec<Duration>, u64) {
    static PHASE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let phase = PHASE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (store, q) = (store.clone(), q.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = (Vec::new(), Vec::new(), Vec::new());
            let mut moved = 0u64;
            for k in 0..cycles {
                let base = (phase << 40) + (c * cycles + k) as u64 * 10;
                let batch: Vec<NewMessage> =
                    (0..10).map(|i| NewMessage::body(body(base + i))).collect();
                let t = Instant::now();
                store.send(&q, batch).await.expect("send");
                lat.0.push(t.elapsed());
                let t = Instant::now();
                let got = store.receive(&q, 10, None).await.expect("receive");
                lat.1.push(t.elapsed());
                let handles: Vec<String> = got.into_iter().map(|m| m.receipt_handle).collect();
                let t = Instant::now();
                store.delete(&q, &handles).await.expect("delete");
                lat.2.push(t.elapsed());
                moved += handles.len() as u64;
            }
            (lat, moved)
        }));
    }
    let (mut send, mut recv, mut del) = (Vec::new(), Vec::new(), Vec::new());
    let mut moved = 0;
    for t in tasks {
        let ((s, r, dl), m) = t.await.expect("client");
        send.extend(s);
        recv.extend(r);
        del.extend(dl);
        moved += m;
    }
    (send, recv, del, moved)
}

/// One depth, in this (child) process.
pub async fn child(depth: u64) {
    let seq_cycles: usize = env_or("ESMD_BENCH_SCALE_SEQ_CYCLES", 1000);
    let clients: usize = env_or("ESMD_BENCH_SCALE_CLIENTS", 16);
    let cycles: usize = env_or("ESMD_BENCH_SCALE_CYCLES", 200);
    let d = Daemon::start(Setup {
        visibility_timeout: "300s",
        mapping: None,
    })
    .await;
    let store = d.daemon.store().clone();
    let q = d.queue_name();
    say!("scale {depth}: prefilling through Store::send in batches of 10 (32 concurrent); synchronous={}", harness::synchronous());
    let t = Instant::now();
    let batches = depth.div_ceil(10);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (store, q, next) = (store.clone(), q.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if b >= batches {
                    break;
                }
                let n = (depth - b * 10).min(10);
                let batch: Vec<NewMessage> =
                    (0..n).map(|i| NewMessage::body(body(b * 10 + i))).collect();
                let r = store.send(&q, batch).await.expect("prefill send");
                assert!(r.iter().all(Result::is_ok), "prefill rejected");
            }
        }));
    }
    for t in tasks {
        t.await.expect("prefill task");
    }
    let prefill = t.elapsed();
    let stored = d.stored().await;
    assert_eq!(stored, depth, "prefill count");
    let rss_after_prefill = status_kib("VmRSS");
    let hwm_after_prefill = status_kib("VmHWM");
    say!(
        "scale {depth}: prefilled in {:.1}s ({:.0} msg/s); VmRSS {:.1} MiB, VmHWM {:.1} MiB",
        prefill.as_secs_f64(),
        depth as f64 / prefill.as_secs_f64(),
        rss_after_prefill as f64 / 1024.0,
        hwm_after_prefill as f64 / 1024.0
    );

    // counts() and /metrics scans at this depth.
    let t = Instant::now();
    let _ = store.counts(&q).await.expect("counts");
    let counts_ms = t.elapsed().as_secs_f64() * 1e3;
    let http = reqwest::Client::new();
    let t = Instant::now();
    let m = http
        .get(format!("http://{}/metrics", d.daemon.addr()))
        .send()
        .await
        .expect("metrics");
    let _ = m.bytes().await;
    let metrics_ms = t.elapsed().as_secs_f64() * 1e3;
    let rss_after_scan = status_kib("VmRSS");
    say!("scale {depth}: counts() {counts_ms:.1} ms, GET /metrics {metrics_ms:.1} ms; VmRSS after them {:.1} MiB", rss_after_scan as f64 / 1024.0);

    // Phase A: one client, one operation at a time: each operation's own cost per message
    // (each includes its commit's fsync).
    let (send, recv, del, _) = cycles_phase(&store, &q, 1, seq_cycles).await;
    // Phase B: concurrent clients: throughput and CPU per message.
    let cpu0 = cpu_time();
    let t = Instant::now();
    let (_, _, _, moved) = cycles_phase(&store, &q, clients, cycles).await;
    let wall = t.elapsed();
    let cpu = cpu_time() - cpu0;
    let mean_us_per_msg = |v: &[Duration]| {
        v.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e6 / v.len() as f64 / 10.0
    };
    let p99_ms = |v: &[Duration]| {
        let mut ms: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        ms.sort_by(f64::total_cmp);
        percentile(&ms, 99.0)
    };
    let db_bytes = ["esmd.db", "esmd.db-wal"]
        .iter()
        .filter_map(|f| std::fs::metadata(d.dir.path().join(f)).ok())
        .map(|m| m.len())
        .sum();
    let r = DepthResult {
        depth,
        prefill_secs: prefill.as_secs_f64(),
        rss_after_prefill_kib: rss_after_prefill,
        hwm_after_prefill_kib: hwm_after_prefill,
        rss_after_scan_kib: rss_after_scan,
        rss_end_kib: status_kib("VmRSS"),
        hwm_end_kib: status_kib("VmHWM"),
        db_bytes,
        clients,
        messages_cycled: moved,
        send_us: mean_us_per_msg(&send),
        receive_us: mean_us_per_msg(&recv),
        delete_us: mean_us_per_msg(&del),
        send_p99_ms: p99_ms(&send),
        receive_p99_ms: p99_ms(&recv),
        delete_p99_ms: p99_ms(&del),
        wall_us_per_msg: wall.as_secs_f64() * 1e6 / moved.max(1) as f64,
        cpu_us_per_msg: cpu.as_secs_f64() * 1e6 / moved.max(1) as f64,
        counts_ms,
        metrics_ms,
    };
    let left = d.stored().await;
    say!(
        "scale {depth}: one client, {seq_cycles} cycles of send(10)/receive(10)/delete(10): per message send {:.1} us, receive {:.1} us, \
         delete {:.1} us (p99 per op: {:.1} / {:.1} / {:.1} ms); {clients} clients x {cycles} cycles ({moved} messages): wall {:.1} us/msg, \
         CPU {:.1} us/msg; counts() {:.1} ms, GET /metrics {:.1} ms; depth after {left}",
        r.send_us,
        r.receive_us,
        r.delete_us,
        r.send_p99_ms,
        r.receive_p99_ms,
        r.delete_p99_ms,
        r.wall_us_per_msg,
        r.cpu_us_per_msg,
        r.counts_ms,
        r.metrics_ms
    );
    say!("SCALE-RESULT {}", serde_json::to_string(&r).expect("json"));
    d.stop().await;
}
