//! Operations (issue 5), through the real binary as a process: the systemd unit, /metrics values
//! after known traffic (and `promtool check metrics` where promtool exists), /readyz, structured
//! logs, and SIGHUP reload.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tempfile::TempDir;

use crate::common::process::EsmdProcess;
use crate::common::within;

/// Polls `check` until it yields a value, for at most `limit`: the condition is another
/// process's state, which nothing here can be notified of.
async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    within(limit, what, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(25)).await; // sleep-ok: polling another process
        }
    })
    .await
}

async fn get(url: &str) -> Option<(u16, String)> {
    let r = reqwest::get(url).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

async fn send(url: &str, queue: &str, body: &str) {
    let r = reqwest::Client::new()
        .post(format!("{url}/queues/{queue}/messages"))
        .body(body.to_owned())
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 201, "send {body}");
}

/// The value of one series in a Prometheus text exposition.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse().ok())
    })
}

const FAILING_FUNCTION: &str = r#"
import json, sys
event = json.load(sys.stdin)
print(f"sorting {len(event['Records'])} records", file=sys.stderr)
failed = [{"itemIdentifier": r["messageId"]} for r in event["Records"] if "fail" in r["body"]]
print(json.dumps({"batchItemFailures": failed}))
"#;

fn metrics_config(script: &Path) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[storage]
path = "@DIR@/esmd.db"
[log]
format = "json"
[queues.work]
visibility_timeout = "1s"
dead_letter_queue = "work-dlq"
max_receive_count = 1
[queues.work-dlq]
[functions.sorter]
type = "command"
command = ["python3", "{}"]
timeout = "1s"
[mappings.sort-work]
queue = "work"
function = "sorter"
report_batch_item_failures = true
max_concurrency = 2
"#,
        script.display()
    )
}

#[tokio::test]
async fn metrics_after_known_traffic_and_json_logs() {
    let scripts = tempfile::tempdir().expect("temp dir");
    let script = scripts.path().join("sorter.py");
    std::fs::write(&script, FAILING_FUNCTION).expect("write script");
    let dir = TempDir::new().expect("temp dir");
    let esmd = EsmdProcess::start(dir.path(), &metrics_config(&script), &[]).await;
    for body in ["ok-1", "ok-2", "please fail", "ok-3", "ok-4"] {
        send(&esmd.url(), "work", body).await;
    }
    let url = format!("{}/metrics", esmd.url());
    let text = eventually(
        Duration::from_secs(20),
        "4 deletions and 1 dead letter",
        || async {
            let (_, text) = get(&url).await?;
            let deleted = metric(&text, r#"esmd_messages_deleted_total{queue="work"}"#)?;
            let dead = metric(&text, r#"esmd_messages_dead_lettered_total{queue="work"}"#)?;
            (deleted == 4.0 && dead == 1.0).then_some(text)
        },
    )
    .await;
    assert_eq!(
        metric(&text, r#"esmd_messages_sent_total{queue="work"}"#),
        Some(5.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"esmd_mapping_events_total{event="deleted",mapping="sort-work"}"#
        ),
        Some(4.0)
    );
    let inv = |outcome: &str| {
        metric(&text, &format!(r#"esmd_invocations_total{{function="sorter",mapping="sort-work",outcome="{outcome}"}}"#))
            .unwrap_or(0.0)
    };
    assert!(
        inv("partial_failure") >= 1.0,
        "the failing record made a partial failure:\n{text}"
    );
    assert_eq!(inv("error") + inv("timeout"), 0.0);
    assert_eq!(
        metric(&text, r#"esmd_invocations_in_flight{mapping="sort-work"}"#),
        Some(0.0)
    );
    assert_eq!(
        metric(
            &text,
            r#"esmd_queue_messages{queue="work-dlq",state="visible"}"#
        ),
        Some(1.0)
    );
    assert!(text.contains("# TYPE esmd_invocation_duration_seconds histogram"));
    assert!(text.contains("# TYPE esmd_queue_oldest_message_age_seconds gauge"));

    // promtool (required in CI) finds nothing to complain about.
    crate::common::promtool_clean(&text);

    // Logs are JSON with the mapping and function as fields.
    let lines = esmd.lines();
    let json: Vec<serde_json::Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(json.len(), lines.len(), "every line is JSON: {lines:#?}");
    assert!(
        json.iter()
            .any(|l| l["mapping"] == "sort-work" && l["function"] == "sorter"),
        "{lines:#?}"
    );
    esmd.stop().await;
}

const RELOAD_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "5s"
[storage]
path = "@DIR@/esmd.db"
[queues.first]
[queues.second]
[functions.log]
type = "log"
[mappings.first-to-log]
queue = "first"
function = "log"
"#;

#[tokio::test]
async fn sighup_reloads_mappings_and_refuses_a_bad_configuration() {
    let dir = TempDir::new().expect("temp dir");
    let mut esmd =
        EsmdProcess::start(dir.path(), RELOAD_CONFIG, &[("JOURNAL_STREAM", "8:1234")]).await;
    let url = esmd.url();

    // An invalid configuration is refused, naming the key; the running one stays.
    std::fs::write(
        esmd.config(),
        RELOAD_CONFIG.replace("function = \"log\"", "function = \"log\"\nbatch_size = 0"),
    )
    .expect("write");
    esmd.signal(Signal::SIGHUP);
    esmd.wait_for_line(Duration::from_secs(10), "the refusal", |l| {
        l.contains("reload refused") && l.contains("mappings.first-to-log.batch_size")
    })
    .await;
    send(&url, "first", "still-served").await;
    esmd.wait_for_line(
        Duration::from_secs(10),
        "the first mapping to keep working",
        |l| l.contains("still-served"),
    )
    .await;

    // A valid new configuration: the first mapping removed, a second one added.
    let text = std::fs::read_to_string(esmd.config()).expect("read");
    let new = RELOAD_CONFIG
        .replace("@DIR@", dir.path().to_str().expect("utf-8"))
        .replace(
            "[mappings.first-to-log]\nqueue = \"first\"",
            "[mappings.second-to-log]\nqueue = \"second\"",
        );
    assert_ne!(text, new);
    std::fs::write(esmd.config(), new).expect("write");
    esmd.signal(Signal::SIGHUP);
    esmd.wait_for_line(Duration::from_secs(10), "the reload", |l| {
        l.contains("configuration reloaded")
    })
    .await;
    send(&url, "second", "via-second").await;
    send(&url, "first", "left-alone").await;
    esmd.wait_for_line(
        Duration::from_secs(10),
        "the second mapping to deliver",
        |l| l.contains("via-second") && l.contains("second-to-log"),
    )
    .await;
    let (_, first) = get(&format!("{url}/queues/first")).await.expect("queue");
    let first: serde_json::Value = serde_json::from_str(&first).expect("json");
    assert_eq!(
        first["visible"], 1,
        "the removed mapping no longer polls: {first}"
    );

    // Under journald: no colour codes and no timestamps (journald adds its own).
    let lines = esmd.lines();
    assert!(
        lines.iter().all(|l| !l.contains('\u{1b}')),
        "no ANSI escapes"
    );
    assert!(
        lines.iter().all(|l| !l.starts_with("20")),
        "no timestamps: {lines:#?}"
    );
    esmd.stop().await;
}

#[test]
fn systemd_unit_is_clean_and_hardened() {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("systemd-analyze not installed: skipping");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/esmd.service"))
            .expect("unit");
    // verify checks that the executable exists: point it at the binary under test.
    let unit = unit.replace("/usr/local/bin/esmd", env!("CARGO_BIN_EXE_esmd"));
    let path = dir.path().join("esmd.service");
    std::fs::write(&path, unit).expect("write unit");
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("verify");
    let complaints = String::from_utf8_lossy(&verify.stderr);
    assert!(
        verify.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&path)
        .output()
        .expect("security");
    let out = String::from_utf8_lossy(&security.stdout);
    let level: f64 = out
        .lines()
        .find_map(|l| l.split("Overall exposure level for esmd.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in: {out}"));
    assert!(level <= 2.0, "exposure level {level} is above 2.0:\n{out}");
}

const SLOW_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
shutdown_grace = "20s"
[storage]
path = "@DIR@/esmd.db"
[queues.slow]
visibility_timeout = "30s"
[functions.slow]
type = "command"
command = ["sh", "-c", "cat > /dev/null; sleep 2; echo '{}'"]
timeout = "10s"
[mappings.slow]
queue = "slow"
function = "slow"
"#;

#[tokio::test]
async fn readyz_goes_503_while_draining_and_the_batch_is_settled() {
    let dir = TempDir::new().expect("temp dir");
    let mut esmd = EsmdProcess::start(dir.path(), SLOW_CONFIG, &[]).await;
    let url = esmd.url();
    assert_eq!(
        get(&format!("{url}/readyz")).await.map(|(s, _)| s),
        Some(200),
        "ready once it says so"
    );
    assert_eq!(
        get(&format!("{url}/healthz")).await.map(|(s, _)| s),
        Some(200)
    );
    send(&url, "slow", "m").await;
    eventually(
        Duration::from_secs(10),
        "the invocation to start",
        || async {
            let (_, text) = get(&format!("{url}/metrics")).await?;
            (metric(&text, r#"esmd_invocations_in_flight{mapping="slow"}"#)? == 1.0).then_some(())
        },
    )
    .await;
    esmd.signal(Signal::SIGTERM);
    let (status, body) = eventually(Duration::from_secs(10), "readyz to go 503", || async {
        get(&format!("{url}/readyz"))
            .await
            .filter(|(s, _)| *s == 503)
    })
    .await;
    assert_eq!(status, 503);
    assert!(body.contains("shutting down"), "{body}");
    assert_eq!(
        get(&format!("{url}/healthz")).await.map(|(s, _)| s),
        Some(200),
        "healthz while draining"
    );
    assert_eq!(esmd.wait_exit(Duration::from_secs(20)).await, Some(0));
    assert!(
        esmd.lines().iter().all(|l| !l.contains("abandoned")),
        "the batch finished within the grace period"
    );
}

#[tokio::test]
async fn sd_notify_ready_watchdog_and_stopping() {
    // systemd's side of Type=notify, played by a datagram socket: READY=1 once serving,
    // WATCHDOG=1 keep-alives when WATCHDOG_USEC is set, STOPPING=1 on SIGTERM.
    let sock_dir = tempfile::tempdir().expect("temp dir");
    let sock_path = sock_dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let sock_str = sock_path.to_str().expect("utf-8").to_owned();
    let dir = TempDir::new().expect("temp dir");
    let mut esmd = EsmdProcess::spawn(
        dir.path(),
        "[server]\nlisten = \"127.0.0.1:0\"\n[storage]\npath = \"@DIR@/esmd.db\"\n",
        &[("NOTIFY_SOCKET", &sock_str), ("WATCHDOG_USEC", "200000")],
    );
    let mut seen: Vec<String> = Vec::new();
    let mut buf = [0u8; 4096];
    let mut recv = |seen: &mut Vec<String>| {
        let n = sock.recv(&mut buf).expect("a notification within 20 s");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    };
    while !seen.iter().any(|m| m.contains("READY=1")) {
        recv(&mut seen);
    }
    esmd.ready().await;
    assert_eq!(
        get(&format!("{}/readyz", esmd.url())).await.map(|(s, _)| s),
        Some(200),
        "ready when READY=1 is sent"
    );
    while !seen.iter().any(|m| m.contains("WATCHDOG=1")) {
        recv(&mut seen);
    }
    esmd.signal(Signal::SIGTERM);
    while !seen.iter().any(|m| m.contains("STOPPING=1")) {
        recv(&mut seen);
    }
    assert_eq!(esmd.wait_exit(Duration::from_secs(20)).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_the_in_flight_batch_of_a_removed_mapping() {
    use crate::common::daemon::{http_function, FunctionServer, Gate, Reply, TestDaemon};
    use std::sync::atomic::{AtomicBool, Ordering};

    let server = FunctionServer::start().await;
    let gate = Gate::new();
    let held = gate.clone();
    let first = Arc::new(AtomicBool::new(true));
    server.respond(move |_| {
        if first.swap(false, Ordering::SeqCst) {
            Reply::ok().held(&held)
        } else {
            Reply::ok()
        }
    });
    let base = format!(
        "{}\n[queues.q]\n[queues.q2]\n",
        http_function(&server.url, "3s")
    );
    let mut d = TestDaemon::start(&format!(
        "{base}[mappings.m]\nqueue = \"q\"\nfunction = \"fn\"\n"
    ))
    .await;
    d.send_bodies("q", &["in-flight"]).await;
    server.next(1, Duration::from_secs(20)).await;

    // Remove m and add m2 while m's invocation is held.
    let report = d
        .reload(&format!(
            "{base}[mappings.m2]\nqueue = \"q2\"\nfunction = \"fn\"\n"
        ))
        .await;
    assert_eq!(
        (report.stopped, report.started),
        (vec!["m".to_string()], vec!["m2".to_string()])
    );
    gate.open();
    // The held batch is still settled: its message is deleted, not left to its visibility timeout.
    d.wait_empty("q", Duration::from_secs(20)).await;
    d.send_bodies("q", &["nobody polls q now"]).await;
    d.send_bodies("q2", &["m2 polls q2"]).await;
    let next = server.next(1, Duration::from_secs(20)).await;
    assert_eq!(next[0].bodies(), ["m2 polls q2"]);
    assert_eq!(
        d.counts("q").await.visible,
        1,
        "the removed mapping no longer polls"
    );

    // A changed mapping is restarted with its new settings.
    let report = d
        .reload(&format!(
            "{base}[mappings.m2]\nqueue = \"q2\"\nfunction = \"fn\"\nbatch_size = 5\n"
        ))
        .await;
    assert_eq!(report.restarted, ["m2"]);
    d.send_bodies("q2", &["after the change"]).await;
    let next = server.next(1, Duration::from_secs(20)).await;
    assert_eq!(next[0].bodies(), ["after the change"]);
    assert!(d.stop().await);
}
