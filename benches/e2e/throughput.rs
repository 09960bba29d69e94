//! End to end throughput: concurrent clients send with SendMessageBatch (10 entries) over HTTP
//! to the daemon; a mapping invokes the `http` function (an axum server in this process), which
//! counts every message id; the poller deletes. Verifies every sent message was delivered and the
//! queue ended empty.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::{
    self, body, cpu_time, env_or, function_server, per_sec, Daemon, MappingSetup, Setup, Sqs,
};
use crate::say;

/// One throughput configuration.
pub struct Variant {
    pub name: &'static str,
    pub batch_size: u32,
    pub window: &'static str,
    /// The mapping's `max_concurrency` unless `ESMD_BENCH_MAX_CONCURRENCY` says otherwise:
    /// enough workers that the mapping keeps up (each worker waits for a group commit to
    /// receive and another to delete); with a 1 s window, fewer, so that windows fill.
    pub max_concurrency: u32,
}

pub const VARIANTS: [Variant; 3] = [
    Variant {
        name: "b10",
        batch_size: 10,
        window: "0s",
        max_concurrency: 400,
    },
    Variant {
        name: "b100",
        batch_size: 100,
        window: "1s",
        max_concurrency: 200,
    },
    Variant {
        name: "b1",
        batch_size: 1,
        window: "0s",
        max_concurrency: 400,
    },
];

/// Figures of one run.
pub struct Outcome {
    pub sent: u64,
    pub send_rate: f64,
    pub delivered_in_window_rate: f64,
    pub min_slice_rate: f64,
    pub end_to_end_rate: f64,
    pub drain: Duration,
    pub missing: u64,
    pub duplicates: u64,
    pub left_in_queue: u64,
    pub invocations: u64,
    pub cpu_us_per_msg: f64,
}

pub async fn run(v: &Variant) -> Outcome {
    let secs = harness::seconds();
    let clients: usize = env_or("ESMD_BENCH_CLIENTS", 128);
    let concurrency: u32 = env_or("ESMD_BENCH_MAX_CONCURRENCY", v.max_concurrency);
    // Optional open-loop cap on the send rate (messages/s over all clients); 0 = as fast as possible.
    let rate: f64 = env_or("ESMD_BENCH_RATE", 0.0);
    // Senders pause while this many sent messages are not yet delivered, so that the run
    // measures what the daemon sustains rather than how big a backlog it can pile up.
    let max_backlog: u64 = env_or("ESMD_BENCH_MAX_BACKLOG", 20_000);
    let (sink, url) = function_server(false).await;
    let d = Daemon::start(Setup {
        visibility_timeout: "120s",
        mapping: Some(MappingSetup {
            url,
            batch_size: v.batch_size,
            window: v.window.to_owned(),
            max_concurrency: concurrency,
        }),
    })
    .await;
    say!(
        "throughput-{}: batch_size {} window {} max_concurrency {concurrency}; {clients} clients x SendMessageBatch(10) for {secs}s{}, backlog capped at {max_backlog}; synchronous={}",
        v.name,
        v.batch_size,
        v.window,
        if rate > 0.0 { format!(" capped at {rate} msg/s") } else { String::new() },
        harness::synchronous()
    );
    let sqs = Sqs::new(d.daemon.addr(), d.queue_url());
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let cpu0 = cpu_time();
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let sqs = sqs.clone();
        let stop = stop.clone();
        let sent = sent.clone();
        let sink = sink.clone();
        tasks.push(tokio::spawn(async move {
            let mut ids = HashSet::new();
            let mut n = (c as u64) << 40;
            // Each client paces itself to rate / clients when capped.
            let period =
                (rate > 0.0).then(|| Duration::from_secs_f64(10.0 * clients as f64 / rate));
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                while sent
                    .load(Ordering::Relaxed)
                    .saturating_sub(sink.records.load(Ordering::Relaxed))
                    > max_backlog
                    && Instant::now() < deadline
                {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                if let Some(p) = period {
                    tokio::time::sleep_until(next.into()).await;
                    next += p;
                }
                let bodies: Vec<String> = (0..10).map(|i| body(n + i)).collect();
                n += 10;
                for id in sqs.send_batch(&bodies).await {
                    ids.insert(id);
                }
                sent.fetch_add(10, Ordering::Relaxed);
            }
            ids
        }));
    }
    // Sample delivered counts once a second while sending.
    let mut slices = Vec::new();
    let mut last = 0u64;
    let mut last_t = t0;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = Instant::now();
        let r = sink.records.load(Ordering::Relaxed);
        slices.push(per_sec(r - last, now - last_t));
        if slices.len() % 5 == 0 {
            say!(
                "  t={:>3}s sent {:>9} delivered {:>9} backlog {:>8}  (last 1s: {:.0} msg/s delivered)",
                (now - t0).as_secs(),
                sent.load(Ordering::Relaxed),
                r,
                sent.load(Ordering::Relaxed).saturating_sub(r),
                slices.last().copied().unwrap_or(0.0)
            );
        }
        last = r;
        last_t = now;
    }
    stop.store(true, Ordering::Relaxed);
    let mut all = HashSet::new();
    for t in tasks {
        all.extend(t.await.expect("client"));
    }
    let send_done = Instant::now();
    let send_window = send_done - t0;
    let delivered_at_send_end = sink.records.load(Ordering::Relaxed);
    let total = all.len() as u64;
    // Drain: wait until every sent id arrived (or give up after the drain limit).
    let drain_limit = Duration::from_secs(env_or("ESMD_BENCH_DRAIN_SECONDS", 300));
    let mut last_delivery = send_done;
    loop {
        let seen = sink.seen.lock().expect("lock").len() as u64;
        if seen >= total {
            last_delivery = Instant::now();
            break;
        }
        if send_done.elapsed() > drain_limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Deletes follow the function's answer; give them a moment, then check the queue is empty.
    let mut left = d.stored().await;
    let settle = Instant::now();
    while left > 0 && settle.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        left = d.stored().await;
    }
    let cpu = cpu_time() - cpu0;
    let (missing, duplicates) = {
        let seen = sink.seen.lock().expect("lock");
        let missing = all.iter().filter(|id| !seen.contains_key(id)).count() as u64;
        let duplicates = seen.values().map(|&n| u64::from(n.saturating_sub(1))).sum();
        (missing, duplicates)
    };
    // "Sustained": the slowest 5-second stretch of deliveries while sending, skipping the
    // first 5 s (warm-up and the first batching windows).
    let min_slice = slices
        .windows(5)
        .skip(5)
        .map(|w| w.iter().sum::<f64>() / 5.0)
        .fold(f64::INFINITY, f64::min);
    let out = Outcome {
        sent: total,
        send_rate: per_sec(total, send_window),
        delivered_in_window_rate: per_sec(delivered_at_send_end, send_window),
        min_slice_rate: if min_slice.is_finite() {
            min_slice
        } else {
            f64::NAN
        },
        end_to_end_rate: per_sec(total, last_delivery - t0),
        drain: last_delivery - send_done,
        missing,
        duplicates,
        left_in_queue: left,
        invocations: sink.invocations.load(Ordering::Relaxed),
        cpu_us_per_msg: cpu.as_secs_f64() * 1e6 / total.max(1) as f64,
    };
    say!(
        "throughput-{}: sent {} msgs in {:.1}s = {:.0} msg/s; delivered during sending {:.0} msg/s (slowest 5 s: {:.0} msg/s); \
         end to end (first send to last delivery) {:.0} msg/s, drain {:.1}s; invocations {} ({:.1} records each); \
         missing {} duplicates {} left in queue {}; CPU {:.1} us/msg",
        v.name,
        out.sent,
        send_window.as_secs_f64(),
        out.send_rate,
        out.delivered_in_window_rate,
        out.min_slice_rate,
        out.end_to_end_rate,
        out.drain.as_secs_f64(),
        out.invocations,
        sink.records.load(Ordering::Relaxed) as f64 / out.invocations.max(1) as f64,
        out.missing,
        out.duplicates,
        out.left_in_queue,
        out.cpu_us_per_msg
    );
    if out.missing > 0 || out.left_in_queue > 0 {
        crate::fail(&format!(
            "throughput-{}: {} messages not delivered, {} left in the queue",
            v.name, out.missing, out.left_in_queue
        ));
    } else {
        say!(
            "throughput-{}: verified: every sent message delivered, queue empty",
            v.name
        );
    }
    d.stop().await;
    out
}
