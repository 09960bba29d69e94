//! esmd's benchmarks (issue #6). They print figures; nothing here is a timed assertion. What is
//! verified (every message delivered, the queue empty) fails the run with a non-zero exit.
//!
//! ```text
//! cargo bench --bench e2e                       # everything (about 15 minutes at 60 s phases)
//! cargo bench --bench e2e -- throughput         # b10, b100 and b1
//! cargo bench --bench e2e -- throughput-b10     # one variant (also throughput-b100, throughput-b1)
//! cargo bench --bench e2e -- latency
//! cargo bench --bench e2e -- scale
//! cargo bench --bench e2e -- ceiling
//! cargo bench --bench e2e -- groupcommit
//! cargo bench --bench e2e -- queues                # /metrics and the sweep with 1,000 queues
//! cargo bench --bench e2e -- runtime               # runtime functions: Runtime API cost, cold starts, mapping
//! ESMD_BENCH_SECONDS=5 cargo bench --bench e2e  # a quick run
//! ```
//!
//! Environment (defaults in brackets):
//! - `ESMD_BENCH_SECONDS` [60]: length of each timed phase; 5 for a quick run.
//! - `ESMD_BENCH_SYNC` [full]: `storage.synchronous`, `full` or `normal`.
//! - `ESMD_BENCH_DIR` [target/bench-tmp]: where the temporary databases go (the normal disk).
//! - throughput: `ESMD_BENCH_CLIENTS` [128] senders, `ESMD_BENCH_MAX_CONCURRENCY` [400 for b10 and b1, 200 for b100] (the
//!   mapping's), `ESMD_BENCH_MAX_BACKLOG` [20000] (senders pause while this many sent messages
//!   are undelivered), `ESMD_BENCH_RATE` [0 = unlimited] msg/s cap, `ESMD_BENCH_DRAIN_SECONDS`
//!   [300].
//! - latency: `ESMD_BENCH_LATENCY_SENDS` [10000], `ESMD_BENCH_LATENCY_CONCURRENCY` [5] (the
//!   mapping's), `ESMD_BENCH_LATENCY_GAP_MS` [2] pause after each delivery.
//! - scale: `ESMD_BENCH_DEPTHS` [1000,100000,1000000], `ESMD_BENCH_SCALE_SEQ_CYCLES` [1000]
//!   one-client cycles, `ESMD_BENCH_SCALE_CLIENTS` [16] x `ESMD_BENCH_SCALE_CYCLES` [200].
//! - ceiling: `ESMD_BENCH_CEILING_SECONDS` [min(20, seconds)], `ESMD_BENCH_CEILING_CLIENTS` [32],
//!   `ESMD_BENCH_CEILING_GROUP` [clients x 10].
//! - queues: `ESMD_BENCH_QUEUES` [1000], `ESMD_BENCH_QUEUE_MESSAGES` [10] per queue,
//!   `ESMD_BENCH_SCRAPES` [20].
//! - groupcommit: `ESMD_BENCH_GC_SECONDS` [min(10, seconds)], `ESMD_BENCH_GC_CLIENTS`
//!   [1,4,16,64].
//!
//! Results and how they were obtained: BENCHMARKS.md.

mod ceiling;
mod harness;
mod latency;
mod queues;
mod runtime;
mod scale;
mod throughput;

use std::sync::atomic::{AtomicBool, Ordering};

use harness::percentile;

/// The same allocator as the `esmd` binary (src/main.rs), so the figures are the daemon's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

static FAILED: AtomicBool = AtomicBool::new(false);

/// Records a verification failure; the run ends with exit code 1.
pub fn fail(what: &str) {
    FAILED.store(true, Ordering::Relaxed);
    say!("VERIFICATION FAILED: {what}");
}

const SCENARIOS: [&str; 10] = [
    "throughput",
    "throughput-b10",
    "throughput-b100",
    "throughput-b1",
    "latency",
    "scale",
    "ceiling",
    "groupcommit",
    "queues",
    "runtime",
];

fn main() {
    let all: Vec<String> = std::env::args().skip(1).collect();
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary with no
    // arguments (or a test filter), and must neither start a quarter-hour benchmark nor fail.
    // Other flags are ignored.
    let under_cargo_bench = all.iter().any(|a| a == "--bench");
    let args: Vec<String> = all.into_iter().filter(|a| !a.starts_with("--")).collect();
    if args.is_empty() && !under_cargo_bench {
        println!("esmd benchmarks: run with `cargo bench --bench e2e [-- SCENARIO...]`, or name scenarios: {SCENARIOS:?}");
        return;
    }
    let level = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".to_owned());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    if args.first().map(String::as_str) == Some("scale-child") {
        let depth = args
            .get(1)
            .and_then(|d| d.parse().ok())
            .expect("scale-child DEPTH");
        rt.block_on(scale::child(depth));
        return;
    }
    let wanted: Vec<&str> = if args.is_empty() {
        vec!["throughput", "latency", "scale", "ceiling", "groupcommit"]
    } else {
        args.iter().map(String::as_str).collect()
    };
    for w in &wanted {
        if !SCENARIOS.contains(w) {
            eprintln!("unknown scenario {w}; choose from {SCENARIOS:?}");
            // Under `cargo test --all-targets` the argument is a test filter, not a typo.
            std::process::exit(if under_cargo_bench { 2 } else { 0 });
        }
    }
    rt.block_on(run(&wanted));
    if FAILED.load(Ordering::Relaxed) {
        std::process::exit(1);
    }
}

async fn run(wanted: &[&str]) {
    let mut summary: Vec<String> = Vec::new();
    for w in wanted {
        match *w {
            "throughput" | "throughput-b10" | "throughput-b100" | "throughput-b1" => {
                for v in throughput::VARIANTS
                    .iter()
                    .filter(|v| *w == "throughput" || w.ends_with(v.name))
                {
                    let o = throughput::run(v).await;
                    let target = if v.batch_size == 1 {
                        "(report)"
                    } else {
                        ">= 20000 msg/s for 60 s"
                    };
                    summary.push(format!(
                        "| e2e batch_size {} window {} | sent {:.0} msg/s; delivered while sending {:.0} msg/s (slowest 5 s {:.0}); first send to last delivery {:.0} msg/s; {} msgs, {} missing, {} duplicates, {} left | {target} |",
                        v.batch_size, v.window, o.send_rate, o.delivered_in_window_rate, o.min_slice_rate, o.end_to_end_rate, o.sent, o.missing, o.duplicates, o.left_in_queue
                    ));
                }
            }
            "latency" => {
                let o = latency::run().await;
                summary.push(format!(
                    "| latency ack -> function ({} sends) | p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; CPU {:.0} us/send | p50 <= 2 ms, p99 <= 10 ms |",
                    o.n,
                    percentile(&o.ack_to_fn, 50.0),
                    percentile(&o.ack_to_fn, 99.0),
                    o.ack_to_fn.last().copied().unwrap_or(f64::NAN),
                    o.cpu_us_per_send
                ));
            }
            "scale" => {
                for r in scale::run().await {
                    summary.push(format!(
                        "| scale depth {} | send {:.1} / receive {:.1} / delete {:.1} us per msg; CPU {:.1} us/msg; RSS after prefill {:.1} MiB, after counts()+/metrics {:.1} MiB, peak {:.1} MiB | within 1.5x; < 64 MiB |",
                        r.depth,
                        r.send_us,
                        r.receive_us,
                        r.delete_us,
                        r.cpu_us_per_msg,
                        r.rss_after_prefill_kib as f64 / 1024.0,
                        r.rss_after_scan_kib as f64 / 1024.0,
                        r.hwm_end_kib as f64 / 1024.0
                    ));
                }
            }
            "ceiling" => {
                let o = ceiling::run().await;
                summary.push(format!(
                    "| ceiling | raw {:.0} msg/s ({} rows/tx); raw 3-step {:.0}; raw 10 rows/tx {:.0}; raw multi-row {:.0}; SELECT 1 {:.1} us; esmd store {:.0} msg/s ({:.1} CPU us/msg); ratio {:.2} | >= 0.5 |",
                    o.raw_rate, o.raw_group, o.raw_update_rate, o.raw_rate_unbatched, o.raw_multirow_rate, o.roundtrip_us, o.store_rate, o.store_cpu_us, o.ratio
                ));
            }
            "groupcommit" => {
                let o = ceiling::group_commit().await;
                let rows: Vec<String> = o
                    .rows
                    .iter()
                    .map(|(c, r)| format!("{c} clients {r:.0}/s"))
                    .collect();
                summary.push(format!(
                    "| group commit | fsync {:.0}/s; SendMessage: {} | sends share fsyncs |",
                    o.fsyncs_per_sec,
                    rows.join(", ")
                ));
            }
            "queues" => {
                let o = queues::run().await;
                summary.push(format!(
                    "| queues {} | GET /metrics p50 {:.1} ms, max {:.1} ms ({} bytes); one sweep {:.1} ms | < 100 ms |",
                    o.queues,
                    percentile(&o.scrape_ms, 50.0),
                    o.scrape_ms.last().copied().unwrap_or(f64::NAN),
                    o.bytes,
                    o.sweep_ms
                ));
            }
            "runtime" => {
                let o = runtime::run().await;
                summary.extend(runtime::summary(&o));
            }
            _ => unreachable!("checked"),
        }
    }
    say!("\n==== summary ({}) ====", harness::synchronous());
    for s in summary {
        say!("{s}");
    }
}
