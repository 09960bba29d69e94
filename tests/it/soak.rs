//! Short soak (issue #7 point 5), in CI: the workload of `examples/soak.rs` (included here as a
//! module, so both run the same code) for 20 seconds against the real binary. It asserts only
//! correctness: no acknowledged message lost, no broken rule (FIFO order, poison never
//! succeeding, every API call answered), no ERROR line or panic in esmd's log, a clean exit on
//! SIGTERM, and a database file bounded by a generous factor. Memory and file figures are
//! printed, not asserted; the 10-minute measurement is `cargo run --release --example soak`.
//!
//! `ESMD_SOAK_SEED` replays a seed (printed at the start); `ESMD_SOAK_SECONDS` runs longer.

#[path = "../../examples/soak.rs"]
#[allow(dead_code)]
mod workload;

use std::time::Duration;

fn env_u64(name: &str) -> Option<u64> {
    let raw = std::env::var(name).ok()?;
    Some(
        raw.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={raw:?} is not a number: {e}")),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_seconds_of_mixed_traffic_lose_nothing() {
    let seed = env_u64("ESMD_SOAK_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_nanos() as u64
    });
    let seconds = env_u64("ESMD_SOAK_SECONDS").unwrap_or(20);
    eprintln!("soak test: ESMD_SOAK_SEED={seed} ESMD_SOAK_SECONDS={seconds}");
    let opts = workload::Options {
        esmd: env!("CARGO_BIN_EXE_esmd").into(),
        duration: Duration::from_secs(seconds),
        warmup: Duration::from_secs(5),
        sample_every: Duration::from_secs(1),
        rate: 150,
        seed,
        verbose: false,
    };
    let report = tokio::time::timeout(Duration::from_secs(seconds + 300), workload::run(opts))
        .await
        .expect("the soak finished within its bounds")
        .expect("the soak ran");
    eprintln!(
        "{}\n{}",
        report.timeline(Duration::from_secs(5)),
        report.summary()
    );
    let seed_note = format!("ESMD_SOAK_SEED={seed}");
    assert!(
        report.lost.is_empty(),
        "[{seed_note}] {} acknowledged messages were lost: {:?}",
        report.lost.len(),
        &report.lost[..report.lost.len().min(20)]
    );
    assert!(
        report.violations.is_empty(),
        "[{seed_note}] {:#?}",
        report.violations
    );
    assert!(
        report.error_lines.is_empty(),
        "[{seed_note}] esmd logged errors: {:#?}",
        report.error_lines
    );
    assert_eq!(
        report.exit_code,
        Some(0),
        "[{seed_note}] exit code after SIGTERM"
    );
    let acked: u64 = report.acked.values().sum();
    assert!(
        acked > 1000,
        "[{seed_note}] the traffic ran: {acked} messages"
    );
    assert!(
        report.dead_lettered > 0,
        "[{seed_note}] poison messages reached the dead-letter queues"
    );
    // The file is bounded: deleted messages' pages are reused. Generous: four times the size at
    // the end of the warm-up, plus 8 MiB for the WAL (SQLite checkpoints it at about 4 MiB).
    let (first, max, _) = report.file().expect("samples after the warm-up");
    assert!(
        max <= 4 * first + 8 * 1024 * 1024,
        "[{seed_note}] database + WAL grew from {first} B after the warm-up to {max} B"
    );
}
