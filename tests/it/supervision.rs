//! The daemon's supervision with the real binary: a SIGTERM that arrives during a reload (also
//! one slowed by another process holding the database lock) still drains and exits 0, and a
//! failed store writer turns `/readyz` 503 with the cause, logs an ERROR and exits non-zero so
//! that systemd restarts esmd (the failure is injected through a test-build-only hook).

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use sqlx::Connection as _;
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// How long a daemon may take to start, to answer, and to exit.
const BOUND: Duration = Duration::from_secs(30);

/// A running `esmd run` on port 0, its stderr kept in a file.
struct Esmd {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Esmd {
    /// Starts `esmd run` on `dir/esmd.toml` with `env`, and learns its address from the
    /// daemon's own "esmd ready" line.
    async fn start(dir: &Path, run: usize, env: &[(&str, &str)]) -> Esmd {
        let log = dir.join(format!("run-{run}.log"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_esmd"));
        cmd.args(["run", "--config", "esmd.toml"])
            .current_dir(dir)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("ESMD_CONFIG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn esmd run");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let file = log.clone();
        // Copies stderr to the log file and reports the address once the daemon is ready.
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            let mut tx = Some(tx);
            let mut all = String::new();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = line.split("esmd ready address=").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
                all.push_str(&line);
                all.push('\n');
                std::fs::write(&file, &all).expect("write the log");
            }
        });
        let addr = tokio::time::timeout(BOUND, rx)
            .await
            .unwrap_or_else(|_| panic!("esmd was not ready within {BOUND:?}"))
            .unwrap_or_else(|_| {
                panic!(
                    "esmd exited before it was ready; its log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Esmd {
            child,
            url: format!("http://{addr}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        let pid = self.child.id().expect("esmd is running");
        kill(Pid::from_raw(pid as i32), signal).expect("send a signal");
    }

    /// Waits (bounded) for the exit, then for the log to be complete.
    async fn exit(mut self) -> (ExitStatus, String) {
        let status = tokio::time::timeout(BOUND, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "esmd did not exit within {BOUND:?}; its log:\n{}",
                    self.log()
                )
            })
            .expect("wait for esmd");
        // The copier ends with the pipe; its last write lands right after.
        let deadline = Instant::now() + BOUND;
        while !self.log().contains("esmd stopped") && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await; // sleep-ok: waiting for another task to copy the pipe's last lines
        }
        let log = self.log();
        (status, log)
    }
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
    std::fs::write(dir.path().join("esmd.toml"), CONFIG).expect("write config");
    for run in 0..12 {
        let esmd = Esmd::start(dir.path(), run, &[]).await;
        esmd.signal(Signal::SIGHUP);
        esmd.signal(Signal::SIGTERM);
        let (status, log) = esmd.exit().await;
        assert!(status.success(), "run {run}: exit {status}; log:\n{log}");
        assert!(
            log.contains("received shutdown signal") && log.contains("esmd stopped"),
            "run {run}: a drained shutdown; log:\n{log}"
        );
    }
}

#[tokio::test]
async fn a_sigterm_during_a_reload_slowed_by_a_database_lock_drains_and_exits_0() {
    let dir = TempDir::new().expect("temp dir");
    std::fs::write(dir.path().join("esmd.toml"), CONFIG).expect("write config");
    let db = dir.path().join("esmd.db");
    for run in 0..3 {
        let esmd = Esmd::start(dir.path(), run, &[]).await;
        // Another process's write lock: the reload's queue update waits on it.
        let mut other = sqlx::SqliteConnection::connect(&format!("sqlite:{}", db.display()))
            .await
            .expect("open the database as another process would");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("take the write lock");
        esmd.signal(Signal::SIGHUP);
        esmd.signal(Signal::SIGTERM);
        // sleep-ok: the lock is held while both signals arrive, so the reload is still waiting when SIGTERM lands; the outcome does not depend on the length.
        tokio::time::sleep(Duration::from_millis(500)).await;
        sqlx::query("ROLLBACK")
            .execute(&mut other)
            .await
            .expect("release the lock");
        drop(other);
        let (status, log) = esmd.exit().await;
        assert!(status.success(), "run {run}: exit {status}; log:\n{log}");
        assert!(
            log.contains("received shutdown signal") && log.contains("esmd stopped"),
            "run {run}: a drained shutdown; log:\n{log}"
        );
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
command = ["sh", "-c", "touch {started}; exec sleep 60"]
timeout = "50s"

[mappings.work-to-hang]
queue = "work"
function = "hang"
"#,
        started = started.display()
    );
    std::fs::write(dir.path().join("esmd.toml"), config).expect("write config");
    let esmd = Esmd::start(dir.path(), 0, &[("ESMD_TEST_WRITER_PANIC_QUEUE", "boom")]).await;
    let http = reqwest::Client::new();
    let sent = http
        .post(format!("{}/queues/work/messages", esmd.url))
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
            esmd.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await; // sleep-ok: waiting for another process's file
    }

    let refused = http
        .post(format!("{}/queues/boom/messages", esmd.url))
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
            .get(format!("{}/readyz", esmd.url))
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
        .post(format!("{}/queues/work/messages", esmd.url))
        .body("later")
        .send()
        .await
        .expect("send after the failure");
    assert_eq!(
        after.status(),
        503,
        "every later write is refused retriably"
    );

    let (status, log) = esmd.exit().await;
    assert_eq!(
        status.code(),
        Some(1),
        "a non-zero exit for systemd to restart; log:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("ERROR") && l.contains("injected writer failure")),
        "an ERROR line with the cause; log:\n{log}"
    );
}
