//! Queues created at run time, with the real binary: `storage.max_queues` caps them with SQS's
//! `OverLimit`, each queue's counters are exposed at 0 from its creation, and a deleted queue's
//! series leave `/metrics`. And (store level) the retention sweep of every queue at once.

use std::time::Duration;

use esmd::domain::message::NewMessage;
use esmd::domain::queue::QueueSettings;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::common::process::{command, EsmdProcess};
use crate::common::TestStore;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"

[storage]
path = "esmd.db"
max_queues = 3

[queues.configured]
"#;

async fn sqs(esmd: &EsmdProcess, action: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(esmd.url())
        .header("x-amz-target", format!("AmazonSQS.{action}"))
        .header("content-type", "application/x-amz-json-1.0")
        .body(body.to_string())
        .send()
        .await
        .expect(action);
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn metrics(esmd: &EsmdProcess) -> String {
    reqwest::get(format!("{}/metrics", esmd.url()))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text")
}

fn url(esmd: &EsmdProcess, q: &str) -> String {
    format!("{}/000000000000/{q}", esmd.url())
}

#[tokio::test]
async fn create_queue_past_max_queues_is_refused_with_over_limit_until_one_is_deleted() {
    let dir = TempDir::new().expect("temp dir");
    let esmd = EsmdProcess::start(dir.path(), CONFIG, &[]).await;
    for q in ["a", "b"] {
        let (status, body) = sqs(&esmd, "CreateQueue", json!({ "QueueName": q })).await;
        assert_eq!(status, 200, "{q}: {body}");
    }
    let (status, body) = sqs(&esmd, "CreateQueue", json!({ "QueueName": "c" })).await;
    assert_eq!(status, 400, "the fourth queue is refused: {body}");
    assert_eq!(body["__type"], "com.amazonaws.sqs#OverLimit", "{body}");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("storage.max_queues") && message.contains('3'),
        "the error names the limit: {message}"
    );
    // An existing queue is still "created" (CreateQueue is idempotent).
    let (status, _) = sqs(&esmd, "CreateQueue", json!({ "QueueName": "a" })).await;
    assert_eq!(status, 200);

    let (status, _) = sqs(&esmd, "DeleteQueue", json!({ "QueueUrl": url(&esmd, "b") })).await;
    assert_eq!(status, 200);
    let (status, body) = sqs(&esmd, "CreateQueue", json!({ "QueueName": "c" })).await;
    assert_eq!(status, 200, "room again after a delete: {body}");
    esmd.stop().await;
}

#[tokio::test]
async fn max_queues_0_is_refused_naming_the_key() {
    let dir = TempDir::new().expect("temp dir");
    let config = dir.path().join("esmd.toml");
    std::fs::write(&config, CONFIG.replace("max_queues = 3", "max_queues = 0")).expect("write");
    let out = command(dir.path())
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .await
        .expect("esmd check-config");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("storage.max_queues") && stderr.contains("at least 1"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_queue_s_counters_appear_at_0_on_creation_and_its_series_leave_with_it() {
    let dir = TempDir::new().expect("temp dir");
    let esmd = EsmdProcess::start(dir.path(), CONFIG, &[]).await;
    let (status, _) = sqs(&esmd, "CreateQueue", json!({ "QueueName": "fresh" })).await;
    assert_eq!(status, 200);
    let text = metrics(&esmd).await;
    for series in [
        r#"esmd_messages_sent_total{queue="fresh"} 0"#,
        r#"esmd_messages_received_total{queue="fresh"} 0"#,
        r#"esmd_messages_deleted_total{queue="fresh"} 0"#,
        r#"esmd_messages_dead_lettered_total{queue="fresh"} 0"#,
        r#"esmd_messages_sent_total{queue="configured"} 0"#,
        r#"esmd_queue_messages{queue="fresh",state="visible"} 0"#,
    ] {
        assert!(
            text.lines().any(|l| l == series),
            "{series} before any message:\n{text}"
        );
    }
    let (status, _) = sqs(
        &esmd,
        "SendMessage",
        json!({ "QueueUrl": url(&esmd, "fresh"), "MessageBody": "x" }),
    )
    .await;
    assert_eq!(status, 200);
    assert!(metrics(&esmd)
        .await
        .lines()
        .any(|l| l == r#"esmd_messages_sent_total{queue="fresh"} 1"#));

    let (status, _) = sqs(
        &esmd,
        "DeleteQueue",
        json!({ "QueueUrl": url(&esmd, "fresh") }),
    )
    .await;
    assert_eq!(status, 200);
    let text = metrics(&esmd).await;
    assert!(
        !text.contains(r#"queue="fresh""#),
        "no series of the deleted queue is left:\n{text}"
    );
    assert!(text.contains(r#"queue="configured""#), "the others stay");
    esmd.stop().await;
}

#[tokio::test]
async fn one_sweep_expires_every_queue_and_reheads_fifo_groups() {
    let t = TestStore::new().await;
    let short = QueueSettings {
        retention: Duration::from_secs(60),
        ..Default::default()
    };
    let long = QueueSettings {
        retention: Duration::from_secs(3600),
        ..Default::default()
    };
    let a = t.queue("a", short.clone()).await;
    let b = t.queue("b", short.clone()).await;
    let keep = t.queue("keep", long).await;
    let fifo = t
        .queue(
            "f.fifo",
            QueueSettings {
                content_based_deduplication: true,
                ..short
            },
        )
        .await;
    for q in [&a, &b, &keep] {
        t.store
            .send(q, vec![NewMessage::body("old")])
            .await
            .expect("send");
    }
    let grouped = |body: &str| NewMessage {
        group_id: Some("g".into()),
        ..NewMessage::body(body)
    };
    t.store
        .send(&fifo, vec![grouped("old")])
        .await
        .expect("send");
    t.advance(Duration::from_secs(30));
    t.store
        .send(&fifo, vec![grouped("new")])
        .await
        .expect("send");
    t.advance(Duration::from_secs(31));
    assert_eq!(
        t.store.sweep().await.expect("sweep"),
        3,
        "a's, b's and the FIFO group's first message are past retention"
    );
    for q in [&a, &b] {
        assert_eq!(t.store.counts(q).await.expect("counts").visible, 0, "{q}");
    }
    assert_eq!(t.store.counts(&keep).await.expect("counts").visible, 1);
    let got = t.store.receive(&fifo, 10, None).await.expect("receive");
    assert_eq!(
        got.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
        ["new"],
        "the group's next message became its head"
    );
}
