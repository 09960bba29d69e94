//! Latency on an idle daemon, batching window 0: one SendMessage at a time; the time from the
//! moment the SendMessage answer has arrived at the client to the moment the function server
//! receives the event carrying that message (same process, `std::time::Instant`).

use std::time::{Duration, Instant};

use crate::harness::{
    self, body, env_or, function_server, percentile, Daemon, MappingSetup, Setup, Sqs,
};
use crate::say;

pub struct Outcome {
    pub n: usize,
    /// Acknowledgement to function, ms, sorted.
    pub ack_to_fn: Vec<f64>,
    /// Send request to acknowledgement, ms, sorted.
    pub send_rtt: Vec<f64>,
    /// Events that arrived before the acknowledgement did.
    pub early: usize,
    /// CPU time of the process per send (send, claim, invoke, delete, and the gap's idling).
    pub cpu_us_per_send: f64,
}

pub async fn run() -> Outcome {
    let n: usize = env_or("ESMD_BENCH_LATENCY_SENDS", 10_000);
    let concurrency: u32 = env_or("ESMD_BENCH_LATENCY_CONCURRENCY", 5);
    let (sink, url) = function_server(true).await;
    let d = Daemon::start(Setup {
        visibility_timeout: "60s",
        mapping: Some(MappingSetup {
            url,
            batch_size: 10,
            window: "0s".to_owned(),
            max_concurrency: concurrency,
        }),
    })
    .await;
    say!("latency: {n} single SendMessage calls, one at a time; batch_size 10, window 0s, max_concurrency {concurrency}; synchronous={}", harness::synchronous());
    let sqs = Sqs::new(d.daemon.addr(), d.queue_url());
    // Warm up connections and the poller.
    for i in 0..20 {
        let id = sqs.send(&body(i)).await;
        wait_for(&sink, id).await;
    }
    let mut ack_to_fn = Vec::with_capacity(n);
    let mut send_rtt = Vec::with_capacity(n);
    let mut early = 0;
    let gap = Duration::from_millis(env_or("ESMD_BENCH_LATENCY_GAP_MS", 2));
    let cpu0 = harness::cpu_time();
    for i in 0..n {
        let t_send = Instant::now();
        let id = sqs.send(&body(1_000_000 + i as u64)).await;
        let t_ack = Instant::now();
        let t_fn = wait_for(&sink, id).await;
        let ms = if t_fn >= t_ack {
            (t_fn - t_ack).as_secs_f64() * 1e3
        } else {
            early += 1;
            -((t_ack - t_fn).as_secs_f64() * 1e3)
        };
        ack_to_fn.push(ms);
        send_rtt.push((t_ack - t_send).as_secs_f64() * 1e3);
        if (i + 1) % 2000 == 0 {
            say!("  {} sends done", i + 1);
        }
        // Let the poller's delete land, so that every send meets an idle daemon.
        tokio::time::sleep(gap).await;
    }
    ack_to_fn.sort_by(f64::total_cmp);
    send_rtt.sort_by(f64::total_cmp);
    let cpu_us_per_send = (harness::cpu_time() - cpu0).as_secs_f64() * 1e6 / n as f64;
    let out = Outcome {
        n,
        ack_to_fn,
        send_rtt,
        early,
        cpu_us_per_send,
    };
    say!(
        "latency: ack->function p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} of {} events arrived before the ack); \
         SendMessage round trip p50 {:.2} ms p99 {:.2} ms; CPU {:.0} us per send",
        percentile(&out.ack_to_fn, 50.0),
        percentile(&out.ack_to_fn, 99.0),
        out.ack_to_fn.last().copied().unwrap_or(f64::NAN),
        out.early,
        out.n,
        percentile(&out.send_rtt, 50.0),
        percentile(&out.send_rtt, 99.0),
        out.cpu_us_per_send,
    );
    d.stop().await;
    out
}

/// When the function first received `id`.
async fn wait_for(sink: &harness::Sink, id: u128) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let notified = sink.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(t) = sink.arrived.lock().expect("lock").get(&id) {
            return *t;
        }
        assert!(
            Instant::now() < deadline,
            "message {id:x} was not delivered within 30 s"
        );
        let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
    }
}
