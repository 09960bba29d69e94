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
    promtool_clean(&text);
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

/// `promtool check metrics` finds nothing to say about `text` (promtool is required in CI).
fn promtool_clean(text: &str) {
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
        eprintln!("!!! promtool not found: the runtime series were not checked by it");
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
