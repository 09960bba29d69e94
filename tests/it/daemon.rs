//! The real `esmd` binary as a process (issue #4 point 8): `check-config` on the shipped
//! configuration and on broken ones (exit 78, every bad key named, no database created),
//! `--config` naming a missing file, and `esmd run` on port 0 (it reports the port it got):
//! healthy, accepting a message on the REST shim, exiting 0 on SIGTERM, and keeping the queue's
//! messages across a restart.
//!
//! Every process runs through the binary fixture ([`process`]): in a temporary working directory
//! with the `ESMD_*` and `STATE_DIRECTORY` variables removed, so the developer's environment never
//! leaks in, and with its log captured for failure messages to quote.

use std::path::{Path, PathBuf};
use std::process::Output;

use md5::{Digest as _, Md5};
use serde_json::Value;
use tempfile::TempDir;

use crate::common::process::{self, EsmdProcess, BOUND};

fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config/esmd.toml")
}

/// Runs `esmd <args>` in `cwd` ([`process::command`]) to completion (bounded) and returns its
/// output.
async fn run_to_end(cwd: &Path, args: &[&str]) -> Output {
    let out = process::command(cwd).args(args).output();
    tokio::time::timeout(BOUND, out)
        .await
        .unwrap_or_else(|_| panic!("esmd {args:?} did not finish within {BOUND:?}"))
        .unwrap_or_else(|e| panic!("could not run esmd {args:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `esmd run --config esmd.toml` in `dir`, ready and healthy.
async fn start(dir: &Path) -> EsmdProcess {
    let mut d = EsmdProcess::spawn_config(dir, Path::new("esmd.toml"), &[]);
    d.ready().await;
    let health = reqwest::get(format!("{}/healthz", d.url()))
        .await
        .expect("GET /healthz");
    assert_eq!(
        health.status(),
        200,
        "healthy once ready; its log:\n{}",
        d.tail(40)
    );
    d
}

#[tokio::test]
async fn check_config_prints_the_effective_shipped_configuration() {
    let dir = TempDir::new().expect("temp dir");
    let shipped = shipped_config();
    let out = run_to_end(
        dir.path(),
        &[
            "check-config",
            "--config",
            shipped.to_str().expect("utf-8 path"),
        ],
    )
    .await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "check-config of the shipped file; stderr:\n{}",
        text(&out.stderr)
    );
    for expected in [
        "[server]",
        "listen = \"127.0.0.1:9324\"",
        "shutdown_grace = \"30s\"",
        "[queues.orders]",
        "[queues.\"events.fifo\"]",
        "[mappings.orders-to-log]",
        // A default the shipped file does not spell out, filled in.
        "fifo_throughput_limit = \"perQueue\"",
    ] {
        assert!(
            stdout.contains(expected),
            "the effective configuration shows {expected}:\n{stdout}"
        );
    }
    // Relative storage paths are resolved against the working directory.
    let db = dir.path().join("esmd.db");
    assert!(
        stdout.contains(&db.display().to_string()),
        "the resolved database path {}:\n{stdout}",
        db.display()
    );
    assert!(!db.exists(), "check-config does not create the database");
}

const BROKEN: &str = r#"
[server]
listen = "127.0.0.1:1"
bogus_key = 1

[storage]
path = "data/should-not-exist.db"

[queues.q]
visibility_timeout = "13h"

[functions.f]
type = "log"
timeout = "20min"

[mappings.m]
queue = "q"
function = "f"
batch_size = 20000
max_concurrency = 1
"#;

#[tokio::test]
async fn an_invalid_configuration_exits_78_naming_every_bad_key_and_touches_no_database() {
    let dir = TempDir::new().expect("temp dir");
    std::fs::write(dir.path().join("esmd.toml"), BROKEN).expect("write the broken config");
    for sub in ["check-config", "run"] {
        let out = run_to_end(dir.path(), &[sub, "--config", "esmd.toml"]).await;
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(78),
            "esmd {sub} on a broken config exits 78 (EX_CONFIG); stderr:\n{stderr}"
        );
        for key in [
            "server.bogus_key",
            "queues.q.visibility_timeout",
            "functions.f.timeout",
            "mappings.m.batch_size",
            "mappings.m.max_concurrency",
        ] {
            assert!(
                stderr.contains(key),
                "esmd {sub}: stderr names {key}:\n{stderr}"
            );
        }
        assert!(
            out.stdout.is_empty(),
            "esmd {sub}: nothing on stdout: {}",
            text(&out.stdout)
        );
        assert!(
            !dir.path().join("data").exists(),
            "esmd {sub} created the database directory"
        );
        assert!(
            !dir.path().join("data/should-not-exist.db").exists(),
            "esmd {sub} created the database"
        );
    }
}

#[tokio::test]
async fn a_missing_config_file_exits_78() {
    let dir = TempDir::new().expect("temp dir");
    for sub in ["check-config", "run"] {
        let out = run_to_end(dir.path(), &[sub, "--config", "missing.toml"]).await;
        let stderr = text(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(78),
            "esmd {sub} with a missing --config file; stderr:\n{stderr}"
        );
        assert!(
            stderr.contains("missing.toml"),
            "stderr names the file:\n{stderr}"
        );
        assert!(
            !dir.path().join("esmd.db").exists(),
            "no fall-back to the defaults' database"
        );
    }
}

#[tokio::test]
async fn run_serves_accepts_a_message_stops_on_sigterm_and_keeps_the_message_across_a_restart() {
    let dir = TempDir::new().expect("temp dir");
    let toml = r#"
[server]
listen = "127.0.0.1:0"

[storage]
path = "state/esmd.db"

[queues.parked]

[queues.logged]

[functions.log]
type = "log"

[mappings.logged]
queue = "logged"
function = "log"
"#;
    std::fs::write(dir.path().join("esmd.toml"), toml).expect("write the config");
    std::fs::create_dir(dir.path().join("state")).expect("create the state directory");

    let d = start(dir.path()).await;
    let http = reqwest::Client::new();
    // What `curl --data 'hello' localhost:PORT/queues/parked/messages` sends.
    let answer = http
        .post(format!("{}/queues/parked/messages", d.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("hello")
        .send()
        .await
        .expect("POST to the REST shim");
    assert_eq!(answer.status(), 201, "the REST shim accepted the message");
    let sent: Value = answer.json().await.expect("a JSON answer");
    let id = sent["messageId"].as_str().expect("a messageId").to_owned();
    assert_eq!(sent["md5OfBody"], hex::encode(Md5::digest(b"hello")));
    let ready = http
        .get(format!("{}/readyz", d.url()))
        .send()
        .await
        .expect("GET /readyz");
    assert_eq!(
        ready.status(),
        200,
        "ready once every enabled mapping polls"
    );
    d.stop().await;
    assert!(
        dir.path().join("state/esmd.db").exists(),
        "the configured database file"
    );

    // Same database: the message of the queue without a mapping is still there.
    let d = start(dir.path()).await;
    let queue: Value = http
        .get(format!("{}/queues/parked", d.url()))
        .send()
        .await
        .expect("GET /queues/parked")
        .json()
        .await
        .expect("a JSON queue description");
    assert_eq!(
        queue["visible"], 1,
        "the message survived the restart: {queue}"
    );
    assert_eq!(queue["inFlight"], 0, "{queue}");
    let received: Value = http
        .post(d.url())
        .header("x-amz-target", "AmazonSQS.ReceiveMessage")
        .header("content-type", "application/x-amz-json-1.0")
        .body(
            serde_json::json!({ "QueueUrl": format!("{}/000000000000/parked", d.url()) })
                .to_string(),
        )
        .send()
        .await
        .expect("ReceiveMessage")
        .json()
        .await
        .expect("a JSON ReceiveMessage answer");
    assert_eq!(
        received["Messages"][0]["MessageId"],
        id.as_str(),
        "the same message: {received}"
    );
    assert_eq!(received["Messages"][0]["Body"], "hello");
    d.stop().await;
}
