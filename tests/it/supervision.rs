//! The daemon's supervision with the real binary: a SIGTERM that arrives during a reload (also
//! one slowed by another process holding the database lock) still drains and exits 0, and a
//! failed store writer turns `/readyz` 503 with the cause, logs an ERROR and exits non-zero so
//! that systemd restarts esmd (the failure is injected through a test-build-only hook).

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::common::process::EsmdProcess;
use crate::common::WriteLock;

/// How long a daemon may take to answer and to exit.
const BOUND: Duration = Duration::from_secs(30);

/// Expects the daemon to shut down as after any SIGTERM: drained, exit 0.
async fn drained_and_exited_0(esmd: EsmdProcess, run: usize) {
    let (code, log) = exit(esmd).await;
    assert_eq!(code, Some(0), "run {run}: exit code; log:\n{log}");
    assert!(
        log.contains("received shutdown signal") && log.contains("esmd stopped"),
        "run {run}: a drained shutdown; log:\n{log}"
    );
}

/// Waits for the exit and returns the exit code and the whole log.
async fn exit(mut esmd: EsmdProcess) -> (Option<i32>, String) {
    let code = esmd.wait_exit(BOUND).await;
    (code, esmd.lines().join("\n"))
}

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "10s"

[storage]
path = "esmd.db"

[queues.orders]

[functions.sink]
type = "log"

[mappings.orders-to-sink]
queue = "orders"
function = "sink"
"#;

#[tokio::test]
async fn a_sigterm_right_after_a_sighup_always_drains_and_exits_0() {
    let dir = TempDir::new().expect("temp dir");
    for run in 0..12 {
        let mut esmd = EsmdProcess::start(dir.path(), CONFIG, &[]).await;
        esmd.signal(Signal::SIGHUP);
        esmd.signal(Signal::SIGTERM);
        drained_and_exited_0(esmd, run).await;
    }
}

#[tokio::test]
async fn a_sigterm_during_a_reload_slowed_by_a_database_lock_drains_and_exits_0() {
    let dir = TempDir::new().expect("temp dir");
    let db = dir.path().join("esmd.db");
    for run in 0..3 {
        let mut esmd = EsmdProcess::start(dir.path(), CONFIG, &[]).await;
        // Another process's write lock: the reload's queue update waits on it.
        let lock = WriteLock::take(&db).await;
        esmd.signal(Signal::SIGHUP);
        esmd.signal(Signal::SIGTERM);
        // The lock is held while both signals arrive, so the reload is still waiting when SIGTERM
        // lands; the outcome does not depend on how long.
        tokio::time::sleep(Duration::from_millis(500)).await; // sleep-ok: holding another process's lock across the signals
        lock.release().await;
        drained_and_exited_0(esmd, run).await;
    }
}

#[tokio::test]
async fn a_failed_writer_makes_esmd_unready_logs_the_cause_and_exits_non_zero() {
    let dir = TempDir::new().expect("temp dir");
    let started = dir.path().join("started");
    // A mapping holds an invocation in flight, so the drain after the failure lasts the grace
    // period and `/readyz` can be read meanwhile.
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"

[storage]
path = "esmd.db"

[queues.work]
visibility_timeout = "60s"

[queues.boom]

[functions.hang]
type = "command"
command = ["sh", "-c", "touch {started}; exec sleep 60"]  # // sleep-ok: the function under test holds its invocation
timeout = "50s"

[mappings.work-to-hang]
queue = "work"
function = "hang"
"#,
        started = started.display()
    );
    let esmd = EsmdProcess::start(
        dir.path(),
        &config,
        &[("ESMD_TEST_WRITER_PANIC_QUEUE", "boom")],
    )
    .await;
    let http = reqwest::Client::new();
    let sent = http
        .post(format!("{}/queues/work/messages", esmd.url()))
        .body("hold")
        .send()
        .await
        .expect("send to work");
    assert!(
        sent.status().is_success(),
        "a send before the failure is stored: {}",
        sent.status()
    );
    let deadline = Instant::now() + BOUND;
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "the function was not invoked; log:\n{}",
            esmd.tail(40)
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // sleep-ok: waiting for another process's file
    }

    let refused = http
        .post(format!("{}/queues/boom/messages", esmd.url()))
        .body("boom")
        .send()
        .await
        .expect("send to boom");
    assert_eq!(
        refused.status(),
        503,
        "the write the writer died on is refused, not acknowledged"
    );
    // The supervisor hears of the failure a moment after the refused request: wait for it.
    let deadline = Instant::now() + BOUND;
    let reason = loop {
        let ready = http
            .get(format!("{}/readyz", esmd.url()))
            .send()
            .await
            .expect("readyz while draining");
        if ready.status() == 503 {
            break ready.text().await.expect("readyz body");
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed ready after the writer failed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await; // sleep-ok: a pause between two readiness checks of another process
    };
    assert!(
        reason.contains("database writer failed") && reason.contains("injected writer failure"),
        "/readyz says why: {reason}"
    );
    let after = http
        .post(format!("{}/queues/work/messages", esmd.url()))
        .body("later")
        .send()
        .await
        .expect("send after the failure");
    assert_eq!(
        after.status(),
        503,
        "every later write is refused retriably"
    );

    let (code, log) = exit(esmd).await;
    assert_eq!(
        code,
        Some(1),
        "a non-zero exit for systemd to restart; log:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("injected writer failure")),
        "an ERROR line with the cause; log:\n{log}"
    );
}
