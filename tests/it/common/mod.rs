//! Shared test fixtures: a store on a temporary SQLite file with a manual clock, and helpers;
//! the in-process daemon ([`daemon`]), the SQS API server ([`api`]) and the binary as a child
//! process ([`process`]).

#![allow(dead_code)]

pub mod api;
pub mod daemon;
pub mod process;

use std::time::Duration;

use esmd::clock::Clock;
use esmd::config::{StorageConfig, Synchronous};
use esmd::domain::queue::{QueueName, QueueSettings};
use esmd::domain::Timestamp;
use esmd::store::Store;
use tempfile::TempDir;

/// A fixed, realistic start time for manual clocks (2026-01-01T00:00:00Z).
pub const T0: i64 = 1_767_225_600_000;

/// A store on a fresh database file in its own temporary directory, with a manual clock.
pub struct TestStore {
    pub store: Store,
    pub clock: Clock,
    pub dir: TempDir,
}

impl TestStore {
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = Clock::manual(Timestamp::from_millis(T0));
        let store = Store::open(&storage(&dir), clock.clone())
            .await
            .expect("open store");
        TestStore { store, clock, dir }
    }

    /// Closes the database and opens the same file again, as a restart would.
    pub async fn restart(self) -> Self {
        self.store.close().await;
        let store = Store::open(&storage(&self.dir), self.clock.clone())
            .await
            .expect("reopen store");
        TestStore { store, ..self }
    }

    /// Creates a queue with `settings`.
    pub async fn queue(&self, name: &str, settings: QueueSettings) -> QueueName {
        let name = q(name);
        self.store
            .ensure_queue(&name, &settings)
            .await
            .expect("create queue");
        name
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }
}

pub fn storage(dir: &TempDir) -> StorageConfig {
    StorageConfig {
        postgres: None,
        path: dir.path().join("esmd.db"),
        synchronous: Synchronous::Full,
        max_size: None,
        max_queues: 1000,
        tombstone_retention: std::time::Duration::from_secs(3600),
    }
}

pub fn q(name: &str) -> QueueName {
    QueueName::parse(name).expect("valid queue name")
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Awaits `fut` for at most `limit`, panicking with `what` if it takes longer.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Another process's write lock on the database file at `path` (`BEGIN IMMEDIATE` on a
/// connection of its own), held until [`WriteLock::release`]: esmd's writes wait behind it, as
/// they would behind a slow disk or another program, up to the busy timeout.
pub struct WriteLock(sqlx::SqliteConnection);

impl WriteLock {
    pub async fn take(path: &std::path::Path) -> Self {
        use sqlx::Connection as _;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{}", path.display()))
            .await
            .expect("open the database as another process would");
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut conn)
            .await
            .expect("take the write lock");
        WriteLock(conn)
    }

    pub async fn release(mut self) {
        sqlx::query("ROLLBACK")
            .execute(&mut self.0)
            .await
            .expect("release the lock");
    }
}

/// Polls `check` until it yields a value, for at most `limit`: for conditions that change in
/// another task or process without a notification the test can wait on (a move task's progress
/// read through the API).
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(limit, what, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await; // sleep-ok: polling state that sends no notification
        }
    })
    .await
}

/// `promtool check metrics` finds nothing to say about `text` (promtool is required in CI).
pub fn promtool_clean(text: &str) {
    use std::io::Write as _;
    let spawned = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut child) = spawned else {
        assert!(
            std::env::var_os("ESMD_CI").is_none(),
            "promtool is missing in CI"
        );
        eprintln!("!!! promtool not found: the metrics were not checked by it");
        return;
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
