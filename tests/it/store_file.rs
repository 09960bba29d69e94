//! The database file taken from under the running daemon, with the real binary: deleted
//! (`rm esmd.db*`) or made unwritable (`chattr +i`), esmd stops acknowledging, turns not ready
//! with the cause, logs an ERROR naming the file and exits 1 for systemd to restart it; and it
//! refuses to start on a file it cannot write; a write-ahead log it cannot flush stops it too. (`chmod` does not stop root, and CI runs as root:
//! the unwritable file is an immutable one, and those tests say so and pass when `chattr` is
//! not available here.)

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::common::process::EsmdProcess;

/// How long a daemon may take to notice, to answer and to exit.
const BOUND: Duration = Duration::from_secs(30);

/// One mapping holds an invocation in flight (a command that runs for a minute), so the drain after a
/// failure lasts `shutdown_grace` and `/readyz` can be read meanwhile; `orders` has no mapping.
fn config(started: &Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"

[storage]
path = "esmd.db"

[queues.work]
visibility_timeout = "60s"

[queues.orders]

[functions.hang]
type = "command"
command = ["sh", "-c", "touch {started}; exec sleep 60"]  # // sleep-ok: the function under test holds its invocation
timeout = "50s"

[mappings.work-to-hang]
queue = "work"
function = "hang"
"#,
        started = started.display()
    )
}

async fn send(esmd: &EsmdProcess, queue: &str, body: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/queues/{queue}/messages", esmd.url()))
        .body(body.to_owned())
        .send()
        .await
        .expect("send")
        .status()
        .as_u16()
}

/// Starts esmd with the hanging mapping busy, so that a later drain takes the grace period.
async fn start_busy(dir: &Path) -> EsmdProcess {
    let started = dir.join("started");
    let esmd = EsmdProcess::start(dir, &config(&started), &[]).await;
    assert_eq!(send(&esmd, "work", "hold").await, 201, "a send is stored");
    let deadline = Instant::now() + BOUND;
    while !started.exists() {
        assert!(
            Instant::now() < deadline,
            "the function was not invoked; log:\n{}",
            esmd.tail(40)
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // sleep-ok: waiting for another process's file
    }
    esmd
}

/// Waits until `/readyz` answers 503 and returns its reason.
async fn not_ready_reason(esmd: &EsmdProcess) -> String {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + BOUND;
    loop {
        let ready = http
            .get(format!("{}/readyz", esmd.url()))
            .send()
            .await
            .expect("readyz while draining");
        if ready.status() == 503 {
            let body: Value = ready.json().await.expect("readyz body");
            return body["reason"].as_str().unwrap_or_default().to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed ready; log:\n{}",
            esmd.tail(40)
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // sleep-ok: a pause between two readiness checks of another process
    }
}

/// Expects exit code 1 and an ERROR line naming the database file with `what`; returns the log.
async fn exits_1_with_error(mut esmd: EsmdProcess, db: &Path, what: &str) -> String {
    let code = esmd.wait_exit(BOUND).await;
    let log = esmd.lines().join("\n");
    assert_eq!(code, Some(1), "a non-zero exit for systemd; log:\n{log}");
    let path = db.display().to_string();
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains(&path) && l.contains(what)),
        "an ERROR line naming {path} and saying {what:?}; log:\n{log}"
    );
    log
}

#[tokio::test]
async fn a_database_deleted_under_the_daemon_stops_acknowledging_and_exits_1() {
    let dir = TempDir::new().expect("temp dir");
    let esmd = start_busy(dir.path()).await;
    assert_eq!(send(&esmd, "orders", "before").await, 201);

    for suffix in ["", "-wal", "-shm"] {
        let f = dir.path().join(format!("esmd.db{suffix}"));
        std::fs::remove_file(&f).unwrap_or_else(|e| panic!("rm {}: {e}", f.display()));
    }
    assert_eq!(
        send(&esmd, "orders", "after").await,
        503,
        "a send after the file is gone is refused, not acknowledged into an unlinked file"
    );
    let reason = not_ready_reason(&esmd).await;
    assert!(
        reason.contains("esmd.db") && reason.contains("deleted"),
        "/readyz says why: {reason}"
    );
    assert_eq!(send(&esmd, "orders", "later").await, 503);
    let db = PathBuf::from("esmd.db");
    exits_1_with_error(esmd, &db, "deleted").await;
}

/// With `synchronous = "full"` the writer commits without flushing and a flush of the WAL,
/// opened by its path, follows before any send is answered (docs/architecture.md §2): if the WAL is not
/// there to flush, the send that committed into it is not acknowledged, and esmd stops.
#[tokio::test]
async fn a_write_ahead_log_that_cannot_be_flushed_stops_acknowledging_and_exits_1() {
    let dir = TempDir::new().expect("temp dir");
    let started = dir.path().join("started");
    let esmd = EsmdProcess::start(dir.path(), &config(&started), &[]).await;
    assert_eq!(
        send(&esmd, "orders", "before").await,
        201,
        "a send is stored"
    );
    let wal = dir.path().join("esmd.db-wal");
    std::fs::remove_file(&wal).unwrap_or_else(|e| panic!("rm {}: {e}", wal.display()));
    let status = send(&esmd, "orders", "after").await;
    assert!(
        status >= 500,
        "a send whose WAL could not be flushed is not acknowledged (got {status}); log:\n{}",
        esmd.tail(40)
    );
    let db = PathBuf::from("esmd.db-wal");
    exits_1_with_error(esmd, &db, "flush").await;
}

#[tokio::test]
async fn a_database_deleted_under_an_idle_daemon_is_noticed_within_the_check_interval() {
    let dir = TempDir::new().expect("temp dir");
    let esmd = start_busy(dir.path()).await;
    std::fs::remove_file(dir.path().join("esmd.db")).expect("rm esmd.db");
    // No write follows: the periodic check (every second) must notice on its own.
    let reason = not_ready_reason(&esmd).await;
    assert!(reason.contains("deleted"), "/readyz says why: {reason}");
    exits_1_with_error(esmd, Path::new("esmd.db"), "deleted").await;
}

/// Sets the immutable flag on `path` and clears it when dropped (so the temporary directory can
/// be removed). `None` when `chattr` is missing or the filesystem does not support it.
struct Immutable(PathBuf);

impl Immutable {
    fn set(path: &Path) -> Option<Immutable> {
        let ok = Command::new("chattr")
            .arg("+i")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("chattr +i is not available here: skipping the immutable-file check");
        }
        ok.then(|| Immutable(path.to_owned()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[tokio::test]
async fn esmd_refuses_to_start_on_a_database_it_cannot_write() {
    let dir = TempDir::new().expect("temp dir");
    let first = EsmdProcess::start(dir.path(), &config(&dir.path().join("s")), &[]).await;
    first.stop().await;
    let db = dir.path().join("esmd.db");
    let before = std::fs::read(&db).expect("read the database");
    let Some(_flag) = Immutable::set(&db) else {
        return;
    };
    let mut esmd = EsmdProcess::spawn(dir.path(), &config(&dir.path().join("s")), &[]);
    let code = esmd.wait_exit(BOUND).await;
    let log = esmd.lines();
    assert_eq!(code, Some(1), "exit 1; log:\n{}", log.join("\n"));
    let naming: Vec<&String> = log.iter().filter(|l| l.contains("esmd.db")).collect();
    assert!(
        naming.len() == 1 && naming[0].contains("cannot be written"),
        "one line names the file and says it cannot be written; log:\n{}",
        log.join("\n")
    );
    assert!(
        !log.iter().any(|l| l.contains("esmd ready")),
        "never ready; log:\n{}",
        log.join("\n")
    );
    assert_eq!(
        std::fs::read(&db).expect("read the database"),
        before,
        "the file is untouched"
    );
}

#[tokio::test]
async fn a_database_made_unwritable_under_the_daemon_fails_its_checkpoint_and_exits_1() {
    let dir = TempDir::new().expect("temp dir");
    let db = dir.path().join("esmd.db");
    let esmd = start_busy(dir.path()).await;
    let Some(flag) = Immutable::set(&db) else {
        esmd.stop().await;
        return;
    };
    // Sends still reach the WAL (a separate, writable file); the periodic checkpoint cannot
    // copy them into the database file.
    let mut acknowledged = 0;
    for k in 0..20 {
        if send(&esmd, "orders", &format!("m{k}")).await == 201 {
            acknowledged += 1;
        }
    }
    let reason = not_ready_reason(&esmd).await;
    assert!(
        reason.contains("checkpoint") && reason.contains("esmd.db"),
        "/readyz says why: {reason}"
    );
    assert_eq!(send(&esmd, "orders", "refused").await, 503);
    exits_1_with_error(esmd, Path::new("esmd.db"), "checkpoint").await;

    // Once the file is writable again, nothing acknowledged is lost.
    drop(flag);
    let esmd = EsmdProcess::start(dir.path(), &config(&dir.path().join("s2")), &[]).await;
    let queues: Value = reqwest::get(format!("{}/queues/orders", esmd.url()))
        .await
        .expect("GET /queues/orders")
        .json()
        .await
        .expect("JSON");
    assert_eq!(
        queues["visible"].as_u64(),
        Some(acknowledged),
        "every acknowledged send is kept: {queues}"
    );
    esmd.stop().await;
}
