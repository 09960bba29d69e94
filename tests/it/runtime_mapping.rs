//! An event source mapping into a `runtime` function end to end (issue 16 point 3): the real
//! daemon runs a Python handler using Powertools' `BatchProcessor` under awslambdaric; the
//! records it fails come back, the others are deleted. esmd's log carries START/END/REPORT and
//! the handler's output tagged with the function and request id.

use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use crate::common::eventually;
use crate::common::process::EsmdProcess;
use crate::runtime::{data, python};

const BOUND: Duration = Duration::from_secs(60);

fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn powertools_partial_batch_failures_are_honoured_end_to_end() {
    let Some(python) = python() else { return };
    let dir = TempDir::new().expect("temp dir");
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[storage]
path = "@DIR@/esmd.db"
[log]
format = "json"
[queues.orders]
visibility_timeout = "5min"
[functions.batch]
type = "runtime"
command = ["{python}", "-m", "awslambdaric", "batch.handler"]
handler = "batch.handler"
working_dir = "{dir}"
timeout = "20s"
max_environments = 1
[mappings.orders-to-batch]
queue = "orders"
function = "batch"
batch_size = 10
batching_window = "2s"
report_batch_item_failures = true
"#,
        python = python.display(),
        dir = data("runtime-python").display(),
    );
    let esmd = EsmdProcess::start(dir.path(), &config, &[]).await;
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for body in ["ok-1", "fail", "ok-2"] {
        let sent: Value = http
            .post(format!("{}/queues/orders/messages", esmd.url()))
            .body(body)
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        ids.push(sent["messageId"].as_str().expect("an id").to_owned());
    }
    let metrics = || async {
        http.get(format!("{}/metrics", esmd.url()))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    };
    eventually(BOUND, "two records deleted, one failed", || async {
        let text = metrics().await?;
        let deleted = metric(&text, "esmd_mapping_events_total", &[("event", "deleted")]);
        (deleted >= 2.0).then_some(())
    })
    .await;
    let text = metrics().await.expect("metrics");
    assert_eq!(
        metric(&text, "esmd_mapping_events_total", &[("event", "deleted")]),
        2.0
    );
    assert_eq!(
        metric(
            &text,
            "esmd_invocations_total",
            &[("outcome", "partial_failure")]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "esmd_runtime_cold_starts_total",
            &[("function", "batch")]
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "esmd_runtime_environments",
            &[("function", "batch"), ("state", "idle")]
        ),
        1.0,
        "{text}"
    );
    assert!(text.contains("# TYPE esmd_runtime_init_duration_seconds histogram"));
    assert!(text.contains("esmd_runtime_invocation_duration_seconds_count{function=\"batch\",outcome=\"success\"} 1"), "{text}");
    crate::common::promtool_clean(&text);
    // The failed record is the one left in the queue (in flight until its visibility timeout).
    let queue: Value = http
        .get(format!("{}/queues/orders", esmd.url()))
        .send()
        .await
        .expect("GET queue")
        .json()
        .await
        .expect("queue JSON");
    assert_eq!(queue["inFlight"], 1, "{queue}");
    assert_eq!(queue["visible"], 0, "{queue}");
    let lines = esmd.lines();
    let joined = lines.join("\n");
    let failed_id = &ids[1];
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("record {failed_id} body=fail"))
                && l.contains("\"request_id\"")
                && l.contains("\"function\":\"batch\"")),
        "the handler's output is in esmd's log, tagged: {joined}"
    );
    for word in [
        "START RequestId: ",
        "END RequestId: ",
        "REPORT RequestId: ",
        "Init Duration: ",
    ] {
        assert!(joined.contains(word), "{word} in esmd's log: {joined}");
    }
    esmd.stop().await;
}

/// The pids the environments of `dir`'s function wrote, one per start.
fn started(dir: &std::path::Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_none_or(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// A warm environment serves the next batch; a reload that changes the function replaces it
/// (the old process is killed at once); stopping esmd kills the environment it leaves.
#[tokio::test]
async fn reload_replaces_changed_environments_and_stop_kills_them() {
    let dir = TempDir::new().expect("temp dir");
    let bootstrap = data("runtime-shell/bootstrap");
    let config = |greeting: &str| {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[storage]
path = "@DIR@/esmd.db"
[queues.work]
[functions.shell]
type = "runtime"
command = ["sh", "-c", "echo $$ >> @DIR@/pids; exec {bootstrap}"]
environment = {{ GREETING = "{greeting}" }}
max_environments = 1
[mappings.work-to-shell]
queue = "work"
function = "shell"
"#,
            bootstrap = bootstrap.display(),
        )
    };
    let mut esmd = EsmdProcess::start(dir.path(), &config("hi"), &[]).await;
    let http = reqwest::Client::new();
    let base = esmd.url();
    let send = |body: &'static str| {
        let url = format!("{base}/queues/work/messages");
        let http = http.clone();
        async move {
            let sent = http.post(url).body(body).send().await.expect("send");
            assert!(sent.status().is_success());
        }
    };
    let empty = || async {
        let queue: Value = http
            .get(format!("{base}/queues/work"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (queue["visible"] == 0 && queue["inFlight"] == 0).then_some(())
    };
    send("one").await;
    eventually(BOUND, "the first message is consumed", empty).await;
    send("two").await;
    eventually(BOUND, "the second message is consumed", empty).await;
    let first = started(dir.path());
    assert_eq!(
        first.len(),
        1,
        "one warm environment served both: {first:?}"
    );
    assert!(alive(first[0]));

    std::fs::write(
        esmd.config(),
        config("hello").replace("@DIR@", &dir.path().display().to_string()),
    )
    .expect("rewrite the configuration");
    esmd.signal(nix::sys::signal::Signal::SIGHUP);
    esmd.wait_for_line(BOUND, "the reload", |l| {
        l.contains("configuration reloaded")
    })
    .await;
    eventually(BOUND, "the old environment is killed", || async {
        (!alive(first[0])).then_some(())
    })
    .await;
    send("three").await;
    eventually(BOUND, "the third message is consumed", empty).await;
    let second = started(dir.path());
    assert_eq!(
        second.len(),
        2,
        "a new environment after the reload: {second:?}"
    );
    assert!(alive(second[1]));
    esmd.stop().await;
    eventually(BOUND, "stopping esmd kills its environments", || async {
        (!alive(second[1])).then_some(())
    })
    .await;
}
